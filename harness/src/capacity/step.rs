//! One step of a search: the load held at one arrival rate for a few seconds on a prepared lab, its
//! warm-up set aside, and the rest judged against the objective from the client's side.

use std::time::{Duration, Instant};

use serde::Serialize;
use tokio_util::sync::CancellationToken;

use crate::experiment::definition::{Objective, Plan};
use crate::load::{self, Group, LoadSpec, Recorder, SecondSample, SessionBook, Turn, quantile_ms};
use crate::vocabulary::Condition;

/// The generator's own lag (a slot due, a user free, the request not yet sent) above which a step
/// measures the machine, not the service: this share of the objective's p99, and never under
/// `OWN_LAG_FLOOR`.
const OWN_LAG_SHARE: f64 = 0.2;
const OWN_LAG_FLOOR_MS: f64 = 20.0;

/// A step starts from a quiet service: this many health checks in a row, each answered within
/// `QUIET_ANSWER`. An overloaded step leaves work behind (logins hashing for clients long gone), and
/// the next rate would be judged on it.
const QUIET_ANSWERS: u32 = 5;
const QUIET_ANSWER: Duration = Duration::from_millis(10);
/// How long a step waits for the service to be quiet before it starts anyway, and says so.
const QUIET_DEADLINE: Duration = Duration::from_secs(30);

/// What one step saw in its judged seconds.
#[derive(Debug, Clone, Serialize)]
pub struct StepFigures {
    /// Requests per second offered by the schedule.
    pub rate: f64,
    /// Requests completed per judged second (the last, in which the schedule closed, aside).
    pub achieved_rps: f64,
    pub requests: u64,
    /// From the intended send (the slot) to the end of the answer.
    pub p50_ms: f64,
    pub p99_ms: f64,
    /// From the actual send to the end of the answer.
    pub service_p99_ms: f64,
    pub error_rate: f64,
    /// Slots due in the judged seconds that never left before the step ended, over the slots due.
    pub unsent_share: f64,
    /// p99 of the generator's own lag behind its schedule (its timer and CPU, users free).
    pub own_lag_p99_ms: f64,
}

/// How one step came out against the objective.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum StepVerdict {
    Held,
    Broke {
        why: String,
    },
    /// It broke, and the generator itself fell behind while the service's own answers held (no
    /// errors over the objective's, and a p99 from the actual send within it once the generator's
    /// lag is taken off): the machine, not the service, is measured.
    GeneratorBound {
        why: String,
    },
}

/// One step as the search files it.
#[derive(Debug, Clone, Serialize)]
pub struct Trial {
    pub condition: Condition,
    /// Requests per second offered.
    pub rate: f64,
    /// `None` when nothing completed after the warm-up.
    pub figures: Option<StepFigures>,
    pub verdict: StepVerdict,
    /// Seconds since the variant's search started, when the step began.
    pub at_s: f64,
}

impl StepFigures {
    /// The figures of the seconds of `window` (Unix seconds, by completion): the warm-up before it
    /// is set aside, and the answers after the schedule closed still count. Throughput and the slots
    /// never sent count over the whole seconds the schedule was open. Latency and errors are the
    /// requests of `group`'s, or of all when `None`. `None` when none of them completed.
    pub fn of(rate: f64, seconds: &[SecondSample], window: Window, group: Option<Group>) -> Option<Self> {
        let judged: Vec<&SecondSample> = (seconds.iter())
            .filter(|s| s.unix_second >= window.judged_from)
            .collect();
        let (first, rest) = judged.split_first()?;
        let mut merged = (*first).clone();
        for second in rest {
            merged.merge(second);
        }
        let (requests, errors) = merged.count_and_errors(group);
        if requests == 0 {
            return None;
        }
        let whole: Vec<&SecondSample> = (judged.iter().copied())
            .filter(|s| s.unix_second < window.closed_in)
            .collect();
        let (due, sent) = (whole.iter()).fold((0, 0), |(due, sent), s| {
            (due + s.schedule.due, sent + s.schedule.sent)
        });
        let completed_in_whole: u64 = whole.iter().map(|s| s.count()).sum();
        let groups: Vec<Group> = group.into_iter().collect();
        let latency = merged.latency_us(&groups);
        Some(Self {
            rate,
            achieved_rps: completed_in_whole as f64 / whole.len().max(1) as f64,
            requests,
            p50_ms: quantile_ms(&latency, 0.50),
            p99_ms: quantile_ms(&latency, 0.99),
            service_p99_ms: quantile_ms(&merged.service_us_of(&groups), 0.99),
            error_rate: errors as f64 / requests as f64,
            unsent_share: u64::saturating_sub(due, sent) as f64 / due.max(1) as f64,
            own_lag_p99_ms: quantile_ms(&merged.schedule.own_lag_us, 0.99),
        })
    }

