//! What the proxy can do to a link, as the control API and the harness spell it.

use std::collections::BTreeMap;

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
    /// HTTP links only: answers `status` to a request instead of passing it on (the upstream never
    /// sees it). With a `fraction`, that share of the link's requests.
    HttpStatus { status: u16 },
    /// HTTP links only: holds a request `ms` before passing it on. A client that gives up meanwhile
    /// closes its connection, and the request is never sent.
    HttpDelay { ms: f64 },
    /// HTTP links only: passes a request on, then answers the client `status` in place of the
    /// upstream's reply: the upstream acted (a payment was authorised) and the client never hears
    /// it, as when a gateway times out on a slow upstream. With a `fraction`, that share of requests.
    HttpLostReply { status: u16 },
}

closed_set::closed_set! {
    /// The kinds of network fault; a link carries at most one of each.
    pub enum FaultKind, "network fault kind" {
        Latency = "latency": "adds ms (+/- jitter_ms) to every reply",
        Bandwidth = "bandwidth": "caps each direction of each connection",
        Blackhole = "blackhole": "holds every byte until cleared (a partition)",
        Reset = "reset": "resets every connection that carries traffic",
        Down = "down": "resets open connections and refuses new ones",
        HttpStatus = "http_status": "answers a status to (a share of) an HTTP link's requests, without passing them on",
        HttpDelay = "http_delay": "holds (a share of) an HTTP link's requests ms before passing them on",
        HttpLostReply = "http_lost_reply": "passes (a share of) an HTTP link's requests on, and answers a status in place of the upstream's reply",
    }
}

impl FaultKind {
    /// The kind with its fields, as the control API and experiment files take it.
    pub fn usage(self) -> &'static str {
        match self {
            Self::Latency => "latency {ms, jitter_ms}",
            Self::Bandwidth => "bandwidth {bytes_per_second}",
            Self::Blackhole => "blackhole",
            Self::Reset => "reset",
            Self::Down => "down",
            Self::HttpStatus => "http_status {status}",
            Self::HttpDelay => "http_delay {ms}",
            Self::HttpLostReply => "http_lost_reply {status}",
        }
    }

    /// Whether it acts on HTTP requests (of an HTTP link) rather than on bytes and connections.
    pub fn is_http(self) -> bool {
        matches!(self, Self::HttpStatus | Self::HttpDelay | Self::HttpLostReply)
    }

    /// Every kind with its fields: `latency {ms, jitter_ms}, bandwidth {bytes_per_second}, ...`.
    pub fn usages() -> String {
        Self::ALL.iter().map(|k| k.usage()).collect::<Vec<_>>().join(", ")
    }
}

/// A fault whose numbers are out of range, or a list with two of one kind.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum InvalidFault {
    #[error("latency ms must be between 0 and {MAX_DELAY_MS} (got {0})")]
    Latency(f64),
    #[error("latency jitter_ms must be between 0 and ms ({ms}) (got {jitter_ms})")]
    Jitter { ms: f64, jitter_ms: f64 },
    #[error("bandwidth bytes_per_second must be at least {MIN_BANDWIDTH} (got {0})")]
    Bandwidth(u64),
    #[error("two {0} faults on one link; send one")]
    Twice(FaultKind),
    #[error(
        "fraction must be between 0 and 1: the share of the link's connections (HTTP faults: requests) the fault takes (got {0})"
    )]
    Fraction(f64),
    #[error("{0} status must be a known HTTP status, such as 503 or 429 (got {1})")]
    Status(FaultKind, u16),
    #[error("http_delay ms must be between 0 and {MAX_DELAY_MS} (got {0})")]
    HttpDelay(f64),
}

impl NetworkFault {
    pub fn kind(&self) -> FaultKind {
        match self {
            Self::Latency { .. } => FaultKind::Latency,
            Self::Bandwidth { .. } => FaultKind::Bandwidth,
            Self::Blackhole => FaultKind::Blackhole,
            Self::Reset => FaultKind::Reset,
            Self::Down => FaultKind::Down,
            Self::HttpStatus { .. } => FaultKind::HttpStatus,
            Self::HttpDelay { .. } => FaultKind::HttpDelay,
            Self::HttpLostReply { .. } => FaultKind::HttpLostReply,
        }
    }

