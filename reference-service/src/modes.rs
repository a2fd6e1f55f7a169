//! Runtime modes: each one swaps a piece of the service for the naive code people really write, or back.
//!
//! Modes live in memory and change mid-run through `PUT /admin/modes`; every request reads the current
//! value once, so a switch never tears a request in half. Defaults are the defended modes.

use std::sync::{Arc, RwLock};

use serde::{Deserialize, Serialize};

/// How checkout protects the last unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Locking {
    /// `SELECT ... FOR UPDATE` on the inventory row inside the checkout transaction.
    RowLock,
    /// Read, think, write back the computed quantity: the lost update.
    None,
}

/// How order history loads the products of a user's orders.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OrderHistory {
    /// One query joining orders and products.
    Join,
    /// One query for the orders, then one per order for its product.
    NPlusOne,
}

/// What keeps a slow order history (a dropped index, a huge account) from taking the shop down with it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HistoryGuard {
    /// A bulkhead (one history query at a time, on one core: no parallel workers; a caller waits
    /// 100 ms for its turn at most) and a 250 ms statement timeout: a history query gone slow costs one
    /// connection and one core, and its callers get a quick 503 instead of a long wait.
    Bounded,
    /// Every history query runs as long as it takes, as many at once as there are callers.
    Unbounded,
}

/// Whether reads go through Redis at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CacheMode {
    Aside,
    Off,
}

/// What readers do when a cached key is missing (expired, evicted, flushed).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CacheRefill {
    /// One reader per key loads it while the others wait and read what it wrote; entries live the TTL
    /// give or take a fifth, so keys written together do not expire together.
    Coalesced,
    /// Every reader that misses loads the key from the database and writes it back: a hot key that
    /// expires under load sends all its concurrent readers to the database at once (a stampede).
    Naive,
}

/// What a read does when Redis fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CacheFailure {
    /// Every Redis error or hang falls through to Postgres, with no deadline of our own.
    Fallthrough,
    /// A deadline on every Redis call, a circuit breaker, single-flight loading and a small local cache.
    Breaker,
}

/// Whether the simulated email sender accepts the outbox's deliveries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EmailSender {
    Up,
    /// Every delivery fails, so events are retried with backoff and finally dead-lettered.
    Down,
}

/// Who sends an order's confirmation email.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EmailDelivery {
    /// The outbox worker, after the checkout's commit: the checkout never waits for mail.
    Outbox,
    /// The checkout itself, before its commit (the naive design): a mail server that fails fails the
    /// checkout, and one that is slow holds the order's row lock and database connection that long.
    Inline,
}

/// What a login for an email nobody has costs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LoginTiming {
    /// The same argon2 work as a wrong password, against a dummy hash: the answer takes as long
    /// either way, so its timing does not say whether the account exists.
    Constant,
    /// Refused as soon as the lookup finds no user, without hashing: ~20 ms quicker than a wrong
    /// password, which tells an attacker which emails have accounts.
    Leaky,
}

/// When a checkout's commit counts as done.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Durability {
    /// Postgres answers COMMIT once the transaction's WAL is flushed to disk: an acknowledged order
    /// survives a crash.
    SyncCommit,
    /// `synchronous_commit = off` for every transaction of the service (as a team would set it for the
    /// database): COMMIT answers before the WAL is flushed (the WAL writer flushes it within about
    /// 200 ms), so a crash loses orders the client was told about.
    AsyncCommit,
}

/// Where a logged-in shopper's session lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Sessions {
    /// A signed token (JWT) the client sends back: any replica can check it, nothing is stored.
    Jwt,
    /// An opaque session id in a cookie; the session in Redis, looked up on every request.
    Redis,
    /// An opaque session id in a cookie; the session in this replica's memory, which no other replica
    /// sees and a restart forgets (the laptop design).
    Memory,
}

/// Whether a JWT is checked against the revocation list in Redis (`sessions = jwt`), where a logout
/// puts its token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Revocation {
    /// No list: a token is good until it expires, logged out or not.
    Off,
    /// Every request asks Redis, and is refused (401 `session_store_unavailable`) when Redis cannot
    /// answer: the session store's outage logs everybody out.
    FailClosed,
    /// Redis is asked with a 50 ms deadline and each answer is remembered for 5 s; when Redis cannot
    /// answer, the request goes through on its signature alone. A token revoked during an outage works
    /// until Redis is back (at most 5 s after): a small, bounded risk for staying up.
    FailOpen,
}

