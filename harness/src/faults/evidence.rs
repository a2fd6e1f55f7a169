//! What shows that a fault touched the system, kind by kind, as Jepsen would ask it: not "the command
//! returned" but "something saw it happen".
//!
//! - kill, stop, pause: Docker's word on the container, and what the traffic that tried to reach it
//!   met: the proxy's count of the link to it while it was down (connections refused, bytes sent
//!   into a frozen process), or, for a service replica, the balancer's (health checks took it out,
//!   requests retried elsewhere);
//! - a dropped index: the scans it had served before, and its table's scans while it was gone reading
//!   more than twice the rows a scan they read before;
//! - an expired cache: keys Redis held before the flush and not after;
//! - a rolling restart: every replica's start time changed;
//! - modes: every replica answering with the new modes;
//! - network and HTTP faults: the proxy's own evidence (chunks delayed, requests answered).
//!
//! Each part is read in two halves: `Witness` is taken at the injection (the counters before), and
//! `Witness::observe` at the revert, before anything is put back.

use serde::{Deserialize, Serialize};
use sqlx::Connection;

use super::Cause;
use super::proxy::Evidence;
use super::proxy::client::ProxyClient;
use crate::env::Lab;
use crate::env::balancer::ServerStats;
use crate::vocabulary::{Link, Role};

/// What was seen of a fault while it lasted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Observed {
    /// Whether anything shows that the fault acted on the system; a verdict that blames a fault
    /// without it is inconclusive.
    pub touched: bool,
    /// What was seen, as a reader would say it.
    pub facts: Vec<String>,
}

impl Observed {
    fn new(touched: bool, facts: Vec<String>) -> Self {
        Self { touched, facts }
    }

    /// The proxy's evidence of a network fault on `link`.
    pub fn of_network(link: impl std::fmt::Display, evidence: &Evidence) -> Self {
        let touched = evidence.touched_traffic();
        let acted: Vec<String> = [
            (evidence.delayed_chunks, "chunks delayed"),
            (evidence.throttled_chunks, "chunks throttled"),
            (evidence.held_chunks, "chunks held"),
            (
                evidence.resets + evidence.closed_by_down,
                "connections reset or refused",
            ),
            (evidence.http_answered, "requests answered by the fault"),
            (evidence.http_delayed, "requests held"),
            (evidence.http_lost_replies, "replies lost"),
        ]
        .into_iter()
        .filter(|(n, _)| *n > 0)
        .map(|(n, what)| format!("{n} {what}"))
        .collect();
        // HTTP faults take requests, network faults connections: the blast radius is counted in
        // what the fault took.
        let requests_taken = evidence.http_answered + evidence.http_delayed + evidence.http_lost_replies;
        let radius = match requests_taken {
            0 => format!(
                "{} of {} connections carrying traffic touched",
                evidence.connections_touched, evidence.connections_seen
            ),
            taken => format!("{taken} of {} requests taken", evidence.http_requests),
        };
        let fact = if touched {
            format!("proxy, {link} link: {} ({radius})", acted.join(", "))
        } else {
            format!("proxy, {link} link: no traffic met the fault")
        };
        Self::new(touched, vec![fact])
    }
}

/// What the injection saw, kept for the revert to complete.
#[derive(Debug, Clone, Default)]
pub struct Witness {
    /// Docker's word on the container after the injection, and whether it showed the fault.
    container: Option<(String, bool)>,
    /// The link whose traffic was counted from the injection on (the proxy's counters restarted).
    link: Option<Link>,
    /// The balancer's view of the replica at the injection, while it had it in rotation.
    balancer: Option<ServerStats>,
    /// A dropped index: the scans it had served, its table, and the table's reads at the drop.
    scans: Option<(i64, String, TableReads)>,
    /// Keys Redis held before an expiry, and after.
    keys: Option<(i64, i64)>,
    /// Each replica's container start time before a rolling restart.
    started: Vec<String>,
    /// Facts that need nothing more at the revert (modes read back).
    facts: Vec<String>,
    touched: Option<bool>,
}

impl Witness {
    /// Before a kill, stop or pause of `role`: counts its traffic from now on.
    pub async fn before_container_fault(&mut self, lab: &Lab, role: Role) {
        if let Some(link) = role.link().filter(|l| lab.links().contains(l)) {
            match restart_count(lab, link).await {
                Ok(_) => self.link = Some(link),
                Err(error) => self.unseen(&format!("the {link} link's traffic"), &error),
            }
        }
        if let Role::Service(replica) = role
            && let Some(stats) = lab.balancer_stats().await
        {
            self.balancer = stats.into_iter().find(|s| s.replica == replica && !s.taken_out);
        }
    }

