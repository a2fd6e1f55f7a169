//! Moving bytes through a link, one direction at a time, with the faults applied on the way.
//!
//! Each direction is one loop over a delay line. A chunk read is stamped with the time it may leave
//! (`arrival + latency` towards the client); the loop keeps reading while the line's head waits for
//! its time, so a reply is late by the latency once, however many chunks it spans, and throughput is
//! kept. The line's bound (chunks x size) plays the part of a TCP window: at most that much is in
//! flight. A chunk no fault delays or throttles, with nothing queued before it, is written straight
//! from the read buffer: with no fault in force the proxy is a read and a write per chunk, no copy,
//! no queue and no other task (what makes it cheap on the hot path, `benches/proxy_in_lab.rs`).

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use rand::Rng;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::watch;
use tokio::time::Instant;

use super::fine_timer::FineTimer;
use super::link::{Active, Counters};
use super::network_fault::FaultKind;

const CHUNK: usize = 64 * 1024;
const QUEUE: usize = 256;

/// How a connection ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    /// A side closed, or a write failed: shut down normally.
    Closed,
    /// A fault (reset, down) ends it: both sides get a RST.
    Reset,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Direction {
    ToUpstream,
    ToClient,
}

struct Chunk {
    due: Instant,
    bytes: Vec<u8>,
    active: Arc<Active>,
    /// The bandwidth cap on this chunk, if a bandwidth fault takes its connection.
    throttle: Option<u64>,
}

/// One connection through a link: its number, which decides the faults on a share of connections
/// that take it, and the activation it was last counted in (seen, touched), so each connection
/// counts once per activation.
#[derive(Debug)]
pub struct Tap {
    number: u64,
    seed: u64,
    seen_in: AtomicU64,
    touched_in: AtomicU64,
}

impl Tap {
    pub fn new(number: u64, seed: u64) -> Self {
        Self {
            number,
            seed,
            seen_in: AtomicU64::new(0),
            touched_in: AtomicU64::new(0),
        }
    }

    /// Whether the fault of `kind` in force takes this connection.
    pub fn takes(&self, active: &Active, kind: FaultKind) -> bool {
        active.faults.takes(kind, self.seed, self.number)
    }

    /// Counts the connection as carrying traffic in this activation (once).
    fn saw(&self, active: &Active) {
        if self.seen_in.swap(active.id, Ordering::Relaxed) != active.id {
            Counters::add(&active.counters.connections_seen, 1);
        }
    }

    /// Counts the connection as acted on by a fault in this activation (once), and so as seen in
    /// it: a connection the fault closed before it carried a byte counts in both.
    pub fn touched(&self, active: &Active) {
        self.saw(active);
        if self.touched_in.swap(active.id, Ordering::Relaxed) != active.id {
            Counters::add(&active.counters.connections_touched, 1);
        }
    }
}

/// Runs both directions until both have closed, or either ends in a reset.
pub async fn both_ways(
    client_read: impl AsyncRead + Unpin,
    client_write: impl AsyncWrite + Unpin,
    server_read: impl AsyncRead + Unpin,
    server_write: impl AsyncWrite + Unpin,
    active: watch::Receiver<Arc<Active>>,
    tap: Arc<Tap>,
) -> End {
    let up = direction(
        client_read,
        server_write,
        Direction::ToUpstream,
        active.clone(),
        Arc::clone(&tap),
    );
    let down = direction(server_read, client_write, Direction::ToClient, active, tap);
    tokio::pin!(up, down);
    let (mut up_done, mut down_done) = (false, false);
    while !(up_done && down_done) {
        let end = tokio::select! {
            end = &mut up, if !up_done => { up_done = true; end }
            end = &mut down, if !down_done => { down_done = true; end }
        };
        if end == End::Reset {
            return End::Reset;
        }
    }
    End::Closed
}

fn sample_delay(ms: f64, jitter_ms: f64) -> Duration {
    let offset = if jitter_ms > 0.0 {
        rand::rng().random_range(-jitter_ms..=jitter_ms)
    } else {
        0.0
    };
    Duration::from_secs_f64((ms + offset).max(0.0) / 1000.0)
}