/// How a checkout asks the payment provider to authorise its order (with `PAYMENTS_URL` set).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Payments {
    /// Before the order's transaction and outside the database pool: a deadline on each call, a
    /// bulkhead (a few calls in flight, the rest answered 503 at once), a circuit breaker, retries
    /// with jittered exponential backoff under a retry budget, and an idempotency key, so a retried
    /// authorisation is never a second charge.
    Guarded,
    /// Inside the order's transaction, holding its database connection and row lock, with no
    /// deadline, retried at once on any failure, with no idempotency key: a slow provider ties up the
    /// pool that browsing needs, and a failing one gets every request again and again.
    Naive,
}

/// One part of a defence that bundles several (`payments = guarded`, `cache_failure = breaker`), switched on or off alone: the
/// run with one part off shows what that part, and not the others, holds up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Guard {
    On,
    Off,
}

impl Guard {
    pub fn is_on(self) -> bool {
        self == Self::On
    }
}

/// The parts of a bundled defence: each mode here is one part of the defence its parent mode's value
/// names, and does nothing under the parent's other values. Switched off (`--without PART`), a part
/// is `off`; the others stay on.
pub const PARTS: &[(&str, (&str, &str))] = &[
    ("payment_deadline", ("payments", "guarded")),
    ("payment_bulkhead", ("payments", "guarded")),
    ("payment_breaker", ("payments", "guarded")),
    ("payment_retry_budget", ("payments", "guarded")),
    ("payment_idempotency_key", ("payments", "guarded")),
    ("payment_cancel", ("payments", "guarded")),
    ("cache_deadline", ("cache_failure", "breaker")),
    ("cache_breaker", ("cache_failure", "breaker")),
    ("cache_local", ("cache_failure", "breaker")),
];

/// The mode and value `mode` is a part of, if it is a part of a bundled defence.
pub fn part_of(mode: &str) -> Option<(&'static str, &'static str)> {
    PARTS
        .iter()
        .find(|(part, _)| *part == mode)
        .map(|(_, parent)| *parent)
}

/// The full set of modes, as `GET /admin/modes` shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Modes {
    pub locking: Locking,
    /// Think time between reading and writing the stock when `locking = none`, in milliseconds.
    pub race_window_ms: u64,
    pub order_history: OrderHistory,
    pub history_guard: HistoryGuard,
    pub cache: CacheMode,
    pub cache_failure: CacheFailure,
    pub cache_refill: CacheRefill,
    pub email_sender: EmailSender,
    pub email_delivery: EmailDelivery,
    pub login_timing: LoginTiming,
    pub durability: Durability,
    pub sessions: Sessions,
    pub revocation: Revocation,
    pub payments: Payments,
    /// 500 ms for each authorisation attempt (`payments = guarded`); off, an attempt waits as long as the provider takes.
    pub payment_deadline: Guard,
    /// At most 8 authorisations in flight, the rest refused after 20 ms; off, every checkout calls at once.
    pub payment_bulkhead: Guard,
    /// Calls stop for 2 s after 20 failed attempts in a row; off, every checkout calls a failing provider.
    pub payment_breaker: Guard,
    /// Retries spend a budget earned at a tenth of a retry per call; off, every failed attempt is retried (3 attempts).
    pub payment_retry_budget: Guard,
    /// Every attempt of a payment carries its reference as the idempotency key; off, none does, and a retry is a new charge.
    pub payment_idempotency_key: Guard,
    /// A call given up without an answer it can trust cancels by its reference; off, whatever the provider did stands.
    pub payment_cancel: Guard,
    /// The Redis timeout (`REDIS_TIMEOUT_MS`) on every Redis call (`cache_failure = breaker`); off, a call waits as long as the client library does.
    pub cache_deadline: Guard,
    /// Redis skipped for 500 ms after 5 failed calls in a row; off, every read asks a dead Redis.
    pub cache_breaker: Guard,
    /// Loads of a key shared by its concurrent readers and kept 1 s in memory; off, every read Redis cannot answer is a database read.
    pub cache_local: Guard,
}

