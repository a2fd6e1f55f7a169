//! The client's own record of every request: latency from the instant it was due and service time
//! from the instant it left, in microseconds (HdrHistogram), and ok / expected / error counts, per
//! wall-clock second and per endpoint group; per second, how far behind its schedule the generator
//! sent and how many users were waiting on an answer; and the id of every order the client saw
//! acknowledged (201).
//!
//! Goose's report is the run's summary; this is what the lab reads while the load runs. A request is
//! filed under the second in which it completed, its send under the second it left in, so a second is
//! final once the clock has left it: `take_second` hands out each finished second exactly once, in
//! order, empty ones included (a total stall shows as seconds with nothing in them, every user busy).
//! Per request the cost is two uncontended locks and a few histogram increments. Seconds nobody takes
//! stay in memory (tens of kB each with slow requests), so a long run should be drained as it goes;
//! `take_all` drains what is left once the load is over.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use super::sample::{Group, GroupSecond, RequestOutcome, RequestTiming, ScheduleSecond, SecondSample};

/// One second's record while it is open.
#[derive(Debug, Clone)]
struct Second {
    groups: [Option<GroupSecond>; Group::COUNT],
    schedule: ScheduleSecond,
    /// Users busy after the second's last event: a second with no event after it had that many.
    busy_end: u32,
}

impl Second {
    fn new(busy: u32) -> Self {
        Self {
            groups: Default::default(),
            schedule: ScheduleSecond::new(busy),
            busy_end: busy,
        }
    }

    fn into_sample(self, unix_second: i64, due: u64) -> SecondSample {
        let mut schedule = self.schedule;
        schedule.due = due;
        SecondSample {
            unix_second,
            groups: self.groups.into_iter().flatten().collect(),
            schedule,
        }
    }
}

/// The arrival schedule, once its first slot is known: slot `n` is due `n / rate` seconds after
/// `first_unix_us`.
#[derive(Debug, Clone, Copy)]
struct Schedule {
    first_unix_us: i64,
    rate: f64,
}

impl Schedule {
    /// Slots due before `unix_us`.
    fn due_before(&self, unix_us: i64) -> u64 {
        let seconds = (unix_us - self.first_unix_us) as f64 / 1e6;
        (seconds * self.rate).ceil().max(0.0) as u64
    }

    /// Slots due within the Unix second `second`.
    fn due_in(&self, second: i64) -> u64 {
        self.due_before((second + 1) * 1_000_000) - self.due_before(second * 1_000_000)
    }
}

struct State {
    /// Wall-clock time at `base`, in microseconds since the epoch; seconds are counted on the
    /// monotonic clock from there, so a clock step cannot move a request into a taken second.
    base: Instant,
    base_unix_us: i64,
    /// The next second `take_second` hands out.
    next: i64,
    open: BTreeMap<i64, Second>,
    totals: [Option<GroupSecond>; Group::COUNT],
    schedule: Option<Schedule>,
    /// Users waiting on an answer now, and at the end of the last second handed out (a second with
    /// no event had that many busy throughout).
    busy: u32,
    busy_carried: u32,
    /// Each order the client saw acknowledged.
    acknowledged: Vec<Acknowledged>,
    /// A user's target: each id its acknowledgements carried (`acknowledges` of a scripted request).
    acknowledged_ids: Vec<String>,
    /// Every service time, in microseconds and in the order they completed, of the groups that keep
    /// each.
    each: BTreeMap<Group, Vec<u64>>,
    /// The timing attacker's pairs: (seeded email, unknown email) service times in microseconds.
    probe_pairs: Vec<(u64, u64)>,
    /// Users (goose's index) past their start: logged in, for the scenarios that log in.
    started_users: std::collections::HashSet<usize>,
    /// The unexpected answers (4xx and 5xx), by status and error code.
    server_errors: BTreeMap<(u16, String), ServerErrors>,
}

impl State {
    fn unix_us(&self, at: Instant) -> i64 {
        let since = match at.checked_duration_since(self.base) {
            Some(after) => i64::try_from(after.as_micros()).unwrap_or(i64::MAX / 2),
            None => -i64::try_from(self.base.duration_since(at).as_micros()).unwrap_or(i64::MAX / 2),
        };
        self.base_unix_us + since
    }

    fn second_of(&self, at: Instant) -> i64 {
        self.unix_us(at).div_euclid(1_000_000)
    }

    fn second_now(&self) -> i64 {
        self.second_of(Instant::now())
    }

