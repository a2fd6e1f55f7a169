//! Cache-aside reads through Redis, and what happens when Redis fails.
//!
//! `fallthrough` is the code most services ship: try Redis with the client library's defaults, and on
//! any error ask Postgres, so a dead cache turns every read into a database read. `breaker` is the
//! defence: our own short deadline on every Redis call, a circuit breaker that stops calling a dead
//! Redis, and a small in-process cache whose loads are single-flight (one database read per key at a
//! time, however many requests want it), so the database load during an outage is bounded by the
//! number of hot keys, not by the request rate.

mod key_locks;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use redis::AsyncCommands;
use redis::aio::ConnectionManager;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::breaker::Call;
pub use crate::breaker::{BreakerState, CircuitBreaker};
pub use key_locks::KeyLocks;

use crate::error::ApiError;
use crate::metrics::Metrics;
use crate::modes::{CacheFailure, CacheMode, CacheRefill, Modes};

/// How long an entry lives in the in-process cache of the `breaker` mode.
const LOCAL_TTL: Duration = Duration::from_secs(1);
/// Consecutive Redis failures that open the breaker.
const BREAKER_THRESHOLD: u32 = 5;
/// How long an open breaker skips Redis before it lets a probe through. The first probe after Redis
/// returns usually fails on the dead connection and makes the client reconnect; the next one gets
/// through, so the cache is back within about two cool-downs of Redis.
const BREAKER_COOL_DOWN: Duration = Duration::from_millis(500);

/// The outcome of one cached read, as counted in `fortress_cache_requests_total{outcome}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Hit,
    Miss,
    Error,
    /// Redis was not asked: the breaker is open, or the cache is off.
    Bypass,
}

impl Outcome {
    fn label(self) -> &'static str {
        match self {
            Self::Hit => "hit",
            Self::Miss => "miss",
            Self::Error => "error",
            Self::Bypass => "bypass",
        }
    }
}

/// Which parts of the `breaker` read are on: each can be switched off alone (the `cache_*` part
/// modes), to show what that part holds up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct CacheGuards {
    deadline: bool,
    breaker: bool,
    local: bool,
}

impl CacheGuards {
    fn of(modes: &Modes) -> Self {
        Self {
            deadline: modes.cache_deadline.is_on(),
            breaker: modes.cache_breaker.is_on(),
            local: modes.cache_local.is_on(),
        }
    }
}

/// What asking Redis for a key gave.
enum Asked {
    Found(String),
    Missing,
    /// It failed or (with the deadline on) did not answer in time.
    Failed,
    /// The open breaker skipped it.
    Skipped,
}

#[derive(Clone)]
pub struct Cache {
    redis: ConnectionManager,
    breaker: Arc<CircuitBreaker>,
    local: moka::future::Cache<String, Arc<str>>,
    deadline: Duration,
    ttl: Duration,
    /// One refill per key at a time, in `CacheRefill::Coalesced`.
    refills: KeyLocks,
    metrics: Metrics,
}

impl std::fmt::Debug for Cache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cache")
            .field("breaker", &self.breaker.state())
            .finish_non_exhaustive()
    }
}

