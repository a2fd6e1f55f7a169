//! What the recorder hands out: per endpoint group, the counts (ok, expected, error) and microsecond
//! latencies (HdrHistogram, three significant figures) of the requests completed in one second, and
//! their figures in milliseconds; per second, how well the generator kept its schedule.
//!
//! Two clocks per request, as wrk2 taught: its *latency* runs from the instant it was due on the
//! arrival schedule to the end of its answer, so a request that waited for a free user behind a
//! stalled service counts that wait (no coordinated omission); its *service time* runs from the
//! instant it actually left. The gap between the two is the generator's lag.

use std::time::{Duration, Instant};

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

    /// Whether `scenario`'s users send requests of this group.
    pub fn sent_by(self, scenario: crate::vocabulary::Scenario) -> bool {
        use crate::vocabulary::Scenario as S;
        match self {
            Self::Login => scenario.logs_in(),
            Self::Browse => scenario == S::Browse,
            Self::Availability => scenario == S::Availability,
            Self::Checkout => scenario == S::Checkout,
            Self::History => scenario == S::History,
            Self::ProbeKnown | Self::ProbeUnknown => scenario == S::LoginProbe,
        }
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
    /// Latencies in microseconds from the instant each request was due, errors included (a timeout
    /// is a slow answer too).
    pub latency_us: Histogram<u64>,
    /// Service times in microseconds: from the instant each request left.
    pub service_us: Histogram<u64>,
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
    /// The service time's 95th percentile: from the request leaving, not from its slot.
    pub service_p95_ms: f64,
}

/// When one request was due on the arrival schedule, when the user that sent it was free to (the end
/// of its previous request), when it was handed to the HTTP client and when its answer had been read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestTiming {
    pub due: Instant,
    pub free: Instant,
    pub sent: Instant,
    pub completed: Instant,
}

impl RequestTiming {
    /// From the slot the request was due in to the end of its answer: the latency every figure uses.
    pub fn latency(&self) -> Duration {
        self.completed.saturating_duration_since(self.due)
    }

    /// From the request being handed to the HTTP client to the end of its answer (building it and
    /// taking a pooled connection included: microseconds).
    pub fn service_time(&self) -> Duration {
        self.completed.saturating_duration_since(self.sent)
    }

    /// [`Self::service_time`] in whole microseconds.
    pub fn service_micros(&self) -> u64 {
        u64::try_from(self.service_time().as_micros()).unwrap_or(u64::MAX)
    }

    /// How far behind its slot the request left.
    pub fn behind(&self) -> Duration {
        self.sent.saturating_duration_since(self.due)
    }

    /// Of `behind`, the part after the slot was due and its user was free: the generator's own
    /// bookkeeping, timer and CPU. The rest (slot due, every user still waiting on an answer) is the
    /// service's back-pressure.
    pub fn own_lag(&self) -> Duration {
        self.sent.saturating_duration_since(self.due.max(self.free))
    }
}

/// How well the generator kept its schedule within one second: what was due, what left and how late,
/// and how many users were waiting on an answer.
#[derive(Debug, Clone)]
pub struct ScheduleSecond {
    /// Requests due in the second on the arrival schedule (the offered load).
    pub due: u64,
    /// Requests that left in the second.
    pub sent: u64,
    /// Of the requests that left in it, microseconds from slot to send (`RequestTiming::behind`).
    pub behind_us: Histogram<u64>,
    /// Of the requests that left in it, the generator's own share of that (`RequestTiming::own_lag`).
    pub own_lag_us: Histogram<u64>,
    /// The most users waiting on an answer at once in the second.
    pub busy_peak: u32,
}

impl ScheduleSecond {
    pub(super) fn new(busy: u32) -> Self {
        Self {
            due: 0,
            sent: 0,
            behind_us: new_histogram(),
            own_lag_us: new_histogram(),
            busy_peak: busy,
        }
    }

    pub(super) fn add_send(&mut self, behind: Duration, own_lag: Duration, busy: u32) {
        self.sent += 1;
        record_us(&mut self.behind_us, behind);
        record_us(&mut self.own_lag_us, own_lag);
        self.busy_peak = self.busy_peak.max(busy);
    }