    /// Checks the numbers; the error says what is allowed.
    pub fn validate(&self) -> Result<(), InvalidFault> {
        match *self {
            Self::Latency { ms, .. } if !(0.0..=MAX_DELAY_MS).contains(&ms) || !ms.is_finite() => {
                Err(InvalidFault::Latency(ms))
            }
            Self::Latency { ms, jitter_ms } if !(0.0..=ms).contains(&jitter_ms) || !jitter_ms.is_finite() => {
                Err(InvalidFault::Jitter { ms, jitter_ms })
            }
            Self::Bandwidth { bytes_per_second } if bytes_per_second < MIN_BANDWIDTH => {
                Err(InvalidFault::Bandwidth(bytes_per_second))
            }
            Self::HttpStatus { status } | Self::HttpLostReply { status } if !is_known_status(status) => {
                Err(InvalidFault::Status(self.kind(), status))
            }
            Self::HttpDelay { ms } if !(0.0..=MAX_DELAY_MS).contains(&ms) || !ms.is_finite() => {
                Err(InvalidFault::HttpDelay(ms))
            }
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
            Self::HttpStatus { status } => write!(f, "HTTP {status} answered"),
            Self::HttpDelay { ms } => write!(f, "HTTP requests held {ms}ms"),
            Self::HttpLostReply { status } => write!(f, "HTTP replies lost, {status} answered"),
            other => f.write_str(other.kind().name()),
        }
    }
}

/// A fault on a share of a link's connections: the blast radius. Each connection is in or out of a
/// fault's share by a hash of the proxy's seed, the connection's number on the link and the fault's
/// kind, so a run with the same seed picks the same connections, and a connection stays in or out
/// for the whole fault. `fraction` 0 takes no connection at all, 1 (the default) takes every one.
/// In JSON it is the fault with one more field: `{"kind":"reset","fraction":0.25}`.
#[derive(Debug, Clone, PartialEq)]
pub struct ScopedFault {
    pub fault: NetworkFault,
    pub fraction: f64,
}

impl From<NetworkFault> for ScopedFault {
    fn from(fault: NetworkFault) -> Self {
        Self { fault, fraction: 1.0 }
    }
}

impl ScopedFault {
    pub fn kind(&self) -> FaultKind {
        self.fault.kind()
    }

    pub fn validate(&self) -> Result<(), InvalidFault> {
        if !(0.0..=1.0).contains(&self.fraction) || !self.fraction.is_finite() {
            return Err(InvalidFault::Fraction(self.fraction));
        }
        self.fault.validate()
    }
}

/// `reset`, `reset on 25% of connections`, `HTTP 503 answered on 50% of requests`.
impl std::fmt::Display for ScopedFault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.fault)?;
        if self.fraction < 1.0 {
            let unit = if self.kind().is_http() {
                "requests"
            } else {
                "connections"
            };
            write!(f, " on {}% of {unit}", (self.fraction * 1000.0).round() / 10.0)?;
        }
        Ok(())
    }
}

/// A status with a name in the HTTP registry (`503 Service Unavailable`), not just any three digits.
fn is_known_status(status: u16) -> bool {
    axum::http::StatusCode::from_u16(status).is_ok_and(|s| s.canonical_reason().is_some())
}

impl Serialize for ScopedFault {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut json = serde_json::to_value(&self.fault).map_err(serde::ser::Error::custom)?;
        if self.fraction < 1.0 {
            json["fraction"] = self.fraction.into();
        }
        json.serialize(s)
    }
}

impl<'de> Deserialize<'de> for ScopedFault {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        let mut json = serde_json::Value::deserialize(d)?;
        let fraction = match json.as_object_mut().and_then(|o| o.remove("fraction")) {
            None => 1.0,
            Some(value) => value
                .as_f64()
                .ok_or_else(|| D::Error::custom("fraction must be a number from 0 to 1"))?,
        };
        let fault = NetworkFault::deserialize(json).map_err(D::Error::custom)?;
        Ok(Self { fault, fraction })
    }
}

/// Where a connection falls in `[0, 1)` for a fault of `kind`: splitmix64 of the seed, the
/// connection's number and the kind, as a fraction of 2^64.
pub fn connection_draw(seed: u64, connection: u64, kind: FaultKind) -> f64 {
    let kind_index = FaultKind::ALL.iter().position(|k| *k == kind).unwrap_or(0) as u64;
    let mut z = seed
        ^ connection.wrapping_mul(0x9E37_79B9_7F4A_7C15)
        ^ kind_index.wrapping_mul(0xD1B5_4A32_D192_ED03);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^= z >> 31;
    (z >> 11) as f64 / (1u64 << 53) as f64
}

