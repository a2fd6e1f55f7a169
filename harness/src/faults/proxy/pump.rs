//! Moving bytes through a link, one direction at a time, with the faults applied on the way.
//!
//! Each direction is a reader and a writer joined by a queue of chunks. The reader stamps every chunk
//! with the time it may leave (`arrival + latency` towards the client), so the writer works as a delay
//! line: a reply is late by the latency once, however many chunks it spans, and throughput is kept.
//! The queue's bound (chunks x size) plays the part of a TCP window: at most that much is in flight.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use rand::Rng;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

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

    /// Counts the connection as acted on by a fault in this activation (once).
    pub fn touched(&self, active: &Active) {
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

/// Waits until `at`, precisely. Tokio's timer ticks in whole milliseconds and fires up to one late, which
/// would add ~1 ms to every chunk (and to every chunk with no fault at all, were it asked to wait for an
/// instant already past): so no wait at all when `at` has passed, and the last millisecond is spent
/// yielding to other tasks rather than sleeping.
async fn wait_until(at: Instant) {
    let now = Instant::now();
    if at <= now {
        return;
    }
    if at - now > Duration::from_millis(1) {
        tokio::time::sleep_until(at - Duration::from_millis(1)).await;
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

async fn direction(
    from: impl AsyncRead + Unpin,
    to: impl AsyncWrite + Unpin,
    direction: Direction,
    active: watch::Receiver<Arc<Active>>,
    tap: Arc<Tap>,
) -> End {
    let (queue, queued) = mpsc::channel::<Chunk>(QUEUE);
    let reader = read_chunks(from, direction, active, queue, tap);
    let writer = write_chunks(to, queued);
    tokio::pin!(reader, writer);
    tokio::select! {
        end = &mut reader => match end {
            // The source closed: deliver what is queued, then pass the close on.
            End::Closed => writer.await,
            End::Reset => End::Reset,
        },
        end = &mut writer => end,
    }
}

/// Reads chunks as they come, applies the faults in force (end the connection, hold it, stamp the
/// time it may leave) and queues them for the writer.
async fn read_chunks(
    mut from: impl AsyncRead + Unpin,
    direction: Direction,
    mut active: watch::Receiver<Arc<Active>>,
    queue: mpsc::Sender<Chunk>,
    tap: Arc<Tap>,
) -> End {
    let mut buffer = vec![0u8; CHUNK];
    loop {
        let n = tokio::select! {
            read = from.read(&mut buffer) => match read {
                Ok(0) | Err(_) => return End::Closed,
                Ok(n) => n,
            },
            changed = active.changed() => {
                if changed.is_err() {
                    return End::Closed;
                }
                // A link going down closes idle connections too; other faults wait for traffic.
                let current = Arc::clone(&active.borrow_and_update());
                if current.faults.down && ends_connection(&current, &tap) {
                    return End::Reset;
                }
                continue;
            }
        };
        let current = match held_while_blackholed(&mut active, &tap).await {
            Ok(current) => current,
            Err(end) => return end,
        };
        let chunk = stamped(&buffer[..n], direction, current, &tap);
        if queue.send(chunk).await.is_err() {
            return End::Closed;
        }
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

/// A chunk counted and stamped with the time it may leave: now, or later by the latency towards the
/// client.
fn stamped(bytes: &[u8], direction: Direction, current: Arc<Active>, tap: &Tap) -> Chunk {
    let mut due = Instant::now();
    let counters = &current.counters;
    let n = bytes.len() as u64;
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
    Chunk {
        due,
        bytes: bytes.to_vec(),
        active: current,
        throttle,
    }
}

/// Writes the queued chunks when they are due, in order, throttled if a bandwidth fault says so.
async fn write_chunks(mut to: impl AsyncWrite + Unpin, mut queued: mpsc::Receiver<Chunk>) -> End {
    // Chunks leave in order: with jitter, a chunk never overtakes the one before it.
    let mut not_before = Instant::now();
    while let Some(chunk) = queued.recv().await {
        let leave = chunk.due.max(not_before);
        wait_until(leave).await;
        not_before = leave;
        let Some(bytes_per_second) = chunk.throttle else {
            if to.write_all(&chunk.bytes).await.is_err() {
                return End::Closed;
            }
            continue;
        };
        // Throttled: pieces of 1/20 s worth of bytes, each paced after the one before.
        let piece = usize::try_from(bytes_per_second / 20)
            .unwrap_or(usize::MAX)
            .clamp(64, CHUNK);
        for bytes in chunk.bytes.chunks(piece) {
            wait_until(not_before).await;
            Counters::add(&chunk.active.counters.throttled_chunks, 1);
            not_before = Instant::now().max(not_before)
                + Duration::from_secs_f64(bytes.len() as f64 / bytes_per_second as f64);
            if to.write_all(bytes).await.is_err() {
                return End::Closed;
            }
        }
    }
    let _ = to.shutdown().await;
    End::Closed
}
