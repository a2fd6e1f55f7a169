//! Service configuration, read from the environment (or flags) and validated before anything starts.
//!
//! Every knob has a default that suits a laptop; a bad value stops the service at start with a message
//! naming the variable, never halfway through a request.

use std::net::SocketAddr;
use std::time::Duration;

use clap::Args;

/// Everything the service needs to run. `--help` on the binary lists each field with its variable.
#[derive(Debug, Clone, Args)]
pub struct Config {
    /// Address to listen on.
    #[arg(long, env = "LISTEN_ADDR", default_value = "127.0.0.1:8080")]
    pub listen_addr: SocketAddr,

    /// Postgres connection URL.
    #[arg(
        long,
        env = "DATABASE_URL",
        default_value = "postgres://postgres:postgres@127.0.0.1:5432/shop"
    )]
    pub database_url: String,

    /// Redis connection URL.
    #[arg(long, env = "REDIS_URL", default_value = "redis://127.0.0.1:6379")]
    pub redis_url: String,

    /// Size of the Postgres connection pool.
    #[arg(long, env = "DB_POOL_SIZE", default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..=500))]
    pub db_pool_size: u32,

    /// How long a request waits for a pooled connection before it gets a 503, in milliseconds.
    #[arg(long, env = "DB_ACQUIRE_TIMEOUT_MS", default_value_t = 2_000, value_parser = clap::value_parser!(u64).range(1..=600_000))]
    pub db_acquire_timeout_ms: u64,

    /// Deadline on every Redis call in the `breaker` cache-failure mode, in milliseconds.
    #[arg(long, env = "REDIS_TIMEOUT_MS", default_value_t = 50, value_parser = clap::value_parser!(u64).range(1..=60_000))]
    pub redis_timeout_ms: u64,

    /// Time to live of cached product and availability entries in Redis, in seconds.
    #[arg(long, env = "CACHE_TTL_SECS", default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub cache_ttl_secs: u64,

    /// Secret used to sign the JWTs handed out by `/auth/login` (at least 16 bytes).
    #[arg(
        long,
        env = "JWT_SECRET",
        default_value = "fortress-dev-secret-change-me",
        hide_env_values = true
    )]
    pub jwt_secret: String,

    /// Lifetime of a login token, in seconds.
    #[arg(long, env = "JWT_TTL_SECS", default_value_t = 3_600, value_parser = clap::value_parser!(u64).range(1..=604_800))]
    pub jwt_ttl_secs: u64,

    /// Token for `/admin/*`, sent as `Authorization: Bearer <token>` (at least 8 bytes).
    #[arg(
        long,
        env = "ADMIN_TOKEN",
        default_value = "fortress-admin",
        hide_env_values = true
    )]
    pub admin_token: String,

    /// Run the outbox worker inside this process.
    #[arg(long, env = "OUTBOX_WORKER", default_value_t = true, action = clap::ArgAction::Set)]
    pub outbox_worker: bool,

    /// Outbox events relayed per batch: claimed in one transaction, their emails sent at once. The
    /// most a Postgres failure before the batch's commit sends twice.
    #[arg(long, env = "OUTBOX_BATCH_SIZE", default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=64))]
    pub outbox_batch_size: u32,

    /// Delivery attempts before an outbox event is dead-lettered.
    #[arg(long, env = "OUTBOX_MAX_ATTEMPTS", default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..=100))]
    pub outbox_max_attempts: u32,

    /// First retry delay of a failed delivery, in milliseconds; it doubles with every attempt (capped at 60 s).
    #[arg(long, env = "OUTBOX_RETRY_BASE_MS", default_value_t = 500, value_parser = clap::value_parser!(u64).range(1..=60_000))]
    pub outbox_retry_base_ms: u64,

    /// How often an idle outbox worker looks for new events, in milliseconds.
    #[arg(long, env = "OUTBOX_POLL_MS", default_value_t = 200, value_parser = clap::value_parser!(u64).range(10..=60_000))]
    pub outbox_poll_ms: u64,

    /// The mail server for confirmation emails, `host:port` (plain SMTP). Without one, the outbox only
    /// records each email in the `emails` table.
    #[arg(long, env = "SMTP_ADDR")]
    pub smtp_addr: Option<String>,

    /// The payment provider's base URL (`http://host:port`). With one, every checkout has its payment
    /// authorised before its order is confirmed (mode `payments`); without, checkouts take no payment.
    #[arg(long, env = "PAYMENTS_URL")]
    pub payments_url: Option<String>,

    /// Log format: `json` (one object per line) or `pretty`.
    #[arg(long, env = "LOG_FORMAT", default_value = "json", value_parser = ["json", "pretty"])]
    pub log_format: String,
}

