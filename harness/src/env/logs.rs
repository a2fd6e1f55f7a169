//! What the lab's containers said that matters after they are gone: the warning and error lines of
//! each service replica (JSON, each carrying its request id) and of Postgres. A run keeps them, so a
//! 5xx in a report can be traced to its cause once the lab is removed.

use super::Lab;
use crate::vocabulary::Role;

/// How many lines a container keeps at most (the first ones: a flood repeats itself).
pub const LINES_KEPT: usize = 2000;

/// The worrying lines of one container.
#[derive(Debug, Clone, PartialEq)]
pub struct WorryingLines {
    pub role: Role,
    pub lines: Vec<String>,
    /// Worrying lines past `LINES_KEPT`, not kept.
    pub dropped: usize,
}

/// Every service replica's and Postgres's warning and error lines, as their logs stand now. A
/// container whose log cannot be read is left out, with a warning: this is evidence, not the run.
pub async fn worrying_lines(lab: &Lab) -> Vec<WorryingLines> {
    let mut found = Vec::new();
    for node in lab.services.iter().chain(std::iter::once(&lab.postgres)) {
        let (stdout, stderr) = match (
            node.container.stdout_to_vec().await,
            node.container.stderr_to_vec().await,
        ) {
            (Ok(out), Ok(err)) => (out, err),
            (Err(error), _) | (_, Err(error)) => {
                tracing::warn!(%error, role = %node.role, "could not read the container's log");
                continue;
            }
        };
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&stdout),
            String::from_utf8_lossy(&stderr)
        );
        let keep: fn(&str) -> bool = if node.role == Role::Postgres {
            postgres_worrying
        } else {
            service_worrying
        };
        found.push(kept(node.role, &text, keep));
    }
    found
}

fn kept(role: Role, text: &str, keep: fn(&str) -> bool) -> WorryingLines {
    let mut lines = Vec::new();
    let mut dropped = 0;
    let mut previous_kept = false;
    for line in text.lines() {
        // Postgres explains a line on the lines after it (DETAIL, HINT, STATEMENT): they go with it.
        let explains = previous_kept && is_postgres_explanation(line);
        previous_kept = keep(line) || explains;
        if !previous_kept {
            continue;
        }
        if lines.len() < LINES_KEPT {
            lines.push(line.to_owned());
        } else {
            dropped += 1;
        }
    }
    WorryingLines { role, lines, dropped }
}

/// A JSON log line of the service at WARN or ERROR.
fn service_worrying(line: &str) -> bool {
    serde_json::from_str::<serde_json::Value>(line)
        .is_ok_and(|v| matches!(v["level"].as_str(), Some("WARN" | "ERROR")))
}

/// A Postgres log line of severity WARNING or worse.
fn postgres_worrying(line: &str) -> bool {
    ["WARNING:", "ERROR:", "FATAL:", "PANIC:"]
        .iter()
        .any(|severity| line.contains(severity))
}

fn is_postgres_explanation(line: &str) -> bool {
    ["DETAIL:", "HINT:", "STATEMENT:", "CONTEXT:"]
        .iter()
        .any(|tag| line.contains(tag))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_lines_are_kept_by_level_and_postgres_lines_with_their_explanation() {
        let service = concat!(
            r#"{"level":"INFO","fields":{"message":"listening"}}"#,
            "\n",
            r#"{"level":"ERROR","fields":{"message":"request failed","code":"internal"},"span":{"request_id":"r-1"}}"#,
            "\nnot json at all\n",
            r#"{"level":"WARN","fields":{"message":"slow"}}"#,
            "\n"
        );
        let kept_service = kept(Role::Service(1), service, service_worrying);
        assert_eq!(kept_service.lines.len(), 2);
        assert!(kept_service.lines[0].contains("r-1"));

        let postgres = "2026-11-29 03:00:00 UTC [7] LOG:  checkpoint starting\n\
                        2026-11-29 03:00:01 UTC [9] ERROR:  column \"qty\" does not exist at character 8\n\
                        2026-11-29 03:00:01 UTC [9] STATEMENT:  SELECT qty FROM inventory\n\
                        2026-11-29 03:00:02 UTC [7] LOG:  checkpoint complete\n\
                        2026-11-29 03:00:03 UTC [7] DETAIL:  not after a kept line\n";
        let kept_postgres = kept(Role::Postgres, postgres, postgres_worrying);
        assert_eq!(kept_postgres.lines.len(), 2, "{:?}", kept_postgres.lines);
        assert!(kept_postgres.lines[1].contains("STATEMENT:  SELECT qty"));
    }

    #[test]
    fn a_flood_keeps_its_first_lines_and_counts_the_rest() {
        let flood = "ERROR: again\n".repeat(LINES_KEPT + 5);
        let kept = kept(Role::Postgres, &flood, postgres_worrying);
        assert_eq!((kept.lines.len(), kept.dropped), (LINES_KEPT, 5));
    }
}