    /// Adds another second's (or phase's) schedule to this one, the busy peak the higher of both.
    pub fn merge(&mut self, other: &Self) {
        self.due += other.due;
        self.sent += other.sent;
        // Auto-resizing histograms of the same precision always add.
        let _ = self.behind_us.add(&other.behind_us);
        let _ = self.own_lag_us.add(&other.own_lag_us);
        self.busy_peak = self.busy_peak.max(other.busy_peak);
    }
}

/// Records `value` in microseconds; zero is recorded as 1 µs (the histograms start there).
fn record_us(histogram: &mut Histogram<u64>, value: Duration) {
    let micros = u64::try_from(value.as_micros()).unwrap_or(u64::MAX);
    // Auto-resizing, so this grows the histogram instead of failing (`saturating_record` would clamp
    // to the current size instead).
    let _ = histogram.record(micros.clamp(1, 3_600_000_000));
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
            service_us: new_histogram(),
        }
    }

    pub fn count(&self) -> u64 {
        self.ok + self.expected + self.errors
    }

    /// Adds another second's requests of the same group to this one.
    fn merge(&mut self, other: &Self) {
        self.ok += other.ok;
        self.expected += other.expected;
        self.errors += other.errors;
        self.logged_out += other.logged_out;
        // Auto-resizing histograms of the same precision always add.
        let _ = self.latency_us.add(&other.latency_us);
        let _ = self.service_us.add(&other.service_us);
    }

    pub(super) fn add(&mut self, outcome: RequestOutcome, timing: &RequestTiming) {
        match outcome {
            RequestOutcome::Ok => self.ok += 1,
            RequestOutcome::Expected => self.expected += 1,
            RequestOutcome::Error => self.errors += 1,
            RequestOutcome::LoggedOut => {
                self.errors += 1;
                self.logged_out += 1;
            }
        }
        record_us(&mut self.latency_us, timing.latency());
        record_us(&mut self.service_us, timing.service_time());
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
            service_p95_ms: quantile_ms(&self.service_us, 0.95),
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
    /// How the generator kept its schedule in the second.
    pub schedule: ScheduleSecond,
}

impl SecondSample {
    pub fn count(&self) -> u64 {
        self.groups.iter().map(GroupSecond::count).sum()
    }

    pub fn errors(&self) -> u64 {
        self.groups.iter().map(|g| g.errors).sum()
    }

    /// The requests of `group` (of every group when `None`), and how many of them were errors.
    pub fn count_and_errors(&self, group: Option<Group>) -> (u64, u64) {
        (self.groups.iter())
            .filter(|g| group.is_none_or(|only| g.group == only))
            .fold((0, 0), |(n, e), g| (n + g.count(), e + g.errors))
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

    /// Adds a later second's requests and schedule to this one (the groups stay in `Group` order).
    pub fn merge(&mut self, other: &Self) {
        for theirs in &other.groups {
            match self.groups.iter_mut().find(|g| g.group == theirs.group) {
                Some(ours) => ours.merge(theirs),
                None => self.groups.push(theirs.clone()),
            }
        }
        self.groups.sort_by_key(|g| g.group);
        self.schedule.merge(&other.schedule);
    }

    pub fn summaries(&self) -> Vec<GroupSummary> {
        self.groups.iter().map(GroupSecond::summary).collect()
    }

    /// The latencies of `groups` (all groups when empty) merged into one histogram, e.g. to merge
    /// several seconds into a phase.
    pub fn latency_us(&self, groups: &[Group]) -> Histogram<u64> {
        self.merged(groups, |g| &g.latency_us)
    }

    /// The service times of every group, merged into one histogram.
    pub fn service_us(&self) -> Histogram<u64> {
        self.service_us_of(&[])
    }

    /// The service times of `groups` (all groups when empty), merged into one histogram.
    pub fn service_us_of(&self, groups: &[Group]) -> Histogram<u64> {
        self.merged(groups, |g| &g.service_us)
    }

    fn merged(&self, groups: &[Group], which: impl Fn(&GroupSecond) -> &Histogram<u64>) -> Histogram<u64> {
        let mut merged = new_histogram();
        for g in self
            .groups
            .iter()
            .filter(|g| groups.is_empty() || groups.contains(&g.group))
        {
            // Auto-resizing histograms of the same precision always add.
            let _ = merged.add(which(g));
        }
        merged
    }
}
