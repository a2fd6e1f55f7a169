//! The fault space `fortress explore` searches, and how lineage prunes it: a fault is only worth a
//! run on a link the load's traffic went through, or on a container at the end of such a link (or
//! the entry the load talks to). Faults on anything else cannot touch what the load does, and a run
//! spent on them would only come back untouched. The same holds for the data's own faults: every
//! cached key expired at once only where the load went through Redis, and an index dropped only if
//! the load's queries scanned it.

use std::collections::BTreeMap;

use serde::Serialize;

use super::schedule::Schedule;
use crate::experiment::definition::Objective;
use crate::faults::Fault;
use crate::faults::proxy::{NetworkFault, ScopedFault};
use crate::vocabulary::{Link, Role};

/// The delay a latency fault adds: ten times a slow query, well past any sane request timeout of a
/// call that should take milliseconds.
const LATENCY_MS: f64 = 500.0;
/// The second latency fault's delay, as a share of the objective's p99: a request of a few round
/// trips on the link (five at most) stays within half the objective, one of twenty (a query per
/// row, an N+1) takes twice it, and so does a pool whose connections each such request holds that
/// long. 500 ms alone breaks both kinds, and tells them apart no better than no fault at all.
const SCALED_LATENCY_SHARE: f64 = 1.0 / 10.0;

/// What the load touched, measured in a run without faults: the links that carried bytes, and the
/// containers the load's requests entered by.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Lineage {
    /// The proxied links that carried traffic, with the bytes sent upstream on each.
    pub used: Vec<(Link, u64)>,
    /// The proxied links that carried nothing.
    pub unused: Vec<Link>,
    /// The containers the load enters by: every service replica, and the balancer if there is one.
    #[serde(serialize_with = "named")]
    pub entry: Vec<Role>,
    /// The indexes the load's queries scanned (Postgres's own count rose), and those it did not.
    /// Unique indexes are left out: dropping one changes what the data may hold, not how fast it
    /// is read.
    pub indexes: Vec<String>,
    pub indexes_unused: Vec<String>,
    /// Links the trial without faults left unused that a single fault's trial sent traffic down,
    /// once per fault that did.
    pub grown: Vec<Grown>,
}

/// A link that carried traffic only under a fault: a dependency on a fallback path (a cache miss's
/// query, a retry elsewhere), invisible to a lineage measured without faults. The faults that open
/// it are the only ways to reach it, so its faults are tried paired with each of them.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Grown {
    pub link: Link,
    /// The schedule whose trial first sent traffic down the link, and the bytes it sent upstream.
    pub by: Schedule,
    pub bytes: u64,
    /// On the Postgres link, the statements the trial ran that the trial without faults ran less
    /// than half as often: what opened it when its bytes alone did not stand out.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub statements: Vec<StatementRuns>,
}

/// How often each statement ran in one trial, by `pg_stat_statements`' query id, with its text.
pub type StatementCalls = BTreeMap<i64, (i64, String)>;

/// A statement a fault's trial ran more often than the trial without faults.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StatementRuns {
    /// Its normalised text, cut to a line.
    pub query: String,
    pub under_fault: i64,
    pub without: i64,
}

/// The fewest more runs of a statement that say a fault sent the load's work to the database: four
/// hot keys expiring over a fast link are four refills, one per key.
const MORE_RUNS: i64 = 3;

/// Each statement's runs between two readings (a statement new since the first ran all its calls
/// in between; a count that went down, a restarted server's, says nothing).
pub fn runs_between(before: &StatementCalls, after: &StatementCalls) -> StatementCalls {
    (after.iter())
        .filter_map(|(id, (calls, query))| {
            let earlier = before.get(id).map_or(0, |(c, _)| *c);
            (*calls >= earlier).then(|| (*id, (calls - earlier, query.clone())))
        })
        .collect()
}

