//! The harness's side of the control API.

use serde::Deserialize;

use super::{Evidence, ScopedFault};
use crate::env::target::lab::{TargetLab, TargetLabError};
use crate::env::{EnvError, Lab};

#[derive(Debug, Clone)]
pub struct ProxyClient {
    base: String,
    http: reqwest::Client,
}

#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    #[error(transparent)]
    Env(#[from] EnvError),
    #[error("the proxy's control API did not answer")]
    Unreachable(#[source] reqwest::Error),
    #[error("the proxy refused it ({status}): {message}")]
    Refused { status: u16, message: String },
}

/// The answer to a change: the link now, and the faults that just ended with their evidence.
#[derive(Debug, Clone, Deserialize)]
pub struct Changed {
    pub link: LinkState,
    pub previous: LinkState,
}

/// A link as the API reports it (the client-side mirror of `LinkReport`).
#[derive(Debug, Clone, Deserialize)]
pub struct LinkState {
    pub name: String,
    pub faults: Vec<ScopedFault>,
    pub evidence: Evidence,
    /// HTTP links: every request carried since the proxy started.
    #[serde(default)]
    pub http_requests_total: Option<u64>,
}

impl ProxyClient {
    pub fn new(base: impl Into<String>, http: reqwest::Client) -> Self {
        Self {
            base: base.into(),
            http,
        }
    }

    /// The control API of a lab's proxy, on 127.0.0.1.
    pub async fn of(lab: &Lab) -> Result<Self, ProxyError> {
        Ok(Self::new(lab.proxy_url().await?, lab.http().clone()))
    }

    /// The control API of a user's target's proxy, on 127.0.0.1.
    pub async fn of_target(lab: &TargetLab) -> Result<Self, TargetLabError> {
        Ok(Self::new(lab.proxy_url().await?, reqwest::Client::new()))
    }

    async fn send<T: serde::de::DeserializeOwned>(
        &self,
        request: reqwest::RequestBuilder,
    ) -> Result<T, ProxyError> {
        let response = request.send().await.map_err(ProxyError::Unreachable)?;
        let status = response.status();
        if status.is_success() {
            return response.json().await.map_err(ProxyError::Unreachable);
        }
        let body: serde_json::Value = response.json().await.map_err(ProxyError::Unreachable)?;
        Err(ProxyError::Refused {
            status: status.as_u16(),
            message: body["error"]["message"]
                .as_str()
                .map_or_else(|| body.to_string(), str::to_owned),
        })
    }

    /// A link by name: a lab's links are named after their `Link`, a proxy of your own's as you named them.
    pub async fn link(&self, link: impl std::fmt::Display) -> Result<LinkState, ProxyError> {
        self.send(self.http.get(format!("{}/links/{link}", self.base)))
            .await
    }

    /// Replaces the link's faults: network faults on every connection, or `ScopedFault`s on a share.
    pub async fn set<F: Clone + Into<ScopedFault>>(
        &self,
        link: impl std::fmt::Display,
        faults: &[F],
    ) -> Result<Changed, ProxyError> {
        let faults: Vec<ScopedFault> = faults.iter().cloned().map(Into::into).collect();
        let request = self
            .http
            .put(format!("{}/links/{link}", self.base))
            .json(&serde_json::json!({ "faults": faults }));
        self.send(request).await
    }

    pub async fn clear(&self, link: impl std::fmt::Display) -> Result<Changed, ProxyError> {
        self.send(self.http.delete(format!("{}/links/{link}", self.base)))
            .await
    }
}
