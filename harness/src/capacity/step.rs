//! One step of a search: the load held at one arrival rate for a few seconds on a prepared lab, its
//! warm-up set aside, and the rest judged against the objective from the client's side.

use std::time::{Duration, Instant};

use serde::Serialize;
use tokio_util::sync::CancellationToken;

use crate::env::Lab;
use crate::experiment::definition::{Objective, Plan};
use crate::load::host_tcp::HostTcp;
use crate::load::{self, Group, LoadSpec, Recorder, SecondSample, SessionBook, Turn, quantile_ms};
use crate::observe::Observer;
use crate::vocabulary::Condition;

/// The generator's own lag (a slot due, a user free, the request not yet sent) above which a step
/// measures the machine, not the service: this share of the objective's p99, and never under
/// `OWN_LAG_FLOOR`.
const OWN_LAG_SHARE: f64 = 0.2;
const OWN_LAG_FLOOR_MS: f64 = 20.0;

/// A step starts from a quiet service: this many looks in a row, each a health check answered within
/// `QUIET_ANSWER`, no work left running for clients that may be gone, and room in this machine's
/// local ports. An overloaded step leaves work behind (logins hashing for clients long gone) and
/// ports in TIME_WAIT, and the next rate would be judged on them.
const QUIET_LOOKS: u32 = 5;
const QUIET_ANSWER: Duration = Duration::from_millis(10);
/// How long a step waits for a quiet service before it starts anyway, and says so: longer than a
/// port stays in TIME_WAIT (60 s). A service that answered nothing in all that time is gone.
const QUIET_DEADLINE: Duration = Duration::from_secs(75);