impl Default for Modes {
    fn default() -> Self {
        Self {
            locking: Locking::RowLock,
            race_window_ms: 0,
            order_history: OrderHistory::Join,
            history_guard: HistoryGuard::Bounded,
            cache: CacheMode::Aside,
            cache_failure: CacheFailure::Breaker,
            cache_refill: CacheRefill::Coalesced,
            email_sender: EmailSender::Up,
            email_delivery: EmailDelivery::Outbox,
            login_timing: LoginTiming::Constant,
            durability: Durability::SyncCommit,
            sessions: Sessions::Jwt,
            revocation: Revocation::Off,
            payments: Payments::Guarded,
            payment_deadline: Guard::On,
            payment_bulkhead: Guard::On,
            payment_breaker: Guard::On,
            payment_retry_budget: Guard::On,
            payment_idempotency_key: Guard::On,
            payment_cancel: Guard::On,
            cache_deadline: Guard::On,
            cache_breaker: Guard::On,
            cache_local: Guard::On,
        }
    }
}

/// A partial update: only the fields present change. Unknown fields are rejected. It is also how the
/// lab writes a variant's modes down: serialised, it holds only the fields it sets.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModesPatch {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub locking: Option<Locking>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub race_window_ms: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub order_history: Option<OrderHistory>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub history_guard: Option<HistoryGuard>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cache: Option<CacheMode>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cache_failure: Option<CacheFailure>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cache_refill: Option<CacheRefill>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub email_sender: Option<EmailSender>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub email_delivery: Option<EmailDelivery>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub login_timing: Option<LoginTiming>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub durability: Option<Durability>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sessions: Option<Sessions>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub revocation: Option<Revocation>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub payments: Option<Payments>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub payment_deadline: Option<Guard>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub payment_bulkhead: Option<Guard>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub payment_breaker: Option<Guard>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub payment_retry_budget: Option<Guard>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub payment_idempotency_key: Option<Guard>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub payment_cancel: Option<Guard>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cache_deadline: Option<Guard>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cache_breaker: Option<Guard>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cache_local: Option<Guard>,
}

/// The patch that puts every mode back as it was in `modes`.
impl From<Modes> for ModesPatch {
    fn from(modes: Modes) -> Self {
        let Modes {
            locking,
            race_window_ms,
            order_history,
            history_guard,
            cache,
            cache_failure,
            cache_refill,
            email_sender,
            email_delivery,
            login_timing,
            durability,
            sessions,
            revocation,
            payments,
            payment_deadline,
            payment_bulkhead,
            payment_breaker,
            payment_retry_budget,
            payment_idempotency_key,
            payment_cancel,
            cache_deadline,
            cache_breaker,
            cache_local,
        } = modes;
        Self {
            locking: Some(locking),
            race_window_ms: Some(race_window_ms),
            order_history: Some(order_history),
            history_guard: Some(history_guard),
            cache: Some(cache),
            cache_failure: Some(cache_failure),
            cache_refill: Some(cache_refill),
            email_sender: Some(email_sender),
            email_delivery: Some(email_delivery),
            login_timing: Some(login_timing),
            durability: Some(durability),
            sessions: Some(sessions),
            revocation: Some(revocation),
            payments: Some(payments),
            payment_deadline: Some(payment_deadline),
            payment_bulkhead: Some(payment_bulkhead),
            payment_breaker: Some(payment_breaker),
            payment_retry_budget: Some(payment_retry_budget),
            payment_idempotency_key: Some(payment_idempotency_key),
            payment_cancel: Some(payment_cancel),
            cache_deadline: Some(cache_deadline),
            cache_breaker: Some(cache_breaker),
            cache_local: Some(cache_local),
        }
    }
}

/// As the admin API takes it: `{"locking":"none","race_window_ms":50}`.
impl std::fmt::Display for ModesPatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let json = serde_json::to_string(self).map_err(|_| std::fmt::Error)?;
        f.write_str(&json)
    }
}

/// The longest race window accepted: long enough to make any race visible, short enough not to wedge.
pub const MAX_RACE_WINDOW_MS: u64 = 10_000;