/// A configuration value that parses but cannot work.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("JWT_SECRET must be at least 16 bytes long (got {0})")]
    JwtSecretTooShort(usize),
    #[error("ADMIN_TOKEN must be at least 8 bytes long (got {0})")]
    AdminTokenTooShort(usize),
    #[error("DATABASE_URL must start with postgres:// or postgresql:// (got {0:?})")]
    DatabaseUrl(String),
    #[error("REDIS_URL must start with redis:// (got {0:?})")]
    RedisUrl(String),
    #[error("SMTP_ADDR must be host:port (got {0:?})")]
    SmtpAddr(String),
    #[error("PAYMENTS_URL must start with http:// (got {0:?})")]
    PaymentsUrl(String),
}

impl Config {
    /// Checks what clap cannot: lengths of secrets and URL schemes.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.jwt_secret.len() < 16 {
            return Err(ConfigError::JwtSecretTooShort(self.jwt_secret.len()));
        }
        if self.admin_token.len() < 8 {
            return Err(ConfigError::AdminTokenTooShort(self.admin_token.len()));
        }
        if !(self.database_url.starts_with("postgres://") || self.database_url.starts_with("postgresql://")) {
            return Err(ConfigError::DatabaseUrl(self.database_url.clone()));
        }
        if !self.redis_url.starts_with("redis://") {
            return Err(ConfigError::RedisUrl(self.redis_url.clone()));
        }
        self.smtp()?;
        if let Some(url) = &self.payments_url
            && !url.starts_with("http://")
        {
            return Err(ConfigError::PaymentsUrl(url.clone()));
        }
        Ok(())
    }

    /// The mail server's host and port, if there is one.
    pub fn smtp(&self) -> Result<Option<(String, u16)>, ConfigError> {
        let Some(addr) = &self.smtp_addr else {
            return Ok(None);
        };
        let invalid = || ConfigError::SmtpAddr(addr.clone());
        let (host, port) = addr.rsplit_once(':').ok_or_else(invalid)?;
        let port = port.parse().map_err(|_| invalid())?;
        if host.is_empty() {
            return Err(invalid());
        }
        Ok(Some((host.to_owned(), port)))
    }

    pub fn redis_timeout(&self) -> Duration {
        Duration::from_millis(self.redis_timeout_ms)
    }

    pub fn cache_ttl(&self) -> Duration {
        Duration::from_secs(self.cache_ttl_secs)
    }

    /// A configuration for tests and embedding: defaults with the given URLs.
    pub fn for_urls(database_url: &str, redis_url: &str) -> Self {
        use clap::Parser;
        #[derive(Parser)]
        struct Wrapper {
            #[command(flatten)]
            config: Config,
        }
        let mut config = Wrapper::parse_from(["reference-service"]).config;
        config.database_url = database_url.to_owned();
        config.redis_url = redis_url.to_owned();
        config
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_mail_server_is_host_and_port_or_a_clear_error() {
        let mut config = Config::for_urls("postgres://db/shop", "redis://cache");
        assert_eq!(config.smtp().unwrap(), None);
        config.smtp_addr = Some("fortress-x-proxy:25".into());
        assert_eq!(config.smtp().unwrap(), Some(("fortress-x-proxy".to_owned(), 25)));
        for bad in ["mail", ":25", "mail:smtp", "mail:70000"] {
            config.smtp_addr = Some(bad.into());
            let error = config.validate().unwrap_err().to_string();
            assert_eq!(error, format!("SMTP_ADDR must be host:port (got {bad:?})"));
        }
    }
}
