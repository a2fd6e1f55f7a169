//! What the lab's containers said that matters after they are gone: the warning and error lines of
//! each service replica (JSON, each carrying its request id) and of Postgres. A run keeps them, so a
//! 5xx in a report can be traced to its cause once the lab is removed.

use super::{Lab, Node};
use crate::vocabulary::Role;

/// How many lines a container keeps at most (the first ones: a flood repeats itself).
pub const LINES_KEPT: usize = 2000;

/// The worrying lines of one container.
#[derive(Debug, Clone, PartialEq)]
pub struct WorryingLines {
    /// The container's part in the lab: `service-1`, `postgres`, or a target's `web-1`.
    pub role: String,
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
        found.push(kept(node.role.to_string(), &text, keep));
    }
    found
}

/// How a service replica stands and what it said last: what is left to tell when it stops answering.
#[derive(Debug, Clone, PartialEq)]
pub struct LastWords {
    pub role: String,
    /// `running`, `exited with code 137`, or why it could not be asked.
    pub state: String,
    /// Its last lines, stdout and stderr each (the service logs to stdout; a panic goes to stderr).
    pub lines: Vec<String>,
}

/// Every service replica's state and last `count` lines of each stream, as they stand now.
pub async fn last_words(lab: &Lab, count: usize) -> Vec<LastWords> {
    let mut said = Vec::new();
    for node in &lab.services {
        said.push(last_words_of(node, count).await);
    }
    said
}

/// One container's state and last `count` lines of each stream, as they stand now.
pub async fn last_words_of(node: &Node, count: usize) -> LastWords {
    let state = match (
        node.container.is_running().await,
        node.container.exit_code().await,
    ) {
        (Ok(true), _) => "running".to_owned(),
        (Ok(false), Ok(Some(code))) => format!("exited with code {code}"),
        (Ok(false), _) => "not running".to_owned(),
        (Err(error), _) => format!("could not be asked: {error}"),
    };
    let mut lines = Vec::new();
    for stream in [
        node.container.stdout_to_vec().await,
        node.container.stderr_to_vec().await,
    ] {
        let text = stream.map(|bytes| String::from_utf8_lossy(&bytes).into_owned());
        let text = text.unwrap_or_else(|error| format!("(its log could not be read: {error})"));
        let all: Vec<&str> = text.lines().collect();
        lines.extend(
            all[all.len().saturating_sub(count)..]
                .iter()
                .map(|l| (*l).to_owned()),
        );
    }
    LastWords {
        role: node.role.to_string(),
        state,
        lines,
    }
}