/// How early the fine timer wakes a lane, which then yields until the instant itself: a thread
/// woken from idle starts running tens of microseconds after its timer fires on this virtual
/// machine (a 1 ms fault read 1.08 ms in `benches/proxy_in_lab.rs` on the timer alone).
const SPIN: Duration = Duration::from_micros(150);

/// Waits until `at`, precisely: on the lane's fine timer (made the first time a fault makes the
/// lane wait; tokio's own timer would add up to a millisecond to every delayed chunk) until just
/// before, then yielding to other tasks until `at`. No wait at all when `at` has passed, so a chunk
/// no fault delays is never held. Without a timerfd (not Linux), tokio's timer.
async fn wait_until(timer: &mut Option<FineTimer>, at: Instant) {
    let now = Instant::now();
    if at <= now {
        return;
    }
    if at - now > SPIN {
        if timer.is_none() {
            *timer = FineTimer::new().ok();
        }
        let precise = match timer {
            Some(timer) => timer.sleep_until(at - SPIN).await.is_ok(),
            None => false,
        };
        if !precise {
            tokio::time::sleep_until(at).await;
        }
    }
    while Instant::now() < at {
        tokio::task::yield_now().await;
    }
}

/// Whether the faults in force end the connection now, counting it if so.
fn ends_connection(active: &Active, tap: &Tap) -> bool {
    let counter = if active.faults.down && tap.takes(active, FaultKind::Down) {
        &active.counters.closed_by_down
    } else if active.faults.reset && tap.takes(active, FaultKind::Reset) {
        &active.counters.resets
    } else {
        return false;
    };
    Counters::add(counter, 1);
    tap.touched(active);
    true
}

/// One direction of a connection: the source, the sink, the delay line between them, and what decides
/// the faults on its chunks.
struct Lane<R, W> {
    from: R,
    to: W,
    direction: Direction,
    active: watch::Receiver<Arc<Active>>,
    tap: Arc<Tap>,
    line: VecDeque<Chunk>,
    /// Chunks leave in order: with jitter, a chunk never overtakes the one before it.
    not_before: Instant,
    timer: Option<FineTimer>,
}

async fn direction(
    from: impl AsyncRead + Unpin,
    to: impl AsyncWrite + Unpin,
    direction: Direction,
    active: watch::Receiver<Arc<Active>>,
    tap: Arc<Tap>,
) -> End {
    let mut lane = Lane {
        from,
        to,
        direction,
        active,
        tap,
        line: VecDeque::new(),
        not_before: Instant::now(),
        timer: None,
    };
    lane.run().await
}

/// What woke a lane.
enum Event {
    Due,
    Read(std::io::Result<usize>),
    Changed(bool),
}

impl<R: AsyncRead + Unpin, W: AsyncWrite + Unpin> Lane<R, W> {
    /// Reads, stamps and writes chunks until the source closes and the line is empty (the close is
    /// passed on), a write fails, or a fault ends the connection.
    async fn run(&mut self) -> End {
        let mut buffer = vec![0u8; CHUNK];
        let mut source_open = true;
        loop {
            if !source_open && self.line.is_empty() {
                let _ = self.to.shutdown().await;
                return End::Closed;
            }
            let head = self.line.front().map(|chunk| chunk.due.max(self.not_before));
            let event = tokio::select! {
                biased;
                () = wait_until(&mut self.timer, head.unwrap_or(self.not_before)), if head.is_some() => {
                    Event::Due
                }
                read = self.from.read(&mut buffer), if source_open && self.line.len() < QUEUE => {
                    Event::Read(read)
                }
                changed = self.active.changed() => Event::Changed(changed.is_ok()),
            };
            let step = match event {
                Event::Due => self.write_head().await,
                Event::Read(Ok(0) | Err(_)) => {
                    source_open = false;
                    Ok(())
                }
                Event::Read(Ok(n)) => self.pass(&buffer[..n]).await,
                Event::Changed(false) => Err(End::Closed),
                // A link going down closes idle connections too; other faults wait for traffic.
                Event::Changed(true) => {
                    let current = Arc::clone(&self.active.borrow_and_update());
                    if current.faults.down && ends_connection(&current, &self.tap) {
                        Err(End::Reset)
                    } else {
                        Ok(())
                    }
                }
            };
            if let Err(end) = step {
                return end;
            }
        }
    }

