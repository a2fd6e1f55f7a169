//! A user's order history with the product of each order: the N+1 showcase, and the query a missing
//! index turns into a scan of every order.
//!
//! `join` asks Postgres once. `n_plus_one` is what an ORM's lazy loading does: one query for the orders,
//! then one more per order for its product, so the time grows with N round trips. `history_guard`
//! says what bounds a history query that went slow: nothing, or a bulkhead and a statement timeout.

use std::time::Duration;

use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::PgConnection;
use tokio::sync::Semaphore;

use crate::catalog::Product;
use crate::db::Db;
use crate::error::ApiError;
use crate::modes::{HistoryGuard, Modes, OrderHistory};

/// The most orders one history page returns.
pub const HISTORY_LIMIT: i64 = 100;
/// History queries that may run at once with `HistoryGuard::Bounded`, each on one core (no parallel
/// workers): a slow history costs one connection and one core at most, whatever its callers do.
pub const HISTORY_PERMITS: usize = 1;
/// How long a caller waits for one of them before it is told to come back later.
const PERMIT_WAIT: Duration = Duration::from_millis(100);
/// The longest a bounded history query may run: ~50 times what it takes with its index.
const STATEMENT_TIMEOUT_MS: u32 = 250;

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HistoryEntry {
    pub order_id: i64,
    pub quantity: i32,
    pub total_cents: i64,
    pub created_at: DateTime<Utc>,
    pub product: Product,
}

/// The user's latest orders, as the modes say: how they are loaded, and what bounds the query.
pub async fn order_history(
    db: &Db,
    modes: &Modes,
    bulkhead: &Semaphore,
    user_id: i64,
) -> Result<Vec<HistoryEntry>, ApiError> {
    match modes.history_guard {
        HistoryGuard::Unbounded => {
            let mut conn = db.acquire().await?;
            load(db, &mut conn, modes.order_history, user_id).await
        }
        HistoryGuard::Bounded => bounded(db, modes.order_history, bulkhead, user_id).await,
    }
}

/// The history behind a bulkhead and a statement timeout: a quick 503 when either trips.
async fn bounded(
    db: &Db,
    mode: OrderHistory,
    bulkhead: &Semaphore,
    user_id: i64,
) -> Result<Vec<HistoryEntry>, ApiError> {
    let busy = || ApiError::Rejected {
        status: StatusCode::SERVICE_UNAVAILABLE,
        code: "history_busy",
        message: "too many order histories are being read; try again in a moment".into(),
    };
    let _permit = tokio::time::timeout(PERMIT_WAIT, bulkhead.acquire())
        .await
        .map_err(|_| busy())?
        .map_err(|_| busy())?;
    let mut tx = db.begin().await?;
    for setting in [
        format!("SET LOCAL statement_timeout = {STATEMENT_TIMEOUT_MS}"),
        "SET LOCAL max_parallel_workers_per_gather = 0".to_owned(),
    ] {
        sqlx::query(&setting).execute(&mut *tx).await?;
    }
    let entries = load(db, &mut tx, mode, user_id)
        .await
        .map_err(|error| match error {
            ApiError::DatabaseUnavailable(sqlx::Error::Database(e))
                if e.code().as_deref() == Some("57014") =>
            {
                ApiError::Rejected {
                    status: StatusCode::SERVICE_UNAVAILABLE,
                    code: "history_timeout",
                    message: format!(
                        "the order history took longer than {STATEMENT_TIMEOUT_MS} ms; try again later"
                    ),
                }
            }
            other => other,
        })?;
    tx.commit().await?;
    Ok(entries)
}

async fn load(
    db: &Db,
    conn: &mut PgConnection,
    mode: OrderHistory,
    user_id: i64,
) -> Result<Vec<HistoryEntry>, ApiError> {
    match mode {
        OrderHistory::Join => joined(db, conn, user_id).await,
        OrderHistory::NPlusOne => one_query_per_order(db, conn, user_id).await,
    }
}

#[derive(sqlx::FromRow)]
struct JoinedRow {
    order_id: i64,
    quantity: i32,
    total_cents: i64,
    created_at: DateTime<Utc>,
    #[sqlx(flatten)]
    product: Product,
}

async fn joined(db: &Db, conn: &mut PgConnection, user_id: i64) -> Result<Vec<HistoryEntry>, ApiError> {
    db.statement("history.orders_with_products");
    let rows = sqlx::query_as::<_, JoinedRow>(
        "SELECT o.id AS order_id, o.quantity, o.total_cents, o.created_at, \
                p.id, p.sku, p.name, p.size, p.price_cents \
         FROM orders o JOIN products p ON p.id = o.product_id \
         WHERE o.user_id = $1 ORDER BY o.id DESC LIMIT $2",
    )
    .bind(user_id)
    .bind(HISTORY_LIMIT)
    .fetch_all(&mut *conn)
    .await?;
    Ok(rows
        .into_iter()
        .map(|r| HistoryEntry {
            order_id: r.order_id,
            quantity: r.quantity,
            total_cents: r.total_cents,
            created_at: r.created_at,
            product: r.product,
        })
        .collect())
}

async fn one_query_per_order(
    db: &Db,
    conn: &mut PgConnection,
    user_id: i64,
) -> Result<Vec<HistoryEntry>, ApiError> {
    db.statement("history.orders");
    let orders: Vec<(i64, i64, i32, i64, DateTime<Utc>)> = sqlx::query_as(
        "SELECT id, product_id, quantity, total_cents, created_at FROM orders \
         WHERE user_id = $1 ORDER BY id DESC LIMIT $2",
    )
    .bind(user_id)
    .bind(HISTORY_LIMIT)
    .fetch_all(&mut *conn)
    .await?;
    let mut entries = Vec::with_capacity(orders.len());
    for (order_id, product_id, quantity, total_cents, created_at) in orders {
        db.statement("history.product_of_order");
        let product = sqlx::query_as::<_, Product>(
            "SELECT id, sku, name, size, price_cents FROM products WHERE id = $1",
        )
        .bind(product_id)
        .fetch_one(&mut *conn)
        .await?;
        entries.push(HistoryEntry {
            order_id,
            quantity,
            total_cents,
            created_at,
            product,
        });
    }
    Ok(entries)
}