/// The statements a single fault's trial ran at least twice as often as the trial without faults
/// and at least `MORE_RUNS` more times: per-statement lineage. A cache miss's query over a fast link
/// is a few hundred bytes among the link's background (the seeding, the outbox's polls), which a
/// byte count cannot tell apart; the database's own count of that one statement can.
pub fn statements_opened(without: &StatementCalls, under_fault: &StatementCalls) -> Vec<StatementRuns> {
    (under_fault.iter())
        .filter_map(|(id, (runs, query))| {
            let quiet = without.get(id).map_or(0, |(c, _)| *c);
            let opened = *runs >= 2 * quiet && *runs - quiet >= MORE_RUNS;
            opened.then(|| StatementRuns {
                query: one_line(query),
                under_fault: *runs,
                without: quiet,
            })
        })
        .collect()
}

/// A statement's text on one line of at most 120 characters.
fn one_line(query: &str) -> String {
    let line = query.split_whitespace().collect::<Vec<_>>().join(" ");
    match line.char_indices().nth(120) {
        Some((cut, _)) => format!("{}...", &line[..cut]),
        None => line,
    }
}

fn named<S: serde::Serializer>(roles: &[Role], s: S) -> Result<S::Ok, S::Error> {
    s.collect_seq(roles.iter().map(ToString::to_string))
}

/// A link's traffic, by bytes sent upstream: over the trial without faults, and over an idle
/// stretch of the same length before it (health checks, pollers: what flows with no load at all).
#[derive(Debug, Clone, Copy)]
pub struct Traffic {
    pub link: Link,
    pub with_load: u64,
    pub idle: u64,
}

/// Bytes a link may carry beyond twice its idle traffic and still count as unused by the load.
const NOISE_BYTES: u64 = 4096;

impl Traffic {
    /// More than twice the link's idle traffic, and a few KiB: a link carrying only its background
    /// (a poller, health checks) leads to nothing the load's requests depend on.
    pub fn used(&self) -> bool {
        self.with_load > 2 * self.idle + NOISE_BYTES
    }
}

impl Lineage {
    /// The links the load used (`Traffic::used`), and the rest.
    pub fn of(traffic: &[Traffic], entry: Vec<Role>) -> Self {
        let mut lineage = Self {
            entry,
            ..Self::default()
        };
        for t in traffic {
            if t.used() {
                lineage.used.push((t.link, t.with_load));
            } else {
                lineage.unused.push(t.link);
            }
        }
        lineage
    }

    /// Sorts the indexes into those the trial scanned (their scans in `after` beyond `before`, by
    /// name) and the rest.
    pub fn with_indexes(mut self, before: &BTreeMap<String, i64>, after: &BTreeMap<String, i64>) -> Self {
        for (name, scans) in after {
            if *scans > before.get(name).copied().unwrap_or(0) {
                self.indexes.push(name.clone());
            } else {
                self.indexes_unused.push(name.clone());
            }
        }
        self
    }

    /// The links the traffic went through.
    pub fn links(&self) -> impl Iterator<Item = Link> + '_ {
        self.used.iter().map(|(link, _)| *link)
    }

    /// The same lab as if every link had carried traffic: the space without pruning.
    pub fn everything(&self) -> Self {
        let mut used = self.used.clone();
        used.extend(self.unused.iter().map(|link| (*link, 0)));
        let mut indexes = self.indexes.clone();
        indexes.extend(self.indexes_unused.iter().cloned());
        Self {
            used,
            unused: Vec::new(),
            entry: self.entry.clone(),
            indexes,
            indexes_unused: Vec::new(),
            grown: Vec::new(),
        }
    }

    /// Whether `faults` already grew the lineage by `link`.
    pub fn opened(&self, link: Link, faults: &[Fault]) -> bool {
        (self.grown.iter()).any(|g| g.link == link && g.by.faults == faults)
    }
}

