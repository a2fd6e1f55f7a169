//! Who is buying: password login (argon2 hashes) and the JWTs that stand for a logged-in user.

use std::sync::Arc;
use std::time::Duration;

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use crate::seed::PasswordCost;

use crate::db::Db;
use crate::error::ApiError;
use crate::metrics::Metrics;
use crate::modes::LoginTiming;

#[derive(Debug, Serialize, Deserialize)]
pub struct Claims {
    /// The user id.
    pub sub: String,
    pub iat: u64,
    pub exp: u64,
    /// The token's own id: what a logout puts on the revocation list.
    #[serde(default)]
    pub jti: String,
}

/// What a valid token says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    pub user_id: i64,
    pub token_id: String,
    /// Expiry, in seconds since the Unix epoch.
    pub expires: u64,
}

/// Signs and checks login tokens (HS256).
#[derive(Clone)]
pub struct TokenKeys {
    encoding: EncodingKey,
    decoding: DecodingKey,
    ttl: Duration,
}

impl std::fmt::Debug for TokenKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenKeys")
            .field("ttl", &self.ttl)
            .finish_non_exhaustive()
    }
}

pub fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl TokenKeys {
    pub fn new(secret: &[u8], ttl: Duration) -> Self {
        Self {
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
            ttl,
        }
    }

    pub fn issue(&self, user_id: i64) -> Result<String, ApiError> {
        let iat = now_secs();
        let claims = Claims {
            sub: user_id.to_string(),
            iat,
            exp: iat + self.ttl.as_secs(),
            jti: uuid::Uuid::new_v4().simple().to_string(),
        };
        jsonwebtoken::encode(&Header::default(), &claims, &self.encoding)
            .map_err(|e| ApiError::Internal(format!("cannot sign token: {e}")))
    }

    /// The user id a token stands for, or why it does not stand for anyone.
    pub fn verify(&self, token: &str) -> Result<i64, ApiError> {
        self.verify_token(token).map(|v| v.user_id)
    }

    /// What a token says (its user, id and expiry), or why it does not stand for anyone.
    pub fn verify_token(&self, token: &str) -> Result<Verified, ApiError> {
        let mut validation = Validation::default();
        validation.leeway = 0;
        let data = jsonwebtoken::decode::<Claims>(token, &self.decoding, &validation).map_err(|e| match e
            .kind()
        {
            ErrorKind::ExpiredSignature => ApiError::unauthorized("token_expired", "the token has expired"),
            _ => ApiError::unauthorized("invalid_token", "the token is not valid"),
        })?;
        let user_id = data
            .claims
            .sub
            .parse()
            .map_err(|_| ApiError::unauthorized("invalid_token", "the token is not valid"))?;
        Ok(Verified {
            user_id,
            token_id: data.claims.jti,
            expires: data.claims.exp,
        })
    }
}

/// Hashes a password with argon2id and a salt derived from `salt_seed` (deterministic for seeding).
pub fn hash_password(password: &str, salt_seed: &[u8]) -> Result<String, ApiError> {
    hash_password_at(password, salt_seed, PasswordCost::Standard)
}

/// [`hash_password`] at the cost the seed asks for.
pub fn hash_password_at(password: &str, salt_seed: &[u8], cost: PasswordCost) -> Result<String, ApiError> {
    let salt = SaltString::encode_b64(salt_seed).map_err(|e| ApiError::Internal(format!("salt: {e}")))?;
    let params = match cost {
        PasswordCost::Standard => argon2::Params::default(),
        PasswordCost::Light => argon2::Params::new(argon2::Params::MIN_M_COST, 1, 1, None)
            .map_err(|e| ApiError::Internal(format!("argon2 parameters: {e}")))?,
    };
    Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params)
        .hash_password(password.as_bytes(), &salt)
        .map(|hash| hash.to_string())
        .map_err(|e| ApiError::Internal(format!("cannot hash password: {e}")))
}

/// The hash an unknown email's password is checked against in `LoginTiming::Constant`: made once,
/// with the same argon2 parameters as every user's, so checking against it costs the same work.
static DUMMY_HASH: std::sync::LazyLock<Option<String>> =
    std::sync::LazyLock::new(|| hash_password("no account has this password", b"fortress-no-such-user").ok());

/// Makes the dummy hash now (at start-up), so the first unknown email is not the one that pays for it.
pub fn prepare_dummy_hash() {
    std::sync::LazyLock::force(&DUMMY_HASH);
}

/// The turns password checks take: as many at once as the service has cores, the rest waiting.
///
/// argon2 is CPU work by design (tens of milliseconds a check). One blocking thread per check let a
/// login rush put dozens of runnable threads beside the async workers, and every other request waited
/// for its slice of a core behind them: in the replica-crash warm-up (60 logins per variant, two labs
/// side by side) a replica's `/readyz` missed its deadline twice and the balancer took it out. A login
/// waiting for its turn waits on the semaphore, where it costs nothing and is dropped with its client.
#[derive(Debug, Clone)]
pub struct PasswordChecks {
    turns: Arc<tokio::sync::Semaphore>,
    metrics: Metrics,
}

impl PasswordChecks {
    /// One turn per core this process may use (its cgroup's CPU quota included).
    pub fn one_per_core(metrics: Metrics) -> Self {
        Self::new(
            std::thread::available_parallelism().map_or(1, usize::from),
            metrics,
        )
    }