/// The faults active on a link, each with the share of connections it takes.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FaultSet {
    pub latency: Option<(f64, f64)>,
    pub bandwidth: Option<u64>,
    pub blackhole: bool,
    pub reset: bool,
    pub down: bool,
    pub http_status: Option<u16>,
    pub http_delay: Option<f64>,
    pub http_lost_reply: Option<u16>,
    /// The faults that take a share of the connections (HTTP faults: of the requests); the others
    /// take every one.
    pub fractions: BTreeMap<FaultKind, f64>,
}

impl FaultSet {
    /// The share of connections the fault of `kind` takes (1 when it takes them all).
    pub fn fraction(&self, kind: FaultKind) -> f64 {
        self.fractions.get(&kind).copied().unwrap_or(1.0)
    }

    /// Whether the fault of `kind` takes connection number `connection`.
    pub fn takes(&self, kind: FaultKind, seed: u64, connection: u64) -> bool {
        connection_draw(seed, connection, kind) < self.fraction(kind)
    }

    /// Builds the set from a list, refusing invalid numbers and two faults of one kind.
    pub fn from_list(faults: &[ScopedFault]) -> Result<Self, InvalidFault> {
        let mut set = Self::default();
        let mut seen = Vec::new();
        for scoped in faults {
            scoped.validate()?;
            let fault = &scoped.fault;
            if seen.contains(&fault.kind()) {
                return Err(InvalidFault::Twice(fault.kind()));
            }
            seen.push(fault.kind());
            if scoped.fraction < 1.0 {
                set.fractions.insert(fault.kind(), scoped.fraction);
            }
            match *fault {
                NetworkFault::Latency { ms, jitter_ms } => set.latency = Some((ms, jitter_ms)),
                NetworkFault::Bandwidth { bytes_per_second } => set.bandwidth = Some(bytes_per_second),
                NetworkFault::Blackhole => set.blackhole = true,
                NetworkFault::Reset => set.reset = true,
                NetworkFault::Down => set.down = true,
                NetworkFault::HttpStatus { status } => set.http_status = Some(status),
                NetworkFault::HttpDelay { ms } => set.http_delay = Some(ms),
                NetworkFault::HttpLostReply { status } => set.http_lost_reply = Some(status),
            }
        }
        Ok(set)
    }

    pub fn to_list(&self) -> Vec<ScopedFault> {
        self.faults()
            .into_iter()
            .map(|fault| ScopedFault {
                fraction: self.fraction(fault.kind()),
                fault,
            })
            .collect()
    }