    /// After a kill, stop or pause of `role`: what Docker says of the container now.
    pub async fn after_container_fault(&mut self, lab: &Lab, role: Role, expected: Expected) {
        let state = async {
            let node = lab.node(role)?;
            Ok::<_, Cause>((node.name.clone(), lab.docker.state(&node.name).await?))
        };
        match state.await {
            Ok((name, state)) => {
                let shows = match expected {
                    Expected::Exited => !state.running,
                    Expected::Paused => state.paused,
                };
                self.container = Some((format!("docker: {name} is {state}"), shows));
            }
            Err(error) => self.unseen(&format!("docker's state of {role}"), &error),
        }
    }

    /// A dropped index, the scans it had served, and its table's reads now.
    pub async fn index_dropped(&mut self, lab: &Lab, served: i64, table: String) {
        match table_reads(lab, &table).await {
            Ok(reads) => self.scans = Some((served, table, reads)),
            Err(error) => self.unseen(&format!("postgres's scans of {table}"), &error),
        }
    }

    /// Keys Redis held before and after an expiry.
    pub fn expired(&mut self, before: i64, after: i64) {
        self.keys = Some((before, after));
    }

    /// Each replica's start time, before a rolling restart.
    pub async fn before_restarts(&mut self, lab: &Lab) {
        match start_times(lab).await {
            Ok(started) => self.started = started,
            Err(error) => self.unseen("the replicas' start times", &error),
        }
    }

    /// A fact complete at the injection, and whether it shows the fault.
    pub fn seen(&mut self, fact: String, touched: bool) {
        self.facts.push(fact);
        self.touched = Some(self.touched.unwrap_or(true) && touched);
    }

    /// What could not be read: a witness that did not see is no evidence.
    fn unseen(&mut self, what: &str, error: &Cause) {
        let cause = reference_service::error::cause_chain(error);
        self.seen(format!("could not read {what}: {cause}"), false);
    }

    /// What the fault was seen to do, read before it is reverted. `None` when nothing witnesses
    /// this kind of fault (an operator's step, a deploy's take-out, a network fault: the proxy's
    /// own evidence speaks for that).
    pub async fn observe(&self, lab: &Lab) -> Option<Observed> {
        match self.read(lab).await {
            Ok(observed) => observed,
            Err(error) => {
                let mut unread = self.clone();
                unread.unseen("what the fault did", &error);
                Some(Observed::new(false, unread.facts))
            }
        }
    }

    async fn read(&self, lab: &Lab) -> Result<Option<Observed>, Cause> {
        let mut facts = self.facts.clone();
        let mut touched = self.touched;
        let mut all = |fact: String, shows: bool| {
            facts.push(fact);
            touched = Some(touched.unwrap_or(true) && shows);
        };
        if let Some((fact, shows)) = &self.container {
            all(fact.clone(), *shows);
        }
        if let Some(link) = self.link {
            let evidence = restart_count(lab, link).await?;
            let (fact, shows) = traffic_met_a_dead_end(link, &evidence);
            all(fact, shows);
        }
        if let Some(before) = self.balancer {
            let (fact, shows) = balancer_saw(lab, before).await;
            all(fact, shows);
        }
        if let Some((served, table, before)) = &self.scans {
            let now = table_reads(lab, table).await?;
            let (scans, rows) = (now.scans - before.scans, now.rows - before.rows);
            let per_scan = |rows: i64, scans: i64| rows as f64 / scans.max(1) as f64;
            let (was, is) = (per_scan(before.rows, before.scans), per_scan(rows, scans));
            all(
                format!(
                    "postgres: the index had served {served} scans; while it was gone {table} was scanned {scans} times, reading {is:.0} rows a scan against {was:.0} before"
                ),
                *served > 0 && scans > 0 && is > 2.0 * was,
            );
        }
        if let Some((before, after)) = self.keys {
            all(
                format!("redis: held {before} keys before the flush, {after} after"),
                before > after,
            );
        }
        if !self.started.is_empty() {
            let now = start_times(lab).await?;
            let restarted = self.started.iter().zip(&now).filter(|(a, b)| a != b).count();
            all(
                format!("docker: {restarted} of {} replicas started again", now.len()),
                restarted == now.len(),
            );
        }
        Ok(touched.map(|touched| Observed::new(touched, facts)))
    }
}

