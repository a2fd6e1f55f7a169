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
        let path = folder.log(variant, &log.role);
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
                log_lines: lines_of(&answers, logs),
                answers,
            })
            .collect(),
    }
}

/// A class's lines: those that name one of its request ids; for a backend whose log names none (a
/// user's target), those written while the class was being answered, give or take a second.
fn lines_of(answers: &ServerErrors, logs: &[WorryingLines]) -> Vec<String> {
    let naming = lines_where(logs, |line| {
        (answers.request_ids.iter()).any(|id| line.contains(id.as_str()))
    });
    if !naming.is_empty() {
        return naming;
    }
    let (Some(first), Some(last)) = (answers.first_at, answers.last_at) else {
        return naming;
    };
    let (from, to) = (first - MARGIN, last + MARGIN);
    // Each thing said once: every failed request logs the same traceback.
    let seen = std::cell::RefCell::new(std::collections::HashSet::new());
    lines_where(logs, |line| {
        crate::env::logs::written_at(line).is_some_and(|at| from <= at && at <= to)
            && crate::env::logs::headline(line).is_some_and(|said| seen.borrow_mut().insert(said.to_owned()))
    })
}

/// How far before the first and after the last answer of a class its log lines are looked for.
const MARGIN: chrono::TimeDelta = chrono::TimeDelta::seconds(1);

/// The first few lines, of any container, that `matches`, as `role: line`.
fn lines_where(logs: &[WorryingLines], matches: impl Fn(&str) -> bool) -> Vec<String> {
    logs.iter()
        .flat_map(|log| log.lines.iter().map(move |line| (&log.role, line)))
        .filter(|(_, line)| matches(line))
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

    #[test]
    fn each_class_gets_the_lines_of_its_request_ids_and_the_logs_are_saved() {
        let dir = std::env::temp_dir().join(format!("fortress-forensics-{}", std::process::id()));
        let folder = RunFolder::at(&dir);
        let logs = [
            WorryingLines {
                role: "service".into(),
                lines: vec![
                    r#"{"timestamp":"2026-11-29T03:50:26.788494Z","level":"ERROR","fields":{"message":"request failed","error":"pool timed out","code":"database_unavailable"},"span":{"method":"POST","path":"/orders","request_id":"r-2"}}"#
                        .into(),
                    r#"{"level":"WARN","fields":{"message":"slow"},"span":{"request_id":"r-9"}}"#.into(),
                ],
                dropped: 0,
            },
            WorryingLines {
                role: "postgres".into(),
                lines: Vec::new(),
                dropped: 0,
            },
        ];
        let answers = ServerErrors {
            status: 503,
            code: "database_unavailable".into(),
            count: 4,
            request_ids: vec!["r-1".into(), "r-2".into()],
            first_at: None,
            last_at: None,
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

    #[test]
    fn a_class_whose_ids_no_line_names_gets_the_lines_of_its_seconds() {
        let dir = std::env::temp_dir().join(format!("fortress-forensics-time-{}", std::process::id()));
        let folder = RunFolder::at(&dir);
        let logs = [WorryingLines {
            role: "web-1".into(),
            lines: vec![
                "2026-12-05T15:05:40.000000000Z Error: before the outage".into(),
                "2026-12-05T15:05:51.200000000Z Internal Server Error: /api/v1/orders/".into(),
                "2026-12-05T15:05:51.200000001Z Traceback (most recent call last):".into(),
                "2026-12-05T15:05:51.200000002Z   File \"orders.py\", line 10, in _perform".into(),
                "2026-12-05T15:05:51.300000000Z redis.exceptions.ConnectionError: Error 111".into(),
                "2026-12-05T15:05:52.200000000Z Internal Server Error: /api/v1/orders/".into(),
                "2026-12-05T15:05:52.300000000Z redis.exceptions.ConnectionError: Error 111".into(),
                "2026-12-05T15:06:30.000000000Z Error: long after".into(),
            ],
            dropped: 0,
        }];
        let at = |s: &str| Some(chrono::DateTime::parse_from_rfc3339(s).unwrap().to_utc());
        let answers = ServerErrors {
            status: 500,
            code: "-".into(),
            count: 40,
            request_ids: vec!["never-logged".into()],
            first_at: at("2026-12-05T15:05:51.000Z"),
            last_at: at("2026-12-05T15:05:55.000Z"),
        };
        let forensics = keep(&folder, Variant::Vulnerable, &logs, vec![answers], Vec::new());
        let lines = &forensics.server_errors[0].log_lines;
        assert_eq!(lines.len(), 2, "{lines:?}");
        assert!(lines[1].starts_with("web-1: 2026-12-05T15:05:51.3") && lines[1].contains("ConnectionError"));
        assert_eq!(forensics.logs[0].file, "logs-vulnerable/web-1.log");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
