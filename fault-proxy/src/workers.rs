//! The proxy's connection threads: each accepted connection lives on one thread, with both of its
//! directions and their delay lines, as HAProxy's threads each own their connections. One thread
//! per core, each running a single-threaded runtime; connections are dealt to them in turn.
//!
//! Why not the runtime's work-stealing pool, where the proxy ran until 2026-12-07: a connection's
//! reads, writes and timers are woken by whichever worker polls the reactor, and a task woken on one
//! core is often run on the other, a cross-core wake-up per hop that a round trip pays several times.
//! Measured in `harness/benches/proxy_in_lab.rs` on 2026-12-06: the whole proxy on one thread added
//! 27 to 32 µs a round trip (HAProxy 26 to 31) and a 1 ms fault 1.04 ms, against 34 to 77 µs and
//! 1.08 to 1.13 ms on the pool. But one thread for every link could not keep up under load
//! (cache-outage's capacity step under Redis's death read p99 54 ms, 7 ms on the pool). A thread per
//! core keeps a connection on one core and the load on all of them.

use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::sync::mpsc;

/// Work to start on a connection thread: called inside that thread's runtime, so what it spawns
/// (the connection's task) runs there.
pub type Job = Box<dyn FnOnce() + Send>;

/// The connection threads. They end when this is dropped (their channels close), dropping the
/// connections still open on them.
#[derive(Debug)]
pub struct Workers {
    threads: Vec<mpsc::UnboundedSender<Job>>,
    next: AtomicUsize,
}

impl Workers {
    /// One thread per core the process may use.
    pub fn per_core() -> std::io::Result<Self> {
        let cores = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
        Self::start(cores)
    }

    /// `count` threads (at least one), each with a single-threaded runtime.
    pub fn start(count: usize) -> std::io::Result<Self> {
        let mut threads = Vec::with_capacity(count.max(1));
        for n in 0..count.max(1) {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            let (sender, mut jobs) = mpsc::unbounded_channel::<Job>();
            std::thread::Builder::new()
                .name(format!("proxy-{n}"))
                .spawn(move || {
                    runtime.block_on(async move {
                        while let Some(job) = jobs.recv().await {
                            job();
                        }
                    });
                })?;
            threads.push(sender);
        }
        Ok(Self {
            threads,
            next: AtomicUsize::new(0),
        })
    }

    /// Runs `job` on the next thread in turn; on the caller's runtime if that thread is gone.
    pub fn run(&self, job: Job) {
        let n = self.next.fetch_add(1, Ordering::Relaxed) % self.threads.len();
        if let Err(mpsc::error::SendError(job)) = self.threads[n].send(job) {
            job();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Jobs go to the threads in turn, each runs inside a runtime of its own (a task it spawns
    /// runs there), and a connection's task stays on the thread that took it.
    #[tokio::test]
    async fn jobs_are_dealt_in_turn_and_their_tasks_stay_on_their_thread() {
        let workers = Workers::start(2).unwrap();
        let (seen, mut names) = mpsc::unbounded_channel();
        for _ in 0..4 {
            let seen = seen.clone();
            workers.run(Box::new(move || {
                let started = std::thread::current().name().map(str::to_owned);
                tokio::spawn(async move {
                    tokio::task::yield_now().await;
                    let now = std::thread::current().name().map(str::to_owned);
                    let _ = seen.send((started, now));
                });
            }));
        }
        let mut threads = Vec::new();
        for _ in 0..4 {
            let (started, now) = names.recv().await.unwrap();
            assert_eq!(started, now, "a task left the thread that took it");
            threads.push(now.unwrap());
        }
        threads.sort();
        assert_eq!(threads, ["proxy-0", "proxy-0", "proxy-1", "proxy-1"]);
    }
}
