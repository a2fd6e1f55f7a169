//! HTTP faults, on a link that carries HTTP/1.1 (the payment provider's): protocol-aware faults, the
//! ones a TCP proxy cannot give. Behind the byte pump (so latency, reset and blackhole still apply to
//! the client's connection), each request is read as a request; an `http_status` fault that takes it
//! answers it with its status and never passes it on, an `http_delay` fault holds it before passing it
//! on, an `http_lost_reply` fault passes it on and answers its own status in place of the upstream's
//! reply, and the rest go to the upstream on a connection each. Which requests a fault with a `fraction`
//! takes is drawn from the proxy's seed and the request's number on the link, like connections.
//!
//! What it does not do: HTTP/2 (no `h2c` upgrade, no prior knowledge) and TLS (a client talking TLS
//! to the link gets a 400, its bytes are not HTTP). Both would need the proxy to speak them itself.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::io::DuplexStream;
use tokio::net::TcpStream;
use tokio::sync::watch;

use super::link::{Active, Counters};
use super::network_fault::FaultKind;

type Body = BoxBody<Bytes, hyper::Error>;

/// What the HTTP side of one link needs for every request.
#[derive(Debug)]
pub(super) struct HttpLayer {
    pub upstream: String,
    pub active: watch::Receiver<Arc<Active>>,
    pub seed: u64,
    pub connect_timeout: Duration,
    /// Requests seen on the link so far: the next one's number.
    pub requests: AtomicU64,
}

/// Why a request could not be passed on.
#[derive(Debug, thiserror::Error)]
enum PassError {
    #[error("could not connect to {0} in time")]
    ConnectTimeout(String),
    #[error("could not connect to the upstream")]
    Connect(#[source] std::io::Error),
    #[error("the upstream's HTTP failed")]
    Http(#[source] hyper::Error),
}

/// Serves HTTP/1.1 on `io` (the proxy's end of one client connection, after the byte pump) until
/// the client closes it.
pub(super) async fn serve(io: DuplexStream, layer: Arc<HttpLayer>) {
    let service = service_fn(move |request| {
        let layer = Arc::clone(&layer);
        async move { Ok::<_, Infallible>(layer.handle(request).await) }
    });
    let served = hyper::server::conn::http1::Builder::new()
        .serve_connection(TokioIo::new(io), service)
        .await;
    if let Err(error) = served {
        tracing::debug!(%error, "HTTP connection ended with an error");
    }
}

impl HttpLayer {
    async fn handle(&self, request: Request<Incoming>) -> Response<Body> {
        let active = Arc::clone(&self.active.borrow());
        let number = self.requests.fetch_add(1, Ordering::Relaxed);
        let counters = &active.counters;
        Counters::add(&counters.http_requests, 1);
        let takes = |kind| active.faults.takes(kind, self.seed, number);
        if let Some(status) = active.faults.http_status
            && takes(FaultKind::HttpStatus)
        {
            Counters::add(&counters.http_answered, 1);
            return answer(status, "answered by the fortress proxy's http_status fault");
        }
        if let Some(ms) = active.faults.http_delay
            && takes(FaultKind::HttpDelay)
        {
            Counters::add(&counters.http_delayed, 1);
            tokio::time::sleep(Duration::from_secs_f64(ms / 1000.0)).await;
        }
        let loses_reply = active
            .faults
            .http_lost_reply
            .filter(|_| takes(FaultKind::HttpLostReply));
        match self.pass_on(request).await {
            Ok(response) => match loses_reply {
                None => response,
                Some(status) => {
                    // The upstream has answered, so it acted on the request: only its reply is lost.
                    let _ = response.into_body().collect().await;
                    Counters::add(&counters.http_lost_replies, 1);
                    answer(
                        status,
                        "the upstream's reply was lost: answered by the fortress proxy's http_lost_reply fault",
                    )
                }
            },
            Err(error) => {
                Counters::add(&counters.upstream_unreachable, 1);
                let causes = std::iter::successors(Some(&error as &dyn std::error::Error), |e| e.source());
                let message = causes.map(ToString::to_string).collect::<Vec<_>>().join(": ");
                answer(StatusCode::BAD_GATEWAY.as_u16(), &message)
            }
        }
    }

    /// Sends `request` to the upstream on a new connection and answers its response, streamed.
    async fn pass_on(&self, request: Request<Incoming>) -> Result<Response<Body>, PassError> {
        let connect = TcpStream::connect(&self.upstream);
        let stream = tokio::time::timeout(self.connect_timeout, connect)
            .await
            .map_err(|_| PassError::ConnectTimeout(self.upstream.clone()))?
            .map_err(PassError::Connect)?;
        let _ = stream.set_nodelay(true);
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(PassError::Http)?;
        // Drives the upstream connection until the response's body has been read.
        tokio::spawn(connection);
        let response = sender.send_request(request).await.map_err(PassError::Http)?;
        Ok(response.map(BodyExt::boxed))
    }
}

/// A response of the proxy's own: `status` and a JSON body that says who answered.
fn answer(status: u16, message: &str) -> Response<Body> {
    let body = serde_json::json!({ "error": { "code": "fortress_proxy", "message": message } });
    let body = Full::new(Bytes::from(body.to_string()))
        .map_err(|never| match never {})
        .boxed();
    let mut response = Response::new(body);
    *response.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_GATEWAY);
    response.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json"),
    );
    response
}
