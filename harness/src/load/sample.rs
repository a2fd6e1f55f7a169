//! What the recorder hands out: per endpoint group, the counts (ok, expected, error) and microsecond
//! latencies (HdrHistogram, three significant figures) of the requests completed in one second, and
//! their figures in milliseconds.

use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Serialize;

crate::vocabulary::closed_set! {
    /// What a request was for; each has its own latency and counts.
    pub enum Group, "request group" {
        Login = "login": "POST /auth/login, once per checkout or history user (and again if it failed)",
        Browse = "browse": "GET /products?limit=20 and GET /products/{id}",
        Availability = "availability": "GET /products/{id}/availability",
        Checkout = "checkout": "POST /orders",
        History = "history": "GET /users/me/orders",
        ProbeKnown = "probe_known": "a wrong-password login for a seeded email (the timing attacker)",
        ProbeUnknown = "probe_unknown": "a wrong-password login for an email nobody has (the timing attacker)",
    }
}

impl Group {
    pub(super) fn index(self) -> usize {
        self as usize
    }

    /// Whether only a logged-in user makes these requests.
    pub fn needs_login(self) -> bool {
        matches!(self, Self::Checkout | Self::History)
    }

    /// Whether the recorder keeps each request's latency, not only the histogram: the timing
    /// attacker's classifier learns from single answers.
    pub fn keeps_each(self) -> bool {
        matches!(self, Self::ProbeKnown | Self::ProbeUnknown)
    }
}

/// How a request ended, from the client's side.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RequestOutcome {
    /// The answer the request was made for (200, or 201 for a checkout).
    Ok,
    /// A 4xx the scenario expects as a normal answer (a checkout's 409 `sold_out`).
    Expected,
    /// A 5xx, an unexpected 4xx, a malformed answer, a timeout or a connection error.
    Error,
    /// A logged-in user's request answered 401 because the service no longer knows the session (or
    /// cannot check it): the user was logged out. An error too, counted apart as well.
    LoggedOut,
}

/// One group's requests within one second (or one run): counts and latencies.
#[derive(Debug, Clone)]
pub struct GroupSecond {
    pub group: Group,
    pub ok: u64,
    pub expected: u64,
    /// Errors, logged-out answers included.
    pub errors: u64,
    /// Of `errors`, the logged-in user's requests answered 401 for want of a known session.
    pub logged_out: u64,
    /// Latencies in microseconds, errors included (a timeout is a slow answer too).
    pub latency_us: Histogram<u64>,
}

/// The figures of a `GroupSecond`, latencies in milliseconds (0 when there were no requests).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GroupSummary {
    pub group: Group,
    pub count: u64,
    pub ok: u64,
    pub expected: u64,
    pub errors: u64,
    pub logged_out: u64,
    pub p50_ms: f64,
    pub p95_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

/// Microsecond histograms with three significant figures, growing as needed.
pub(super) fn new_histogram() -> Histogram<u64> {
    Histogram::new(3).expect("hdrhistogram takes 0 to 5 significant figures")
}

/// Quantile `q` of microsecond latencies, in milliseconds.
pub fn quantile_ms(latency_us: &Histogram<u64>, q: f64) -> f64 {
    latency_us.value_at_quantile(q) as f64 / 1000.0
}

impl GroupSecond {
    pub(super) fn new(group: Group) -> Self {
        Self {
            group,
            ok: 0,
            expected: 0,
            errors: 0,
            logged_out: 0,
            latency_us: new_histogram(),
        }
    }

    pub fn count(&self) -> u64 {
        self.ok + self.expected + self.errors
    }

    pub(super) fn add(&mut self, outcome: RequestOutcome, latency: Duration) {
        match outcome {
            RequestOutcome::Ok => self.ok += 1,
            RequestOutcome::Expected => self.expected += 1,
            RequestOutcome::Error => self.errors += 1,
            RequestOutcome::LoggedOut => {
                self.errors += 1;
                self.logged_out += 1;
            }
        }
        let micros = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
        // Auto-resizing, so this grows the histogram instead of failing (`saturating_record` would clamp
        // to the current size instead).
        let _ = self.latency_us.record(micros.clamp(1, 3_600_000_000));
    }

    pub fn summary(&self) -> GroupSummary {
        let h = &self.latency_us;
        GroupSummary {
            group: self.group,
            count: self.count(),
            ok: self.ok,
            expected: self.expected,
            errors: self.errors,
            logged_out: self.logged_out,
            p50_ms: quantile_ms(h, 0.50),
            p95_ms: quantile_ms(h, 0.95),
            p99_ms: quantile_ms(h, 0.99),
            max_ms: h.max() as f64 / 1000.0,
        }
    }
}

/// Every group's requests that completed within one wall-clock second.
#[derive(Debug, Clone)]
pub struct SecondSample {
    /// The second, as seconds since the Unix epoch (UTC): requests completed in
    /// `[unix_second, unix_second + 1)`.
    pub unix_second: i64,
    /// Only the groups that had requests, in `Group` order.
    pub groups: Vec<GroupSecond>,
}

impl SecondSample {
    pub fn count(&self) -> u64 {
        self.groups.iter().map(GroupSecond::count).sum()
    }

    pub fn errors(&self) -> u64 {
        self.groups.iter().map(|g| g.errors).sum()
    }

    /// Of the requests only a logged-in user makes (checkout, history), the share answered as logged
    /// out; `None` when there were none.
    pub fn logged_out_share(&self) -> Option<f64> {
        let (mut requests, mut logged_out) = (0, 0);
        for g in self.groups.iter().filter(|g| g.group.needs_login()) {
            requests += g.count();
            logged_out += g.logged_out;
        }
        (requests > 0).then(|| logged_out as f64 / requests as f64)
    }

    pub fn group(&self, group: Group) -> Option<&GroupSecond> {
        self.groups.iter().find(|g| g.group == group)
    }

    pub fn summaries(&self) -> Vec<GroupSummary> {
        self.groups.iter().map(GroupSecond::summary).collect()
    }

    /// The latencies of `groups` (all groups when empty) merged into one histogram, e.g. to merge
    /// several seconds into a phase.
    pub fn latency_us(&self, groups: &[Group]) -> Histogram<u64> {
        let mut merged = new_histogram();
        for g in self
            .groups
            .iter()
            .filter(|g| groups.is_empty() || groups.contains(&g.group))
        {
            // Auto-resizing histograms of the same precision always add.
            let _ = merged.add(&g.latency_us);
        }
        merged
    }
}
