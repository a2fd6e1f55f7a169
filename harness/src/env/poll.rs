//! Waiting for a condition in the lab: poll it on an interval until it holds or a deadline passes,
//! and then say what it last looked like. Every wait of the lab (a replica ready, the balancer
//! settled, a replica drained, the mail server greeting, the provider answering) is one of these.

use std::future::Future;
use std::time::{Duration, Instant};

use super::EnvError;
use crate::vocabulary::Role;

/// One look at a condition.
#[derive(Debug)]
pub enum Look<T> {
    /// It holds; the wait is over.
    Done(T),
    /// Not yet; what it looks like now (said in the error when the deadline passes).
    NotYet(String),
}

/// Looks at `condition` every `every` until it is `Done`, or fails with `NotReady` for `role` and the
/// last look once `deadline` has passed. An error from a look ends the wait at once.
pub async fn poll_until<T, F, Fut>(
    role: Role,
    deadline: Duration,
    every: Duration,
    mut condition: F,
) -> Result<T, EnvError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<Look<T>, EnvError>>,
{
    let started = Instant::now();
    loop {
        let last = match condition().await? {
            Look::Done(value) => return Ok(value),
            Look::NotYet(last) => last,
        };
        if started.elapsed() >= deadline {
            return Err(EnvError::NotReady { role, deadline, last });
        }
        tokio::time::sleep(every).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_wait_ends_when_the_condition_holds_or_says_what_it_last_saw() {
        let mut looks = 0;
        let done = poll_until(Role::Redis, Duration::from_secs(5), Duration::ZERO, || {
            looks += 1;
            let look = if looks == 3 {
                Look::Done(looks)
            } else {
                Look::NotYet(format!("look {looks}"))
            };
            async move { Ok(look) }
        })
        .await
        .unwrap();
        assert_eq!(done, 3);
        let never = poll_until::<(), _, _>(Role::Mail, Duration::ZERO, Duration::ZERO, || async {
            Ok(Look::NotYet("no greeting".into()))
        })
        .await
        .unwrap_err()
        .to_string();
        assert!(
            never.contains("mail was not ready") && never.ends_with("no greeting"),
            "{never}"
        );
    }
}
