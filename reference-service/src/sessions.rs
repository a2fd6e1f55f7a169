//! Server-side sessions, for `sessions = redis | memory`: an opaque id in a cookie, the user it stands
//! for kept in Redis or in this replica's memory. And, for `sessions = jwt`, the revocation list a
//! logout writes to and a request may be checked against (`revocation`).
//!
//! The id is 128 random bits (a v4 UUID), so it cannot be guessed; a lookup that finds nothing, or a
//! store that does not answer in time, is a 401 saying which (`session_unknown`,
//! `session_store_unavailable`), never a 500: the client can tell "log in again" from "try later".

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use redis::AsyncCommands;
use redis::aio::ConnectionManager;

use crate::auth::{Verified, now_secs};
use crate::error::ApiError;
use crate::modes::{Revocation, Sessions};

/// The cookie that carries the session id.
pub const COOKIE: &str = "fortress_session";
/// How long a session lives after its login.
const TTL: Duration = Duration::from_secs(3600);
/// How long a request waits for Redis to find its session before it is refused.
const STORE_DEADLINE: Duration = Duration::from_millis(250);
/// How long a request waits for Redis to say whether its token was revoked, in `FailOpen`.
const REVOCATION_DEADLINE: Duration = Duration::from_millis(50);
/// How long an answer of the revocation list is remembered, in `FailOpen`.
const REVOCATION_MEMORY: Duration = Duration::from_secs(5);

/// Both stores; the `sessions` mode says which one a login writes to and a request reads from.
#[derive(Clone)]
pub struct SessionStore {
    redis: ConnectionManager,
    memory: Arc<Mutex<HashMap<String, (i64, Instant)>>>,
    /// Token id -> revoked, as Redis last said (`FailOpen`).
    revoked: moka::future::Cache<String, bool>,
}

impl std::fmt::Debug for SessionStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionStore").finish_non_exhaustive()
    }
}

fn redis_key(id: &str) -> String {
    format!("session:{id}")
}

fn revoked_key(token_id: &str) -> String {
    format!("revoked:{token_id}")
}

fn store_unavailable() -> ApiError {
    ApiError::unauthorized(
        "session_store_unavailable",
        "your session could not be checked right now; try again shortly",
    )
}

fn unknown() -> ApiError {
    ApiError::unauthorized(
        "session_unknown",
        "this session is not known here (expired, or logged out); log in again",
    )
}

impl SessionStore {
    pub fn new(redis: ConnectionManager) -> Self {
        Self {
            redis,
            memory: Arc::default(),
            revoked: moka::future::Cache::builder()
                .max_capacity(100_000)
                .time_to_live(REVOCATION_MEMORY)
                .build(),
        }
    }

    /// Starts a session for `user_id` in the store `kind` names, and answers its id. A login whose
    /// session cannot be stored is a 503: nothing is wrong with the credentials.
    pub async fn create(&self, kind: Sessions, user_id: i64) -> Result<String, ApiError> {
        let id = uuid::Uuid::new_v4().simple().to_string();
        match kind {
            Sessions::Jwt => return Err(ApiError::Internal("no session store in jwt mode".into())),
            Sessions::Memory => {
                let mut memory = self.memory.lock().unwrap_or_else(|p| p.into_inner());
                let now = Instant::now();
                memory.retain(|_, (_, expires)| *expires > now);
                memory.insert(id.clone(), (user_id, now + TTL));
            }
            Sessions::Redis => {
                let mut redis = self.redis.clone();
                let set = redis.set_ex::<_, _, ()>(redis_key(&id), user_id, TTL.as_secs());
                match tokio::time::timeout(STORE_DEADLINE, set).await {
                    Ok(Ok(())) => {}
                    _ => {
                        return Err(ApiError::Rejected {
                            status: axum::http::StatusCode::SERVICE_UNAVAILABLE,
                            code: "session_store_unavailable",
                            message: "logging in is not possible right now; try again shortly".into(),
                        });
                    }
                }
            }
        }
        Ok(id)
    }