impl Cache {
    /// Connects lazily: the service starts, degraded, while Redis is down, and reconnects by itself.
    pub fn new(
        redis_url: &str,
        deadline: Duration,
        ttl: Duration,
        metrics: Metrics,
    ) -> Result<Self, redis::RedisError> {
        let client = redis::Client::open(redis_url)?;
        let config = redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(1)))
            .set_number_of_retries(1);
        let redis = ConnectionManager::new_lazy_with_config(client, config)?;
        Ok(Self {
            redis,
            breaker: Arc::new(CircuitBreaker::new(BREAKER_THRESHOLD, BREAKER_COOL_DOWN)),
            local: moka::future::Cache::builder()
                .max_capacity(10_000)
                .time_to_live(LOCAL_TTL)
                .build(),
            deadline,
            ttl,
            refills: KeyLocks::default(),
            metrics,
        })
    }

    fn count(&self, outcome: Outcome) {
        self.metrics
            .cache_requests
            .with_label_values(&[outcome.label()])
            .inc();
    }

    pub fn breaker_state(&self) -> BreakerState {
        self.breaker.state()
    }

    /// The connection to Redis, for the other things kept there (sessions).
    pub fn connection(&self) -> ConnectionManager {
        self.redis.clone()
    }

    /// Answers whether Redis responds to PING within `deadline`.
    pub async fn ping(&self, deadline: Duration) -> bool {
        let mut redis = self.redis.clone();
        let ping = async move { redis::cmd("PING").query_async::<String>(&mut redis).await };
        matches!(tokio::time::timeout(deadline, ping).await, Ok(Ok(_)))
    }

    /// Reads `key` through the cache as the current modes say, loading it with `load` on a miss.
    pub async fn read_through<T, F, Fut>(&self, modes: &Modes, key: &str, load: F) -> Result<T, ApiError>
    where
        T: Serialize + DeserializeOwned,
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, ApiError>>,
    {
        match (modes.cache, modes.cache_failure) {
            (CacheMode::Off, _) => {
                self.count(Outcome::Bypass);
                load().await
            }
            (CacheMode::Aside, CacheFailure::Fallthrough) => {
                self.read_fallthrough(modes.cache_refill, key, load).await
            }
            (CacheMode::Aside, CacheFailure::Breaker) => {
                self.read_guarded(CacheGuards::of(modes), key, load).await
            }
        }
    }

    /// The naive read: any Redis failure, however slow, falls through to the database. A miss is
    /// loaded by every reader (`Naive`) or by one reader per key while the rest wait (`Coalesced`).
    async fn read_fallthrough<T, F, Fut>(
        &self,
        refill: CacheRefill,
        key: &str,
        load: F,
    ) -> Result<T, ApiError>
    where
        T: Serialize + DeserializeOwned,
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, ApiError>>,
    {
        let mut redis = self.redis.clone();
        let found = redis.get::<_, Option<String>>(key).await;
        if let Ok(Some(cached)) = &found
            && let Ok(value) = serde_json::from_str(cached)
        {
            self.count(Outcome::Hit);
            return Ok(value);
        }
        let _refilling = match found {
            Ok(_) if refill == CacheRefill::Coalesced => {
                let guard = self.refills.lock(key).await;
                // Whoever held the lock before may have filled the key meanwhile.
                if let Ok(Some(cached)) = redis.get::<_, Option<String>>(key).await
                    && let Ok(value) = serde_json::from_str(&cached)
                {
                    self.count(Outcome::Hit);
                    return Ok(value);
                }
                self.count(Outcome::Miss);
                Some(guard)
            }
            Ok(_) => {
                self.count(Outcome::Miss);
                None
            }
            Err(error) => {
                self.count(Outcome::Error);
                tracing::warn!(%error, key, "redis read failed; reading from postgres");
                None
            }
        };
        let value = load().await?;
        let encoded = encode(&value)?;
        let ttl = match refill {
            CacheRefill::Coalesced => jittered(self.ttl),
            CacheRefill::Naive => self.ttl,
        };
        if let Err(error) = redis.set_ex::<_, _, ()>(key, encoded, ttl.as_secs().max(1)).await {
            tracing::warn!(%error, key, "redis write failed");
        }
        Ok(value)
    }

    /// The defended read: deadline, breaker, then a single-flight local cache in front of the database;
    /// each part on unless `guards` switches it off.
    async fn read_guarded<T, F, Fut>(&self, guards: CacheGuards, key: &str, load: F) -> Result<T, ApiError>
    where
        T: Serialize + DeserializeOwned,
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, ApiError>>,
    {
        let redis_up = match self.ask(guards, key).await {
            Asked::Found(cached) => match serde_json::from_str(&cached) {
                Ok(value) => {
                    self.count(Outcome::Hit);
                    return Ok(value);
                }
                Err(_) => true,
            },
            Asked::Missing => true,
            Asked::Failed | Asked::Skipped => false,
        };
        if redis_up {
            self.count(Outcome::Miss);
        }
        let encoded: Arc<str> = match guards.local {
            true => self
                .local
                .try_get_with(key.to_owned(), async move {
                    load().await.and_then(|v| encode(&v)).map(Arc::from)
                })
                .await
                .map_err(|shared: Arc<ApiError>| shared_error(&shared))?,
            false => Arc::from(encode(&load().await?)?),
        };
        if redis_up {
            self.write_guarded(guards, key, &encoded).await;
        }
        serde_json::from_str(&encoded).map_err(|e| ApiError::Internal(format!("cached value for {key}: {e}")))
    }

    /// Asks Redis for `key` if the breaker (when on) lets the call through, within the deadline (when
    /// on); a failure or a skip is counted here.
    async fn ask(&self, guards: CacheGuards, key: &str) -> Asked {
        let call = match guards.breaker {
            true => match self.breaker.allow() {
                Some(call) => Some(call),
                None => {
                    self.count(Outcome::Bypass);
                    return Asked::Skipped;
                }
            },
            false => None,
        };
        let mut redis = self.redis.clone();
        let found = self.within(guards, redis.get::<_, Option<String>>(key)).await;
        match found {
            Some(found) => {
                report(call, true);
                found.map_or(Asked::Missing, Asked::Found)
            }
            None => {
                report(call, false);
                self.count(Outcome::Error);
                Asked::Failed
            }
        }
    }

    /// `call`'s answer, or `None` when it failed or (with the deadline on) took longer than it.
    async fn within<T>(
        &self,
        guards: CacheGuards,
        call: impl Future<Output = redis::RedisResult<T>>,
    ) -> Option<T> {
        let answered = match guards.deadline {
            true => tokio::time::timeout(self.deadline, call).await.ok()?,
            false => call.await,
        };
        answered.ok()
    }

    /// Writes `key` to Redis if the breaker (when on) lets a call through, within the deadline (when on).
    async fn write_guarded(&self, guards: CacheGuards, key: &str, encoded: &str) {
        let call = match guards.breaker {
            true => match self.breaker.allow() {
                Some(call) => Some(call),
                None => return,
            },
            false => None,
        };
        let mut redis = self.redis.clone();
        let write = redis.set_ex::<_, _, ()>(key, encoded, self.ttl.as_secs());
        let written = self.within(guards, write).await.is_some();
        report(call, written);
    }

    /// Replaces a cached value after a write committed (checkout updating availability).
    pub async fn refresh<T: Serialize>(&self, modes: &Modes, key: &str, value: &T) {
        self.local.invalidate(key).await;
        if modes.cache == CacheMode::Off {
            return;
        }
        let Ok(encoded) = encode(value) else { return };
        match modes.cache_failure {
            CacheFailure::Breaker => self.write_guarded(CacheGuards::of(modes), key, &encoded).await,
            CacheFailure::Fallthrough => {
                let mut redis = self.redis.clone();
                if let Err(error) = redis.set_ex::<_, _, ()>(key, encoded, self.ttl.as_secs()).await {
                    tracing::warn!(%error, key, "redis write failed");
                }
            }
        }
    }

    /// Drops every cached entry, in Redis and locally (used when the data set is reseeded).
    pub async fn clear(&self) -> Result<(), redis::RedisError> {
        self.local.invalidate_all();
        let mut redis = self.redis.clone();
        redis::cmd("FLUSHDB").query_async::<()>(&mut redis).await
    }
}

