//! What `fortress` answers the shell: one code per way a command can end, with its meaning written
//! once, for `--help`, the terminal and the report's badge.

/// The process exit code of a `fortress` command.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ExitCode {
    /// Every prediction confirmed and every invariant held (or, for other commands: done).
    Confirmed,
    /// A prediction refuted, an invariant violated, or a gate figure regressed.
    Refuted,
    /// Something could not be judged.
    Inconclusive,
    /// A usage or experiment-file error: nothing ran.
    Usage,
    /// The environment failed (Docker, images, disk), or Ctrl-C: faults reverted, lab removed.
    Environment,
    /// A stop condition of the experiment file tripped: the run stopped early, faults reverted.
    Aborted,
}

impl ExitCode {
    pub const ALL: [ExitCode; 6] = [
        Self::Confirmed,
        Self::Refuted,
        Self::Inconclusive,
        Self::Usage,
        Self::Environment,
        Self::Aborted,
    ];

    pub fn code(self) -> u8 {
        match self {
            Self::Confirmed => 0,
            Self::Refuted => 1,
            Self::Inconclusive => 2,
            Self::Usage => 3,
            Self::Environment => 4,
            Self::Aborted => 5,
        }
    }

    /// The one-word name: the badge of a report (`confirmed`, `refuted`, `inconclusive`).
    pub fn name(self) -> &'static str {
        match self {
            Self::Confirmed => "confirmed",
            Self::Refuted => "refuted",
            Self::Inconclusive => "inconclusive",
            Self::Usage => "usage",
            Self::Environment => "environment",
            Self::Aborted => "aborted",
        }
    }

    pub fn meaning(self) -> &'static str {
        match self {
            Self::Confirmed => {
                "every prediction confirmed, every invariant held or broke only where predicted"
            }
            Self::Refuted => "a prediction was refuted, an invariant violated or a gate figure regressed",
            Self::Inconclusive => "something could not be judged",
            Self::Usage => "a usage or experiment-file error; nothing ran",
            Self::Environment => {
                "an environment error (Docker, images) or Ctrl-C; faults were reverted and the lab removed"
            }
            Self::Aborted => "a stop condition tripped; the run stopped early and its faults were reverted",
        }
    }

    /// The list of codes for `--help`.
    pub fn help() -> String {
        let lines: Vec<String> = Self::ALL
            .iter()
            .map(|c| format!("  {}  {}", c.code(), c.meaning()))
            .collect();
        format!("Exit codes:\n{}", lines.join("\n"))
    }
}

impl std::fmt::Display for ExitCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "exit {}: {}", self.code(), self.meaning())
    }
}

impl From<ExitCode> for std::process::ExitCode {
    fn from(code: ExitCode) -> Self {
        Self::from(code.code())
    }
}

/// Saved as its number (`"exit_code": 0` in `summary.json`).
impl serde::Serialize for ExitCode {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u8(self.code())
    }
}

impl<'de> serde::Deserialize<'de> for ExitCode {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let code = u8::deserialize(d)?;
        Self::ALL
            .iter()
            .copied()
            .find(|c| c.code() == code)
            .ok_or_else(|| serde::de::Error::custom(format!("no fortress exit code {code}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_distinct_and_read_back() {
        for (i, code) in ExitCode::ALL.iter().enumerate() {
            assert_eq!(usize::from(code.code()), i);
            let json = serde_json::to_string(code).unwrap();
            assert_eq!(serde_json::from_str::<ExitCode>(&json).unwrap(), *code);
        }
        assert!(ExitCode::help().contains("  3  a usage or experiment-file error"));
        assert!(serde_json::from_str::<ExitCode>("9").is_err());
    }
}
