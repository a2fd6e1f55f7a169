//! The database side of a target's judge: its `[[invariants]]` queries (their rows are the
//! violations), the `[acknowledged]` query, and the `[figures]`, each on a connection asked for
//! afresh at the database's published address now (a restarted container may have another port).

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use super::{ROWS_SHOWN, TargetRunError};
use crate::env::target::lab::TargetLab;
use crate::experiment::definition::{SqlLookup, TargetPlan};
use crate::vocabulary::Metric;

/// A pool on a database of the target, at its published address now.
async fn connect(
    target: &TargetPlan,
    lab: &TargetLab,
    database: &str,
) -> Result<sqlx::PgPool, TargetRunError> {
    let db = (target.target.databases.iter())
        .find(|d| d.name == database)
        .ok_or_else(|| TargetRunError::NoDatabase(database.to_owned()))?;
    let url = lab.database_url(db).await?;
    let options = sqlx::postgres::PgPoolOptions::new()
        .max_connections(1)
        .acquire_timeout(Duration::from_secs(10));
    (options.connect(&url).await).map_err(|source| TargetRunError::Query {
        what: "connecting".into(),
        database: database.to_owned(),
        source,
    })
}

/// `sql` without the trailing `;` a user may write, to nest it as a subquery.
fn nested(sql: &str) -> &str {
    sql.trim().trim_end_matches(';')
}

/// An invariant's query (`name` for errors): whether it held (no rows), and the first few rows.
pub(super) async fn violations(
    target: &TargetPlan,
    lab: &TargetLab,
    name: &str,
    (database, sql): (&str, &str),
) -> Result<(bool, String), TargetRunError> {
    let pg = connect(target, lab, database).await?;
    let sql = format!(
        "SELECT row_to_json(violation)::text FROM ({}) AS violation",
        nested(sql)
    );
    let rows: Vec<String> =
        (sqlx::query_scalar(&sql).fetch_all(&pg).await).map_err(|source| TargetRunError::Query {
            what: format!("the invariant {name:?}"),
            database: database.to_owned(),
            source,
        })?;
    pg.close().await;
    let detail = match rows.len() {
        0 => "no offending rows".to_owned(),
        n => format!("{n} offending rows: {}", rows[..n.min(ROWS_SHOWN)].join(", ")),
    };
    Ok((rows.is_empty(), detail))
}

/// The acknowledged ids the database does not have: `[acknowledged]`'s query answers those of `$1`
/// it holds.
pub(super) async fn lost(
    target: &TargetPlan,
    lab: &TargetLab,
    lookup: &SqlLookup,
    acknowledged: &[String],
) -> Result<Vec<String>, TargetRunError> {
    let pg = connect(target, lab, &lookup.database).await?;
    let sql = format!(
        "SELECT (found)::text FROM ({}) AS found(found)",
        nested(&lookup.sql)
    );
    let found: Vec<String> = sqlx::query_scalar(&sql)
        .bind(acknowledged)
        .fetch_all(&pg)
        .await
        .map_err(|source| TargetRunError::Query {
            what: "[acknowledged]".into(),
            database: lookup.database.clone(),
            source,
        })?;
    pg.close().await;
    let found: BTreeSet<String> = found.into_iter().collect();
    Ok((acknowledged.iter())
        .filter(|id| !found.contains(*id))
        .cloned()
        .collect())
}

/// Each `[figures]` query's number; a query that answers NULL gives no figure.
pub(super) async fn figures(
    target: &TargetPlan,
    lab: &TargetLab,
) -> Result<BTreeMap<Metric, f64>, TargetRunError> {
    let mut figures = BTreeMap::new();
    for figure in &target.figures {
        let pg = connect(target, lab, &figure.database).await?;
        let sql = format!("SELECT ({})::float8", nested(&figure.sql));
        let value: Option<f64> =
            (sqlx::query_scalar(&sql).fetch_one(&pg).await).map_err(|source| TargetRunError::Query {
                what: format!("the figure {}", figure.metric),
                database: figure.database.clone(),
                source,
            })?;
        pg.close().await;
        if let Some(value) = value {
            figures.insert(figure.metric, value);
        }
    }
    Ok(figures)
}