/// What a container fault is expected to leave the container in.
#[derive(Debug, Clone, Copy)]
pub enum Expected {
    Exited,
    Paused,
}

/// Starts a new count of the link's traffic (the same faults again, a fresh activation); answers
/// what the count that just ended saw. A network fault on the same link, injected before this one,
/// loses the part of its own count made before: the proxy keeps one count a link. No built-in
/// experiment puts both on one link in one phase.
async fn restart_count(lab: &Lab, link: Link) -> Result<Evidence, Cause> {
    restart_link_count(&ProxyClient::of(lab).await?, link).await
}

/// `restart_count` on any proxy: the reference lab's or a target's.
pub(super) async fn restart_link_count(
    proxy: &ProxyClient,
    link: impl std::fmt::Display,
) -> Result<Evidence, Cause> {
    let faults = proxy.link(&link).await?.faults;
    Ok(proxy.set(&link, &faults).await?.previous.evidence)
}

/// Whether traffic tried the link to a container that was down or frozen: connections refused, or
/// bytes sent that nothing answered.
pub(super) fn traffic_met_a_dead_end(link: impl std::fmt::Display, evidence: &Evidence) -> (String, bool) {
    let tried = evidence.connections + evidence.upstream_unreachable + evidence.bytes_to_upstream;
    let fact = format!(
        "proxy, {link} link while it was down: {} connections opened, {} could not reach it, {} bytes sent to it, {} answered",
        evidence.connections,
        evidence.upstream_unreachable,
        evidence.bytes_to_upstream,
        evidence.bytes_to_client
    );
    (fact, tried > 0)
}

/// Whether the balancer saw the replica go: its health checks took it out, or requests sent to it
/// were retried on another.
async fn balancer_saw(lab: &Lab, before: ServerStats) -> (String, bool) {
    let now = lab.balancer_stats().await.unwrap_or_default();
    let Some(now) = now.iter().find(|s| s.replica == before.replica) else {
        return ("balancer: no statistics for the replica".into(), false);
    };
    let retried = (now.retried - before.retried).max(0.0);
    let fact = format!(
        "balancer: {} {} its health checks, {retried:.0} requests retried on another replica",
        Role::Service(before.replica),
        if now.up { "still in" } else { "taken out by" }
    );
    (fact, !now.up || retried > 0.0)
}

/// A table's scans (sequential and by any index) and the rows they read, so far.
#[derive(Debug, Clone, Copy, Default)]
struct TableReads {
    scans: i64,
    rows: i64,
}

async fn table_reads(lab: &Lab, table: &str) -> Result<TableReads, Cause> {
    let mut db = sqlx::PgConnection::connect(&lab.postgres_url().await?).await?;
    // Statistics reach the shared counters at each backend's next report (at most a second late).
    let reads: Option<(i64, i64)> = sqlx::query_as(
        "SELECT seq_scan + coalesce(idx_scan, 0), seq_tup_read + coalesce(idx_tup_fetch, 0) \
         FROM pg_stat_user_tables WHERE schemaname = 'public' AND relname = $1",
    )
    .bind(table)
    .fetch_optional(&mut db)
    .await?;
    let (scans, rows) = reads.unwrap_or_default();
    Ok(TableReads { scans, rows })
}

async fn start_times(lab: &Lab) -> Result<Vec<String>, Cause> {
    let mut times = Vec::new();
    for replica in lab.replicas() {
        let node = lab.node(Role::Service(replica))?;
        times.push(lab.docker.state(&node.name).await?.started_at);
    }
    Ok(times)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_blast_radius_is_counted_in_what_the_fault_took() {
        let http = Evidence {
            http_requests: 100,
            http_answered: 39,
            connections_seen: 3,
            ..Evidence::default()
        };
        let seen = Observed::of_network("web-api", &http);
        assert!(seen.touched);
        assert_eq!(
            seen.facts,
            ["proxy, web-api link: 39 requests answered by the fault (39 of 100 requests taken)"]
        );
        let reset = Evidence {
            resets: 2,
            connections_seen: 8,
            connections_touched: 2,
            ..Evidence::default()
        };
        assert_eq!(
            Observed::of_network("db", &reset).facts,
            ["proxy, db link: 2 connections reset or refused (2 of 8 connections carrying traffic touched)"]
        );
        assert!(!Observed::of_network("db", &Evidence::default()).touched);
    }
}
