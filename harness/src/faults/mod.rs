//! Faults: each one a pair of inject and revert, recorded on the timeline.
//!
//! `with_fault` is the only way the lab breaks something: it injects, runs the body, and reverts
//! whatever happens in the body (an error, a panic, or the stop signal that Ctrl-C cancels). A fault
//! whose injection fails half-way is reverted too, so nothing is ever left broken.

pub mod proxy;
pub mod timeline;

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::time::Duration;

use chrono::Utc;
use futures::FutureExt;
use serde_json::Value;
use sqlx::Connection;
use tokio_util::sync::CancellationToken;

use crate::env::{EnvError, Lab, Role};
use crate::faults::proxy::NetworkFault;
pub use timeline::{Action, FaultTimeline, TimelineEntry};

/// How long a revert waits for a restarted service replica to report ready again.
const RECOVERY_DEADLINE: Duration = Duration::from_secs(60);

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
    Modes(Value),
    /// Drops a Postgres index; revert recreates it from its saved definition.
    DropIndex(String),
    /// A network fault on the proxy's link to a dependency (`postgres` or `redis`); revert removes it
    /// and keeps the proxy's evidence of what it did.
    Network { link: Role, fault: NetworkFault },
}

impl std::fmt::Display for Fault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Kill(role) => write!(f, "kill {role}"),
            Self::Stop(role) => write!(f, "stop {role}"),
            Self::Pause(role) => write!(f, "pause {role}"),
            Self::Modes(modes) => write!(f, "modes {modes}"),
            Self::DropIndex(index) => write!(f, "drop index {index}"),
            Self::Network { link, fault } => write!(f, "{fault} on the {link} link"),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum FaultError {
    #[error(transparent)]
    Env(#[from] EnvError),
    #[error("{fault}: {detail}")]
    Failed { fault: String, detail: String },
    #[error("interrupted (Ctrl-C); the fault was reverted")]
    Interrupted,
}

/// What an injection saw that its revert needs.
#[derive(Debug, Clone, Default)]
pub struct Undo {
    /// Per replica, the modes before the change.
    previous_modes: Vec<Value>,
    /// The `CREATE INDEX` statement of a dropped index.
    index_definition: Option<String>,
}

fn failed(fault: &Fault, detail: impl std::fmt::Display) -> FaultError {
    FaultError::Failed {
        fault: fault.to_string(),
        detail: detail.to_string(),
    }
}

impl Fault {
    pub async fn inject(&self, lab: &Lab) -> Result<Undo, FaultError> {
        let mut undo = Undo::default();
        match self {
            Self::Kill(role) => lab
                .docker
                .kill(&lab.node(*role)?.name)
                .await
                .map_err(|e| failed(self, e))?,
            Self::Stop(role) => lab
                .node(*role)?
                .container
                .stop()
                .await
                .map_err(|e| failed(self, e))?,
            Self::Pause(role) => lab
                .node(*role)?
                .container
                .pause()
                .await
                .map_err(|e| failed(self, e))?,
            Self::Modes(patch) => {
                for replica in 1..=lab.services.len() as u32 {
                    let previous = admin(lab, replica, reqwest::Method::GET, None)
                        .await
                        .map_err(|e| failed(self, e))?;
                    undo.previous_modes.push(previous);
                    admin(lab, replica, reqwest::Method::PUT, Some(patch))
                        .await
                        .map_err(|e| failed(self, e))?;
                }
            }
            Self::DropIndex(index) => {
                let mut db = postgres(lab).await.map_err(|e| failed(self, e))?;
                let definition: Option<String> = sqlx::query_scalar(
                    "SELECT indexdef FROM pg_indexes WHERE schemaname = 'public' AND indexname = $1",
                )
                .bind(index)
                .fetch_optional(&mut db)
                .await
                .map_err(|e| failed(self, e))?;
                let definition =
                    definition.ok_or_else(|| failed(self, format!("there is no index named {index}")))?;
                sqlx::query(&format!("DROP INDEX \"{}\"", index.replace('"', "\"\"")))
                    .execute(&mut db)
                    .await
                    .map_err(|e| failed(self, e))?;
                undo.index_definition = Some(definition);
            }
            Self::Network { link, fault } => {
                let proxy = lab.proxy().await?;
                let name = link_name(*link).map_err(|e| failed(self, e))?;
                let mut faults = proxy.link(name).await.map_err(|e| failed(self, e))?.faults;
                if faults.iter().any(|f| f.kind() == fault.kind()) {
                    return Err(failed(
                        self,
                        format!("the {name} link already has a {} fault", fault.kind()),
                    ));
                }
                faults.push(fault.clone());
                proxy.set(name, &faults).await.map_err(|e| failed(self, e))?;
            }
        }
        Ok(undo)
    }

    /// Puts back what `inject` changed; answers the evidence of a network fault.
    pub async fn revert(&self, lab: &Lab, undo: &Undo) -> Result<Option<Value>, FaultError> {
        match self {
            Self::Kill(role) | Self::Stop(role) => {
                let node = lab.node(*role)?;
                node.container.start().await.map_err(|e| failed(self, e))?;
                if let Role::Service(_) = role {
                    lab.wait_ready(*role, RECOVERY_DEADLINE).await?;
                }
            }
            Self::Pause(role) => lab
                .node(*role)?
                .container
                .unpause()
                .await
                .map_err(|e| failed(self, e))?,
            Self::Modes(_) => {
                for (replica, previous) in (1..).zip(&undo.previous_modes) {
                    admin(lab, replica, reqwest::Method::PUT, Some(previous))
                        .await
                        .map_err(|e| failed(self, e))?;
                }
            }
            Self::DropIndex(_) => {
                if let Some(definition) = &undo.index_definition {
                    let mut db = postgres(lab).await.map_err(|e| failed(self, e))?;
                    sqlx::query(definition)
                        .execute(&mut db)
                        .await
                        .map_err(|e| failed(self, e))?;
                }
            }
            Self::Network { link, fault } => {
                let proxy = lab.proxy().await?;
                let name = link_name(*link).map_err(|e| failed(self, e))?;
                let mut faults = proxy.link(name).await.map_err(|e| failed(self, e))?.faults;
                faults.retain(|f| f.kind() != fault.kind());
                let changed = proxy.set(name, &faults).await.map_err(|e| failed(self, e))?;
                return Ok(Some(
                    serde_json::to_value(changed.previous.evidence).unwrap_or_default(),
                ));
            }
        }
        Ok(None)
    }
}

/// The proxy's name for the link to a dependency.
fn link_name(role: Role) -> Result<&'static str, String> {
    match role {
        Role::Postgres => Ok("postgres"),
        Role::Redis => Ok("redis"),
        other => Err(format!(
            "the proxy has links to postgres and redis, not to {other}"
        )),
    }
}

