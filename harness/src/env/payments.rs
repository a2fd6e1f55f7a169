//! The lab's payment provider as the harness sees it from outside: whether it answers on its port
//! published on 127.0.0.1, and its ledger (every authorisation request it got and every authorisation
//! it granted), read from the provider itself, never from the service's tables.

use std::time::Duration;

use super::poll::{Look, poll_until};
use super::{EnvError, Lab};
use crate::provider::{Ledger, LedgerCounts};
use crate::vocabulary::Role;

impl Lab {
    /// The payment provider's base URL on 127.0.0.1.
    pub async fn provider_url(&self) -> Result<String, EnvError> {
        let port = self.node(Role::Provider)?.host_port().await?;
        Ok(format!("http://127.0.0.1:{port}"))
    }

    /// The provider's ledger now.
    pub async fn ledger(&self) -> Result<Ledger, EnvError> {
        self.provider_json("/v1/ledger").await
    }

    /// The ledger's counts now (what the observer reads once a second).
    pub async fn ledger_counts(&self) -> Result<LedgerCounts, EnvError> {
        self.provider_json("/v1/ledger/counts").await
    }

    /// Closes the provider's books: every authorisation and count forgotten, as at the start of a
    /// run. Between explore's trials, so each trial's ledger holds only its own payments.
    pub async fn close_books(&self) -> Result<(), EnvError> {
        let url = format!("{}/v1/ledger", self.provider_url().await?);
        let unreachable = |source| EnvError::Unreachable {
            role: Role::Provider,
            source,
        };
        let response = self.http().delete(url).send().await.map_err(unreachable)?;
        response.error_for_status().map_err(unreachable)?;
        Ok(())
    }

    /// A `GET` of the provider's that answers JSON.
    async fn provider_json<T: serde::de::DeserializeOwned>(&self, path: &str) -> Result<T, EnvError> {
        let url = format!("{}{path}", self.provider_url().await?);
        let unreachable = |source| EnvError::Unreachable {
            role: Role::Provider,
            source,
        };
        let response = self.http().get(url).send().await.map_err(unreachable)?;
        response
            .error_for_status()
            .map_err(unreachable)?
            .json()
            .await
            .map_err(unreachable)
    }

    /// Polls the provider's `/healthz` until it answers, or `deadline`.
    pub async fn wait_provider(&self, deadline: Duration) -> Result<(), EnvError> {
        let url = format!("{}/healthz", self.provider_url().await?);
        poll_until(Role::Provider, deadline, Duration::from_millis(100), || async {
            Ok(match self.http().get(&url).send().await {
                Ok(response) if response.status().is_success() => Look::Done(()),
                Ok(response) => Look::NotYet(response.status().to_string()),
                Err(error) => Look::NotYet(reference_service::error::cause_chain(&error)),
            })
        })
        .await
    }
}
