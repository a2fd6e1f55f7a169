//! The client's own record of every request: latency in microseconds (HdrHistogram) and ok /
//! expected / error counts, per wall-clock second and per endpoint group, plus the id of every order the
//! client saw acknowledged (201).
//!
//! Goose's report is the run's summary; this is what the lab reads while the load runs. A request is
//! filed under the second in which it completed, so a second is final once the clock has left it:
//! `take_second` hands out each finished second exactly once, in order, empty ones included (a total
//! stall shows as seconds with nothing in them). Per request the cost is one uncontended lock and two
//! histogram increments. Seconds nobody takes stay in memory (tens of kB each with slow requests), so a
//! long run should be drained as it goes; `take_all` drains what is left once the load is over.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use super::sample::{Group, GroupSecond, RequestOutcome, SecondSample};

type Buckets = [Option<GroupSecond>; Group::COUNT];

fn sample(unix_second: i64, buckets: Buckets) -> SecondSample {
    SecondSample {
        unix_second,
        groups: buckets.into_iter().flatten().collect(),
    }
}

struct State {
    /// Wall-clock time at `base`, in microseconds since the epoch; seconds are counted on the
    /// monotonic clock from there, so a clock step cannot move a request into a taken second.
    base: Instant,
    base_unix_us: i64,
    /// The next second `take_second` hands out.
    next: i64,
    open: BTreeMap<i64, Buckets>,
    totals: Buckets,
    /// Each order the client saw acknowledged.
    acknowledged: Vec<Acknowledged>,
    /// Every latency, in microseconds and in the order they completed, of the groups that keep each.
    each: BTreeMap<Group, Vec<u64>>,
    /// The 5xx answers, by status and error code.
    server_errors: BTreeMap<(u16, String), ServerErrors>,
}

impl State {
    fn second_now(&self) -> i64 {
        let since = i64::try_from(self.base.elapsed().as_micros()).unwrap_or(i64::MAX / 2);
        (self.base_unix_us + since).div_euclid(1_000_000)
    }

    /// Every second before `boundary` not yet handed out, oldest first; empty seconds included.
    fn take_before(&mut self, boundary: i64, limit: usize) -> Vec<SecondSample> {
        let from = self
            .open
            .keys()
            .next()
            .map_or(self.next, |&first| first.min(self.next));
        let mut taken = Vec::new();
        let mut second = from;
        while second < boundary && taken.len() < limit {
            match self.open.remove(&second) {
                Some(buckets) => taken.push(sample(second, buckets)),
                None if second >= self.next => taken.push(sample(second, Default::default())),
                None => {}
            }
            second += 1;
        }
        self.next = self.next.max(second);
        taken
    }
}

/// An order acknowledged (201) to the client: its history, for setting against the fault timeline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Acknowledged {
    pub order_id: i64,
    /// When the request left and when its answer was read, in microseconds since the Unix epoch.
    pub sent_us: i64,
    pub acknowledged_us: i64,
}

/// The 5xx answers of one status and error code: how many, and the request ids of the first few, to
/// find them in the service's log.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ServerErrors {
    pub status: u16,
    /// The `error.code` of the JSON body, or `-` when the body had none (a proxy's or a crash's page).
    pub code: String,
    pub count: u64,
    pub request_ids: Vec<String>,
}

/// How many request ids a class of 5xx answers keeps.
pub const REQUEST_IDS_KEPT: usize = 5;

/// A cheap-to-clone handle on one shared record: the load's users write, anyone reads.
#[derive(Clone)]
pub struct Recorder {
    state: Arc<Mutex<State>>,
    /// `false` only in [`Recorder::off`], which measures what recording costs.
    on: bool,
}

impl std::fmt::Debug for Recorder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Recorder").finish_non_exhaustive()
    }
}

impl Default for Recorder {
    fn default() -> Self {
        Self::new()
    }
}

