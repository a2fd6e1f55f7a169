//! The fault proxy measured before it is trusted: what it costs with no fault, and how faithfully it
//! adds the latency it is asked for.
//!
//! All in one process on 127.0.0.1: a small server (64-byte replies, 1 MiB replies), reached directly
//! and through a proxy link, side by side in one run. Reports
//! - overhead: round-trip p50/p99 through the proxy minus direct (target: < 100 us added at p50), and
//!   bulk throughput through the proxy over direct (target: >= 0.8);
//! - fidelity: for 1, 5, 20 and 100 ms of latency, the added p50 on a request/response round trip and
//!   the added time of a 1 MiB reply (target: within 10% of the ask, and no stacking on the bulk reply).
//!
//! Run: `cargo bench -p harness --bench proxy_fidelity` (env `BENCH_ROUND_TRIPS`, default 3000).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use fortress::faults::proxy::client::ProxyClient;
use fortress::faults::proxy::{self, NetworkFault};
use hdrhistogram::Histogram;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const SMALL: usize = 64;
const LARGE: usize = 1 << 20;

async fn upstream() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let _ = socket.set_nodelay(true);
            tokio::spawn(async move {
                let mut op = [0u8; 1];
                let large = vec![7u8; LARGE];
                while socket.read_exact(&mut op).await.is_ok() {
                    let reply = if op[0] == b'p' {
                        &large[..SMALL]
                    } else {
                        &large[..]
                    };
                    if socket.write_all(reply).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    addr
}

async fn connect(addr: SocketAddr) -> TcpStream {
    let stream = TcpStream::connect(addr).await.expect("connect");
    stream.set_nodelay(true).expect("nodelay");
    stream
}

async fn round_trip(stream: &mut TcpStream, op: u8, buffer: &mut [u8]) -> Duration {
    let size = if op == b'p' { SMALL } else { LARGE };
    let started = Instant::now();
    stream.write_all(&[op]).await.expect("write");
    stream.read_exact(&mut buffer[..size]).await.expect("read");
    started.elapsed()
}

/// Round-trip latencies in microseconds.
async fn small_round_trips(stream: &mut TcpStream, n: usize) -> Histogram<u64> {
    let mut histogram = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("histogram");
    let mut buffer = vec![0u8; LARGE];
    for _ in 0..n {
        let took = round_trip(stream, b'p', &mut buffer).await;
        histogram
            .record(took.as_micros().max(1) as u64)
            .expect("in range");
    }
    histogram
}

/// The median time of a 1 MiB reply over `n` transfers.
async fn bulk_median(stream: &mut TcpStream, n: usize) -> Duration {
    let mut buffer = vec![0u8; LARGE];
    let mut times = Vec::with_capacity(n);
    for _ in 0..n {
        times.push(round_trip(stream, b'b', &mut buffer).await);
    }
    times.sort();
    times[n / 2]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

#[tokio::main]
async fn main() {
    let round_trips: usize = std::env::var("BENCH_ROUND_TRIPS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3000);
    let server = upstream().await;
    let control = TcpListener::bind("127.0.0.1:0").await.expect("bind control");
    let base = format!("http://{}", control.local_addr().expect("addr"));
    let spec = format!("bench=127.0.0.1:0={server}").parse().expect("link spec");
    tokio::spawn(proxy::serve(control, vec![spec], 0, std::future::pending()));
    let http = reqwest::Client::new();
    let links: serde_json::Value = http
        .get(format!("{base}/links"))
        .send()
        .await
        .expect("links")
        .json()
        .await
        .expect("json");
    let link: SocketAddr = links[0]["listen"]
        .as_str()
        .expect("listen")
        .parse()
        .expect("addr");
    let control = ProxyClient::new(base, http);

    let mut direct = connect(server).await;
    let mut proxied = connect(link).await;
    // Warm both paths, then alternate so that drift on a noisy machine hits both alike.
    small_round_trips(&mut direct, 200).await;
    small_round_trips(&mut proxied, 200).await;
    let mut direct_h = Histogram::<u64>::new(3).expect("histogram");
    let mut proxied_h = Histogram::<u64>::new(3).expect("histogram");
    for _ in 0..10 {
        direct_h
            .add(small_round_trips(&mut direct, round_trips / 10).await)
            .expect("add");
        proxied_h
            .add(small_round_trips(&mut proxied, round_trips / 10).await)
            .expect("add");
    }
    let (direct_bulk, proxied_bulk) = (
        bulk_median(&mut direct, 30).await,
        bulk_median(&mut proxied, 30).await,
    );
    let mib_per_s = |d: Duration| 1.0 / d.as_secs_f64();
    println!(
        "proxy overhead, no fault ({round_trips} round trips of 64 B each way, one connection; 30 x 1 MiB)"
    );
    println!("| path    | p50 us | p99 us | 1 MiB reply ms | MiB/s  |");
    println!("|---------|-------:|-------:|---------------:|-------:|");
    for (name, h, bulk) in [
        ("direct", &direct_h, direct_bulk),
        ("proxied", &proxied_h, proxied_bulk),
    ] {
        let (p50, p99) = (h.value_at_quantile(0.5), h.value_at_quantile(0.99));
        println!(
            "| {name:<7} | {p50:>6} | {p99:>6} | {:>14.2} | {:>6.0} |",
            ms(bulk),
            mib_per_s(bulk)
        );
    }
    let added_p50 = proxied_h.value_at_quantile(0.5) as i64 - direct_h.value_at_quantile(0.5) as i64;
    let added_p99 = proxied_h.value_at_quantile(0.99) as i64 - direct_h.value_at_quantile(0.99) as i64;
    let throughput_ratio = direct_bulk.as_secs_f64() / proxied_bulk.as_secs_f64();
    println!(
        "added: p50 {added_p50} us (target < 100), p99 {added_p99} us; bulk throughput ratio {throughput_ratio:.2} (target >= 0.8)\n"
    );

    let base_rt = ms(Duration::from_micros(proxied_h.value_at_quantile(0.5)));
    println!("latency fidelity (added over the no-fault proxied path; target within 10% of the ask)");
    println!(
        "| asked ms | round trip p50 ms | added ms | error | 1 MiB reply ms | added ms | error | stacked? |"
    );
    println!(
        "|---------:|------------------:|---------:|------:|---------------:|---------:|------:|----------|"
    );
    for asked in [1.0, 5.0, 20.0, 100.0] {
        control
            .set(
                "bench",
                &[NetworkFault::Latency {
                    ms: asked,
                    jitter_ms: 0.0,
                }],
            )
            .await
            .expect("set latency");
        let n = if asked >= 100.0 { 30 } else { 200 };
        let h = small_round_trips(&mut proxied, n).await;
        let bulk = bulk_median(&mut proxied, if asked >= 100.0 { 5 } else { 15 }).await;
        control.clear("bench").await.expect("clear");
        let rt = ms(Duration::from_micros(h.value_at_quantile(0.5)));
        let (rt_added, bulk_added) = (rt - base_rt, ms(bulk) - ms(proxied_bulk));
        let error = |added: f64| (added - asked) / asked * 100.0;
        // A reply spans 64 chunks of 16 KiB; per-chunk delays would add ~64x the ask.
        let stacked = if bulk_added > 2.0 * asked + 5.0 {
            "YES"
        } else {
            "no"
        };
        println!(
            "| {asked:>8} | {rt:>17.2} | {rt_added:>8.2} | {:>4.1}% | {:>14.2} | {bulk_added:>8.2} | {:>4.1}% | {stacked:<8} |",
            error(rt_added),
            ms(bulk),
            error(bulk_added),
        );
    }
}
