//! Postgres's own view: statements executed and rows they answered or touched (`pg_stat_statements`),
//! and transactions committed or
//! rolled back (`pg_stat_database`), read through the port published on 127.0.0.1 (not the proxy, so a
//! network fault on the service's link does not blind the observer). A user's target's databases are
//! read from the views every Postgres keeps (`Activity`): no extension, no schema of ours.

use std::collections::BTreeMap;

use sqlx::{Connection, PgConnection};

/// Cumulative counters at one reading.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct DatabaseCounters {
    pub statements: f64,
    pub rows: f64,
    pub transactions: f64,
    /// Rows read from tables: sequential scans' rows plus index fetches.
    pub tuples_read: f64,
    /// Outbox events now waiting to be sent, and now dead-lettered: levels, not counters.
    pub outbox_pending: f64,
    pub outbox_dead: f64,
}

/// What any Postgres counts, cumulative: transactions ended and table rows read.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Activity {
    pub transactions: f64,
    pub tuples_read: f64,
}

impl std::ops::Add for Activity {
    type Output = Self;
    fn add(self, other: Self) -> Self {
        Self {
            transactions: self.transactions + other.transactions,
            tuples_read: self.tuples_read + other.tuples_read,
        }
    }
}

#[derive(Debug)]
pub struct DatabaseProbe {
    conn: PgConnection,
}

impl DatabaseProbe {
    /// Connects and makes sure `pg_stat_statements` is there to read (the server preloads it).
    pub async fn connect(url: &str) -> Result<Self, sqlx::Error> {
        let mut conn = PgConnection::connect(url).await?;
        sqlx::query("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
            .execute(&mut conn)
            .await?;
        Ok(Self { conn })
    }

    /// Connects to a user's Postgres, creating nothing there.
    pub async fn connect_plain(url: &str) -> Result<Self, sqlx::Error> {
        Ok(Self {
            conn: PgConnection::connect(url).await?,
        })
    }

    /// Transactions and table rows read in this database so far.
    pub async fn read_activity(&mut self) -> Result<Activity, sqlx::Error> {
        let (transactions, tuples_read) = sqlx::query_as::<_, (f64, f64)>(
            "SELECT (s.xact_commit + s.xact_rollback)::float8, \
                (SELECT coalesce(sum(seq_tup_read + coalesce(idx_tup_fetch, 0)), 0)::float8 \
                 FROM pg_stat_user_tables) \
             FROM pg_stat_database s WHERE s.datname = current_database()",
        )
        .fetch_one(&mut self.conn)
        .await?;
        Ok(Activity {
            transactions,
            tuples_read,
        })
    }

    /// How many scans each index has served, by name: what the load's queries lean on. Unique
    /// indexes are left out (dropping one changes what the data may hold, not how fast it is read).
    pub async fn index_scans(&mut self) -> Result<BTreeMap<String, i64>, sqlx::Error> {
        let rows = sqlx::query_as::<_, (String, i64)>(
            "SELECT s.indexrelname::text, s.idx_scan FROM pg_stat_user_indexes s \
             JOIN pg_index i ON i.indexrelid = s.indexrelid WHERE NOT i.indisunique",
        )
        .fetch_all(&mut self.conn)
        .await?;
        Ok(rows.into_iter().collect())
    }

    /// How often each statement has run in this database so far, by `pg_stat_statements`' query
    /// id, with its normalised text (the probe's own, naming `pg_stat_`, left out).
    pub async fn statement_calls(&mut self) -> Result<BTreeMap<i64, (i64, String)>, sqlx::Error> {
        let rows = sqlx::query_as::<_, (i64, i64, String)>(
            "SELECT queryid, sum(calls)::int8, min(query) FROM pg_stat_statements st \
             JOIN pg_database d ON d.oid = st.dbid \
             WHERE d.datname = current_database() AND queryid IS NOT NULL \
               AND query NOT ILIKE '%pg_stat_%' GROUP BY queryid",
        )
        .fetch_all(&mut self.conn)
        .await?;
        Ok(rows
            .into_iter()
            .map(|(id, calls, query)| (id, (calls, query)))
            .collect())
    }

    /// The counters now. The probe's own statements are left out of the statement count (it is one
    /// statement, naming `pg_stat_`); the outbox's undelivered events it counts (through the partial
    /// index on them: none but the backlog) are in the rows read.
    pub async fn read(&mut self) -> Result<DatabaseCounters, sqlx::Error> {
        let (statements, rows, transactions, tuples_read, outbox_pending, outbox_dead) =
            sqlx::query_as::<_, (f64, f64, f64, f64, f64, f64)>(
                "SELECT st.calls, st.rows, (s.xact_commit + s.xact_rollback)::float8, \
                    (SELECT coalesce(sum(seq_tup_read + coalesce(idx_tup_fetch, 0)), 0)::float8 \
                     FROM pg_stat_user_tables), \
                    outbox.pending, outbox.dead \
             FROM pg_stat_database s JOIN pg_database d ON d.datname = s.datname, \
                  LATERAL (SELECT coalesce(sum(calls), 0)::float8 AS calls, \
                                  coalesce(sum(rows), 0)::float8 AS rows \
                           FROM pg_stat_statements \
                           WHERE dbid = d.oid AND query NOT ILIKE '%pg_stat_%') st, \
                  LATERAL (SELECT count(*) FILTER (WHERE status = 'pending')::float8 AS pending, \
                                  count(*) FILTER (WHERE status = 'dead')::float8 AS dead \
                           FROM outbox WHERE status <> 'delivered') outbox \
             WHERE s.datname = current_database()",
            )
            .fetch_one(&mut self.conn)
            .await?;
        Ok(DatabaseCounters {
            statements,
            rows,
            transactions,
            tuples_read,
            outbox_pending,
            outbox_dead,
        })
    }
}