/// Tells the breaker, if it let the call through, how the call went.
fn report(call: Option<Call<'_>>, succeeded: bool) {
    match (call, succeeded) {
        (Some(call), true) => call.succeeded(),
        (Some(call), false) => call.failed(),
        (None, _) => {}
    }
}

/// `ttl` give or take a fifth, at random: keys written in the same second expire over a spread of
/// seconds instead of all at once.
fn jittered(ttl: Duration) -> Duration {
    use rand::Rng;
    ttl.mul_f64(rand::rng().random_range(0.8..=1.2))
}

fn encode<T: Serialize>(value: &T) -> Result<String, ApiError> {
    serde_json::to_string(value).map_err(|e| ApiError::Internal(format!("cannot encode cached value: {e}")))
}

/// Single-flight shares one load's error among all waiters; each gets its own copy with the same meaning.
fn shared_error(error: &ApiError) -> ApiError {
    match error {
        ApiError::NotFound(what) => ApiError::NotFound(what),
        ApiError::DatabaseUnavailable(e) => {
            ApiError::DatabaseUnavailable(sqlx::Error::Protocol(e.to_string()))
        }
        other => ApiError::Internal(other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::modes::ModesPatch;

    /// A "Redis" that takes connections and never answers: every call waits until its deadline.
    async fn silent_redis() -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((socket, _)) = listener.accept().await {
                held.push(socket);
            }
        });
        format!("redis://{address}")
    }

    fn asked(cache: &Cache, outcome: Outcome) -> u64 {
        (cache.metrics.cache_requests)
            .with_label_values(&[outcome.label()])
            .get()
    }

    /// A read whose request is cancelled while it is the breaker's probe (the client went away)
    /// must not leave the breaker skipping Redis for good.
    #[tokio::test]
    async fn a_read_cancelled_during_the_probe_leaves_the_breaker_probing() {
        let deadline = Duration::from_millis(100);
        let cache = Cache::new(
            &silent_redis().await,
            deadline,
            Duration::from_secs(10),
            Metrics::new(),
        )
        .unwrap();
        let modes = Modes::default();
        let read = || cache.read_through(&modes, "product:1", || async { Ok(1_u32) });
        for _ in 0..BREAKER_THRESHOLD {
            read().await.unwrap();
        }
        assert_eq!(cache.breaker_state(), BreakerState::Open, "Redis never answered");
        tokio::time::sleep(BREAKER_COOL_DOWN + deadline).await;
        let cancelled = tokio::time::timeout(deadline / 5, read()).await;
        assert!(
            cancelled.is_err(),
            "the probe waits on the silent Redis until cancelled"
        );

        tokio::time::sleep(BREAKER_COOL_DOWN + deadline).await;
        let errors = asked(&cache, Outcome::Error);
        read().await.unwrap();
        assert_eq!(
            asked(&cache, Outcome::Error),
            errors + 1,
            "after a cool-down the next read asks Redis again (bypassed: {})",
            asked(&cache, Outcome::Bypass)
        );
    }

    /// A cache of a Redis that never answers, with a 20 ms deadline, and modes with part `off` off.
    async fn silent_cache_without(off: Option<&str>) -> (Cache, Modes) {
        let cache = Cache::new(
            &silent_redis().await,
            Duration::from_millis(20),
            Duration::from_secs(10),
            Metrics::new(),
        )
        .unwrap();
        let mut modes = Modes::default();
        if let Some(off) = off {
            let patch: ModesPatch = serde_json::from_str(&format!(r#"{{"{off}":"off"}}"#)).unwrap();
            patch.apply(&mut modes).unwrap();
        }
        (cache, modes)
    }

    /// Ten reads of one key against a Redis that never answers, with part `off` switched off: what
    /// was asked of Redis (errors), skipped (bypasses) and loaded from the database.
    async fn ten_reads_without(off: Option<&str>) -> (u64, u64, u32) {
        use std::sync::atomic::{AtomicU32, Ordering::SeqCst};
        let (cache, modes) = silent_cache_without(off).await;
        let loads = AtomicU32::new(0);
        for _ in 0..10 {
            let load = || async {
                loads.fetch_add(1, SeqCst);
                Ok(1_u32)
            };
            tokio::time::timeout(
                Duration::from_secs(5),
                cache.read_through(&modes, "product:1", load),
            )
            .await
            .expect("a read with the deadline on ends")
            .unwrap();
        }
        let asked = |outcome| asked(&cache, outcome);
        (asked(Outcome::Error), asked(Outcome::Bypass), loads.load(SeqCst))
    }

    #[tokio::test]
    async fn each_part_of_the_breaker_read_switched_off_alone_changes_what_it_holds_back() {
        // All on: 5 failures open the breaker, the other 5 reads skip Redis; one database load,
        // shared through the local cache.
        assert_eq!(ten_reads_without(None).await, (5, 5, 1));
        assert_eq!(
            ten_reads_without(Some("cache_breaker")).await,
            (10, 0, 1),
            "every read asks"
        );
        assert_eq!(
            ten_reads_without(Some("cache_local")).await,
            (5, 5, 10),
            "every read loads"
        );

        let (cache, modes) = silent_cache_without(Some("cache_deadline")).await;
        let read = cache.read_through(&modes, "product:1", || async { Ok(1_u32) });
        let waited = tokio::time::timeout(Duration::from_millis(500), read).await;
        assert!(
            waited.is_err(),
            "without the deadline a read waits on the silent Redis"
        );
    }
}
