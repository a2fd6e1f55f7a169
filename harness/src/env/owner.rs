//! Who owns a lab: the `fortress` process that started it, named by its process id and the time the
//! kernel started it (a process id alone is reused; the pair is not). Every container and network of a
//! lab carries both as labels, so a later command can tell a lab whose owner was killed (SIGKILL, an
//! OOM kill, a closed terminal) from one that is still in use, and remove it.

use std::collections::HashMap;

/// The process id label.
pub const PID_LABEL: &str = "fortress.owner.pid";
/// The process start time label: clock ticks since boot, as `/proc/<pid>/stat` gives it.
pub const STARTED_LABEL: &str = "fortress.owner.started";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Owner {
    pub pid: u32,
    pub started: u64,
}

/// A process's start time, from `/proc/<pid>/stat`; `None` when there is no such process.
fn start_time(pid: &str) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // `pid (comm) state ...`: comm may hold spaces and parentheses, so count fields after the last `)`.
    // The start time is field 22 of the line, the 20th after the command.
    stat.rsplit_once(')')?.1.split_whitespace().nth(19)?.parse().ok()
}

impl Owner {
    /// This process.
    pub fn this() -> Option<Self> {
        Some(Self {
            pid: std::process::id(),
            started: start_time("self")?,
        })
    }

    /// The owner a lab's labels name, if they name one.
    pub fn from_labels(labels: &HashMap<String, String>) -> Option<Self> {
        Some(Self {
            pid: labels.get(PID_LABEL)?.parse().ok()?,
            started: labels.get(STARTED_LABEL)?.parse().ok()?,
        })
    }

    pub fn labels(&self) -> [(&'static str, String); 2] {
        [
            (PID_LABEL, self.pid.to_string()),
            (STARTED_LABEL, self.started.to_string()),
        ]
    }

    /// Whether the owner still runs: its process id is taken by the process that took it then.
    pub fn is_alive(&self) -> bool {
        start_time(&self.pid.to_string()) == Some(self.started)
    }
}

impl std::fmt::Display for Owner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "fortress (pid {})", self.pid)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_is_alive_and_one_started_at_another_time_is_not() {
        let me = Owner::this().expect("/proc/self/stat is readable");
        assert!(me.is_alive());
        let labels: HashMap<String, String> = me.labels().map(|(k, v)| (k.to_owned(), v)).into();
        assert_eq!(Owner::from_labels(&labels), Some(me));
        // The same id with another start time: the id was reused by a newer process.
        let reused = Owner {
            started: me.started + 1,
            ..me
        };
        assert!(!reused.is_alive());
        assert!(
            !Owner {
                pid: u32::MAX,
                started: 1
            }
            .is_alive()
        );
        assert_eq!(Owner::from_labels(&HashMap::new()), None);
    }
}
