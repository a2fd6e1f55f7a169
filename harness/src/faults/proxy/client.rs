//! The harness's side of the control API.

use serde::Deserialize;

use super::NetworkFault;

#[derive(Debug, Clone)]
pub struct ProxyClient {
    base: String,
    http: reqwest::Client,
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
    pub faults: Vec<NetworkFault>,
    pub evidence: super::Evidence,
}

impl ProxyClient {
    pub fn new(base: impl Into<String>, http: reqwest::Client) -> Self {
        Self {
            base: base.into(),
            http,
        }
    }

    async fn send(&self, request: reqwest::RequestBuilder) -> Result<serde_json::Value, String> {
        let response = request
            .send()
            .await
            .map_err(|e| format!("proxy control API: {e}"))?;
        let status = response.status();
        let body: serde_json::Value = response
            .json()
            .await
            .map_err(|e| format!("proxy control API: {e}"))?;
        if status.is_success() {
            Ok(body)
        } else {
            Err(body["error"]["message"]
                .as_str()
                .map_or_else(|| body.to_string(), str::to_owned))
        }
    }

    pub async fn link(&self, name: &str) -> Result<LinkState, String> {
        let body = self
            .send(self.http.get(format!("{}/links/{name}", self.base)))
            .await?;
        serde_json::from_value(body).map_err(|e| e.to_string())
    }

    pub async fn set(&self, name: &str, faults: &[NetworkFault]) -> Result<Changed, String> {
        let request = self
            .http
            .put(format!("{}/links/{name}", self.base))
            .json(&serde_json::json!({ "faults": faults }));
        serde_json::from_value(self.send(request).await?).map_err(|e| e.to_string())
    }

    pub async fn clear(&self, name: &str) -> Result<Changed, String> {
        let body = self
            .send(self.http.delete(format!("{}/links/{name}", self.base)))
            .await?;
        serde_json::from_value(body).map_err(|e| e.to_string())
    }
}