    /// Held, broke, or broke with the generator behind its own schedule.
    pub fn judge(&self, objective: &Objective) -> StepVerdict {
        let mut over = Vec::new();
        if self.p99_ms > objective.p99_ms {
            over.push(format!("p99 {:.0} ms > {} ms", self.p99_ms, objective.p99_ms));
        }
        if self.error_rate > objective.error_rate {
            over.push(format!("errors {:.1}%", self.error_rate * 100.0));
        }
        if self.unsent_share > objective.error_rate {
            over.push(format!(
                "{:.1}% of the slots never sent",
                self.unsent_share * 100.0
            ));
        }
        if over.is_empty() {
            return StepVerdict::Held;
        }
        let own_lag_limit = (objective.p99_ms * OWN_LAG_SHARE).max(OWN_LAG_FLOOR_MS);
        let why = over.join(", ");
        if self.own_lag_p99_ms <= own_lag_limit {
            return StepVerdict::Broke { why };
        }
        let lag = format!(
            "the generator's own lag p99 {:.0} ms > {own_lag_limit:.0} ms",
            self.own_lag_p99_ms
        );
        // The service's own answers broke the objective: failing, or slow from the moment each
        // request left by more than the generator's lag (which also delays its reading of an
        // answer). A late send explains neither, so the break is the service's.
        let service_alone_ms = self.service_p99_ms - self.own_lag_p99_ms;
        if service_alone_ms > objective.p99_ms || self.error_rate > objective.error_rate {
            return StepVerdict::Broke {
                why: format!(
                    "{why}: the service's own (p99 {:.0} ms from the actual send, errors {:.1}%), although {lag}",
                    self.service_p99_ms,
                    self.error_rate * 100.0
                ),
            };
        }
        StepVerdict::GeneratorBound {
            why: format!("{why}, and {lag}"),
        }
    }

    /// How close the step came to the objective's edge: 1 at the edge, below 1 inside it.
    pub fn margin(&self, objective: &Objective) -> f64 {
        let errors = if objective.error_rate > 0.0 {
            self.error_rate / objective.error_rate
        } else if self.error_rate > 0.0 {
            f64::INFINITY
        } else {
            0.0
        };
        (self.p99_ms / objective.p99_ms).max(errors)
    }
}

/// What a step needs from the search around it.
pub struct Stepper<'a> {
    pub plan: &'a Plan,
    pub objective: Objective,
    pub step_seconds: f64,
    pub warmup_seconds: f64,
    pub base_url: String,
    pub turn: &'a Turn,
    /// Where goose's report of each step goes (one file, rewritten each step).
    pub goose_report: std::path::PathBuf,
    /// Every order acknowledged in any step, for the invariants after the search.
    pub acknowledged: Vec<i64>,
    /// The shoppers' tokens: a shopper logs in at the first step it is in, not at every step.
    pub sessions: SessionBook,
    /// Ctrl-C: the step ends at once (the load stops through its turn).
    pub stop: CancellationToken,
}