/// The lines `keep` picks, with the lines that explain each (Postgres's DETAIL, HINT and STATEMENT,
/// a traceback's indented lines), the first `LINES_KEPT` of them.
pub fn kept(role: String, text: &str, keep: fn(&str) -> bool) -> WorryingLines {
    let mut lines = Vec::new();
    let mut dropped = 0;
    let mut previous_kept = false;
    for line in text.lines() {
        let explains = previous_kept && (is_postgres_explanation(line) || continues(line));
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

/// A line of any program that sounds an alarm: an error, a warning, an exception or a crash, in the
/// words the common loggers and runtimes use (after the timestamp Docker puts before each line).
pub fn any_worrying(line: &str) -> bool {
    const WORDS: [&str; 12] = [
        "ERROR",
        "Error",
        "error:",
        "WARN",
        "Warning:",
        "Exception",
        "Traceback",
        "FATAL",
        "Fatal",
        "CRITICAL",
        "PANIC",
        "panicked",
    ];
    let said = without_timestamp(line);
    WORDS.iter().any(|word| said.contains(word))
}

/// What a line says, without Docker's timestamp; `None` for a line that only goes on from the one
/// before (a traceback's frames) or announces the lines after it (`Traceback (most recent call
/// last):`), which say nothing on their own.
pub fn headline(line: &str) -> Option<&str> {
    let said = without_timestamp(line);
    (!continues(line) && !said.starts_with("Traceback")).then_some(said)
}

/// A line that goes on from the one before: indented (a traceback's frames, a stack's `at` lines).
fn continues(line: &str) -> bool {
    without_timestamp(line).starts_with([' ', '\t'])
}

/// The line after the RFC 3339 timestamp Docker's log puts before it, if it has one.
fn without_timestamp(line: &str) -> &str {
    match line.split_once(' ') {
        Some((first, rest)) if chrono::DateTime::parse_from_rfc3339(first).is_ok() => rest,
        _ => line,
    }
}

/// When a line was written: the RFC 3339 timestamp it starts with (Docker's), or the `timestamp`
/// field of a JSON line (the reference service's).
pub fn written_at(line: &str) -> Option<chrono::DateTime<chrono::Utc>> {
    let first = line.split(' ').next()?;
    if let Ok(at) = chrono::DateTime::parse_from_rfc3339(first) {
        return Some(at.to_utc());
    }
    let json: serde_json::Value = serde_json::from_str(line).ok()?;
    let at = chrono::DateTime::parse_from_rfc3339(json["timestamp"].as_str()?).ok()?;
    Some(at.to_utc())
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
        let kept_service = kept("service-1".into(), service, service_worrying);
        assert_eq!(kept_service.lines.len(), 2);
        assert!(kept_service.lines[0].contains("r-1"));

        let postgres = "2026-11-29 03:00:00 UTC [7] LOG:  checkpoint starting\n\
                        2026-11-29 03:00:01 UTC [9] ERROR:  column \"qty\" does not exist at character 8\n\
                        2026-11-29 03:00:01 UTC [9] STATEMENT:  SELECT qty FROM inventory\n\
                        2026-11-29 03:00:02 UTC [7] LOG:  checkpoint complete\n\
                        2026-11-29 03:00:03 UTC [7] DETAIL:  not after a kept line\n";
        let kept_postgres = kept("postgres".into(), postgres, postgres_worrying);
        assert_eq!(kept_postgres.lines.len(), 2, "{:?}", kept_postgres.lines);
        assert!(kept_postgres.lines[1].contains("STATEMENT:  SELECT qty"));
    }

    #[test]
    fn a_flood_keeps_its_first_lines_and_counts_the_rest() {
        let flood = "ERROR: again\n".repeat(LINES_KEPT + 5);
        let kept = kept("postgres".into(), &flood, postgres_worrying);
        assert_eq!((kept.lines.len(), kept.dropped), (LINES_KEPT, 5));
    }

    #[test]
    fn any_programs_alarms_are_kept_with_their_traceback_and_their_time() {
        let django = "2026-12-05T15:05:50.100000000Z [INFO] 200 GET /api/v1/events/\n\
                      2026-12-05T15:05:51.200000000Z Internal Server Error: /api/v1/orders/\n\
                      2026-12-05T15:05:51.200000001Z Traceback (most recent call last):\n\
                      2026-12-05T15:05:51.200000002Z   File \"/pretix/base/services/orders.py\", line 10, in _perform\n\
                      2026-12-05T15:05:51.200000003Z     cache.get(key)\n\
                      2026-12-05T15:05:51.200000004Z redis.exceptions.ConnectionError: Error 111 connecting to redis:6379.\n\
                      2026-12-05T15:05:52.000000000Z [INFO] 201 POST /api/v1/orders/\n";
        let kept = kept("web-1".into(), django, any_worrying);
        assert_eq!(kept.lines.len(), 5, "{:?}", kept.lines);
        assert!(kept.lines[4].contains("redis.exceptions.ConnectionError"));
        let at = written_at(&kept.lines[0]).unwrap();
        assert_eq!(at.to_rfc3339(), "2026-12-05T15:05:51.200+00:00");
        assert!(written_at("no time here").is_none());
        let json = r#"{"timestamp":"2026-11-29T03:50:26.788494Z","level":"ERROR"}"#;
        assert!(written_at(json).is_some());
    }
}