async fn postgres(lab: &Lab) -> Result<sqlx::PgConnection, String> {
    let url = lab.postgres_url().await.map_err(|e| e.to_string())?;
    sqlx::PgConnection::connect(&url).await.map_err(|e| e.to_string())
}

/// `GET` or `PUT /admin/modes` on one replica; answers the modes in force afterwards.
async fn admin(
    lab: &Lab,
    replica: u32,
    method: reqwest::Method,
    body: Option<&Value>,
) -> Result<Value, String> {
    let url = format!(
        "{}/admin/modes",
        lab.service_url(replica).await.map_err(|e| e.to_string())?
    );
    let mut request = lab
        .http()
        .request(method, url)
        .bearer_auth(crate::env::ADMIN_TOKEN);
    if let Some(body) = body {
        request = request.json(body);
    }
    let response = request.send().await.map_err(|e| e.to_string())?;
    let status = response.status();
    let body: Value = response.json().await.map_err(|e| e.to_string())?;
    if status.is_success() {
        Ok(body)
    } else {
        Err(format!("{status}: {body}"))
    }
}

/// Injects `fault`, runs `body`, and reverts, always: after an error or a panic in `body`, and when
/// `stop` is cancelled (Ctrl-C), in which case `body` is abandoned and `Interrupted` returned.
pub async fn with_fault<T>(
    lab: &Lab,
    timeline: &FaultTimeline,
    stop: &CancellationToken,
    fault: &Fault,
    body: impl Future<Output = T>,
) -> Result<T, FaultError> {
    let started_at = Utc::now();
    let injected = fault.inject(lab).await;
    let entry = |action, started_at, error: Option<String>, detail: Option<String>| TimelineEntry {
        fault: fault.to_string(),
        action,
        started_at,
        finished_at: Utc::now(),
        error,
        detail,
        evidence: None,
    };
    let undo = match injected {
        Ok(undo) => {
            let detail = undo.index_definition.clone().or_else(|| {
                (!undo.previous_modes.is_empty())
                    .then(|| format!("previous modes: {:?}", undo.previous_modes))
            });
            timeline.record(entry(Action::Inject, started_at, None, detail));
            undo
        }
        Err(error) => {
            timeline.record(entry(Action::Inject, started_at, Some(error.to_string()), None));
            // Half an injection is still an injection: put back whatever did change.
            let reverted_at = Utc::now();
            let revert = fault.revert(lab, &Undo::default()).await;
            timeline.record(entry(
                Action::Revert,
                reverted_at,
                revert.err().map(|e| e.to_string()),
                None,
            ));
            return Err(error);
        }
    };
    let outcome = tokio::select! {
        outcome = AssertUnwindSafe(body).catch_unwind() => Some(outcome),
        () = stop.cancelled() => None,
    };
    let reverted_at = Utc::now();
    let revert = fault.revert(lab, &undo).await;
    let mut reverted = entry(
        Action::Revert,
        reverted_at,
        revert.as_ref().err().map(|e| e.to_string()),
        None,
    );
    reverted.evidence = revert.as_ref().ok().cloned().flatten();
    timeline.record(reverted);
    match outcome {
        Some(Ok(value)) => revert.map(|_| value),
        Some(Err(panic)) => std::panic::resume_unwind(panic),
        None => Err(FaultError::Interrupted),
    }
}
