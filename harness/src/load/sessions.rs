//! The bearer tokens the seeded shoppers logged in with, kept across loads that share a book: a
//! capacity search's steps are many loads on one lab, and a shopper who logged in at the first step
//! is still logged in at the next, as on a real site, instead of every step opening with a storm of
//! argon2 logins. A fresh book per load (the default) logs every user in, as an experiment's run does.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// Shopper number (`user<n>@fortress.test`) to its bearer token; cheap to clone, shared.
#[derive(Debug, Clone, Default)]
pub struct SessionBook {
    tokens: Arc<Mutex<HashMap<usize, String>>>,
}

impl SessionBook {
    /// The token shopper `n` logged in with earlier, if any.
    pub(super) fn token(&self, n: usize) -> Option<String> {
        self.lock().get(&n).cloned()
    }

    pub(super) fn keep(&self, n: usize, token: &str) {
        self.lock().insert(n, token.to_owned());
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<usize, String>> {
        self.tokens.lock().unwrap_or_else(|p| p.into_inner())
    }
}
