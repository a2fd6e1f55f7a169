//! A 5xx in a report, one click from its cause. The client counted its 5xx answers by status and
//! error code, keeping a few request ids of each (`load::ServerErrors`); the lab's service replicas
//! and Postgres logged their warnings and errors (`env::logs`). Before the lab goes, those lines are
//! saved in the run folder, and each class of 5xx gets the lines that carry its request ids.

use serde::{Deserialize, Serialize};

use crate::env::logs::WorryingLines;
use crate::load::ServerErrors;
use crate::run_folder::RunFolder;
use crate::vocabulary::Variant;

/// How many log lines each class of 5xx answers shows.
const LINES_PER_CLASS: usize = 3;
/// How much of a log line the report shows.
const LINE_CHARS: usize = 600;

/// What a variant's run kept for tracing its failures.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Forensics {
    /// The log files kept, one per container that had something to say.
    pub logs: Vec<KeptLog>,
    /// The 5xx answers by status and code, the most frequent first.
    pub server_errors: Vec<ServerErrorCause>,
    /// The unexpected 4xx answers (logouts included) by status and code, the most frequent first.
    #[serde(default)]
    pub refused: Vec<ServerErrors>,
}

/// A container's warning and error lines, saved in the run folder.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KeptLog {
    pub role: String,
    /// Relative to the run folder: `logs-vulnerable/service.log`.
    pub file: String,
    pub lines: usize,
    /// Lines past the cap, not kept.
    pub dropped: usize,
}

/// A class of 5xx answers and the log lines of its request ids.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ServerErrorCause {
    #[serde(flatten)]
    pub answers: ServerErrors,
    /// Lines of the service's log naming one of the request ids (`role: line`).
    pub log_lines: Vec<String>,
}

/// Saves the lines in `logs-<variant>/<role>.log` and matches each class of 5xx to its lines. A log
/// that cannot be written is left out of the list, with a warning.
pub fn keep(
    folder: &RunFolder,
    variant: Variant,
    logs: &[WorryingLines],
    server_errors: Vec<ServerErrors>,
    refused: Vec<ServerErrors>,
) -> Forensics {
    let mut kept = Vec::new();
    for log in logs.iter().filter(|l| !l.lines.is_empty()) {
        let path = folder.log(variant, log.role);
        let written = path
            .parent()
            .map_or(Ok(()), std::fs::create_dir_all)
            .and_then(|()| std::fs::write(&path, log.lines.join("\n") + "\n"));
        match written {
            Ok(()) => kept.push(KeptLog {
                role: log.role.to_string(),
                file: folder.link(&path),
                lines: log.lines.len(),
                dropped: log.dropped,
            }),
            Err(error) => tracing::warn!(%error, path = %path.display(), "could not keep the log lines"),
        }
    }
    Forensics {
        logs: kept,
        refused,
        server_errors: server_errors
            .into_iter()
            .map(|answers| ServerErrorCause {
                log_lines: lines_naming(&answers.request_ids, logs),
                answers,
            })
            .collect(),
    }
}

/// The first few lines, of any container, that name one of `ids`.
fn lines_naming(ids: &[String], logs: &[WorryingLines]) -> Vec<String> {
    logs.iter()
        .flat_map(|log| log.lines.iter().map(move |line| (log.role, line)))
        .filter(|(_, line)| ids.iter().any(|id| line.contains(id.as_str())))
        .take(LINES_PER_CLASS)
        .map(|(role, line)| format!("{role}: {}", shortened(&readable(line))))
        .collect()
}

/// A service JSON line as a reader scans it: `03:50:26.788 ERROR request failed: error=...
/// code=database_unavailable [POST /orders <request id>]`; any other line as it is. The run folder
/// keeps the raw line.
fn readable(line: &str) -> String {
    let Ok(json) = serde_json::from_str::<serde_json::Value>(line) else {
        return line.to_owned();
    };
    let text = |v: &serde_json::Value| match v {
        serde_json::Value::Null => String::new(),
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    let time = json["timestamp"]
        .as_str()
        .and_then(|t| t.get(11..23))
        .unwrap_or("");
    let mut out = format!(
        "{time} {} {}",
        text(&json["level"]),
        text(&json["fields"]["message"])
    );
    if let Some(fields) = json["fields"].as_object() {
        for (key, value) in fields.iter().filter(|(k, _)| *k != "message") {
            out.push_str(&format!(" {key}={}", text(value)));
        }
    }
    let span = &json["span"];
    if let (Some(method), Some(path)) = (span["method"].as_str(), span["path"].as_str()) {
        out.push_str(&format!(" [{method} {path} {}]", text(&span["request_id"])));
    }
    out
}

fn shortened(line: &str) -> String {
    match line.char_indices().nth(LINE_CHARS) {
        Some((cut, _)) => format!("{}...", &line[..cut]),
        None => line.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vocabulary::Role;

    #[test]
    fn each_class_gets_the_lines_of_its_request_ids_and_the_logs_are_saved() {
        let dir = std::env::temp_dir().join(format!("fortress-forensics-{}", std::process::id()));
        let folder = RunFolder::at(&dir);
        let logs = [
            WorryingLines {
                role: Role::Service(1),
                lines: vec![
                    r#"{"timestamp":"2026-11-29T03:50:26.788494Z","level":"ERROR","fields":{"message":"request failed","error":"pool timed out","code":"database_unavailable"},"span":{"method":"POST","path":"/orders","request_id":"r-2"}}"#
                        .into(),
                    r#"{"level":"WARN","fields":{"message":"slow"},"span":{"request_id":"r-9"}}"#.into(),
                ],
                dropped: 0,
            },
            WorryingLines {
                role: Role::Postgres,
                lines: Vec::new(),
                dropped: 0,
            },
        ];
        let answers = ServerErrors {
            status: 503,
            code: "database_unavailable".into(),
            count: 4,
            request_ids: vec!["r-1".into(), "r-2".into()],
        };
        let forensics = keep(&folder, Variant::Vulnerable, &logs, vec![answers], Vec::new());
        assert_eq!(
            forensics.logs.len(),
            1,
            "a container with nothing to say has no file"
        );
        assert_eq!(forensics.logs[0].file, "logs-vulnerable/service.log");
        let saved = std::fs::read_to_string(dir.join("logs-vulnerable/service.log")).unwrap();
        assert_eq!(saved.lines().count(), 2);
        let lines = &forensics.server_errors[0].log_lines;
        assert_eq!(lines.len(), 1, "{lines:?}");
        assert_eq!(
            lines[0],
            "service: 03:50:26.788 ERROR request failed code=database_unavailable error=pool timed out [POST /orders r-2]"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