/// The pairs a link grown under `by`'s single fault calls for: that fault with each fault of the
/// link (its network faults, then a kill, stop and pause of the server behind it), ranked by how
/// likely each is to hurt a fallback path: slow first (the scaled latency, then 500 ms: a fallback
/// that works but slowly is what piles a stampede or a retry storm onto it), then dead. Each comes
/// with its rank, so the search can try every revealing fault's first-ranked pair before any
/// second. None when `by` is not a single fault.
pub fn revealed_pairs(by: &[Fault], link: Link, objective: &Objective) -> Vec<(usize, Vec<Fault>)> {
    let [opener] = by else { return Vec::new() };
    let scaled_ms = (objective.p99_ms * SCALED_LATENCY_SHARE).round();
    let mut network = network_faults(link, scaled_ms);
    // network_faults lists down, blackhole, reset, 500 ms, the scaled latency (then HTTP faults):
    // the latencies go first, the scaled one before 500 ms.
    network.sort_by_key(|f| match f {
        NetworkFault::Latency { ms, .. } if *ms < LATENCY_MS => 0,
        NetworkFault::Latency { .. } => 1,
        _ => 2,
    });
    let mut faults: Vec<Fault> = (network.into_iter())
        .map(|fault| Fault::Network {
            link,
            fault: ScopedFault::from(fault),
        })
        .collect();
    let server = link.role();
    if server != Role::Provider {
        faults.extend([Fault::Kill(server), Fault::Stop(server), Fault::Pause(server)]);
    }
    (faults.into_iter().enumerate())
        .filter(|(_, f)| target(f) != target(opener) && !needs_what_the_other_stops(opener, f))
        .map(|(rank, f)| (rank, vec![opener.clone(), f]))
        .collect()
}

/// Every single fault worth a run: on each used link the network faults (and the HTTP ones on an
/// HTTP link), and on each container the load reaches (the entry, and the far end of each used
/// link) a kill, a stop and a pause.
pub fn singles(lineage: &Lineage, objective: &Objective) -> Vec<Fault> {
    let mut faults = Vec::new();
    let scaled_ms = (objective.p99_ms * SCALED_LATENCY_SHARE).round();
    for link in lineage.links() {
        faults.extend(
            network_faults(link, scaled_ms)
                .into_iter()
                .map(|fault| Fault::Network {
                    link,
                    fault: ScopedFault::from(fault),
                }),
        );
    }
    // Not the provider: its ledger lives in its memory, so a restart would forget the very payments
    // the invariants check. Its outages are the payments link's faults.
    let behind = lineage.links().map(Link::role).filter(|r| *r != Role::Provider);
    let roles = lineage.entry.iter().copied().chain(behind);
    for role in roles {
        faults.extend([Fault::Kill(role), Fault::Stop(role), Fault::Pause(role)]);
    }
    if lineage.links().any(|link| link == Link::Redis) {
        // Hot keys written together with one TTL expire together.
        faults.push(Fault::ExpireCache);
    }
    faults.extend(lineage.indexes.iter().cloned().map(Fault::DropIndex));
    faults
}

/// The network faults of `link`, the second latency delaying `scaled_ms` (when it is one of its own).
fn network_faults(link: Link, scaled_ms: f64) -> Vec<NetworkFault> {
    let mut faults = vec![
        NetworkFault::Down,
        NetworkFault::Blackhole,
        NetworkFault::Reset,
        NetworkFault::Latency {
            ms: LATENCY_MS,
            jitter_ms: 0.0,
        },
    ];
    if (1.0..LATENCY_MS).contains(&scaled_ms) {
        faults.push(NetworkFault::Latency {
            ms: scaled_ms,
            jitter_ms: 0.0,
        });
    }
    if link == Link::Payments {
        // The provider answering an error, and the provider acting but its answer lost.
        faults.extend([
            NetworkFault::HttpStatus { status: 503 },
            NetworkFault::HttpLostReply { status: 504 },
        ]);
    }
    faults
}

/// What a fault acts on: two faults on the same target are not a pair worth trying.
fn target(fault: &Fault) -> String {
    match fault {
        Fault::Network { link, .. } => link.to_string(),
        Fault::Kill(role) | Fault::Stop(role) | Fault::Pause(role) => role.to_string(),
        other => other.to_string(),
    }
}