    /// The open record of `second`, made if need be.
    /// The open record of `second`, made if need be. An event stamped in a second already handed
    /// out (its instant read just before the lock, while another thread took the second) goes in the
    /// first second still open: every second is handed out once, in order.
    fn second_mut(&mut self, second: i64) -> &mut Second {
        let busy = self.busy;
        let second = second.max(self.next);
        self.open.entry(second).or_insert_with(|| Second::new(busy))
    }

    fn due_in(&self, second: i64) -> u64 {
        self.schedule.map_or(0, |s| s.due_in(second))
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
            let due = self.due_in(second);
            match self.open.remove(&second) {
                Some(record) => {
                    self.busy_carried = record.busy_end;
                    taken.push(record.into_sample(second, due));
                }
                None if second >= self.next => {
                    taken.push(Second::new(self.busy_carried).into_sample(second, due))
                }
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

/// The unexpected answers (a 5xx, an unexpected 4xx) of one status and error code: how many, and the
/// request ids of the first few, to find them in the service's log.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ServerErrors {
    pub status: u16,
    /// The `error.code` of the JSON body, or `-` when the body had none (a proxy's or a crash's page).
    pub code: String,
    pub count: u64,
    pub request_ids: Vec<String>,
    /// When the first and the last of them were answered (wall clock), to find the log lines of
    /// a backend whose log names no request id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_at: Option<chrono::DateTime<chrono::Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_at: Option<chrono::DateTime<chrono::Utc>>,
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

/// A request on its way, filed in the recorder: `done` files its answer.
#[derive(Debug)]
#[must_use = "a request on its way is filed once its answer is read (`done`)"]
pub struct Sending {
    recorder: Recorder,
    timing: RequestTiming,
    done: bool,
}

impl Sending {
    /// When the request was due, taken up and sent.
    pub fn timing(&self) -> RequestTiming {
        self.timing
    }

    /// Files the answer, read whole just now; answers the request's whole timing.
    pub fn done(mut self, group: Group, outcome: RequestOutcome) -> RequestTiming {
        self.done = true;
        self.timing.completed = Instant::now();
        if self.recorder.on {
            self.recorder.record(group, outcome, &self.timing);
        }
        self.timing
    }
}

impl Drop for Sending {
    fn drop(&mut self) {
        if !self.done && self.recorder.on {
            self.recorder.abandoned();
        }
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
            schedule: None,
            busy: 0,
            busy_carried: 0,
            acknowledged: Vec::new(),
            acknowledged_ids: Vec::new(),
            each: BTreeMap::new(),
            probe_pairs: Vec::new(),
            started_users: Default::default(),
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

    /// Starts counting the arrival schedule's slots as the offered load: slot `n` is due `n / rate`
    /// seconds after `first`.
    pub fn schedule(&self, first: Instant, rate: f64) {
        let mut state = self.state();
        let first_unix_us = state.unix_us(first);
        state.schedule = Some(Schedule { first_unix_us, rate });
    }

    /// Files a request leaving now, `due` on the schedule and sent by a user free since `free`; the
    /// user is busy until the answer is filed with `Sending::done` (or the handle is dropped).
    pub fn sending(&self, due: Instant, free: Instant) -> Sending {
        let sent = Instant::now();
        let timing = RequestTiming {
            due,
            free,
            sent,
            completed: sent,
        };
        if self.on {
            let mut state = self.state();
            state.busy += 1;
            let busy = state.busy;
            let second = state.second_of(sent);
            let record = state.second_mut(second);
            record.schedule.add_send(timing.behind(), timing.own_lag(), busy);
            record.busy_end = busy;
        }
        Sending {
            recorder: self.clone(),
            timing,
            done: false,
        }
    }

    /// Files a request that has completed, with when it was due, left and ended.
    fn record(&self, group: Group, outcome: RequestOutcome, timing: &RequestTiming) {
        let mut state = self.state();
        let second = state.second_of(timing.completed);
        // Made before the user is freed: a second that starts with this answer had it busy.
        state.second_mut(second);
        state.busy = state.busy.saturating_sub(1);
        let busy = state.busy;
        let record = state.second_mut(second);
        record.busy_end = busy;
        record.groups[group.index()]
            .get_or_insert_with(|| GroupSecond::new(group))
            .add(outcome, timing);
        state.totals[group.index()]
            .get_or_insert_with(|| GroupSecond::new(group))
            .add(outcome, timing);
        if group.keeps_each() {
            state.each.entry(group).or_default().push(timing.service_micros());
        }
    }

    /// Files one pair of the timing attacker's probes, both answered as expected: one for a seeded
    /// email, one for an email nobody has, sent one after the other.
    pub fn probe_pair(&self, known: &RequestTiming, unknown: &RequestTiming) {
        let pair = (known.service_micros(), unknown.service_micros());
        self.state().probe_pairs.push(pair);
    }

    /// A user whose request was abandoned before its answer (the run stopped) is no longer busy.
    fn abandoned(&self) {
        let mut state = self.state();
        let second = state.second_now();
        state.second_mut(second);
        state.busy = state.busy.saturating_sub(1);
        let busy = state.busy;
        state.second_mut(second).busy_end = busy;
    }

    /// Notes an order the service acknowledged (201) to this client, in the request `timing`.
    pub fn acknowledge(&self, order_id: i64, timing: &RequestTiming) {
        let mut state = self.state();
        let (sent_us, acknowledged_us) = (state.unix_us(timing.sent), state.unix_us(timing.completed));
        state.acknowledged.push(Acknowledged {
            order_id,
            sent_us,
            acknowledged_us,
        });
    }

    /// Notes an id a user's target acknowledged to this client (an order code by its JSON pointer).
    pub fn acknowledge_id(&self, id: String) {
        self.state().acknowledged_ids.push(id);
    }

    /// The ids a user's target acknowledged to this client, in the order it saw them.
    pub fn acknowledged_ids(&self) -> Vec<String> {
        self.state().acknowledged_ids.clone()
    }

    /// Notes an answer that was neither the one asked for nor an expected refusal (a 5xx, a 401 that
    /// logged a user out, an unexpected 4xx): its status, the error code of its body, the request id
    /// the service gave it.
    pub fn error_answer(&self, status: u16, code: Option<&str>, request_id: Option<&str>) {
        let code = code.unwrap_or("-").to_owned();
        let now = chrono::Utc::now();
        let mut state = self.state();
        let class = state
            .server_errors
            .entry((status, code.clone()))
            .or_insert_with(|| ServerErrors {
                status,
                code,
                count: 0,
                request_ids: Vec::new(),
                first_at: Some(now),
                last_at: None,
            });
        class.count += 1;
        class.last_at = Some(now);
        if let Some(id) = request_id.filter(|_| class.request_ids.len() < REQUEST_IDS_KEPT) {
            class.request_ids.push(id.to_owned());
        }
    }

    /// The 5xx answers by status and code, the most frequent first.
    pub fn server_errors(&self) -> Vec<ServerErrors> {
        self.error_answers(500..600)
    }

    /// The unexpected 4xx answers (logouts included) by status and code, the most frequent first.
    pub fn refused(&self) -> Vec<ServerErrors> {
        self.error_answers(400..500)
    }

    fn error_answers(&self, statuses: std::ops::Range<u16>) -> Vec<ServerErrors> {
        let state = self.state();
        let mut classes: Vec<ServerErrors> = (state.server_errors.values())
            .filter(|c| statuses.contains(&c.status))
            .cloned()
            .collect();
        classes.sort_by(|a, b| b.count.cmp(&a.count).then(a.status.cmp(&b.status)));
        classes
    }

    /// When the record's next second begins: the instant, and that second's time since the Unix
    /// epoch. A timetable that starts there and ticks every whole second takes, at each tick, exactly
    /// the second that just ended, so a phase's figures hold its own requests and no other phase's.
    pub fn next_second(&self) -> (Instant, chrono::DateTime<chrono::Utc>) {
        let state = self.state();
        let now = Instant::now();
        let second = state.second_of(now) + 1;
        let until_us = (second * 1_000_000 - state.unix_us(now)).max(0) as u64;
        let at = chrono::DateTime::from_timestamp(second, 0).unwrap_or_default();
        (now + std::time::Duration::from_micros(until_us), at)
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

    /// Notes that `user` (goose's index) is past its start and at its scenario's own requests.
    pub fn user_started(&self, user: usize) {
        self.state().started_users.insert(user);
    }

    /// How many users are past their start: once all are, no login of the start remains, and what
    /// the load does from then on is its scenarios' own requests.
    pub fn users_started(&self) -> usize {
        self.state().started_users.len()
    }

    /// Requests recorded since the recorder was made.
    pub fn request_count(&self) -> u64 {
        self.state().totals.iter().flatten().map(GroupSecond::count).sum()
    }

    /// Every service time of `group` in microseconds, in the order they completed (only for the
    /// groups that keep each: `Group::keeps_each`). Service time, not latency from the slot: the
    /// timing attacker times its own requests from when they leave.
    pub fn each_service_us(&self, group: Group) -> Vec<u64> {
        self.state().each.get(&group).cloned().unwrap_or_default()
    }

    /// The timing attacker's pairs, (seeded email, unknown email) in microseconds, in the order
    /// they were filed.
    pub fn probe_pairs(&self) -> Vec<(u64, u64)> {
        self.state().probe_pairs.clone()
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
    use std::time::Duration;

    use super::*;

    /// A request due `due_ago` ago, sent `sent_ago` ago, answered now.
    fn answered(
        recorder: &Recorder,
        group: Group,
        outcome: RequestOutcome,
        due_ago: u64,
        sent_ago: u64,
    ) -> RequestTiming {
        let now = Instant::now();
        let due = now - Duration::from_micros(due_ago);
        let mut sending = recorder.sending(due, due);
        sending.timing.sent = now - Duration::from_micros(sent_ago);
        sending.done(group, outcome)
    }

    #[test]
    fn files_requests_by_group_and_hands_each_second_out_once() {
        let recorder = Recorder::new();
        answered(&recorder, Group::Browse, RequestOutcome::Ok, 1_500, 1_500);
        answered(&recorder, Group::Browse, RequestOutcome::Error, 500_000, 500_000);
        let timing = answered(&recorder, Group::Checkout, RequestOutcome::Expected, 800, 800);
        recorder.acknowledge(7, &timing);
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
        assert!((browse.p50_ms - 1.5).abs() < 0.05, "{browse:?}");
    }

    #[test]
    fn latency_runs_from_the_slot_and_service_time_from_the_send() {
        let recorder = Recorder::new();
        // Due 2 s ago, every user busy until 5 ms ago, then sent at once: a request that waited out
        // a stall behind the others.
        let now = Instant::now();
        let due = now - Duration::from_secs(2);
        let free = now - Duration::from_millis(5);
        let mut sending = recorder.sending(due, free);
        sending.timing.sent = free;
        let timing = sending.done(Group::Browse, RequestOutcome::Ok);
        assert!(timing.latency() >= Duration::from_secs(2));
        assert!(timing.service_time() < Duration::from_secs(1));
        assert!(timing.behind() >= Duration::from_millis(1995));
        assert_eq!(
            timing.own_lag(),
            Duration::ZERO,
            "a user free at once is not the generator's lag"
        );
        let browse = recorder.totals()[0].summary();
        assert!(browse.p50_ms >= 2000.0, "{browse:?}");
        assert!(browse.service_p95_ms < 1000.0, "{browse:?}");
        let seconds = recorder.take_all();
        let behind: u64 = seconds.iter().map(|s| s.schedule.behind_us.max()).max().unwrap();
        assert!(behind >= 1_995_000, "{behind}");
    }

    #[test]
    fn busy_users_carry_through_seconds_without_events_and_the_schedule_counts_what_was_due() {
        let recorder = Recorder::new();
        let now = Instant::now();
        recorder.schedule(now, 10.0);
        let waiting = recorder.sending(now, now);
        // Four seconds pass with that user still waiting, and nothing else happening.
        recorder.state().base_unix_us += 4_000_000;
        let seconds = recorder.take_finished();
        assert_eq!(seconds.len(), 4, "{seconds:?}");
        assert_eq!(seconds[0].schedule.sent, 1);
        let later = &seconds[1..];
        assert!(
            later
                .iter()
                .all(|s| s.schedule.busy_peak == 1 && s.schedule.due == 10 && s.count() == 0),
            "{:?}",
            later
                .iter()
                .map(|s| (s.schedule.busy_peak, s.schedule.due))
                .collect::<Vec<_>>()
        );
        drop(waiting);
        assert_eq!(recorder.state().busy, 0, "an abandoned request frees its user");
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
    fn the_next_second_begins_exactly_on_a_boundary_of_the_record() {
        let recorder = Recorder::new();
        let (at, unix) = recorder.next_second();
        let state = recorder.state();
        assert_eq!(
            state.second_of(at),
            unix.timestamp(),
            "the instant is in the second it names"
        );
        assert_eq!(
            state.second_of(at - Duration::from_micros(1)),
            unix.timestamp() - 1,
            "a microsecond before it is the second before"
        );
        assert!(at > Instant::now() && at <= Instant::now() + Duration::from_secs(1));
    }

    #[test]
    fn server_errors_are_counted_by_status_and_code_keeping_a_few_request_ids() {
        let recorder = Recorder::new();
        for i in 0..7 {
            recorder.error_answer(503, Some("database_unavailable"), Some(&format!("req-{i}")));
        }
        recorder.error_answer(500, None, None);
        recorder.error_answer(401, Some("missing_token"), Some("req-x"));
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
        let refused = recorder.refused();
        assert_eq!(
            (refused.len(), refused[0].status, refused[0].code.as_str()),
            (1, 401, "missing_token")
        );
    }
}
