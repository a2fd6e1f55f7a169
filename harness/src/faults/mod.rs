//! Faults: each one a pair of inject and revert, recorded on the timeline.
//!
//! `with_fault` is the only way the lab breaks something: it injects, runs the body (and, beside it,
//! whatever the fault does over time: a rolling restart's steps), and reverts whatever happens in the body (an error, a panic, or the stop signal that Ctrl-C cancels). A fault
//! whose injection fails half-way is reverted as far as it got, so nothing is ever left broken; `audit`
//! then asks the proxy and Docker whether that is so.

pub mod audit;
mod deploy;
pub mod evidence;
pub mod proxy;
mod target;
pub mod timeline;

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::time::Duration;

use futures::FutureExt;
use reference_service::error::cause_chain;
use reference_service::modes::{Modes, ModesPatch};
use sqlx::Connection;
use tokio_util::sync::CancellationToken;

use self::evidence::{Expected, Witness};
use self::proxy::client::{ProxyClient, ProxyError};
use self::proxy::{Evidence, FaultKind, NetworkFault, ScopedFault};
use crate::env::balancer::Rotation;
use crate::env::docker::DockerError;
use crate::env::target::lab::{TargetLab, TargetLabError};
use crate::env::{AdminError, EnvError, Lab};
use crate::vocabulary::{Link, Role};
pub use evidence::Observed;
pub use timeline::{Action, FaultTimeline, Seen, TimelineEntry};

/// How long a revert waits for a restarted service replica to report ready again, for the balancer
/// to let it in, and for a restarted mail server to greet.
const RECOVERY_DEADLINE: Duration = Duration::from_secs(60);
/// How long a replica taken out of the balancer may take to finish the requests it has (the
/// balancer's server timeout is 30 s).
const DRAIN_DEADLINE: Duration = Duration::from_secs(35);

/// Something the lab can break, and knows how to put back.
#[derive(Debug, Clone, PartialEq)]
pub enum Fault {
    /// SIGKILL, as in a crash; revert starts the container again.
    Kill(Role),
    /// A clean stop (SIGTERM, then SIGKILL after the grace period); revert starts it again.
    Stop(Role),
    /// Freezes every process of the container: connections stay open and nothing answers.
    Pause(Role),
    /// Switches runtime modes of every service replica (`{"locking":"none"}`); revert restores the
    /// modes each replica had.
    Modes(ModesPatch),
    /// Drops a Postgres index; revert recreates it from its saved definition.
    DropIndex(String),
    /// Every cached key expires at once (Redis `FLUSHDB`), as hot keys written together and given one
    /// TTL do. Nothing to put back: the cache refills as it is read.
    ExpireCache,
    /// A network fault on the proxy's link to a dependency; revert removes it and keeps the proxy's
    /// evidence of what it did.
    Network { link: Link, fault: ScopedFault },
    /// Takes a service replica out of the balancer's rotation and waits until nothing is in flight on
    /// it; revert puts it back and waits until its health checks have let it in. A step of a deploy.
    TakeOut(u32),
    /// Every service replica stopped cleanly and started again, one at a time, while the load runs
    /// (a deploy). Nothing to inject or revert as a whole: each replica's restart is its own step.
    RollingRestart,
    /// Not a fault but the operator's answer to one: the outbox's dead letters sent back to the
    /// queue, as after a mail outage. Nothing to revert: a replayed email is delivered, not undone.
    ReplayDeadLetters,
    /// A kill, stop or pause of the first `replicas` replicas of a service of a user's target
    /// (by its Compose name); revert starts or unfreezes them again.
    OnService {
        action: ContainerAction,
        service: String,
        replicas: u32,
    },
    /// A network fault on a link of a user's target (`from-to`, as its proxy names it).
    OnLink { link: String, fault: ScopedFault },
    /// Every replica of a user's target's entry (by its Compose name) stopped cleanly and started
    /// again, one at a time behind the balancer, while the load runs: a deploy. Each replica's
    /// restart is its own two steps, as in the reference lab's.
    RollingRestartOf(String),
    /// A step of a target's deploy: an entry replica taken out of the balancer and drained; revert
    /// puts it back and waits until its health checks have let it in.
    TakeOutOf { service: String, replica: u32 },
    /// A step of a target's deploy: one replica stopped cleanly (SIGTERM); revert starts it again.
    StopReplica { service: String, replica: u32 },
}

