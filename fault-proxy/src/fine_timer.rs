//! A timer precise to a few microseconds, for the delay line: a Linux timerfd watched by the
//! runtime's reactor.
//!
//! Tokio's timer ticks in whole milliseconds and fires up to one late, which a 1 ms latency fault
//! cannot afford. The delay line used to sleep to a millisecond before a chunk was due and spin
//! (yielding) through the rest: precise, but a core busy for the last millisecond of every delayed
//! chunk, taken from the service and the databases the experiment measures. A timerfd wakes the
//! reactor when the chunk is due and costs nothing meanwhile (the kernel applies no timer slack to
//! it).

use std::io;
use std::os::fd::OwnedFd;
use std::time::Duration;

use rustix::time::{
    Itimerspec, TimerfdClockId, TimerfdFlags, TimerfdTimerFlags, timerfd_create, timerfd_settime,
};
use tokio::io::unix::AsyncFd;
use tokio::time::Instant;

/// One timer, armed for one instant at a time; a lane keeps one, made the first time it waits.
pub struct FineTimer {
    fd: AsyncFd<OwnedFd>,
}

impl FineTimer {
    pub fn new() -> io::Result<Self> {
        let fd = timerfd_create(
            TimerfdClockId::Monotonic,
            TimerfdFlags::NONBLOCK | TimerfdFlags::CLOEXEC,
        )?;
        // `AsyncFd::new` is deprecated for values whose raw descriptor could change or close while
        // registered; an `OwnedFd` held here cannot, and its replacement is `unsafe`, which this
        // workspace forbids.
        #[allow(deprecated)]
        let fd = AsyncFd::with_interest(fd, tokio::io::Interest::READABLE)?;
        Ok(Self { fd })
    }

    /// Waits until `at`: at once when it has passed. Arming replaces any earlier arming and its
    /// pending expiry, so a wait dropped half-way (another event came first) leaves nothing behind.
    pub async fn sleep_until(&self, at: Instant) -> io::Result<()> {
        let now = Instant::now();
        if at <= now {
            return Ok(());
        }
        arm(&self.fd, at - now)?;
        loop {
            let mut ready = self.fd.readable().await?;
            let mut expirations = [0u8; 8];
            match ready.try_io(|fd| Ok(rustix::io::read(fd.get_ref(), &mut expirations)?)) {
                Ok(Ok(_)) => return Ok(()),
                // The readiness was an earlier arming's: wait again.
                Ok(Err(e)) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Ok(Err(e)) => return Err(e),
                Err(_would_block) => continue,
            }
        }
    }
}

fn arm(fd: &AsyncFd<OwnedFd>, after: Duration) -> io::Result<()> {
    let value = Itimerspec {
        it_interval: rustix::time::Timespec {
            tv_sec: 0,
            tv_nsec: 0,
        },
        it_value: rustix::time::Timespec {
            tv_sec: after.as_secs().try_into().unwrap_or(i64::MAX),
            // At least a nanosecond: a zero value disarms the timer instead.
            tv_nsec: i64::from(after.subsec_nanos()).max(if after.as_secs() == 0 { 1 } else { 0 }),
        },
    };
    timerfd_settime(fd.get_ref(), TimerfdTimerFlags::empty(), &value)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A wait ends at its instant, not a millisecond tick after it, and a wait dropped before its
    /// instant does not end the next one early.
    #[tokio::test]
    async fn it_wakes_within_a_fraction_of_a_millisecond_and_forgets_a_dropped_wait() {
        let timer = FineTimer::new().unwrap();
        let dropped = timer.sleep_until(Instant::now() + Duration::from_micros(300));
        let _ = tokio::time::timeout(Duration::from_micros(1), dropped).await;
        tokio::time::sleep(Duration::from_millis(2)).await;
        let mut late = Vec::new();
        for _ in 0..50 {
            let at = Instant::now() + Duration::from_micros(700);
            timer.sleep_until(at).await.unwrap();
            let now = Instant::now();
            assert!(now >= at, "woke {:?} early", at - now);
            late.push(now - at);
        }
        late.sort();
        // The median, not the worst: a loaded machine may preempt any one wake.
        assert!(
            late[25] < Duration::from_micros(250),
            "median lateness {:?}",
            late[25]
        );
    }
}
