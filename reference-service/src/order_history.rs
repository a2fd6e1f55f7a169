//! A user's order history with the product of each order: the N+1 showcase.
//!
//! `join` asks Postgres once. `n_plus_one` is what an ORM's lazy loading does: one query for the orders,
//! then one more per order for its product, so the time grows with N round trips.

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::catalog::Product;
use crate::db::Db;
use crate::error::ApiError;
use crate::modes::OrderHistory;

/// The most orders one history page returns.
pub const HISTORY_LIMIT: i64 = 100;

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HistoryEntry {
    pub order_id: i64,
    pub quantity: i32,
    pub total_cents: i64,
    pub created_at: DateTime<Utc>,
    pub product: Product,
}

pub async fn order_history(db: &Db, mode: OrderHistory, user_id: i64) -> Result<Vec<HistoryEntry>, ApiError> {
    match mode {
        OrderHistory::Join => joined(db, user_id).await,
        OrderHistory::NPlusOne => one_query_per_order(db, user_id).await,
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

async fn joined(db: &Db, user_id: i64) -> Result<Vec<HistoryEntry>, ApiError> {
    db.statement("history.orders_with_products");
    let rows = sqlx::query_as::<_, JoinedRow>(
        "SELECT o.id AS order_id, o.quantity, o.total_cents, o.created_at, \
                p.id, p.sku, p.name, p.size, p.price_cents \
         FROM orders o JOIN products p ON p.id = o.product_id \
         WHERE o.user_id = $1 ORDER BY o.id DESC LIMIT $2",
    )
    .bind(user_id)
    .bind(HISTORY_LIMIT)
    .fetch_all(&mut *db.acquire().await?)
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

async fn one_query_per_order(db: &Db, user_id: i64) -> Result<Vec<HistoryEntry>, ApiError> {
    let mut conn = db.acquire().await?;
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