/// The server whose data a fault acts on (a cache flush, an index drop): it must be running for the
/// fault to be injected or reverted.
fn data_server(fault: &Fault) -> Option<Role> {
    match fault {
        Fault::ExpireCache => Some(Role::Redis),
        Fault::DropIndex(_) => Some(Role::Postgres),
        _ => None,
    }
}

/// Whether one of the two is a kill, stop or pause of the server whose data the other acts on: a
/// flush of a stopped Redis cannot be done, nor an index recreated on a stopped Postgres.
fn needs_what_the_other_stops(first: &Fault, second: &Fault) -> bool {
    let stops = |fault: &Fault, server: Role| matches!(fault, Fault::Kill(role) | Fault::Stop(role) | Fault::Pause(role) if *role == server);
    let one_way = |a: &Fault, b: &Fault| data_server(a).is_some_and(|server| stops(b, server));
    one_way(first, second) || one_way(second, first)
}

/// Every pair of `faults` on two different targets, leaving out those that cannot both be in force
/// (a data fault with its server stopped). A slow fault and a failure go slow first, to be staggered
/// (`schedule::lead`), and those pairs are tried before the others, the ones failing Postgres first:
/// its commit is what a slow call inside a transaction (an email sent before the order commits)
/// waits to make. Otherwise in the order of `faults`.
pub fn pairs(faults: &[Fault]) -> Vec<Vec<Fault>> {
    let mut pairs = Vec::new();
    for (i, first) in faults.iter().enumerate() {
        for second in &faults[i + 1..] {
            if target(first) != target(second) && !needs_what_the_other_stops(first, second) {
                let slow_second = second.slows() && !first.slows();
                pairs.push(match slow_second {
                    true => vec![second.clone(), first.clone()],
                    false => vec![first.clone(), second.clone()],
                });
            }
        }
    }
    let fails_postgres = |fault: &Fault| {
        let target = target(fault);
        target == Link::Postgres.to_string() || target == Role::Postgres.to_string()
    };
    pairs.sort_by_key(|pair| match pair.as_slice() {
        [slow, fail] if slow.slows() && !fail.slows() => usize::from(!fails_postgres(fail)),
        _ => 2,
    });
    pairs
}

#[cfg(test)]
mod tests {
    use super::*;

    const OBJECTIVE: Objective = Objective {
        p99_ms: 1000.0,
        error_rate: 0.01,
        group: None,
    };

    fn lineage() -> Lineage {
        Lineage {
            used: vec![(Link::Postgres, 10_000)],
            unused: vec![Link::Redis, Link::Payments],
            entry: vec![Role::Service(1)],
            indexes: vec!["orders_user_id_idx".into()],
            indexes_unused: vec!["outbox_pending_idx".into()],
            grown: Vec::new(),
        }
    }

    #[test]
    fn a_link_nothing_used_is_never_faulted_nor_the_container_behind_it() {
        let faults = singles(&lineage(), &OBJECTIVE);
        let named: Vec<String> = faults.iter().map(ToString::to_string).collect();
        assert!(
            named
                .iter()
                .all(|f| !f.contains("redis") && !f.contains("payments") && !f.contains("provider"))
        );
        assert!(named.contains(&"kill postgres".to_owned()), "{named:?}");
        assert!(named.contains(&"pause service".to_owned()), "{named:?}");
        assert!(
            named.contains(&"drop index orders_user_id_idx".to_owned()),
            "{named:?}"
        );
        assert!(
            !named
                .iter()
                .any(|f| f.contains("outbox_pending_idx") || f.contains("cached key")),
            "an index nothing scanned, and a cache nothing read, are never faulted: {named:?}"
        );
        // 5 network faults on postgres, 3 on each of service and postgres, the index scanned.
        assert_eq!(faults.len(), 5 + 3 + 3 + 1, "{named:?}");
        // Unpruned, redis (5 + 3, and its keys expired), the payments link (7, none on the
        // provider) and the index nothing scanned join.
        assert_eq!(singles(&lineage().everything(), &OBJECTIVE).len(), 12 + 9 + 7 + 1);
    }