    /// A chunk just read: applies the faults in force, then writes it now if nothing delays it and
    /// nothing waits before it, or puts it on the line.
    async fn pass(&mut self, bytes: &[u8]) -> Result<(), End> {
        let current = held_while_blackholed(&mut self.active, &self.tap).await?;
        let stamp = stamp(bytes.len(), self.direction, current, &self.tap);
        let now = Instant::now();
        if self.line.is_empty() && stamp.throttle.is_none() && stamp.due <= now {
            self.not_before = now;
            return self.to.write_all(bytes).await.map_err(|_| End::Closed);
        }
        self.line.push_back(Chunk {
            due: stamp.due,
            bytes: bytes.to_vec(),
            active: stamp.active,
            throttle: stamp.throttle,
        });
        Ok(())
    }

    /// Writes the line's head, whose time has come, throttled if a bandwidth fault says so.
    async fn write_head(&mut self) -> Result<(), End> {
        let Some(chunk) = self.line.pop_front() else {
            return Ok(());
        };
        self.not_before = chunk.due.max(self.not_before);
        let Some(bytes_per_second) = chunk.throttle else {
            return self.to.write_all(&chunk.bytes).await.map_err(|_| End::Closed);
        };
        // Throttled: pieces of 1/20 s worth of bytes, each paced after the one before.
        let piece = usize::try_from(bytes_per_second / 20)
            .unwrap_or(usize::MAX)
            .clamp(64, CHUNK);
        for bytes in chunk.bytes.chunks(piece) {
            wait_until(&mut self.timer, self.not_before).await;
            Counters::add(&chunk.active.counters.throttled_chunks, 1);
            self.not_before = Instant::now().max(self.not_before)
                + Duration::from_secs_f64(bytes.len() as f64 / bytes_per_second as f64);
            self.to.write_all(bytes).await.map_err(|_| End::Closed)?;
        }
        Ok(())
    }
}

/// The faults in force for a chunk just read, once no blackhole holds it: `Err` when a fault ends the
/// connection meanwhile (or the link goes away).
async fn held_while_blackholed(
    active: &mut watch::Receiver<Arc<Active>>,
    tap: &Tap,
) -> Result<Arc<Active>, End> {
    let holds = |current: &Active| current.faults.blackhole && tap.takes(current, FaultKind::Blackhole);
    let mut current = Arc::clone(&active.borrow_and_update());
    tap.saw(&current);
    if ends_connection(&current, tap) {
        return Err(End::Reset);
    }
    if holds(&current) {
        Counters::add(&current.counters.held_chunks, 1);
        tap.touched(&current);
        while holds(&current) {
            if active.changed().await.is_err() {
                return Err(End::Closed);
            }
            current = Arc::clone(&active.borrow_and_update());
            if ends_connection(&current, tap) {
                return Err(End::Reset);
            }
        }
    }
    Ok(current)
}

/// What the faults in force decide for a chunk of `n` bytes just read.
struct Stamp {
    /// When it may leave: now, or later by the latency towards the client.
    due: Instant,
    active: Arc<Active>,
    throttle: Option<u64>,
}

/// A chunk of `n` bytes counted and stamped.
fn stamp(n: usize, direction: Direction, current: Arc<Active>, tap: &Tap) -> Stamp {
    let mut due = Instant::now();
    let counters = &current.counters;
    let n = n as u64;
    match direction {
        Direction::ToUpstream => Counters::add(&counters.bytes_to_upstream, n),
        Direction::ToClient => {
            Counters::add(&counters.bytes_to_client, n);
            if let Some((ms, jitter_ms)) = current
                .faults
                .latency
                .filter(|_| tap.takes(&current, FaultKind::Latency))
            {
                let delay = sample_delay(ms, jitter_ms);
                due += delay;
                Counters::add(&counters.delayed_chunks, 1);
                Counters::add(&counters.added_delay_us, delay.as_micros() as u64);
                tap.touched(&current);
            }
        }
    }
    let throttle = current
        .faults
        .bandwidth
        .filter(|_| tap.takes(&current, FaultKind::Bandwidth));
    if throttle.is_some() {
        tap.touched(&current);
    }
    Stamp {
        due,
        active: current,
        throttle,
    }
}
