//! One refill per key at a time: a reader that misses takes the key's lock, looks again (another
//! reader may have filled the key while it waited), and only then loads from the database. So when
//! a hot key expires under a crowd of readers, one of them queries and the rest wait for its answer
//! in Redis, instead of all of them querying at once.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::OwnedMutexGuard;

/// The held lock of one key; dropping it lets the next waiter in.
pub struct KeyGuard {
    _guard: OwnedMutexGuard<()>,
    key: String,
    locks: Arc<Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>>,
}

impl Drop for KeyGuard {
    fn drop(&mut self) {
        let mut locks = self.locks.lock().unwrap_or_else(|p| p.into_inner());
        // Forget the key's lock once nobody else holds or waits for it (the map and this guard's own
        // reference are all that is left), so the map does not grow with every key ever read.
        if locks
            .get(&self.key)
            .is_some_and(|lock| Arc::strong_count(lock) <= 2)
        {
            locks.remove(&self.key);
        }
    }
}

#[derive(Debug, Clone, Default)]
pub struct KeyLocks {
    locks: Arc<Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>>,
}

impl KeyLocks {
    /// Waits for `key`'s lock.
    pub async fn lock(&self, key: &str) -> KeyGuard {
        let lock = {
            let mut locks = self.locks.lock().unwrap_or_else(|p| p.into_inner());
            Arc::clone(locks.entry(key.to_owned()).or_default())
        };
        KeyGuard {
            _guard: lock.lock_owned().await,
            key: key.to_owned(),
            locks: Arc::clone(&self.locks),
        }
    }

    /// How many keys have a lock held or waited for (for tests).
    pub fn len(&self) -> usize {
        self.locks.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn a_crowd_on_one_key_refills_it_once_and_the_lock_is_forgotten_after() {
        let locks = KeyLocks::default();
        let filled = Arc::new(Mutex::new(false));
        let loads = Arc::new(AtomicUsize::new(0));
        let readers = (0..20).map(|_| {
            let (locks, filled, loads) = (locks.clone(), Arc::clone(&filled), Arc::clone(&loads));
            tokio::spawn(async move {
                let _guard = locks.lock("product:1").await;
                if !*filled.lock().unwrap() {
                    tokio::time::sleep(Duration::from_millis(20)).await; // the query
                    loads.fetch_add(1, Ordering::SeqCst);
                    *filled.lock().unwrap() = true;
                }
            })
        });
        for reader in futures::future::join_all(readers).await {
            reader.unwrap();
        }
        assert_eq!(loads.load(Ordering::SeqCst), 1);
        assert!(locks.is_empty(), "{} keys still locked", locks.len());
    }
}
