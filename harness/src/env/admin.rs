//! The lab's side of the service replicas' operator routes: readiness (`GET /readyz`), the runtime
//! modes (`GET|PUT /admin/modes`), the data set (`POST /admin/seed`) and the outbox's dead letters
//! (`POST /admin/outbox/replay`), with the lab's admin token.

use std::time::Duration;

use reference_service::modes::{Modes, ModesPatch};
use reference_service::seed::SeedPlan;
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::poll::{Look, poll_until};
use super::{EnvError, Lab};
use crate::vocabulary::Role;

/// Seeding a large data set (argon2 hashes for every user) takes a while.
const SEED_TIMEOUT: Duration = Duration::from_secs(60);

#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error(transparent)]
    Env(#[from] EnvError),
    #[error("{what}: no answer from {role}")]
    Unreachable {
        what: &'static str,
        role: Role,
        #[source]
        source: reqwest::Error,
    },
    #[error("{what}: {role} answered {status}: {body}")]
    Refused {
        what: &'static str,
        role: Role,
        status: u16,
        body: String,
    },
}

/// A replica's `GET /readyz`: its status code and its document.
pub type Readiness = (u16, serde_json::Value);

impl Lab {
    /// The readiness document of a replica (`GET /readyz`), whatever its status code.
    pub async fn readiness(&self, replica: u32) -> Result<Readiness, AdminError> {
        let what = "GET /readyz";
        let role = Role::Service(replica);
        let url = format!("{}/readyz", self.service_url(replica).await?);
        let unreachable = |source| AdminError::Unreachable { what, role, source };
        let response = self.http().get(url).send().await.map_err(unreachable)?;
        let status = response.status().as_u16();
        Ok((status, response.json().await.map_err(unreachable)?))
    }

    /// Polls `/readyz` of a replica until it says `ready`, or fails at the deadline with the last answer.
    pub async fn wait_ready(&self, replica: u32, deadline: Duration) -> Result<(), EnvError> {
        let every = Duration::from_millis(100);
        poll_until(Role::Service(replica), deadline, every, || async {
            Ok(match self.readiness(replica).await {
                Ok((200, body)) if body["status"] == "ready" => Look::Done(()),
                Ok((status, body)) => Look::NotYet(format!("{status} {body}")),
                Err(AdminError::Env(error)) => return Err(error),
                Err(error) => Look::NotYet(reference_service::error::cause_chain(&error)),
            })
        })
        .await
    }

    /// Polls `/readyz` of a replica until its process answers with a readiness document, whatever
    /// it says of its dependencies: a replica started again while another fault holds Redis or
    /// Postgres down (explore's pairs) is up, and says so (`degraded`, `unavailable`). A balancer lets
    /// it serve only once it is `ready`.
    pub async fn wait_answering(&self, replica: u32, deadline: Duration) -> Result<(), EnvError> {
        let every = Duration::from_millis(100);
        poll_until(Role::Service(replica), deadline, every, || async {
            Ok(match self.readiness(replica).await {
                Ok((_, body)) if body["status"].is_string() => Look::Done(()),
                Ok((status, body)) => Look::NotYet(format!("{status} {body}")),
                Err(AdminError::Env(error)) => return Err(error),
                Err(error) => Look::NotYet(reference_service::error::cause_chain(&error)),
            })
        })
        .await
    }

    /// The modes a replica runs with now.
    pub async fn modes(&self, replica: u32) -> Result<Modes, AdminError> {
        self.admin(replica, reqwest::Method::GET, "/admin/modes", None::<&()>)
            .await
    }

    /// Changes the modes of one replica; answers the modes in force afterwards.
    pub async fn set_modes(&self, replica: u32, patch: &ModesPatch) -> Result<Modes, AdminError> {
        self.admin(replica, reqwest::Method::PUT, "/admin/modes", Some(patch))
            .await
    }

    /// Replaces the data set (through replica 1: they share the database) and empties the cache.
    pub async fn seed(&self, plan: &SeedPlan) -> Result<(), AdminError> {
        let _: serde_json::Value = self
            .admin(1, reqwest::Method::POST, "/admin/seed", Some(plan))
            .await?;
        Ok(())
    }

    /// Sends the outbox's dead letters back to the queue (through replica 1: they share the
    /// database); answers how many.
    pub async fn replay_dead_letters(&self) -> Result<u64, AdminError> {
        #[derive(serde::Deserialize)]
        struct Replayed {
            replayed: u64,
        }
        let answer: Replayed = self
            .admin(1, reqwest::Method::POST, "/admin/outbox/replay", None::<&()>)
            .await?;
        Ok(answer.replayed)
    }

    async fn admin<T: DeserializeOwned>(
        &self,
        replica: u32,
        method: reqwest::Method,
        path: &'static str,
        body: Option<&impl Serialize>,
    ) -> Result<T, AdminError> {
        let what = path;
        let role = Role::Service(replica);
        let url = format!("{}{path}", self.service_url(replica).await?);
        let mut request = self
            .http()
            .request(method, url)
            .bearer_auth(self.admin_token())
            .timeout(SEED_TIMEOUT);
        if let Some(body) = body {
            request = request.json(body);
        }
        let unreachable = |source| AdminError::Unreachable { what, role, source };
        let response = request.send().await.map_err(unreachable)?;
        let status = response.status();
        if !status.is_success() {
            let body = response.text().await.map_err(unreachable)?;
            return Err(AdminError::Refused {
                what,
                role,
                status: status.as_u16(),
                body,
            });
        }
        response.json().await.map_err(unreachable)
    }
}
