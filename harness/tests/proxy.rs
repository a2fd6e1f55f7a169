//! The fault proxy in-process, in front of a small TCP server on 127.0.0.1: each fault observed from
//! the client's side, and the control API's answers to good and bad requests. No Docker needed.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use fortress::faults::proxy::client::ProxyClient;
use fortress::faults::proxy::{self, NetworkFault, ScopedFault};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const SMALL: usize = 64;
const LARGE: usize = 1 << 20;
const MEDIUM: usize = 100 * 1024;

/// Upstream: per connection, answers each one-byte request: `p` -> 64 bytes, `k` -> 100 KiB, `b` -> 1 MiB.
async fn upstream() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut op = [0u8; 1];
                while socket.read_exact(&mut op).await.is_ok() {
                    let size = match op[0] {
                        b'p' => SMALL,
                        b'k' => MEDIUM,
                        _ => LARGE,
                    };
                    if socket.write_all(&vec![7u8; size]).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    addr
}

struct Proxied {
    link: SocketAddr,
    control: ProxyClient,
    base: String,
}

async fn proxied() -> Proxied {
    let upstream = upstream().await;
    let control = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", control.local_addr().unwrap());
    let spec = format!("db=127.0.0.1:0={upstream}").parse().unwrap();
    tokio::spawn(proxy::serve(control, vec![spec], 42, std::future::pending()));
    let http = reqwest::Client::new();
    let links: serde_json::Value = http
        .get(format!("{base}/links"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let link = links[0]["listen"].as_str().unwrap().parse().unwrap();
    Proxied {
        link,
        control: ProxyClient::new(base.clone(), http),
        base,
    }
}

/// Sends `op` and reads the whole reply; answers how long that took.
async fn round_trip(stream: &mut TcpStream, op: u8) -> std::io::Result<Duration> {
    let size = match op {
        b'p' => SMALL,
        b'k' => MEDIUM,
        _ => LARGE,
    };
    let started = Instant::now();
    stream.write_all(&[op]).await?;
    let mut reply = vec![0u8; size];
    stream.read_exact(&mut reply).await?;
    Ok(started.elapsed())
}

async fn median_small(stream: &mut TcpStream) -> Duration {
    let mut times = Vec::new();
    for _ in 0..9 {
        times.push(round_trip(stream, b'p').await.unwrap());
    }
    times.sort();
    times[4]
}

#[tokio::test]
async fn latency_applies_to_open_connections_once_per_reply_and_clears() {
    let p = proxied().await;
    let mut conn = TcpStream::connect(p.link).await.unwrap();
    let before = median_small(&mut conn).await;

    p.control
        .set(
            "db",
            &[NetworkFault::Latency {
                ms: 30.0,
                jitter_ms: 0.0,
            }],
        )
        .await
        .unwrap();
    let during = median_small(&mut conn).await;
    assert!(
        during >= Duration::from_millis(30),
        "the open connection got the delay: {during:?}"
    );
    assert!(
        during < Duration::from_millis(30) + Duration::from_millis(200),
        "{during:?}"
    );
    let bulk = round_trip(&mut conn, b'b').await.unwrap();
    // 1 MiB is 64+ chunks: a per-chunk delay would take seconds; a delay line adds it once.
    assert!(
        bulk >= Duration::from_millis(30) && bulk < Duration::from_millis(1000),
        "bulk reply: {bulk:?}"
    );

    let changed = p.control.clear("db").await.unwrap();
    assert!(changed.link.faults.is_empty());
    let evidence = changed.previous.evidence;
    assert!(evidence.touched_traffic(), "{evidence:?}");
    assert!(
        evidence.delayed_chunks >= 10 && (evidence.mean_added_delay_ms - 30.0).abs() < 1.0,
        "{evidence:?}"
    );
    let after = median_small(&mut conn).await;
    assert!(
        after < Duration::from_millis(30),
        "cleared: {after:?} (before: {before:?})"
    );
}

#[tokio::test]
async fn reset_resets_connections_that_carry_traffic() {
    let p = proxied().await;
    let mut conn = TcpStream::connect(p.link).await.unwrap();
    round_trip(&mut conn, b'p').await.unwrap();
    p.control.set("db", &[NetworkFault::Reset]).await.unwrap();
    let error = round_trip(&mut conn, b'p').await.unwrap_err();
    assert_eq!(error.kind(), std::io::ErrorKind::ConnectionReset, "{error}");
    let changed = p.control.clear("db").await.unwrap();
    assert_eq!(changed.previous.evidence.resets, 1);
    let mut fresh = TcpStream::connect(p.link).await.unwrap();
    round_trip(&mut fresh, b'p').await.unwrap();
}

#[tokio::test]
async fn down_refuses_new_connections_and_resets_open_ones_until_cleared() {
    let p = proxied().await;
    let mut open = TcpStream::connect(p.link).await.unwrap();
    round_trip(&mut open, b'p').await.unwrap();
    p.control.set("db", &[NetworkFault::Down]).await.unwrap();
    let refused = TcpStream::connect(p.link).await.unwrap_err();
    assert_eq!(refused.kind(), std::io::ErrorKind::ConnectionRefused, "{refused}");
    let error = round_trip(&mut open, b'p').await.unwrap_err();
    assert!(
        matches!(
            error.kind(),
            std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::UnexpectedEof
        ),
        "{error}"
    );
    let changed = p.control.clear("db").await.unwrap();
    let evidence = changed.previous.evidence;
    assert_eq!(evidence.closed_by_down, 1);
    // The open connection the fault closed is one it touched, and so one it saw: a blast radius
    // never reads "1 of 0".
    assert_eq!(
        (evidence.connections_touched, evidence.connections_seen),
        (1, 1),
        "{evidence:?}"
    );
    let mut again = TcpStream::connect(p.link).await.unwrap();
    round_trip(&mut again, b'p').await.unwrap();
}

#[tokio::test]
async fn blackhole_holds_bytes_until_cleared_then_delivers_them() {
    let p = proxied().await;
    let mut conn = TcpStream::connect(p.link).await.unwrap();
    p.control.set("db", &[NetworkFault::Blackhole]).await.unwrap();
    conn.write_all(b"p").await.unwrap();
    let mut reply = vec![0u8; SMALL];
    let hung = tokio::time::timeout(Duration::from_millis(300), conn.read_exact(&mut reply)).await;
    assert!(hung.is_err(), "nothing arrives through a blackhole");
    let changed = p.control.clear("db").await.unwrap();
    assert_eq!(changed.previous.evidence.held_chunks, 1);
    tokio::time::timeout(Duration::from_secs(5), conn.read_exact(&mut reply))
        .await
        .unwrap()
        .unwrap();
}

#[tokio::test]
async fn bandwidth_caps_throughput() {
    let p = proxied().await;
    let mut conn = TcpStream::connect(p.link).await.unwrap();
    let free = round_trip(&mut conn, b'k').await.unwrap();
    p.control
        .set(
            "db",
            &[NetworkFault::Bandwidth {
                bytes_per_second: 200_000,
            }],
        )
        .await
        .unwrap();
    let capped = round_trip(&mut conn, b'k').await.unwrap();
    // 100 KiB at 200 kB/s, paced in pieces of 10 kB: about 0.46 s after the first piece.
    assert!(
        capped >= Duration::from_millis(350),
        "capped: {capped:?}, free: {free:?}"
    );
    assert!(
        p.control
            .clear("db")
            .await
            .unwrap()
            .previous
            .evidence
            .throttled_chunks
            >= 6
    );
}

#[tokio::test]
async fn a_fault_on_an_idle_link_has_no_evidence() {
    let p = proxied().await;
    p.control
        .set(
            "db",
            &[NetworkFault::Latency {
                ms: 5.0,
                jitter_ms: 1.0,
            }],
        )
        .await
        .unwrap();
    let changed = p.control.clear("db").await.unwrap();
    assert!(
        !changed.previous.evidence.touched_traffic(),
        "{:?}",
        changed.previous.evidence
    );
}

#[tokio::test]
async fn the_control_api_rejects_bad_requests_and_changes_nothing() {
    let p = proxied().await;
    p.control
        .set(
            "db",
            &[NetworkFault::Latency {
                ms: 5.0,
                jitter_ms: 0.0,
            }],
        )
        .await
        .unwrap();
    let http = reqwest::Client::new();
    let put = |body: &'static str| {
        http.put(format!("{}/links/db", p.base))
            .header("content-type", "application/json")
            .body(body)
            .send()
    };
    let cases: [(&str, u16, &str); 6] = [
        ("{\"faults\": [", 400, "malformed_json"),
        (r#"{"faults":[{"kind":"teleport"}]}"#, 422, "invalid_faults"),
        (
            r#"{"faults":[{"kind":"latency","ms":-3}]}"#,
            422,
            "invalid_faults",
        ),
        (
            r#"{"faults":[{"kind":"latency","ms":1e9}]}"#,
            422,
            "invalid_faults",
        ),
        (
            r#"{"faults":[{"kind":"bandwidth","bytes_per_second":0}]}"#,
            422,
            "invalid_faults",
        ),
        (
            r#"{"faults":[{"kind":"reset"},{"kind":"reset"}]}"#,
            422,
            "invalid_faults",
        ),
    ];
    for (body, status, code) in cases {
        let response = put(body).await.unwrap();
        assert_eq!(response.status().as_u16(), status, "{body}");
        let error: serde_json::Value = response.json().await.unwrap();
        assert_eq!(error["error"]["code"], code, "{body}: {error}");
    }
    let unknown_kind = put(r#"{"faults":[{"kind":"teleport"}]}"#)
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        unknown_kind.contains("latency") && unknown_kind.contains("blackhole"),
        "{unknown_kind}"
    );
    let unknown_link = http
        .delete(format!("{}/links/mysql", p.base))
        .send()
        .await
        .unwrap();
    assert_eq!(unknown_link.status(), 404);
    let body: serde_json::Value = unknown_link.json().await.unwrap();
    assert!(
        body["error"]["message"].as_str().unwrap().contains("links: db"),
        "{body}"
    );

    let link = p.control.link("db").await.unwrap();
    assert_eq!(
        link.faults,
        [ScopedFault::from(NetworkFault::Latency {
            ms: 5.0,
            jitter_ms: 0.0
        })],
        "bad requests changed nothing"
    );
}

/// `n` connections through the link, each having carried one round trip.
async fn open_connections(p: &Proxied, n: usize) -> Vec<TcpStream> {
    let mut conns = Vec::new();
    for _ in 0..n {
        let mut conn = TcpStream::connect(p.link).await.unwrap();
        round_trip(&mut conn, b'p').await.unwrap();
        conns.push(conn);
    }
    conns
}

/// Resets on `fraction` of 40 open connections: how many the client saw reset, and the evidence.
async fn reset_share(fraction: f64) -> (usize, proxy::Evidence) {
    let p = proxied().await;
    let mut conns = open_connections(&p, 40).await;
    let reset = ScopedFault {
        fault: NetworkFault::Reset,
        fraction,
    };
    p.control.set("db", &[reset]).await.unwrap();
    let mut failed = 0;
    for conn in &mut conns {
        if round_trip(conn, b'p').await.is_err() {
            failed += 1;
        }
    }
    (failed, p.control.clear("db").await.unwrap().previous.evidence)
}

#[tokio::test]
async fn a_fraction_takes_its_share_of_connections_and_the_evidence_counts_them() {
    let (failed, evidence) = reset_share(0.25).await;
    // Binomial(40, 0.25): mean 10, sd 2.7; seeded, so the same 40 connections give the same count.
    assert!((3..=18).contains(&failed), "{failed} of 40 reset");
    assert_eq!(evidence.connections_touched, failed as u64, "{evidence:?}");
    assert_eq!(evidence.resets, failed as u64, "{evidence:?}");
    assert_eq!(evidence.connections_seen, 40, "{evidence:?}");
    assert_eq!(
        reset_share(0.25).await.0,
        failed,
        "the same seed takes the same connections"
    );
}

#[tokio::test]
async fn a_fraction_of_0_touches_nothing_and_of_1_everything() {
    // Shopify/toxiproxy#603: a toxic with toxicity 0 still reset a connection now and then.
    let (failed, evidence) = reset_share(0.0).await;
    assert_eq!(
        (failed, evidence.connections_touched, evidence.resets),
        (0, 0, 0),
        "{evidence:?}"
    );
    assert_eq!(evidence.connections_seen, 40);
    let (failed, evidence) = reset_share(1.0).await;
    assert_eq!((failed, evidence.connections_touched), (40, 40), "{evidence:?}");
}

#[tokio::test]
async fn latency_on_a_share_slows_only_the_connections_it_takes() {
    let p = proxied().await;
    let mut conns = open_connections(&p, 20).await;
    let slow = ScopedFault {
        fault: NetworkFault::Latency {
            ms: 100.0,
            jitter_ms: 0.0,
        },
        fraction: 0.5,
    };
    p.control.set("db", &[slow]).await.unwrap();
    let mut slowed = 0;
    for conn in &mut conns {
        if round_trip(conn, b'p').await.unwrap() >= Duration::from_millis(90) {
            slowed += 1;
        }
    }
    let evidence = p.control.clear("db").await.unwrap().previous.evidence;
    assert!((3..=17).contains(&slowed), "{slowed} of 20 slowed");
    assert_eq!(evidence.connections_touched, slowed, "{evidence:?}");
    assert_eq!(evidence.delayed_chunks, slowed, "{evidence:?}");
}

#[tokio::test]
async fn a_fraction_outside_0_to_1_is_refused_with_what_is_allowed() {
    let p = proxied().await;
    let response = reqwest::Client::new()
        .put(format!("{}/links/db", p.base))
        .json(&serde_json::json!({ "faults": [{ "kind": "reset", "fraction": 1.5 }] }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 422);
    let body: serde_json::Value = response.json().await.unwrap();
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("between 0 and 1"),
        "{body}"
    );
}
