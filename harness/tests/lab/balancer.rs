//! Three replicas behind HAProxy: the traffic is spread over them, a cookie pins a client, a killed
//! replica is taken out and put back when it returns, and every port is published on 127.0.0.1 only.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use fortress::env::{Balancing, Lab, LabSpec};
use fortress::faults::{Fault, FaultTimeline, with_fault};
use fortress::vocabulary::Role;
use tokio_util::sync::CancellationToken;

use crate::wait_until;

async fn start_three_sticky() -> Lab {
    let spec = LabSpec {
        replicas: 3,
        balancer: Some(Balancing { sticky: true }),
        ..LabSpec::with_binary(PathBuf::from(env!("CARGO_BIN_EXE_fortress")))
    };
    Lab::start(&spec, &|line| eprintln!("{line}"))
        .await
        .unwrap_or_else(|e| {
            panic!("could not start the lab: {e}\n(the lab needs Docker and the images: run ci/setup)")
        })
}

/// Requests the balancer has sent each replica so far, and whether it has it in.
async fn per_replica(lab: &Lab) -> BTreeMap<u32, (f64, bool)> {
    let stats = lab.balancer_stats().await.expect("the balancer's stats answer");
    stats.iter().map(|s| (s.replica, (s.requests, s.up))).collect()
}

/// Sends `n` requests through the balancer, with `cookie` when given; answers the statuses and the
/// last sticky cookie the balancer set.
async fn send(lab: &Lab, n: usize, cookie: Option<&str>) -> (Vec<u16>, Option<String>) {
    let url = format!("{}/healthz", lab.entry_url().await.unwrap());
    let mut statuses = Vec::new();
    let mut set = None;
    for _ in 0..n {
        let mut request = lab.http().get(&url);
        if let Some(cookie) = cookie {
            request = request.header("Cookie", cookie);
        }
        let response = request.send().await.expect("the balancer answers");
        statuses.push(response.status().as_u16());
        if let Some(value) = response.headers().get("set-cookie") {
            let value = value.to_str().unwrap();
            set = value.split(';').next().map(str::to_owned);
        }
    }
    (statuses, set)
}

fn grew(before: &BTreeMap<u32, (f64, bool)>, after: &BTreeMap<u32, (f64, bool)>, replica: u32) -> f64 {
    after[&replica].0 - before[&replica].0
}

#[tokio::test]
async fn the_balancer_spreads_pins_takes_a_dead_replica_out_and_puts_it_back() {
    let lab = start_three_sticky().await;

    // Only 127.0.0.1, for every port of every container (the balancer publishes two).
    crate::assert_loopback_only(&lab, 7, "postgres, redis, proxy, 3 replicas, balancer").await;

    // Without the cookie: round robin, 20 each.
    let before = per_replica(&lab).await;
    let (statuses, cookie) = send(&lab, 60, None).await;
    assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");
    let after = per_replica(&lab).await;
    for replica in 1..=3 {
        assert_eq!(
            grew(&before, &after, replica),
            20.0,
            "round robin: {before:?} -> {after:?}"
        );
    }

    // With it: every request to the replica it names.
    let cookie = cookie.expect("the balancer sets its sticky cookie");
    let pinned: Role = cookie.split_once('=').unwrap().1.parse().unwrap();
    let Role::Service(pinned) = pinned else {
        panic!("the cookie names a replica: {cookie}")
    };
    let before = per_replica(&lab).await;
    send(&lab, 30, Some(&cookie)).await;
    let after = per_replica(&lab).await;
    assert_eq!(
        grew(&before, &after, pinned),
        30.0,
        "pinned to {pinned}: {before:?} -> {after:?}"
    );

    // Kill replica 2: out within the health checks' bound, the others carry every request, and it
    // is back in once started again.
    let timeline = FaultTimeline::default();
    let stop = CancellationToken::new();
    with_fault(&lab, &timeline, &stop, &Fault::Kill(Role::Service(2)), async {
        wait_until(
            "the balancer takes service-2 out",
            Duration::from_secs(10),
            || async { per_replica(&lab).await.get(&2).is_some_and(|(_, up)| !up) },
        )
        .await;
        let before = per_replica(&lab).await;
        let (statuses, _) = send(&lab, 30, None).await;
        assert!(
            statuses.iter().all(|s| *s == 200),
            "with service-2 out: {statuses:?}"
        );
        let after = per_replica(&lab).await;
        assert_eq!(grew(&before, &after, 2), 0.0, "nothing for the dead replica");
    })
    .await
    .expect("kill and start service-2");
    wait_until(
        "the balancer puts service-2 back",
        Duration::from_secs(15),
        || async { per_replica(&lab).await.get(&2).is_some_and(|(_, up)| *up) },
    )
    .await;
    let before = per_replica(&lab).await;
    send(&lab, 30, None).await;
    let after = per_replica(&lab).await;
    assert!(
        grew(&before, &after, 2) >= 9.0,
        "service-2 serves again: {before:?} -> {after:?}"
    );
    lab.shutdown().await.unwrap();
}