impl Recorder {
    /// A record whose first second is the current one.
    pub fn new() -> Self {
        let base = Instant::now();
        let base_unix_us = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX / 2));
        let state = Arc::new(Mutex::new(State {
            base,
            base_unix_us,
            next: base_unix_us.div_euclid(1_000_000),
            open: BTreeMap::new(),
            totals: Default::default(),
            acknowledged: Vec::new(),
            each: BTreeMap::new(),
            server_errors: BTreeMap::new(),
        }));
        Self { state, on: true }
    }

    /// A recorder that files nothing: the load without its observer, for the overhead benchmark
    /// (`cargo bench -p harness --bench observer_overhead`).
    pub fn off() -> Self {
        Self {
            on: false,
            ..Self::new()
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Files a request that has just completed.
    pub fn record(&self, group: Group, outcome: RequestOutcome, latency: Duration) {
        if !self.on {
            return;
        }
        let mut state = self.state();
        let second = state.second_now();
        let bucket = &mut state.open.entry(second).or_default()[group.index()];
        bucket
            .get_or_insert_with(|| GroupSecond::new(group))
            .add(outcome, latency);
        state.totals[group.index()]
            .get_or_insert_with(|| GroupSecond::new(group))
            .add(outcome, latency);
        if group.keeps_each() {
            let micros = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
            state.each.entry(group).or_default().push(micros);
        }
    }

    /// Notes an order the service acknowledged (201) to this client just now, `latency` after the
    /// request was sent.
    pub fn acknowledge(&self, order_id: i64, latency: Duration) {
        let mut state = self.state();
        let since = i64::try_from(state.base.elapsed().as_micros()).unwrap_or(i64::MAX / 2);
        let acknowledged_us = state.base_unix_us + since;
        let sent_us = acknowledged_us - i64::try_from(latency.as_micros()).unwrap_or(0);
        state.acknowledged.push(Acknowledged {
            order_id,
            sent_us,
            acknowledged_us,
        });
    }

    /// Notes a 5xx answer: its status, the error code of its body, the request id the service gave it.
    pub fn server_error(&self, status: u16, code: Option<&str>, request_id: Option<&str>) {
        let code = code.unwrap_or("-").to_owned();
        let mut state = self.state();
        let class = state
            .server_errors
            .entry((status, code.clone()))
            .or_insert_with(|| ServerErrors {
                status,
                code,
                count: 0,
                request_ids: Vec::new(),
            });
        class.count += 1;
        if let Some(id) = request_id.filter(|_| class.request_ids.len() < REQUEST_IDS_KEPT) {
            class.request_ids.push(id.to_owned());
        }
    }

    /// The 5xx answers by status and code, the most frequent first.
    pub fn server_errors(&self) -> Vec<ServerErrors> {
        let mut classes: Vec<ServerErrors> = self.state().server_errors.values().cloned().collect();
        classes.sort_by(|a, b| b.count.cmp(&a.count).then(a.status.cmp(&b.status)));
        classes
    }

    /// The oldest finished second not yet taken, or `None` while the next one is still running.
    pub fn take_second(&self) -> Option<SecondSample> {
        let mut state = self.state();
        let now = state.second_now();
        state.take_before(now, 1).pop()
    }

    /// Every finished second not yet taken, oldest first.
    pub fn take_finished(&self) -> Vec<SecondSample> {
        let mut state = self.state();
        let now = state.second_now();
        state.take_before(now, usize::MAX)
    }

    /// Everything not yet taken, the running second included: for when the load is over.
    pub fn take_all(&self) -> Vec<SecondSample> {
        let mut state = self.state();
        let now = state.second_now();
        state.take_before(now + 1, usize::MAX)
    }

    /// Per group, everything recorded since the recorder was made (taking seconds does not change it).
    pub fn totals(&self) -> Vec<GroupSecond> {
        self.state().totals.iter().flatten().cloned().collect()
    }

    /// Requests recorded since the recorder was made.
    pub fn request_count(&self) -> u64 {
        self.state().totals.iter().flatten().map(GroupSecond::count).sum()
    }

    /// Every latency of `group` in microseconds, in the order they completed (only for the groups that
    /// keep each: `Group::keeps_each`).
    pub fn each_latency_us(&self, group: Group) -> Vec<u64> {
        self.state().each.get(&group).cloned().unwrap_or_default()
    }

    /// The ids of the orders acknowledged to this client, in the order it saw them.
    pub fn acknowledged_orders(&self) -> Vec<i64> {
        self.state().acknowledged.iter().map(|a| a.order_id).collect()
    }

    /// Every acknowledgement, with when its request was sent and answered.
    pub fn acknowledgements(&self) -> Vec<Acknowledged> {
        self.state().acknowledged.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_requests_by_group_and_hands_each_second_out_once() {
        let recorder = Recorder::new();
        recorder.record(Group::Browse, RequestOutcome::Ok, Duration::from_micros(1_500));
        recorder.record(Group::Browse, RequestOutcome::Error, Duration::from_millis(500));
        recorder.record(
            Group::Checkout,
            RequestOutcome::Expected,
            Duration::from_micros(800),
        );
        recorder.acknowledge(7, Duration::from_millis(3));
        let seconds = recorder.take_all();
        let browse: Vec<_> = seconds.iter().filter_map(|s| s.group(Group::Browse)).collect();
        assert_eq!(browse.iter().map(|g| g.count()).sum::<u64>(), 2);
        assert_eq!(seconds.iter().map(SecondSample::errors).sum::<u64>(), 1);
        assert!(recorder.take_all().iter().all(|s| s.count() == 0));
        assert_eq!(recorder.request_count(), 3);
        assert_eq!(recorder.acknowledged_orders(), [7]);
        let total = recorder.totals();
        let browse = total.iter().find(|g| g.group == Group::Browse).unwrap().summary();
        assert!((browse.max_ms - 500.0).abs() < 1.0, "{browse:?}");
        assert!((browse.p50_ms - 1.5).abs() < 0.01, "{browse:?}");
    }

    #[test]
    fn empty_seconds_are_handed_out_too() {
        let recorder = Recorder::new();
        {
            let mut state = recorder.state();
            state.next -= 3; // as if made three seconds ago with nothing recorded since
        }
        let finished = recorder.take_finished();
        assert_eq!(finished.len(), 3);
        assert!(finished.iter().all(|s| s.count() == 0));
        assert!(
            finished
                .windows(2)
                .all(|w| w[1].unix_second == w[0].unix_second + 1)
        );
        assert!(recorder.take_second().is_none());
    }

    #[test]
    fn server_errors_are_counted_by_status_and_code_keeping_a_few_request_ids() {
        let recorder = Recorder::new();
        for i in 0..7 {
            recorder.server_error(503, Some("database_unavailable"), Some(&format!("req-{i}")));
        }
        recorder.server_error(500, None, None);
        let classes = recorder.server_errors();
        assert_eq!(classes.len(), 2);
        assert_eq!(
            (classes[0].status, classes[0].code.as_str(), classes[0].count),
            (503, "database_unavailable", 7)
        );
        assert_eq!(
            classes[0].request_ids,
            ["req-0", "req-1", "req-2", "req-3", "req-4"]
        );
        assert_eq!((classes[1].code.as_str(), classes[1].count), ("-", 1));
        assert!(classes[1].request_ids.is_empty());
    }
}