    /// The user a session id stands for, looked up in the store `kind` names.
    pub async fn find(&self, kind: Sessions, id: &str) -> Result<i64, ApiError> {
        match kind {
            Sessions::Jwt => Err(unknown()),
            Sessions::Memory => {
                let memory = self.memory.lock().unwrap_or_else(|p| p.into_inner());
                match memory.get(id) {
                    Some(&(user_id, expires)) if expires > Instant::now() => Ok(user_id),
                    _ => Err(unknown()),
                }
            }
            Sessions::Redis => {
                let mut redis = self.redis.clone();
                let get = redis.get::<_, Option<i64>>(redis_key(id));
                match tokio::time::timeout(STORE_DEADLINE, get).await {
                    Ok(Ok(Some(user_id))) => Ok(user_id),
                    Ok(Ok(None)) => Err(unknown()),
                    Ok(Err(error)) => {
                        tracing::warn!(%error, "the session store failed a lookup");
                        Err(store_unavailable())
                    }
                    Err(_) => {
                        tracing::warn!(deadline = ?STORE_DEADLINE, "the session store did not answer in time");
                        Err(store_unavailable())
                    }
                }
            }
        }
    }

    /// Ends the session `id` (a logout): gone from memory or from Redis.
    pub async fn end(&self, kind: Sessions, id: &str) -> Result<(), ApiError> {
        match kind {
            Sessions::Jwt => Err(unknown()),
            Sessions::Memory => {
                let mut memory = self.memory.lock().unwrap_or_else(|p| p.into_inner());
                memory.remove(id).map(|_| ()).ok_or_else(unknown)
            }
            Sessions::Redis => {
                let mut redis = self.redis.clone();
                let del = redis.del::<_, u32>(redis_key(id));
                match tokio::time::timeout(STORE_DEADLINE, del).await {
                    Ok(Ok(_)) => Ok(()),
                    _ => Err(store_unavailable()),
                }
            }
        }
    }

    /// Puts a token on the revocation list until it expires (a logout in `sessions = jwt`).
    pub async fn revoke(&self, token: &Verified) -> Result<(), ApiError> {
        let seconds = token.expires.saturating_sub(now_secs()).max(1);
        let mut redis = self.redis.clone();
        let set = redis.set_ex::<_, _, ()>(revoked_key(&token.token_id), 1, seconds);
        match tokio::time::timeout(STORE_DEADLINE, set).await {
            Ok(Ok(())) => {
                self.revoked.insert(token.token_id.clone(), true).await;
                Ok(())
            }
            _ => Err(ApiError::Rejected {
                status: axum::http::StatusCode::SERVICE_UNAVAILABLE,
                code: "session_store_unavailable",
                message: "logging out is not possible right now; try again shortly".into(),
            }),
        }
    }

    /// Whether a valid token may be used, as `policy` says: a revoked one is a 401 `token_revoked`.
    pub async fn check_revocation(&self, token: &Verified, policy: Revocation) -> Result<(), ApiError> {
        let revoked = match policy {
            Revocation::Off => false,
            Revocation::FailClosed => match self.ask_revoked(&token.token_id, STORE_DEADLINE).await {
                Some(revoked) => revoked,
                None => return Err(store_unavailable()),
            },
            Revocation::FailOpen => match self.revoked.get(&token.token_id).await {
                Some(revoked) => revoked,
                None => match self.ask_revoked(&token.token_id, REVOCATION_DEADLINE).await {
                    Some(revoked) => {
                        self.revoked.insert(token.token_id.clone(), revoked).await;
                        revoked
                    }
                    // Redis cannot say: the signature alone decides, and nothing is remembered, so
                    // the list is asked again as soon as Redis is back.
                    None => false,
                },
            },
        };
        if revoked {
            return Err(ApiError::unauthorized(
                "token_revoked",
                "this token was logged out; log in again",
            ));
        }
        Ok(())
    }

    /// Asks Redis whether a token is on the list; `None` when it does not answer within `deadline`.
    async fn ask_revoked(&self, token_id: &str, deadline: Duration) -> Option<bool> {
        let mut redis = self.redis.clone();
        let exists = redis.exists::<_, bool>(revoked_key(token_id));
        match tokio::time::timeout(deadline, exists).await {
            Ok(Ok(revoked)) => Some(revoked),
            Ok(Err(error)) => {
                tracing::warn!(%error, "the revocation list could not be read");
                None
            }
            Err(_) => {
                tracing::warn!(?deadline, "the revocation list did not answer in time");
                None
            }
        }
    }
}