impl Stepper<'_> {
    /// Holds `rate` for a step and answers its figures (`None`: nothing completed after the
    /// warm-up, which breaks the objective). The step's seconds count from when every user is past
    /// its login: a login storm at the start (argon2, on the schedule) is not the rate's steady state.
    pub async fn step(&mut self, rate: f64) -> Result<Option<StepFigures>, load::LoadError> {
        if let Err(busy) = self.quiet().await {
            tracing::warn!(busy, "the step at {rate}/s starts on a service still busy");
        }
        let recorder = Recorder::new();
        let users = users_for(rate, &self.objective);
        let spec = LoadSpec {
            base_url: self.base_url.clone(),
            rate,
            users,
            mix: self.plan.mix.clone(),
            start: self.plan.start,
            duration: start_deadline(rate, users) + Duration::from_secs_f64(self.step_seconds.ceil() + 1.0),
            products: self.plan.seed.products,
            shoppers: self.plan.seed.users,
            request_timeout: request_timeout(&self.objective),
            sessions: self.sessions.clone(),
            script: None,
        };
        let end = CancellationToken::new();
        let (ran, window) = {
            let load = load::run(&spec, recorder.clone(), &self.goose_report, self.turn, &end);
            let timer = self.close_after_start(&recorder, users, rate, &end);
            tokio::join!(load, timer)
        };
        ran?;
        self.acknowledged.extend(recorder.acknowledged_orders());
        Ok(StepFigures::of(
            rate,
            &recorder.take_all(),
            window,
            self.objective.group,
        ))
    }

    /// Polls the service's liveness until it answers `QUIET_ANSWERS` times in a row within
    /// `QUIET_ANSWER`, or `QUIET_DEADLINE` passes (then: what it last saw). A Ctrl-C ends the wait
    /// at once: the step it precedes stops too.
    async fn quiet(&self) -> Result<(), String> {
        let http = reqwest::Client::new();
        let url = format!("{}/healthz", self.base_url.trim_end_matches('/'));
        let deadline = Instant::now() + QUIET_DEADLINE;
        let mut in_a_row = 0;
        let mut last = String::from("no answer yet");
        while in_a_row < QUIET_ANSWERS {
            if self.stop.is_cancelled() {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(format!("not quiet after {QUIET_DEADLINE:?}: {last}"));
            }
            let asked = Instant::now();
            let answer = http.get(&url).timeout(Duration::from_secs(1)).send().await;
            let took = asked.elapsed();
            let quick = matches!(&answer, Ok(a) if a.status().is_success()) && took <= QUIET_ANSWER;
            in_a_row = if quick { in_a_row + 1 } else { 0 };
            last = format!(
                "{}, in {took:.1?}",
                answer.map_or_else(|e| e.to_string(), |a| a.status().to_string())
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(())
    }

    /// Waits until every user is past its start (or the start's deadline), closes the schedule
    /// `step_seconds` later, and answers the seconds judged.
    async fn close_after_start(
        &self,
        recorder: &Recorder,
        users: u32,
        rate: f64,
        end: &CancellationToken,
    ) -> Window {
        let deadline = Instant::now() + start_deadline(rate, users);
        while recorder.users_started() < users as usize
            && Instant::now() < deadline
            && !self.stop.is_cancelled()
        {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let started = unix_now();
        tokio::select! {
            () = tokio::time::sleep(Duration::from_secs_f64(self.step_seconds)) => {}
            () = self.stop.cancelled() => {}
        }
        end.cancel();
        Window {
            judged_from: (started + self.warmup_seconds).ceil() as i64,
            closed_in: unix_now().floor() as i64,
        }
    }
}

/// The seconds of a step that are judged, as Unix seconds.
#[derive(Debug, Clone, Copy)]
pub struct Window {
    /// The first second after the warm-up.
    pub judged_from: i64,
    /// The second the schedule closed in: the seconds before it were open whole.
    pub closed_in: i64,
}

/// Now, in Unix seconds (what `Window` counts in).
pub fn unix_now() -> f64 {
    chrono::Utc::now().timestamp_millis() as f64 / 1000.0
}

/// How long the users may take to start: each login waits for a slot, so `users / rate` seconds,
/// twice over, and ten seconds more for a slow service.
pub fn start_deadline(rate: f64, users: u32) -> Duration {
    Duration::from_secs_f64(2.0 * f64::from(users) / rate + 10.0)
}

/// Users enough that, while the requests meet the objective, twice the rate's share of them are
/// never all busy (Little's law: rate x latency are busy at once), so the users never limit a rate
/// the service holds; and no more, since every new user logs in (on the schedule) as its step
/// starts. An objective on one group bounds only that group's latency: the others may take up to
/// the request timeout, and each scenario's users (its weight's share) must still send its share of
/// the rate, so the users are sized for the timeout.
fn users_for(rate: f64, objective: &Objective) -> u32 {
    let latency_ms = match objective.group {
        Some(_) => request_timeout(objective).as_secs_f64() * 1000.0,
        None => objective.p99_ms,
    };
    let busy = rate * latency_ms / 1000.0;
    ((2.0 * busy).ceil() as u32 + 10).min(2000)
}

/// A request is given up on at three times the objective's p99 (between 1 and 10 s): by then it has
/// broken the objective, and a step's end waits for no longer.
fn request_timeout(objective: &Objective) -> Duration {
    Duration::from_secs_f64((objective.p99_ms * 3.0 / 1000.0).clamp(1.0, 10.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn figures(p99_ms: f64, error_rate: f64, own_lag_p99_ms: f64) -> StepFigures {
        StepFigures {
            rate: 20.0,
            achieved_rps: 20.0,
            requests: 100,
            p50_ms: p99_ms / 2.0,
            p99_ms,
            service_p99_ms: p99_ms - own_lag_p99_ms,
            error_rate,
            unsent_share: 0.0,
            own_lag_p99_ms,
        }
    }

    #[test]
    fn a_step_holds_within_the_objective_and_says_what_broke_it_otherwise() {
        let objective = Objective {
            p99_ms: 500.0,
            error_rate: 0.01,
            group: None,
        };
        assert_eq!(figures(400.0, 0.0, 1.0).judge(&objective), StepVerdict::Held);
        let StepVerdict::Broke { why } = figures(900.0, 0.05, 1.0).judge(&objective) else {
            panic!("a slow, failing step broke");
        };
        assert!(why.contains("p99 900 ms") && why.contains("errors 5.0%"), "{why}");
        // Late sends alone: 600 ms from the slot, 450 from the send, inside the objective.
        assert!(matches!(
            figures(600.0, 0.0, 150.0).judge(&objective),
            StepVerdict::GeneratorBound { .. }
        ));
        // The generator lagged, and the service failed or was slow from the send on: its own break.
        let StepVerdict::Broke { why } = figures(900.0, 0.05, 150.0).judge(&objective) else {
            panic!("the service's errors are the service's");
        };
        assert!(why.contains("the service's own"), "{why}");
        // 1,200 ms from the slot, 1,050 from the send, 900 without the generator's lag: slow.
        assert!(matches!(
            figures(1200.0, 0.0, 150.0).judge(&objective),
            StepVerdict::Broke { .. }
        ));
        // 800 from the slot, 650 from the send, 500 without the lag: the generator's doing.
        assert!(matches!(
            figures(800.0, 0.0, 150.0).judge(&objective),
            StepVerdict::GeneratorBound { .. }
        ));
        assert!((figures(250.0, 0.02, 0.0).margin(&objective) - 2.0).abs() < 1e-9);
    }

    #[test]
    fn users_cover_twice_the_busy_share_of_a_rate_held_at_the_objective() {
        let objective = Objective {
            p99_ms: 500.0,
            error_rate: 0.01,
            group: None,
        };
        assert_eq!(users_for(100.0, &objective), 110);
        assert_eq!(users_for(1.0, &objective), 11);
        assert_eq!(users_for(100_000.0, &objective), 2000);
        assert_eq!(request_timeout(&objective), Duration::from_millis(1500));
        let pages = Objective {
            group: Some(Group::Browse),
            ..objective
        };
        assert_eq!(
            users_for(100.0, &pages),
            310,
            "a checkout outside the pages' objective may take the whole 1.5 s timeout"
        );
    }
}