impl ModesPatch {
    /// Applies the patch to `modes`, or says which value is out of range.
    pub fn apply(&self, modes: &mut Modes) -> Result<(), String> {
        if let Some(ms) = self.race_window_ms
            && ms > MAX_RACE_WINDOW_MS
        {
            return Err(format!(
                "race_window_ms must be between 0 and {MAX_RACE_WINDOW_MS} (got {ms})"
            ));
        }
        let Self {
            locking,
            race_window_ms,
            order_history,
            history_guard,
            cache,
            cache_failure,
            cache_refill,
            email_sender,
            email_delivery,
            login_timing,
            durability,
            sessions,
            revocation,
            payments,
            payment_deadline,
            payment_bulkhead,
            payment_breaker,
            payment_retry_budget,
            payment_idempotency_key,
            payment_cancel,
            cache_deadline,
            cache_breaker,
            cache_local,
        } = *self;
        // Each field the patch names replaces the mode's. A new mode breaks the destructuring above
        // until it is named there, and is an unused variable (a lint error) until it is listed here.
        macro_rules! set {
            ($($field:ident),*) => {
                $(if let Some(value) = $field {
                    modes.$field = value;
                })*
            };
        }
        set!(
            locking,
            race_window_ms,
            order_history,
            history_guard,
            cache,
            cache_failure,
            cache_refill,
            email_sender,
            email_delivery,
            login_timing,
            durability,
            sessions,
            revocation,
            payments,
            payment_deadline,
            payment_bulkhead,
            payment_breaker,
            payment_retry_budget,
            payment_idempotency_key,
            payment_cancel,
            cache_deadline,
            cache_breaker,
            cache_local
        );
        Ok(())
    }
}

/// The shared, switchable modes of one service instance.
#[derive(Debug, Clone, Default)]
pub struct ModeSwitch(Arc<RwLock<Modes>>);

impl ModeSwitch {
    pub fn current(&self) -> Modes {
        *self.0.read().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub fn update(&self, patch: &ModesPatch) -> Result<Modes, String> {
        let mut guard = self.0.write().unwrap_or_else(|poisoned| poisoned.into_inner());
        let mut next = *guard;
        patch.apply(&mut next)?;
        *guard = next;
        Ok(next)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_the_defended_modes() {
        let modes = Modes::default();
        assert_eq!(modes.locking, Locking::RowLock);
        assert_eq!(modes.order_history, OrderHistory::Join);
        assert_eq!(modes.cache_failure, CacheFailure::Breaker);
        assert_eq!(modes.login_timing, LoginTiming::Constant);
        assert_eq!(modes.durability, Durability::SyncCommit);
    }

    #[test]
    fn a_patch_changes_only_what_it_names() {
        let switch = ModeSwitch::default();
        let patch: ModesPatch = serde_json::from_str(r#"{"locking":"none","race_window_ms":25}"#).unwrap();
        let modes = switch.update(&patch).unwrap();
        assert_eq!(modes.locking, Locking::None);
        assert_eq!(modes.race_window_ms, 25);
        assert_eq!(modes.cache, CacheMode::Aside);
    }

    #[test]
    fn an_out_of_range_patch_changes_nothing() {
        let switch = ModeSwitch::default();
        let patch = ModesPatch {
            locking: Some(Locking::None),
            race_window_ms: Some(60_000),
            ..Default::default()
        };
        assert!(switch.update(&patch).unwrap_err().contains("race_window_ms"));
        assert_eq!(switch.current(), Modes::default());
    }

    #[test]
    fn a_patch_is_written_as_only_what_it_sets_and_a_full_one_restores_everything() {
        let patch: ModesPatch = serde_json::from_str(r#"{"race_window_ms":50,"locking":"none"}"#).unwrap();
        assert_eq!(patch.to_string(), r#"{"locking":"none","race_window_ms":50}"#);
        let switch = ModeSwitch::default();
        let before = switch.current();
        switch.update(&patch).unwrap();
        switch.update(&ModesPatch::from(before)).unwrap();
        assert_eq!(switch.current(), before);
    }

    #[test]
    fn unknown_mode_names_are_rejected() {
        assert!(serde_json::from_str::<ModesPatch>(r#"{"locking":"optimistic"}"#).is_err());
        assert!(serde_json::from_str::<ModesPatch>(r#"{"turbo":true}"#).is_err());
    }
}