    pub fn new(turns: usize, metrics: Metrics) -> Self {
        Self {
            turns: Arc::new(tokio::sync::Semaphore::new(turns.max(1))),
            metrics,
        }
    }

    /// Runs `work` on the blocking pool once a turn is free. It is counted in
    /// `password_checks_in_flight` from its start until it ends, even when the login waiting for it is
    /// dropped (the work itself cannot be stopped).
    async fn run<T: Send + 'static>(&self, work: impl FnOnce() -> T + Send + 'static) -> Result<T, ApiError> {
        let turn = (self.turns.clone().acquire_owned().await)
            .map_err(|_| ApiError::Internal("the password check turns are closed".into()))?;
        let counted = self.metrics.count_password_check_in_flight();
        tokio::task::spawn_blocking(move || {
            let _held = (turn, counted);
            work()
        })
        .await
        .map_err(|e| ApiError::Internal(format!("password check panicked: {e}")))
    }
}

/// Checks an email and password; the same answer for an unknown email and a wrong password, and, with
/// `LoginTiming::Constant`, the same time.
pub async fn login(
    db: &Db,
    checks: &PasswordChecks,
    email: &str,
    password: &str,
    timing: LoginTiming,
) -> Result<i64, ApiError> {
    let wrong = || ApiError::unauthorized("invalid_credentials", "wrong email or password");
    db.statement("auth.find_user");
    let user: Option<(i64, String)> = sqlx::query_as("SELECT id, password_hash FROM users WHERE email = $1")
        .bind(email)
        .fetch_optional(&mut *db.acquire().await?)
        .await?;
    let (user_id, stored) = match (user, timing) {
        (Some(user), _) => (Some(user.0), user.1),
        (None, LoginTiming::Leaky) => return Err(wrong()),
        (None, LoginTiming::Constant) => {
            let dummy = DUMMY_HASH
                .clone()
                .ok_or_else(|| ApiError::Internal("the dummy password hash could not be made".into()))?;
            (None, dummy)
        }
    };
    if verify(checks, &stored, password).await? {
        user_id.ok_or_else(wrong)
    } else {
        Err(wrong())
    }
}

/// Checks `password` against an argon2 hash, off the async workers (argon2 is deliberately slow).
async fn verify(checks: &PasswordChecks, stored: &str, password: &str) -> Result<bool, ApiError> {
    let (stored, password) = (stored.to_owned(), password.to_owned());
    checks
        .run(move || {
            PasswordHash::new(&stored).is_ok_and(|hash| {
                Argon2::default()
                    .verify_password(password.as_bytes(), &hash)
                    .is_ok()
            })
        })
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_round_trips_and_a_forged_one_does_not() {
        let keys = TokenKeys::new(b"0123456789abcdef0123", Duration::from_secs(60));
        let token = keys.issue(42).unwrap();
        assert_eq!(keys.verify(&token).unwrap(), 42);
        let other = TokenKeys::new(b"another-secret-of-length", Duration::from_secs(60));
        assert!(matches!(
            other.verify(&token),
            Err(ApiError::Unauthorized {
                code: "invalid_token",
                ..
            })
        ));
    }

    #[test]
    fn hashes_verify() {
        let hash = hash_password("hunter22", b"seed-salt-0001").unwrap();
        let parsed = PasswordHash::new(&hash).unwrap();
        assert!(Argon2::default().verify_password(b"hunter22", &parsed).is_ok());
        assert!(Argon2::default().verify_password(b"wrong", &parsed).is_err());
    }

    /// A check runs with the parameters its hash names, so a light seed makes every login light.
    #[test]
    fn a_light_hash_names_its_own_cost_and_still_verifies() {
        let hash = hash_password_at("hunter22", b"seed-salt-0001", PasswordCost::Light).unwrap();
        assert!(hash.contains("m=8,t=1,p=1"), "{hash}");
        let standard = hash_password("hunter22", b"seed-salt-0001").unwrap();
        assert!(standard.contains("m=19456,t=2,p=1"), "{standard}");
        let parsed = PasswordHash::new(&hash).unwrap();
        assert!(Argon2::default().verify_password(b"hunter22", &parsed).is_ok());
        assert!(Argon2::default().verify_password(b"wrong", &parsed).is_err());
    }

    /// However many logins arrive at once, no more checks run than there are turns; the rest wait.
    #[tokio::test]
    async fn no_more_password_checks_run_at_once_than_there_are_turns() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        let checks = PasswordChecks::new(2, Metrics::new());
        let running = Arc::new(AtomicUsize::new(0));
        let most = Arc::new(AtomicUsize::new(0));
        let check = |_| {
            let (running, most) = (running.clone(), most.clone());
            checks.run(move || {
                most.fetch_max(running.fetch_add(1, Ordering::SeqCst) + 1, Ordering::SeqCst);
                std::thread::sleep(Duration::from_millis(20));
                running.fetch_sub(1, Ordering::SeqCst);
            })
        };
        futures::future::try_join_all((0..8).map(check)).await.unwrap();
        assert_eq!(most.load(Ordering::SeqCst), 2, "checks running at once, at most");
    }
}
