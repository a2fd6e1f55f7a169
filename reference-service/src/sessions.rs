//! Server-side sessions, for `sessions = redis | memory`: an opaque id in a cookie, the user it stands
//! for kept in Redis or in this replica's memory.
//!
//! The id is 128 random bits (a v4 UUID), so it cannot be guessed; a lookup that finds nothing, or a
//! store that does not answer in time, is a 401 saying which (`session_unknown`,
//! `session_store_unavailable`), never a 500: the client can tell "log in again" from "try later".

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use redis::AsyncCommands;
use redis::aio::ConnectionManager;

use crate::error::ApiError;
use crate::modes::Sessions;

/// The cookie that carries the session id.
pub const COOKIE: &str = "fortress_session";
/// How long a session lives after its login.
const TTL: Duration = Duration::from_secs(3600);
/// How long a request waits for Redis to find its session before it is refused.
const STORE_DEADLINE: Duration = Duration::from_millis(250);

/// Both stores; the `sessions` mode says which one a login writes to and a request reads from.
#[derive(Clone)]
pub struct SessionStore {
    redis: ConnectionManager,
    memory: Arc<Mutex<HashMap<String, (i64, Instant)>>>,
}

impl std::fmt::Debug for SessionStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionStore").finish_non_exhaustive()
    }
}

fn redis_key(id: &str) -> String {
    format!("session:{id}")
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
}
