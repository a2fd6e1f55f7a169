//! pgbench in the lab's own Postgres container: what the database gives a transaction when nothing
//! but pgbench's thin client stands between them (its Unix socket, no proxy, no pool, no HTTP). A
//! capacity run sets the service's checkout capacity against it.
//!
//! pgbench runs inside the container, so its traffic never leaves it (the traffic rule), and its
//! client takes the machine's cores beside the database, as the service would.

use serde::Serialize;

use super::{EnvError, Lab};
use crate::vocabulary::Role;

/// Where the script is written inside the container.
const SCRIPT_PATH: &str = "/tmp/fortress-pgbench.sql";

/// One pgbench run: a script, its clients and seconds, and the `-D` variables it reads.
#[derive(Debug, Clone)]
pub struct PgbenchRun<'a> {
    pub script: &'a str,
    pub clients: u32,
    pub seconds: u32,
    pub variables: Vec<(&'static str, u64)>,
}

/// What pgbench printed, read.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PgbenchFigures {
    /// Transactions a second, without the connections' start (pgbench's own `tps = ... (without
    /// initial connection time)`).
    pub tps: f64,
    pub transactions: u64,
    pub failed: u64,
    /// The mean latency of a transaction, ms.
    pub latency_ms: Option<f64>,
}

impl Lab {
    /// Runs pgbench in the Postgres container against the service's database and reads its figures.
    pub async fn pgbench(&self, run: &PgbenchRun<'_>) -> Result<PgbenchFigures, EnvError> {
        let defines: String = (run.variables.iter())
            .map(|(name, value)| format!(" -D {name}={value}"))
            .collect();
        // A quoted here-document: the script reaches the file byte for byte.
        let shell = format!(
            "cat > {SCRIPT_PATH} <<'FORTRESS_EOF'\n{script}\nFORTRESS_EOF\n\
             pgbench -h /var/run/postgresql -U postgres -n -M prepared -j 1 -c {clients} -T {seconds}\
             {defines} -f {SCRIPT_PATH} shop 2>&1",
            script = run.script,
            clients = run.clients,
            seconds = run.seconds,
        );
        let printed = self.exec_in(Role::Postgres, &shell).await?;
        parse(&printed).ok_or_else(|| {
            // Its first errors say why; every client repeats them.
            let errors: Vec<&str> = (printed.lines())
                .filter(|line| line.contains("error"))
                .take(2)
                .collect();
            EnvError::Exec {
                role: Role::Postgres,
                source: testcontainers::TestcontainersError::other(format!(
                    "pgbench measured nothing: {}",
                    errors.join(" / ")
                )),
            }
        })
    }
}

/// pgbench's summary, or `None` when it has no `tps` line (it failed before measuring) or says its
/// run was aborted (a client gave up: its figures are incomplete).
fn parse(printed: &str) -> Option<PgbenchFigures> {
    if printed.contains("Run was aborted") {
        return None;
    }
    let after = |prefix: &str| {
        printed
            .lines()
            .find_map(|line| line.trim().strip_prefix(prefix).map(str::trim))
    };
    let first_word = |text: &str| text.split_whitespace().next().map(str::to_owned);
    let tps = after("tps = ").and_then(first_word)?.parse().ok()?;
    let transactions = after("number of transactions actually processed:")
        .and_then(first_word)
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    let failed = after("number of failed transactions:")
        .and_then(first_word)
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    let latency_ms = after("latency average =")
        .and_then(first_word)
        .and_then(|n| n.parse().ok());
    Some(PgbenchFigures {
        tps,
        transactions,
        failed,
        latency_ms,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// pgbench 15's summary, as printed in a lab.
    const PRINTED: &str = "pgbench (15.14 (Debian 15.14-0+deb12u1))
transaction type: /tmp/fortress-pgbench.sql
scaling factor: 1
query mode: prepared
number of clients: 5
number of threads: 1
maximum number of tries: 1
duration: 5 s
number of transactions actually processed: 6093
number of failed transactions: 0 (0.000%)
latency average = 4.102 ms
initial connection time = 6.212 ms
tps = 1218.803641 (without initial connection time)
";

    #[test]
    fn the_summary_is_read_and_a_failure_reads_as_none() {
        let figures = parse(PRINTED).unwrap();
        assert_eq!(figures.transactions, 6093);
        assert_eq!(figures.failed, 0);
        assert!((figures.tps - 1218.803641).abs() < 1e-9);
        assert_eq!(figures.latency_ms, Some(4.102));
        let refused = "pgbench: error: connection to server failed: FATAL: role \"x\" does not exist";
        assert_eq!(parse(refused), None);
        let aborted = format!("{PRINTED}pgbench: error: Run was aborted; the above results are incomplete.");
        assert_eq!(parse(&aborted), None);
    }
}