    fn faults(&self) -> Vec<NetworkFault> {
        let mut list = Vec::new();
        if let Some((ms, jitter_ms)) = self.latency {
            list.push(NetworkFault::Latency { ms, jitter_ms });
        }
        if let Some(bytes_per_second) = self.bandwidth {
            list.push(NetworkFault::Bandwidth { bytes_per_second });
        }
        if let Some(status) = self.http_status {
            list.push(NetworkFault::HttpStatus { status });
        }
        if let Some(ms) = self.http_delay {
            list.push(NetworkFault::HttpDelay { ms });
        }
        if let Some(status) = self.http_lost_reply {
            list.push(NetworkFault::HttpLostReply { status });
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
        let scoped: Vec<ScopedFault> = list.iter().cloned().map(ScopedFault::from).collect();
        let set = FaultSet::from_list(&scoped).unwrap();
        assert_eq!(set.latency, Some((20.0, 5.0)));
        assert!(set.down && !set.blackhole);
        assert_eq!(set.to_list(), scoped);
    }

    #[test]
    fn bad_numbers_and_duplicates_say_what_is_allowed() {
        let negative = FaultSet::from_list(&[NetworkFault::Latency {
            ms: -5.0,
            jitter_ms: 0.0,
        }
        .into()])
        .unwrap_err()
        .to_string();
        assert!(negative.contains("between 0 and 60000"), "{negative}");
        let jitter = FaultSet::from_list(&[NetworkFault::Latency {
            ms: 5.0,
            jitter_ms: 9.0,
        }
        .into()])
        .unwrap_err()
        .to_string();
        assert!(jitter.contains("jitter_ms"), "{jitter}");
        let slow = FaultSet::from_list(&[NetworkFault::Bandwidth { bytes_per_second: 1 }.into()])
            .unwrap_err()
            .to_string();
        assert!(slow.contains("at least 100"), "{slow}");
        let twice = FaultSet::from_list(&[NetworkFault::Reset.into(), NetworkFault::Reset.into()])
            .unwrap_err()
            .to_string();
        assert!(twice.contains("two reset faults"), "{twice}");
        assert!(serde_json::from_str::<NetworkFault>(r#"{"kind":"teleport"}"#).is_err());
        for (status, ok) in [
            (503, true),
            (429, true),
            (200, true),
            (299, false),
            (42, false),
            (999, false),
        ] {
            let checked = NetworkFault::HttpStatus { status }.validate();
            assert_eq!(checked.is_ok(), ok, "{status}: {checked:?}");
        }
        let unknown = NetworkFault::HttpStatus { status: 299 }.validate().unwrap_err();
        assert!(unknown.to_string().contains("known HTTP status"), "{unknown}");
        assert!(NetworkFault::HttpDelay { ms: -1.0 }.validate().is_err());
        let lost = NetworkFault::HttpLostReply { status: 42 }.validate().unwrap_err();
        assert!(lost.to_string().starts_with("http_lost_reply status"), "{lost}");
        let half = ScopedFault {
            fault: NetworkFault::HttpStatus { status: 503 },
            fraction: 0.5,
        };
        assert_eq!(half.to_string(), "HTTP 503 answered on 50% of requests");
    }

    #[test]
    fn every_kind_is_listed_and_reads_back_from_json() {
        let example = |kind: FaultKind| match kind {
            FaultKind::Latency => r#"{"kind":"latency","ms":5}"#,
            FaultKind::Bandwidth => r#"{"kind":"bandwidth","bytes_per_second":1000}"#,
            FaultKind::Blackhole => r#"{"kind":"blackhole"}"#,
            FaultKind::Reset => r#"{"kind":"reset"}"#,
            FaultKind::Down => r#"{"kind":"down"}"#,
            FaultKind::HttpStatus => r#"{"kind":"http_status","status":503}"#,
            FaultKind::HttpDelay => r#"{"kind":"http_delay","ms":2000}"#,
            FaultKind::HttpLostReply => r#"{"kind":"http_lost_reply","status":504}"#,
        };
        for kind in FaultKind::ALL {
            let fault: NetworkFault = serde_json::from_str(example(*kind)).unwrap();
            assert_eq!(fault.kind(), *kind);
            assert!(FaultKind::usages().contains(kind.usage()));
        }
    }

    #[test]
    fn a_fraction_reads_from_json_and_takes_about_its_share_of_connections() {
        let scoped: ScopedFault = serde_json::from_str(r#"{"kind":"reset","fraction":0.25}"#).unwrap();
        assert_eq!(scoped.to_string(), "reset on 25% of connections");
        assert_eq!(
            serde_json::to_string(&scoped).unwrap(),
            r#"{"fraction":0.25,"kind":"reset"}"#
        );
        let whole: ScopedFault = serde_json::from_str(r#"{"kind":"reset"}"#).unwrap();
        assert_eq!(whole.fraction, 1.0);
        let set = FaultSet::from_list(&[scoped]).unwrap();
        let taken = (0..10_000)
            .filter(|c| set.takes(FaultKind::Reset, 42, *c))
            .count();
        assert!((2_300..2_700).contains(&taken), "{taken} of 10000");
        // Shopify/toxiproxy#603: a reset_peer toxic with toxicity 0 still reset a connection now and
        // then. Here 0 takes no connection and 1 takes every one.
        let none = FaultSet::from_list(&[ScopedFault {
            fault: NetworkFault::Reset,
            fraction: 0.0,
        }])
        .unwrap();
        let all = FaultSet::from_list(&[NetworkFault::Reset.into()]).unwrap();
        assert!(
            (0..10_000).all(|c| !none.takes(FaultKind::Reset, 42, c) && all.takes(FaultKind::Reset, 42, c))
        );
        let wrong = FaultSet::from_list(&[ScopedFault {
            fault: NetworkFault::Reset,
            fraction: 1.5,
        }]);
        assert!(wrong.unwrap_err().to_string().contains("between 0 and 1"));
        assert!(serde_json::from_str::<ScopedFault>(r#"{"kind":"reset","fraction":"half"}"#).is_err());
    }
}
