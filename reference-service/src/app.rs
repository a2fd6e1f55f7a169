//! The running service: its shared state, and how it starts and stops.
//!
//! `serve` is what the binary calls; `run` is the seam tests use (their own listener, their own shutdown
//! signal). Both stop the same way: stop accepting, let in-flight requests finish, and let the outbox
//! worker finish the batch it is in before it exits.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use subtle::ConstantTimeEq;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::auth::{PasswordChecks, TokenKeys};
use crate::cache::Cache;
use crate::config::{Config, ConfigError};
use crate::db::Db;
use crate::mail::Mailer;
use crate::metrics::Metrics;
use crate::modes::ModeSwitch;
use crate::outbox::{OutboxSettings, OutboxWorker};
use crate::payments::PaymentClient;
use crate::sessions::SessionStore;

/// How long `serve` keeps retrying migrations while Postgres is still starting.
const MIGRATION_DEADLINE: Duration = Duration::from_secs(60);

/// Everything a request handler may touch. Cheap to clone: every field is a handle.
#[derive(Debug, Clone)]
pub struct AppState {
    pub db: Db,
    pub cache: Cache,
    pub modes: ModeSwitch,
    pub metrics: Metrics,
    pub tokens: TokenKeys,
    /// Sessions kept by the service (`sessions = redis | memory`).
    pub sessions: SessionStore,
    pub outbox: OutboxSettings,
    /// Whether `run` starts the outbox worker in this process.
    pub outbox_worker: bool,
    /// The mail server the outbox sends confirmations to (`SMTP_ADDR`), if any.
    pub mailer: Option<Mailer>,
    /// The payment provider (`PAYMENTS_URL`), if checkouts take payments.
    pub payments: Option<PaymentClient>,
    /// The turns of order-history queries when `history_guard = bounded`.
    pub history_bulkhead: Arc<tokio::sync::Semaphore>,
    /// The turns argon2 checks take, one per core.
    pub password_checks: PasswordChecks,
    admin_token: Arc<str>,
}

/// Why the service could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("invalid configuration")]
    Config(#[from] ConfigError),
    #[error("invalid DATABASE_URL")]
    DatabaseUrl(#[source] sqlx::Error),
    #[error("invalid REDIS_URL")]
    RedisUrl(#[source] redis::RedisError),
    #[error("failed to apply the database migrations (is Postgres reachable at DATABASE_URL?)")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("failed to listen on {addr}")]
    Listen {
        addr: std::net::SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("the HTTP server failed")]
    Serve(#[source] std::io::Error),
}

impl AppState {
    /// Builds the state without waiting for Postgres or Redis: both connect lazily, so the service can
    /// start (and say so on `/readyz`) while a dependency is still down.
    pub fn connect(config: &Config) -> Result<Self, StartError> {
        config.validate()?;
        crate::auth::prepare_dummy_hash();
        let metrics = Metrics::new();
        let db = Db::connect_lazy(config, metrics.clone()).map_err(StartError::DatabaseUrl)?;
        let cache = Cache::new(
            &config.redis_url,
            config.redis_timeout(),
            config.cache_ttl(),
            metrics.clone(),
        )
        .map_err(StartError::RedisUrl)?;
        let payments = (config.payments_url.as_deref()).map(|url| PaymentClient::new(url, metrics.clone()));
        let password_checks = PasswordChecks::one_per_core(metrics.clone());
        Ok(Self {
            db,
            sessions: SessionStore::new(cache.connection()),
            cache,
            modes: ModeSwitch::default(),
            metrics,
            tokens: TokenKeys::new(
                config.jwt_secret.as_bytes(),
                Duration::from_secs(config.jwt_ttl_secs),
            ),
            outbox: OutboxSettings::from_config(config),
            outbox_worker: config.outbox_worker,
            mailer: config.smtp()?.map(|(host, port)| Mailer::new(&host, port)),
            payments,
            history_bulkhead: Arc::new(tokio::sync::Semaphore::new(crate::order_history::HISTORY_PERMITS)),
            password_checks,
            admin_token: Arc::from(config.admin_token.as_str()),
        })
    }

    /// Compares a presented admin token in constant time, so its length and prefix do not leak.
    pub fn is_admin_token(&self, presented: &str) -> bool {
        bool::from(presented.as_bytes().ct_eq(self.admin_token.as_bytes()))
    }

    pub fn outbox_worker(&self) -> OutboxWorker {
        OutboxWorker::new(
            self.db.clone(),
            self.modes.clone(),
            self.metrics.clone(),
            self.outbox.clone(),
            self.mailer.clone(),
        )
    }
}

/// Serves `state` on `listener` until `shutdown` completes, then drains: in-flight requests finish,
/// the outbox worker (if enabled) finishes its current batch.
pub async fn run(
    listener: TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), StartError> {
    let stop = CancellationToken::new();
    let worker = state
        .outbox_worker
        .then(|| tokio::spawn(state.outbox_worker().run(stop.clone())));
    let app = crate::http::router(state);
    let server_stop = stop.clone();
    let served = axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            tokio::select! {
                () = shutdown => tracing::info!("shutdown requested; draining in-flight requests"),
                () = server_stop.cancelled() => {}
            }
        })
        .await;
    stop.cancel();
    if let Some(worker) = worker
        && let Err(error) = worker.await
    {
        tracing::error!(%error, "outbox worker panicked");
    }
    tracing::info!("stopped");
    served.map_err(StartError::Serve)
}

/// Starts the service as configured: migrations (waiting for Postgres up to a minute), then `run`.
pub async fn serve(
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), StartError> {
    let state = AppState::connect(&config)?;
    state.db.migrate(MIGRATION_DEADLINE).await?;
    let listener = TcpListener::bind(config.listen_addr)
        .await
        .map_err(|source| StartError::Listen {
            addr: config.listen_addr,
            source,
        })?;
    tracing::info!(addr = %config.listen_addr, "listening");
    run(listener, state, shutdown).await
}