/// Why a step could not start.
#[derive(Debug, thiserror::Error)]
pub enum StepError {
    #[error(
        "the service answered nothing for {:?} before the step at {rate}/s (last: {last})",
        QUIET_DEADLINE
    )]
    Silent { rate: f64, last: String },
    #[error("the load generator failed")]
    Load(#[from] load::LoadError),
}

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
    /// Connections this machine's listeners (the port forwarding into the lab) dropped during the
    /// step for a full accept queue: requests that never reached the service.
    pub host_dropped: u64,
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
            host_dropped: 0,
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
        let why = over.join(", ");
        if self.host_dropped > 0 {
            return StepVerdict::GeneratorBound {
                why: format!(
                    "{why}, and this machine's port forwarding into the lab dropped {} connections for a full accept queue (the host's ListenOverflows): they never reached the service",
                    self.host_dropped
                ),
            };
        }
        let own_lag_limit = (objective.p99_ms * OWN_LAG_SHARE).max(OWN_LAG_FLOOR_MS);
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
    /// The lab under load: what the service still does is read from it before each step.
    pub lab: &'a Lab,
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
    pub async fn step(&mut self, rate: f64) -> Result<Option<StepFigures>, StepError> {
        match self.quiet().await {
            Ok(()) => {}
            Err(Unquiet::Busy(busy)) => {
                tracing::warn!(busy, "the step at {rate}/s starts on a service still busy");
            }
            Err(Unquiet::Silent(last)) => return Err(StepError::Silent { rate, last }),
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
        let before = HostTcp::read().ok();
        let (ran, window) = {
            let load = load::run(&spec, recorder.clone(), &self.goose_report, self.turn, &end);
            let timer = self.close_after_start(&recorder, users, rate, &end);
            tokio::join!(load, timer)
        };
        ran?;
        self.acknowledged.extend(recorder.acknowledged_orders());
        let figures = StepFigures::of(rate, &recorder.take_all(), window, self.objective.group);
        let dropped = match (before, HostTcp::read().ok()) {
            (Some(before), Some(after)) => after.listen_overflows.saturating_sub(before.listen_overflows),
            _ => 0,
        };
        Ok(figures.map(|f| StepFigures {
            host_dropped: dropped,
            ..f
        }))
    }

    /// Looks at the service until it is quiet (`QUIET_LOOKS` in a row) or `QUIET_DEADLINE` passes.
    /// A Ctrl-C ends the wait at once: the step it precedes stops too.
    async fn quiet(&self) -> Result<(), Unquiet> {
        let http = reqwest::Client::new();
        let url = format!("{}/healthz", self.base_url.trim_end_matches('/'));
        let deadline = Instant::now() + QUIET_DEADLINE;
        let mut quiet = Quiet::default();
        loop {
            if self.stop.is_cancelled() {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(quiet.gave_up());
            }
            if quiet.saw(self.look(&http, &url).await) {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// One look: the health check, the service's detached work, this machine's waiting ports.
    async fn look(&self, http: &reqwest::Client, url: &str) -> Look {
        let asked = Instant::now();
        let answer = http.get(url).timeout(Duration::from_secs(1)).send().await;
        let answer = answer
            .map(|a| (a.status().is_success(), asked.elapsed()))
            .map_err(|e| reference_service::error::cause_chain(&e));
        let detached = Observer::detached_work(self.lab).await;
        let ports = HostTcp::read()
            .inspect_err(|error| tracing::warn!(%error, "this machine's ports could not be read"))
            .ok();
        Look {
            answer,
            detached,
            ports,
        }
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

/// What one look before a step saw.
#[derive(Debug, Clone)]
struct Look {
    /// The health check's answer (whether it was a success, and how long it took), or why none came.
    answer: Result<(bool, Duration), String>,
    /// Work the service still does for clients that may be gone (`None`: it could not be read).
    detached: Option<f64>,
    /// This machine's ports in TIME_WAIT (`None`: not readable here, so not waited for).
    ports: Option<HostTcp>,
}

/// Why a step could not start from a quiet service.
#[derive(Debug, Clone, PartialEq)]
enum Unquiet {
    /// It answered, but was not quiet by the deadline: what the last look saw.
    Busy(String),
    /// Not one look got an answer: the service is gone.
    Silent(String),
}

/// The looks before a step so far.
#[derive(Debug, Default)]
struct Quiet {
    in_a_row: u32,
    answered: bool,
    last: String,
}

impl Quiet {
    /// Takes a look in: `true` once `QUIET_LOOKS` in a row found the service quiet.
    fn saw(&mut self, look: Look) -> bool {
        self.answered |= look.answer.is_ok();
        let not_quiet = match (&look.answer, look.detached, look.ports) {
            (Err(error), ..) => Some(format!("no answer: {error}")),
            (Ok((false, _)), ..) => Some("the health check failed".to_owned()),
            (Ok((true, took)), ..) if *took > QUIET_ANSWER => Some(format!("answered in {took:.1?}")),
            (_, None, _) => Some("its work in flight could not be read".to_owned()),
            (_, Some(work), _) if work > 0.0 => {
                Some(format!("{work} password checks or payments still running"))
            }
            (_, _, Some(ports)) if !ports.room() => Some(ports.to_string()),
            _ => None,
        };
        match not_quiet {
            Some(why) => {
                self.in_a_row = 0;
                self.last = why;
            }
            None => self.in_a_row += 1,
        }
        self.in_a_row >= QUIET_LOOKS
    }

    /// Why the looks so far did not end in a quiet service.
    fn gave_up(&self) -> Unquiet {
        let last = if self.last.is_empty() {
            "no look yet"
        } else {
            &self.last
        };
        if self.answered {
            Unquiet::Busy(format!("not quiet after {QUIET_DEADLINE:?}: {last}"))
        } else {
            Unquiet::Silent(last.to_owned())
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
            host_dropped: 0,
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
        // Connections this machine's port forwarding dropped: a break that is not the service's.
        let dropped = StepFigures {
            host_dropped: 7700,
            ..figures(1040.0, 1.0, 1.0)
        };
        let StepVerdict::GeneratorBound { why } = dropped.judge(&objective) else {
            panic!("dropped on the way in: {:?}", dropped.judge(&objective));
        };
        assert!(why.contains("dropped 7700 connections"), "{why}");
        let held = StepFigures {
            host_dropped: 3,
            ..figures(400.0, 0.0, 1.0)
        };
        assert_eq!(
            held.judge(&objective),
            StepVerdict::Held,
            "a step that held, held"
        );
        assert!((figures(250.0, 0.02, 0.0).margin(&objective) - 2.0).abs() < 1e-9);
    }

    #[test]
    fn a_step_waits_for_a_quiet_service_and_tells_a_busy_one_from_a_silent_one() {
        let quiet_look = || Look {
            answer: Ok((true, Duration::from_millis(2))),
            detached: Some(0.0),
            ports: Some(HostTcp {
                time_wait: 100,
                range: 28232,
                listen_overflows: 0,
            }),
        };
        let mut quiet = Quiet::default();
        assert!(!(0..QUIET_LOOKS - 1).any(|_| quiet.saw(quiet_look())));
        assert!(quiet.saw(quiet_look()), "{QUIET_LOOKS} quiet looks in a row");

        let not_quiet = [
            Look {
                answer: Ok((true, Duration::from_millis(40))),
                ..quiet_look()
            },
            Look {
                answer: Ok((false, Duration::from_millis(2))),
                ..quiet_look()
            },
            Look {
                detached: Some(3.0),
                ..quiet_look()
            },
            Look {
                detached: None,
                ..quiet_look()
            },
            Look {
                ports: Some(HostTcp {
                    time_wait: 20_000,
                    range: 28232,
                    listen_overflows: 0,
                }),
                ..quiet_look()
            },
        ];
        for look in not_quiet {
            let mut quiet = Quiet::default();
            let seen = format!("{look:?}");
            assert!(!(0..QUIET_LOOKS - 1).any(|_| quiet.saw(quiet_look())));
            assert!(!quiet.saw(look), "{seen} is not quiet");
            assert!(matches!(quiet.gave_up(), Unquiet::Busy(_)), "{seen}: it answered");
        }

        let mut gone = Quiet::default();
        let refused = || Look {
            answer: Err("client error (Connect)".into()),
            ..quiet_look()
        };
        assert!(!(0..20).any(|_| gone.saw(refused())));
        assert_eq!(
            gone.gave_up(),
            Unquiet::Silent("no answer: client error (Connect)".into())
        );
        assert_eq!(Quiet::default().gave_up(), Unquiet::Silent("no look yet".into()));
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