    #[test]
    fn a_second_latency_is_a_tenth_of_the_objective() {
        let delays = |objective: &Objective| -> Vec<f64> {
            let faults = singles(&lineage(), objective);
            (faults.iter())
                .filter_map(|fault| match fault {
                    Fault::Network { fault, .. } => match fault.fault {
                        NetworkFault::Latency { ms, .. } => Some(ms),
                        _ => None,
                    },
                    _ => None,
                })
                .collect()
        };
        assert_eq!(delays(&OBJECTIVE), [500.0, 100.0]);
        let lenient = Objective {
            p99_ms: 5_000.0,
            ..OBJECTIVE
        };
        assert_eq!(
            delays(&lenient),
            [500.0],
            "no second latency as long as the first"
        );
    }

    #[test]
    fn an_index_is_used_when_the_trial_scanned_it() {
        let before = BTreeMap::from([("a".to_owned(), 5), ("b".to_owned(), 7)]);
        let after = BTreeMap::from([("a".to_owned(), 5), ("b".to_owned(), 9), ("c".to_owned(), 1)]);
        let lineage = Lineage::default().with_indexes(&before, &after);
        assert_eq!(lineage.indexes, ["b", "c"]);
        assert_eq!(lineage.indexes_unused, ["a"]);
    }

    #[test]
    fn a_link_carrying_only_its_idle_background_is_unused() {
        let traffic = [
            Traffic {
                link: Link::Postgres,
                with_load: 580_000,
                idle: 2_000,
            },
            Traffic {
                link: Link::Redis,
                with_load: 65_000,
                idle: 60_000,
            },
            Traffic {
                link: Link::Mail,
                with_load: 3_000,
                idle: 0,
            },
        ];
        let lineage = Lineage::of(&traffic, vec![Role::Service(1)]);
        assert_eq!(lineage.used, [(Link::Postgres, 580_000)]);
        assert_eq!(lineage.unused, [Link::Redis, Link::Mail]);
    }

    /// A link only a fault sent traffic down is faulted paired with that fault, slow first; a
    /// flush of the cache is never paired with Redis stopped, nor a fault with one on its own link.
    #[test]
    fn a_grown_link_is_faulted_with_the_fault_that_opened_it_slow_first() {
        let named = |pairs: &[(usize, Vec<Fault>)]| -> Vec<String> {
            (pairs.iter())
                .map(|(rank, p)| format!("{rank}: {}", p[1]))
                .collect()
        };
        let expiry = revealed_pairs(&[Fault::ExpireCache], Link::Postgres, &OBJECTIVE);
        assert!(expiry.iter().all(|(_, p)| p[0] == Fault::ExpireCache));
        let seen = named(&expiry);
        assert!(seen[0].starts_with("0: ") && seen[0].contains("100"), "{seen:?}");
        assert!(seen[1].starts_with("1: ") && seen[1].contains("500"), "{seen:?}");
        assert_eq!(seen.len(), 5 + 3, "{seen:?}");
        assert_eq!(
            seen[5..],
            ["5: kill postgres", "6: stop postgres", "7: pause postgres"]
        );

        let redis_down = Fault::Network {
            link: Link::Redis,
            fault: ScopedFault::from(NetworkFault::Down),
        };
        assert!(revealed_pairs(std::slice::from_ref(&redis_down), Link::Redis, &OBJECTIVE).is_empty());
        let stop_redis = revealed_pairs(&[Fault::Stop(Role::Redis)], Link::Postgres, &OBJECTIVE);
        assert_eq!(stop_redis.len(), 8);
        let flush = revealed_pairs(&[Fault::ExpireCache], Link::Redis, &OBJECTIVE);
        assert!(
            !(flush.iter()).any(|(_, p)| matches!(p[1], Fault::Kill(_) | Fault::Stop(_) | Fault::Pause(_))),
            "a cache cannot be flushed on a stopped Redis: {:?}",
            named(&flush)
        );
        assert!(revealed_pairs(&[redis_down, Fault::ExpireCache], Link::Postgres, &OBJECTIVE).is_empty());

        let mut lineage = lineage();
        let kill = vec![Fault::Kill(Role::Service(1))];
        assert!(!lineage.opened(Link::Redis, &kill));
        lineage.grown.push(Grown {
            link: Link::Redis,
            by: Schedule::new(kill.clone(), 2.0, 2.0),
            bytes: 9_000,
            statements: Vec::new(),
        });
        assert!(lineage.opened(Link::Redis, &kill));
        assert!(!lineage.opened(Link::Redis, &[Fault::Pause(Role::Service(1))]));
    }