/// What a container fault does to a container of a user's target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContainerAction {
    Kill,
    Stop,
    Pause,
}

impl std::fmt::Display for ContainerAction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Kill => "kill",
            Self::Stop => "stop",
            Self::Pause => "pause",
        })
    }
}

/// Where faults are injected: the reference lab, or a user's target.
#[derive(Debug, Clone, Copy)]
pub enum Site<'a> {
    Reference(&'a Lab),
    Target(&'a TargetLab),
}

impl std::fmt::Display for Fault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Kill(role) => write!(f, "kill {role}"),
            Self::Stop(role) => write!(f, "stop {role}"),
            Self::Pause(role) => write!(f, "pause {role}"),
            Self::Modes(modes) => write!(f, "modes {modes}"),
            Self::DropIndex(index) => write!(f, "drop index {index}"),
            Self::ExpireCache => f.write_str("expire every cached key"),
            Self::Network { link, fault } if fault.fraction < 1.0 => write!(
                f,
                "{} on {}% of the {link} link's {}",
                fault.fault,
                (fault.fraction * 1000.0).round() / 10.0,
                if fault.kind().is_http() {
                    "requests"
                } else {
                    "connections"
                }
            ),
            Self::Network { link, fault } => write!(f, "{} on the {link} link", fault.fault),
            Self::RollingRestart => f.write_str("rolling restart of every service replica"),
            Self::TakeOut(replica) => write!(f, "take {} out of the balancer", Role::Service(*replica)),
            Self::RollingRestartOf(service) => write!(f, "rolling restart of every {service} replica"),
            Self::TakeOutOf { service, replica } => write!(f, "take {service}-{replica} out of the balancer"),
            Self::StopReplica { service, replica } => write!(f, "stop {service}-{replica}"),
            Self::ReplayDeadLetters => f.write_str("replay the outbox's dead letters"),
            Self::OnService {
                action,
                service,
                replicas: 1,
            } => write!(f, "{action} {service}"),
            Self::OnService {
                action,
                service,
                replicas,
            } => write!(f, "{action} {replicas} replicas of {service}"),
            Self::OnLink { link, fault } if fault.fraction < 1.0 => write!(
                f,
                "{} on {}% of the {link} link's connections",
                fault.fault,
                (fault.fraction * 1000.0).round() / 10.0
            ),
            Self::OnLink { link, fault } => write!(f, "{} on the {link} link", fault.fault),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum FaultError {
    #[error("could not {action} {fault}")]
    Failed {
        fault: String,
        action: Action,
        #[source]
        cause: Cause,
    },
    #[error("interrupted (Ctrl-C); the fault was reverted")]
    Interrupted,
}

/// What went wrong inside an inject or a revert.
#[derive(Debug, thiserror::Error)]
pub enum Cause {
    #[error(transparent)]
    Env(#[from] EnvError),
    #[error(transparent)]
    Docker(#[from] DockerError),
    #[error("docker")]
    Container(#[from] testcontainers::TestcontainersError),
    #[error(transparent)]
    Admin(#[from] AdminError),
    #[error("postgres")]
    Database(#[from] sqlx::Error),
    #[error("redis")]
    Cache(#[from] redis::RedisError),
    #[error(transparent)]
    Proxy(#[from] ProxyError),
    #[error("there is no index named {0}")]
    NoSuchIndex(String),
    #[error("the {link} link already has a {kind} fault")]
    AlreadyFaulted { link: String, kind: FaultKind },
    #[error(transparent)]
    Target(#[from] TargetLabError),
    #[error("{fault} cannot be injected in {site}")]
    WrongSite { fault: String, site: &'static str },
}

/// What an injection changed that its revert needs, filled in as the injection goes: a revert after
/// a half-done injection puts back exactly what did change.
#[derive(Debug, Clone, Default)]
pub struct Undo {
    /// Per replica, from 1, the modes before the change.
    previous_modes: Vec<Modes>,
    /// The `CREATE INDEX` statement of a dropped index.
    index_definition: Option<String>,
    /// The modes of a replica that is killed or stopped: a process started again starts with the
    /// defaults, and is given these back before the balancer lets it serve.
    replica_modes: Option<Modes>,
    /// How many dead letters a replay sent back to the queue.
    replayed: Option<u64>,
    /// What the injection saw, for the evidence the revert completes.
    witness: Witness,
    /// A target's fault: what it saw, for its evidence at the revert.
    target: target::Witness,
}

impl Undo {
    /// What the timeline shows of it.
    fn detail(&self) -> Option<String> {
        if let Some(replayed) = self.replayed {
            return Some(format!("{replayed} dead letters back in the queue"));
        }
        self.index_definition.clone().or_else(|| {
            (!self.previous_modes.is_empty()).then(|| {
                let modes: Vec<String> = self
                    .previous_modes
                    .iter()
                    .map(|m| ModesPatch::from(*m).to_string())
                    .collect();
                format!("previous modes: {}", modes.join(", "))
            })
        })
    }
}

impl Fault {
    /// Whether it is an operator's answer to a fault rather than a fault: drawn as an instant, not
    /// as a window of breakage.
    pub fn is_operator_step(&self) -> bool {
        matches!(self, Self::ReplayDeadLetters)
    }

    /// Whether it slows what crosses a link (a latency, bandwidth, a delayed HTTP answer) rather
    /// than failing it: what waits on the link is held, not given up on.
    pub fn slows(&self) -> bool {
        matches!(
            self,
            Self::Network {
                fault: ScopedFault {
                    fault: NetworkFault::Latency { .. }
                        | NetworkFault::Bandwidth { .. }
                        | NetworkFault::HttpDelay { .. },
                    ..
                },
                ..
            }
        )
    }

    /// Breaks it, noting in `undo` what its revert must put back and what it saw.
    pub async fn inject(&self, lab: &Lab, undo: &mut Undo) -> Result<(), Cause> {
        let witness = &mut undo.witness;
        match self {
            Self::Kill(role) | Self::Stop(role) => {
                if let Role::Service(replica) = role {
                    undo.replica_modes = Some(lab.modes(*replica).await?);
                }
                witness.before_container_fault(lab, *role).await;
                match self {
                    Self::Kill(_) => lab.docker.kill(&lab.node(*role)?.name).await?,
                    _ => lab.node(*role)?.container.stop().await?,
                }
                witness.after_container_fault(lab, *role, Expected::Exited).await;
            }
            Self::Pause(role) => {
                witness.before_container_fault(lab, *role).await;
                lab.node(*role)?.container.pause().await?;
                witness.after_container_fault(lab, *role, Expected::Paused).await;
            }
            Self::Modes(patch) => {
                for replica in lab.replicas() {
                    undo.previous_modes.push(lab.modes(replica).await?);
                    lab.set_modes(replica, patch).await?;
                }
                modes_took(lab, patch, &mut undo.witness).await?;
            }
            Self::DropIndex(index) => {
                let dropped = drop_index(lab, index).await?;
                undo.index_definition = Some(dropped.definition);
                undo.witness
                    .index_dropped(lab, dropped.served, dropped.table)
                    .await;
            }
            Self::ExpireCache => {
                let (before, after) = expire_cache(lab).await?;
                witness.expired(before, after);
            }
            Self::Network { link, fault } => {
                add_network_fault(&ProxyClient::of(lab).await?, link, fault).await?
            }
            // Its work is done while the body runs: `during`.
            Self::RollingRestart => witness.before_restarts(lab).await,
            Self::TakeOut(replica) => {
                lab.rotate(*replica, Rotation::Out).await?;
                lab.wait_drained(*replica, DRAIN_DEADLINE).await?;
            }
            Self::ReplayDeadLetters => undo.replayed = Some(lab.replay_dead_letters().await?),
            Self::OnService { .. }
            | Self::OnLink { .. }
            | Self::RollingRestartOf(_)
            | Self::TakeOutOf { .. }
            | Self::StopReplica { .. } => return Err(self.not_in("the reference lab")),
        }
        Ok(())
    }

    fn not_in(&self, site: &'static str) -> Cause {
        Cause::WrongSite {
            fault: self.to_string(),
            site,
        }
    }

    /// Breaks it at `site`.
    pub async fn inject_at(&self, site: Site<'_>, undo: &mut Undo) -> Result<(), Cause> {
        match site {
            Site::Reference(lab) => self.inject(lab, undo).await,
            Site::Target(lab) => target::inject(self, lab, &mut undo.target).await,
        }
    }

    /// Puts it back at `site`.
    pub async fn revert_at(&self, site: Site<'_>, undo: &Undo) -> Result<Seen, Cause> {
        match site {
            Site::Reference(lab) => self.revert(lab, undo).await,
            Site::Target(lab) => target::revert(self, lab, &undo.target).await,
        }
    }

    /// Puts back what `inject` changed, after reading what the fault was seen to do; answers that,
    /// and the proxy's evidence of a network fault.
    pub async fn revert(&self, lab: &Lab, undo: &Undo) -> Result<Seen, Cause> {
        let mut reverted = Seen {
            evidence: None,
            observed: undo.witness.observe(lab).await,
        };
        match self {
            Self::Kill(role) | Self::Stop(role) => {
                lab.node(*role)?.container.start().await?;
                match role {
                    Role::Service(replica) => {
                        lab.wait_answering(*replica, RECOVERY_DEADLINE).await?;
                        if let Some(modes) = undo.replica_modes {
                            lab.set_modes(*replica, &ModesPatch::from(modes)).await?;
                        }
                    }
                    Role::Mail => lab.wait_mail_server(RECOVERY_DEADLINE).await?,
                    _ => {}
                }
            }
            Self::Pause(role) => lab.node(*role)?.container.unpause().await?,
            Self::Modes(_) => {
                for (replica, previous) in (1..).zip(&undo.previous_modes) {
                    lab.set_modes(replica, &ModesPatch::from(*previous)).await?;
                }
            }
            Self::DropIndex(_) => {
                if let Some(definition) = &undo.index_definition {
                    let mut db = sqlx::PgConnection::connect(&lab.postgres_url().await?).await?;
                    sqlx::query(definition).execute(&mut db).await?;
                }
            }
            // Nothing to put back: the readers refill the cache; each restarted replica was started
            // again by its own step.
            Self::ExpireCache | Self::RollingRestart | Self::ReplayDeadLetters => {}
            Self::TakeOut(replica) => {
                lab.rotate(*replica, Rotation::In).await?;
                lab.wait_balanced(RECOVERY_DEADLINE).await?;
            }
            Self::Network { link, fault } => {
                let proxy = ProxyClient::of(lab).await?;
                let evidence = remove_network_fault(&proxy, link, fault.kind()).await?;
                reverted.observed = Some(Observed::of_network(*link, &evidence));
                reverted.evidence = Some(evidence);
            }
            Self::OnService { .. }
            | Self::OnLink { .. }
            | Self::RollingRestartOf(_)
            | Self::TakeOutOf { .. }
            | Self::StopReplica { .. } => return Err(self.not_in("the reference lab")),
        }
        Ok(reverted)
    }

    /// What the fault does while the body runs, after the inject: a rolling restart restarts the
    /// replicas then; the others are done with at injection.
    async fn during(
        &self,
        site: Site<'_>,
        timeline: &FaultTimeline,
        stop: &CancellationToken,
    ) -> Result<(), FaultError> {
        match (self, site) {
            (Self::RollingRestart, Site::Reference(lab)) => {
                deploy::rolling_restart(lab, timeline, stop).await
            }
            (Self::RollingRestartOf(service), Site::Target(lab)) => {
                deploy::rolling_restart_of(lab, service, timeline, stop).await
            }
            _ => Ok(()),
        }
    }
}

/// An index dropped: its definition, saved first, its table, and the scans it had served.
struct Dropped {
    definition: String,
    table: String,
    served: i64,
}

async fn drop_index(lab: &Lab, index: &str) -> Result<Dropped, Cause> {
    let mut db = sqlx::PgConnection::connect(&lab.postgres_url().await?).await?;
    let found: Option<(String, String, i64)> = sqlx::query_as(
        "SELECT i.indexdef, i.tablename, coalesce(s.idx_scan, 0) FROM pg_indexes i \
         LEFT JOIN pg_stat_user_indexes s ON s.schemaname = i.schemaname AND s.indexrelname = i.indexname \
         WHERE i.schemaname = 'public' AND i.indexname = $1",
    )
    .bind(index)
    .fetch_optional(&mut db)
    .await?;
    let (definition, table, served) = found.ok_or_else(|| Cause::NoSuchIndex(index.to_owned()))?;
    sqlx::query(&format!("DROP INDEX \"{}\"", index.replace('"', "\"\"")))
        .execute(&mut db)
        .await?;
    Ok(Dropped {
        definition,
        table,
        served,
    })
}

/// Empties Redis, through its port on 127.0.0.1 (not the proxy: a fault on the service's link must
/// not stop the harness's own command); answers the keys it held before and after.
async fn expire_cache(lab: &Lab) -> Result<(i64, i64), Cause> {
    let client = redis::Client::open(lab.redis_url().await?)?;
    let mut redis = client.get_multiplexed_async_connection().await?;
    let before: i64 = redis::cmd("DBSIZE").query_async(&mut redis).await?;
    redis::cmd("FLUSHDB").query_async::<()>(&mut redis).await?;
    let after: i64 = redis::cmd("DBSIZE").query_async(&mut redis).await?;
    Ok((before, after))
}

/// Whether every replica now answers with the modes of `patch`.
async fn modes_took(lab: &Lab, patch: &ModesPatch, witness: &mut Witness) -> Result<(), Cause> {
    let mut took = 0;
    for replica in lab.replicas() {
        let mut expected = lab.modes(replica).await?;
        let now = expected;
        if patch.apply(&mut expected).is_ok() && expected == now {
            took += 1;
        }
    }
    let replicas = lab.replicas().count();
    witness.seen(
        format!("service: {took} of {replicas} replicas answer with {patch}"),
        took == replicas,
    );
    Ok(())
}

/// Adds `fault` to the link's faults (one of each kind at a time), on the reference lab's proxy or
/// a target's.
async fn add_network_fault(
    proxy: &ProxyClient,
    link: impl std::fmt::Display,
    fault: &ScopedFault,
) -> Result<(), Cause> {
    let mut faults = proxy.link(&link).await?.faults;
    if faults.iter().any(|f| f.kind() == fault.kind()) {
        return Err(Cause::AlreadyFaulted {
            link: link.to_string(),
            kind: fault.kind(),
        });
    }
    faults.push(fault.clone());
    proxy.set(&link, &faults).await?;
    Ok(())
}

/// Removes the fault of `kind` from the link, keeping the others; answers what the faults did.
async fn remove_network_fault(
    proxy: &ProxyClient,
    link: impl std::fmt::Display,
    kind: FaultKind,
) -> Result<Evidence, Cause> {
    let mut faults = proxy.link(&link).await?.faults;
    faults.retain(|f| f.kind() != kind);
    Ok(proxy.set(&link, &faults).await?.previous.evidence)
}

/// Injects `fault`, runs `body` (beside what the fault does meanwhile), and reverts, always: after an
/// error or a panic in `body`, and when `stop` is cancelled (Ctrl-C), in which case `body` is
/// abandoned and `Interrupted` returned.
pub async fn with_fault<T>(
    lab: &Lab,
    timeline: &FaultTimeline,
    stop: &CancellationToken,
    fault: &Fault,
    body: impl Future<Output = T>,
) -> Result<T, FaultError> {
    let site = Site::Reference(lab);
    scope(Scope { site, timeline, stop }, fault, body, OnStop::Abandon).await
}

/// `with_fault` for a body that ends by itself when `stop` is cancelled, such as another fault's
/// `with_fault`: it is awaited, never abandoned, so the fault inside is reverted before this one.
pub async fn around_fault<T>(
    lab: &Lab,
    timeline: &FaultTimeline,
    stop: &CancellationToken,
    fault: &Fault,
    body: impl Future<Output = T>,
) -> Result<T, FaultError> {
    let site = Site::Reference(lab);
    scope(Scope { site, timeline, stop }, fault, body, OnStop::Await).await
}

/// Injects every fault of `faults` (in order), runs `body`, reverts them all (in reverse order). Each
/// fault's body (the next fault's scope, and last `body`) ends by itself on Ctrl-C, so it is
/// awaited: every fault inside is reverted before the one around it.
pub async fn around_faults<T>(
    lab: &Lab,
    timeline: &FaultTimeline,
    stop: &CancellationToken,
    faults: &[Fault],
    body: impl Future<Output = T>,
) -> Result<T, FaultError> {
    around_faults_at(Site::Reference(lab), timeline, stop, faults, body).await
}

/// `around_faults` at any site: the reference lab or a user's target.
pub async fn around_faults_at<T>(
    site: Site<'_>,
    timeline: &FaultTimeline,
    stop: &CancellationToken,
    faults: &[Fault],
    body: impl Future<Output = T>,
) -> Result<T, FaultError> {
    match faults {
        [] => Ok(body.await),
        [first, rest @ ..] => {
            let inner = Box::pin(around_faults_at(site, timeline, stop, rest, body));
            let at = Scope { site, timeline, stop };
            scope(at, first, inner, OnStop::Await).await?
        }
    }
}

/// What every fault's scope works with.
#[derive(Clone, Copy)]
struct Scope<'a> {
    site: Site<'a>,
    timeline: &'a FaultTimeline,
    stop: &'a CancellationToken,
}

/// What becomes of the body when `stop` is cancelled.
#[derive(Clone, Copy)]
enum OnStop {
    Abandon,
    Await,
}

/// The body's outcome: `None` when it was abandoned; a panic is caught, to be resumed after the revert.
type BodyOutcome<T> = Option<std::thread::Result<T>>;

async fn scope<T>(
    at: Scope<'_>,
    fault: &Fault,
    body: impl Future<Output = T>,
    on_stop: OnStop,
) -> Result<T, FaultError> {
    let mut record = at.timeline.begin(fault);
    if fault.is_operator_step() {
        record.as_operator_step();
    }
    let mut undo = Undo::default();
    let injected = fault.inject_at(at.site, &mut undo).await;
    record.done(
        Action::Inject,
        injected.as_ref().err().map(|e| cause_chain(e)),
        undo.detail(),
        Seen::default(),
    );
    let outcome = match injected {
        // Half an injection is still an injection: put back whatever did change.
        Err(cause) => Err(cause),
        Ok(()) => Ok(alongside(at, fault, body, on_stop).await),
    };
    record.start(Action::Revert);
    let reverted = fault.revert_at(at.site, &undo).await;
    record.done(
        Action::Revert,
        reverted.as_ref().err().map(|e| cause_chain(e)),
        None,
        reverted.as_ref().ok().cloned().unwrap_or_default(),
    );
    let failed = |action, cause| FaultError::Failed {
        fault: fault.to_string(),
        action,
        cause,
    };
    match outcome {
        Err(cause) => Err(failed(Action::Inject, cause)),
        Ok((_, Some(Err(panic)))) => std::panic::resume_unwind(panic),
        Ok((Err(during), _)) => Err(during),
        Ok((Ok(()), Some(Ok(value)))) => reverted
            .map(|_| value)
            .map_err(|cause| failed(Action::Revert, cause)),
        Ok((Ok(()), None)) => Err(FaultError::Interrupted),
    }
}

/// Runs the body and, beside it, what the fault does meanwhile (`during`), which is never abandoned
/// half-way: it ends its own steps when `stop` is cancelled.
async fn alongside<T>(
    at: Scope<'_>,
    fault: &Fault,
    body: impl Future<Output = T>,
    on_stop: OnStop,
) -> (Result<(), FaultError>, BodyOutcome<T>) {
    // Both on the heap: a scope holds its body and its `during`, and a scope nested in another's body
    // would otherwise grow each enclosing future by all of it (a nested fault around a load run
    // overflowed a test thread's stack).
    let body = Box::pin(AssertUnwindSafe(body).catch_unwind());
    let during = Box::pin(fault.during(at.site, at.timeline, at.stop));
    let body = async {
        match on_stop {
            OnStop::Await => Some(body.await),
            OnStop::Abandon => tokio::select! {
                outcome = body => Some(outcome),
                () = at.stop.cancelled() => None,
            },
        }
    };
    tokio::join!(during, body)
}
