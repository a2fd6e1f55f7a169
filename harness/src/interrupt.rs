//! Ctrl-C belongs to Fortress. `install` takes SIGINT for the whole process before anything else can:
//! goose, which would otherwise install a handler of its own on its first run (one that exits the
//! process on a second press, past every cleanup), finds the signal taken and leaves it alone.
//! SIGTERM and SIGHUP count as a press too (`timeout`, `docker stop`, a CI runner cancelling a job, a
//! closed terminal): without them a polite stop ended the process at once and left the lab running.
//!
//! The first press asks the run to stop: whoever waits on `wait` (the runner's stop token, `env up`)
//! hears it, and the load's users are stopped through goose's killswitch by the load itself. Later
//! presses only say that the cleanup is under way: nothing skips it.

use std::sync::OnceLock;

use tokio::sync::watch;

/// How many times Ctrl-C was pressed, for those who wait on it.
fn presses() -> &'static watch::Sender<u32> {
    static PRESSES: OnceLock<watch::Sender<u32>> = OnceLock::new();
    PRESSES.get_or_init(|| watch::Sender::new(0))
}

/// Takes SIGINT, SIGTERM and SIGHUP for this process. Call it once, first thing, in a command that runs a lab.
pub fn install() -> Result<(), ctrlc::Error> {
    ctrlc::set_handler(|| {
        let mut count = 0;
        presses().send_modify(|n| {
            *n += 1;
            count = *n;
        });
        if count == 1 {
            eprintln!(
                "\ninterrupted: reverting faults and removing the lab (another Ctrl-C does not skip this)..."
            );
        } else {
            eprintln!("\nstill cleaning up: the lab is being removed, and every fault was reverted first");
        }
    })
}

/// Whether Ctrl-C has been pressed.
pub fn pressed() -> bool {
    *presses().borrow() > 0
}

/// Completes at the first Ctrl-C (at once if it was pressed already).
pub async fn wait() {
    let mut presses = presses().subscribe();
    // The sender lives for the whole process: `wait_for` cannot fail.
    let _ = presses.wait_for(|n| *n > 0).await;
}

/// What a press does, without a signal: for tests of whoever waits on it.
#[cfg(test)]
fn press() {
    presses().send_modify(|n| *n += 1);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn waiting_ends_at_the_first_press_and_after_it_at_once() {
        let waiting = tokio::spawn(wait());
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        assert!(!waiting.is_finished() && !pressed());
        press();
        waiting.await.unwrap();
        assert!(pressed());
        tokio::time::timeout(std::time::Duration::from_millis(100), wait())
            .await
            .expect("a wait after the press ends at once");
    }
}