    fn calls(entries: &[(i64, i64)]) -> StatementCalls {
        (entries.iter())
            .map(|(id, calls)| (*id, (*calls, format!("SELECT {id}"))))
            .collect()
    }

    /// The outbox's poll runs in every trial; a cache's refill only under the fault that empties
    /// it (four keys: four more runs); one stray run of a rare statement says nothing.
    #[test]
    fn a_statement_run_twice_as_often_under_a_fault_opens_the_link() {
        let without = calls(&[(1, 40), (2, 4)]);
        let under_fault = calls(&[(1, 44), (2, 8), (3, 2)]);
        let opened = statements_opened(&without, &under_fault);
        assert_eq!(
            opened,
            [StatementRuns {
                query: "SELECT 2".into(),
                under_fault: 8,
                without: 4
            }]
        );
        assert!(statements_opened(&without, &without).is_empty());
    }

    /// A statement new since the first reading ran every call in between; a count that went down
    /// (a restarted server starts again from 0) is left out.
    #[test]
    fn runs_between_two_readings_leave_out_a_count_that_went_down() {
        let before = calls(&[(1, 100), (2, 10)]);
        let after = calls(&[(1, 140), (2, 5), (3, 3)]);
        assert_eq!(runs_between(&before, &after), calls(&[(1, 40), (3, 3)]));
    }

    #[test]
    fn pairs_are_of_two_targets() {
        let faults = singles(&lineage(), &OBJECTIVE);
        let pairs = pairs(&faults);
        assert!(pairs.iter().all(|p| target(&p[0]) != target(&p[1])));
        // postgres (5 link + 3 container faults, one target name) against service's 3, and the
        // index dropped (a target of its own: the data, not the server) against all 11 but the
        // three that stop Postgres, which it needs running.
        assert_eq!(pairs.len(), 8 * 3 + 11 - 3);
        let index = Fault::DropIndex("orders_user_id_idx".into());
        let stopped = |p: &Vec<Fault>| p.contains(&index) && p.contains(&Fault::Kill(Role::Postgres));
        assert!(
            !pairs.iter().any(stopped),
            "an index cannot be dropped on a killed Postgres"
        );
    }

    #[test]
    fn a_slow_fault_goes_first_beside_a_failure_and_those_failing_postgres_are_tried_first() {
        let network = |link, fault| Fault::Network {
            link,
            fault: ScopedFault::from(fault),
        };
        let slow = |link| {
            network(
                link,
                NetworkFault::Latency {
                    ms: 100.0,
                    jitter_ms: 0.0,
                },
            )
        };
        let down = network(Link::Postgres, NetworkFault::Down);
        let kill = Fault::Kill(Role::Service(1));
        let stop = Fault::Stop(Role::Postgres);
        let faults = [
            down.clone(),
            slow(Link::Redis),
            kill.clone(),
            slow(Link::Mail),
            stop.clone(),
        ];
        let pairs = pairs(&faults);
        let expected_first = [
            [slow(Link::Redis), down.clone()],
            [slow(Link::Mail), down.clone()],
            [slow(Link::Redis), stop.clone()],
            [slow(Link::Mail), stop.clone()],
            [slow(Link::Redis), kill.clone()],
            [slow(Link::Mail), kill.clone()],
        ];
        assert_eq!(pairs[..6], expected_first.map(|p| p.to_vec()));
        assert_eq!(
            pairs.len(),
            6 + 3,
            "then both slow, and the failures together: {pairs:?}"
        );
        assert!(
            pairs[6..]
                .iter()
                .all(|p| Schedule::new(p.clone(), 2.0, 2.0).lead_s == 0.0)
        );
    }
}
