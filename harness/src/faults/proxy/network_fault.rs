//! What the proxy can do to a link, as the control API and the harness spell it.

use serde::{Deserialize, Serialize};

/// The longest latency or jitter accepted, in milliseconds: a minute is already an outage.
pub const MAX_DELAY_MS: f64 = 60_000.0;
/// The slowest bandwidth accepted: below this a link is better modelled as a blackhole.
pub const MIN_BANDWIDTH: u64 = 100;

/// One fault on a link. A link carries at most one of each kind at a time.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum NetworkFault {
    /// Adds `ms` (plus a uniform sample of +/- `jitter_ms`) to every reply: each burst of bytes from the
    /// upstream reaches the client that much later, so a request/response round trip grows by `ms`, and
    /// a bulk reply is delayed once, not once per chunk (a delay line, as netem does it).
    Latency {
        ms: f64,
        #[serde(default)]
        jitter_ms: f64,
    },
    /// Caps each direction of each connection at `bytes_per_second`.
    Bandwidth { bytes_per_second: u64 },
    /// Holds every byte in both directions: connections stay open and nothing arrives (a partition).
    /// Clearing it delivers what was held, as TCP would after the partition heals.
    Blackhole,
    /// Resets (RST) every connection that carries traffic while it is active.
    Reset,
    /// The link is down: open connections are reset and new ones are refused.
    Down,
}

impl NetworkFault {
    pub const KINDS: &'static str =
        "latency {ms, jitter_ms}, bandwidth {bytes_per_second}, blackhole, reset, down";

    pub fn kind(&self) -> &'static str {
        match self {
            Self::Latency { .. } => "latency",
            Self::Bandwidth { .. } => "bandwidth",
            Self::Blackhole => "blackhole",
            Self::Reset => "reset",
            Self::Down => "down",
        }
    }

    /// Checks the numbers; the message says what is allowed.
    pub fn validate(&self) -> Result<(), String> {
        match *self {
            Self::Latency { ms, jitter_ms } => {
                if !(0.0..=MAX_DELAY_MS).contains(&ms) || !ms.is_finite() {
                    return Err(format!(
                        "latency ms must be between 0 and {MAX_DELAY_MS} (got {ms})"
                    ));
                }
                if !(0.0..=ms).contains(&jitter_ms) || !jitter_ms.is_finite() {
                    return Err(format!(
                        "latency jitter_ms must be between 0 and ms ({ms}) (got {jitter_ms})"
                    ));
                }
                Ok(())
            }
            Self::Bandwidth { bytes_per_second } if bytes_per_second < MIN_BANDWIDTH => Err(format!(
                "bandwidth bytes_per_second must be at least {MIN_BANDWIDTH} (got {bytes_per_second})"
            )),
            _ => Ok(()),
        }
    }
}

impl std::fmt::Display for NetworkFault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Latency { ms, jitter_ms } if *jitter_ms > 0.0 => {
                write!(f, "latency {ms}ms +/- {jitter_ms}ms")
            }
            Self::Latency { ms, .. } => write!(f, "latency {ms}ms"),
            Self::Bandwidth { bytes_per_second } => write!(f, "bandwidth {bytes_per_second} B/s"),
            other => f.write_str(other.kind()),
        }
    }
}

/// The faults active on a link.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FaultSet {
    pub latency: Option<(f64, f64)>,
    pub bandwidth: Option<u64>,
    pub blackhole: bool,
    pub reset: bool,
    pub down: bool,
}

impl FaultSet {
    /// Builds the set from a list, refusing invalid numbers and two faults of one kind.
    pub fn from_list(faults: &[NetworkFault]) -> Result<Self, String> {
        let mut set = Self::default();
        let mut seen = Vec::new();
        for fault in faults {
            fault.validate()?;
            if seen.contains(&fault.kind()) {
                return Err(format!("two {} faults on one link; send one", fault.kind()));
            }
            seen.push(fault.kind());
            match *fault {
                NetworkFault::Latency { ms, jitter_ms } => set.latency = Some((ms, jitter_ms)),
                NetworkFault::Bandwidth { bytes_per_second } => set.bandwidth = Some(bytes_per_second),
                NetworkFault::Blackhole => set.blackhole = true,
                NetworkFault::Reset => set.reset = true,
                NetworkFault::Down => set.down = true,
            }
        }
        Ok(set)
    }

    pub fn to_list(&self) -> Vec<NetworkFault> {
        let mut list = Vec::new();
        if let Some((ms, jitter_ms)) = self.latency {
            list.push(NetworkFault::Latency { ms, jitter_ms });
        }
        if let Some(bytes_per_second) = self.bandwidth {
            list.push(NetworkFault::Bandwidth { bytes_per_second });
        }
        for (on, fault) in [
            (self.blackhole, NetworkFault::Blackhole),
            (self.reset, NetworkFault::Reset),
            (self.down, NetworkFault::Down),
        ] {
            if on {
                list.push(fault);
            }
        }
        list
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn faults_round_trip_through_json_and_the_set() {
        let list: Vec<NetworkFault> = serde_json::from_str(
            r#"[{"kind":"latency","ms":20,"jitter_ms":5},{"kind":"bandwidth","bytes_per_second":1000},{"kind":"down"}]"#,
        )
        .unwrap();
        let set = FaultSet::from_list(&list).unwrap();
        assert_eq!(set.latency, Some((20.0, 5.0)));
        assert!(set.down && !set.blackhole);
        assert_eq!(set.to_list(), list);
    }

    #[test]
    fn bad_numbers_and_duplicates_say_what_is_allowed() {
        let negative = FaultSet::from_list(&[NetworkFault::Latency {
            ms: -5.0,
            jitter_ms: 0.0,
        }])
        .unwrap_err();
        assert!(negative.contains("between 0 and 60000"), "{negative}");
        let jitter = FaultSet::from_list(&[NetworkFault::Latency {
            ms: 5.0,
            jitter_ms: 9.0,
        }])
        .unwrap_err();
        assert!(jitter.contains("jitter_ms"), "{jitter}");
        let slow = FaultSet::from_list(&[NetworkFault::Bandwidth { bytes_per_second: 1 }]).unwrap_err();
        assert!(slow.contains("at least 100"), "{slow}");
        let twice = FaultSet::from_list(&[NetworkFault::Reset, NetworkFault::Reset]).unwrap_err();
        assert!(twice.contains("two reset faults"), "{twice}");
        assert!(serde_json::from_str::<NetworkFault>(r#"{"kind":"teleport"}"#).is_err());
    }
}
