//! Three replicas behind HAProxy: the traffic is spread over them, a cookie pins a client, a killed
//! replica is taken out and put back when it returns, a rolling restart goes one replica at a time,
//! and every port is published on 127.0.0.1 only.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use fortress::env::docker::DockerClient;
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

/// When Docker last started each service replica's container.
async fn replica_start_times(lab: &Lab) -> Vec<String> {
    let docker = DockerClient::connect().await.unwrap();
    let mut times = Vec::new();
    for replica in lab.replicas() {
        let name = &lab.node(Role::Service(replica)).unwrap().name;
        let inspect = docker.api().inspect_container(name, None).await.unwrap();
        times.push(inspect.state.and_then(|s| s.started_at).unwrap_or_default());
    }
    times
}

/// What a client saw while the deploy ran: its answers, and the fewest replicas the balancer had in.
#[derive(Debug, Default)]
struct Seen {
    statuses: BTreeMap<String, usize>,
    fewest_in: usize,
}

/// Sends a request through the balancer every 20 ms, and reads its stats as often, until `done`
/// (at most 3000 requests, a minute).
async fn watch_clients(lab: &Lab, done: &CancellationToken) -> Seen {
    let url = format!("{}/healthz", lab.entry_url().await.unwrap());
    let mut seen = Seen {
        fewest_in: usize::MAX,
        ..Seen::default()
    };
    for _ in 0..3000 {
        if done.is_cancelled() {
            break;
        }
        let answer = match lab.http().get(&url).send().await {
            Ok(response) => response.status().as_u16().to_string(),
            Err(error) => format!("no answer: {error}"),
        };
        *seen.statuses.entry(answer).or_default() += 1;
        let up = per_replica(lab).await.values().filter(|(_, up)| *up).count();
        seen.fewest_in = seen.fewest_in.min(up);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    seen
}

#[tokio::test]
async fn a_rolling_restart_restarts_every_replica_one_at_a_time_and_clients_see_none_of_it() {
    let lab = start_three_sticky().await;
    let started = replica_start_times(&lab).await;
    let retried =
        |stats: Vec<fortress::env::balancer::ServerStats>| -> f64 { stats.iter().map(|s| s.retried).sum() };
    let retried_before = retried(lab.balancer_stats().await.unwrap());
    let timeline = FaultTimeline::default();
    let stop = CancellationToken::new();
    let done = CancellationToken::new();
    let (deployed, seen) = tokio::join!(
        async {
            let deployed = with_fault(&lab, &timeline, &stop, &Fault::RollingRestart, async {}).await;
            done.cancel();
            deployed
        },
        watch_clients(&lab, &done)
    );
    deployed.expect("the rolling restart");
    eprintln!("during the deploy: {seen:?}");

    // Each replica's container was started again.
    let restarted = replica_start_times(&lab).await;
    for (replica, (before, after)) in (1..).zip(started.iter().zip(&restarted)) {
        assert_ne!(before, after, "service-{replica} was restarted");
    }
    // One at a time: each replica was taken out of the balancer and drained, stopped, started again
    // (ready, modes back) and let back in before the next was taken out, inside the deploy's span.
    let steps: Vec<String> = timeline
        .entries()
        .iter()
        .map(|e| format!("{} {}", e.action, e.fault))
        .collect();
    let mut expected = vec!["inject rolling restart of every service replica".to_owned()];
    for replica in ["service", "service-2", "service-3"] {
        expected.extend([
            format!("inject take {replica} out of the balancer"),
            format!("inject stop {replica}"),
            format!("revert stop {replica}"),
            format!("revert take {replica} out of the balancer"),
        ]);
    }
    expected.push("revert rolling restart of every service replica".to_owned());
    assert_eq!(steps, expected);
    assert!(timeline.still_injected().is_empty());
    // The balancer always had two replicas in, and every request was answered the first time: none
    // was sent to a replica on its way down (which HAProxy would have retried on another).
    let retried_after = retried(lab.balancer_stats().await.unwrap());
    assert_eq!(
        retried_after - retried_before,
        0.0,
        "requests the balancer had to retry"
    );
    assert!(seen.fewest_in >= 2, "{seen:?}");
    let total: usize = seen.statuses.values().sum();
    assert!(total >= 100, "the client kept sending: {seen:?}");
    assert_eq!(seen.statuses.get("200"), Some(&total), "{seen:?}");
    lab.shutdown().await.unwrap();
}
