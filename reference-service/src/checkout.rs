//! Checkout: turning one unit of stock into one order, exactly once.
//!
//! The defended path is one transaction that locks the inventory row, checks, decrements, and writes the
//! order and its outbox event together. `locking = none` is the version people write first: read the
//! stock, think for a moment (`race_window_ms`), write back what it computed. Two buyers inside that
//! window both see the last pair, and both get an order for it.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::json;
use sqlx::PgConnection;

use crate::db::Db;
use crate::error::ApiError;
use crate::modes::{Durability, Locking, Modes};

/// The most units one order may take.
pub const MAX_QUANTITY: i32 = 10;

#[derive(Debug, Clone)]
pub struct Checkout {
    pub user_id: i64,
    pub product_id: i64,
    pub quantity: i32,
    pub idempotency_key: Option<String>,
    pub request_id: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, sqlx::FromRow)]
pub struct Order {
    pub id: i64,
    pub user_id: i64,
    pub product_id: i64,
    pub quantity: i32,
    pub total_cents: i64,
    pub idempotency_key: Option<String>,
    pub created_at: DateTime<Utc>,
}

/// What a checkout did.
#[derive(Debug, Clone, PartialEq)]
pub enum Placed {
    /// A new order; `remaining` is the stock left after it.
    Created { order: Order, remaining: i32 },
    /// The same `Idempotency-Key` was seen before: this is the order it created.
    Replayed(Order),
}

const ORDER_COLUMNS: &str = "id, user_id, product_id, quantity, total_cents, idempotency_key, created_at";

/// Places an order as the current locking mode says.
pub async fn place_order(db: &Db, modes: &Modes, checkout: &Checkout) -> Result<Placed, ApiError> {
    if !(1..=MAX_QUANTITY).contains(&checkout.quantity) {
        return Err(ApiError::unprocessable(
            "invalid_quantity",
            format!(
                "quantity must be between 1 and {MAX_QUANTITY} (got {})",
                checkout.quantity
            ),
        ));
    }
    if let Some(order) = find_replay(db, checkout).await? {
        return Ok(Placed::Replayed(order));
    }
    let placed = match modes.locking {
        Locking::RowLock => place_locked(db, modes.durability, checkout).await,
        Locking::None => {
            let race_window = Duration::from_millis(modes.race_window_ms);
            place_unlocked(db, modes.durability, checkout, race_window).await
        }
    };
    match placed {
        // Two requests with one key raced past `find_replay`; the unique index let only one through.
        Err(ApiError::Database(sqlx::Error::Database(e))) if e.is_unique_violation() => {
            find_replay(db, checkout)
                .await?
                .map(Placed::Replayed)
                .ok_or_else(|| ApiError::Internal("unique violation on an order that cannot be found".into()))
        }
        other => other,
    }
}

/// The earlier order made with this checkout's `Idempotency-Key`, if any; a different order under the
/// same key is a conflict.
async fn find_replay(db: &Db, checkout: &Checkout) -> Result<Option<Order>, ApiError> {
    let Some(key) = &checkout.idempotency_key else {
        return Ok(None);
    };
    db.statement("checkout.find_by_idempotency_key");
    let order = sqlx::query_as::<_, Order>(&format!(
        "SELECT {ORDER_COLUMNS} FROM orders WHERE user_id = $1 AND idempotency_key = $2"
    ))
    .bind(checkout.user_id)
    .bind(key)
    .fetch_optional(&mut *db.acquire().await?)
    .await?;
    match order {
        Some(order) if order.product_id != checkout.product_id || order.quantity != checkout.quantity => {
            Err(ApiError::IdempotencyConflict)
        }
        other => Ok(other),
    }
}

async fn place_locked(db: &Db, durability: Durability, checkout: &Checkout) -> Result<Placed, ApiError> {
    let mut tx = db.begin_as(durability).await?;
    db.statement("checkout.lock_inventory");
    let row: Option<(i32, i64)> = sqlx::query_as(
        "SELECT i.quantity, p.price_cents FROM inventory i JOIN products p ON p.id = i.product_id \
         WHERE i.product_id = $1 FOR UPDATE OF i",
    )
    .bind(checkout.product_id)
    .fetch_optional(&mut *tx)
    .await?;
    let (available, price_cents) = row.ok_or(ApiError::NotFound("product"))?;
    if available < checkout.quantity {
        return Err(ApiError::SoldOut {
            requested: checkout.quantity,
            available,
        });
    }
    db.statement("checkout.decrement_inventory");
    let remaining: i32 = sqlx::query_scalar(
        "UPDATE inventory SET quantity = quantity - $2 WHERE product_id = $1 RETURNING quantity",
    )
    .bind(checkout.product_id)
    .bind(checkout.quantity)
    .fetch_one(&mut *tx)
    .await?;
    let order = insert_order(db, &mut tx, checkout, price_cents).await?;
    tx.commit().await?;
    Ok(Placed::Created { order, remaining })
}

/// The naive checkout: nothing stops a second buyer between the read and the write.
async fn place_unlocked(
    db: &Db,
    durability: Durability,
    checkout: &Checkout,
    race_window: Duration,
) -> Result<Placed, ApiError> {
    db.statement("checkout.read_inventory");
    let row: Option<(i32, i64)> = sqlx::query_as(
        "SELECT i.quantity, p.price_cents FROM inventory i JOIN products p ON p.id = i.product_id \
         WHERE i.product_id = $1",
    )
    .bind(checkout.product_id)
    .fetch_optional(&mut *db.acquire().await?)
    .await?;
    let (available, price_cents) = row.ok_or(ApiError::NotFound("product"))?;
    if available < checkout.quantity {
        return Err(ApiError::SoldOut {
            requested: checkout.quantity,
            available,
        });
    }
    tokio::time::sleep(race_window).await;
    let remaining = available - checkout.quantity;
    let mut tx = db.begin_as(durability).await?;
    db.statement("checkout.write_inventory");
    sqlx::query("UPDATE inventory SET quantity = $2 WHERE product_id = $1")
        .bind(checkout.product_id)
        .bind(remaining)
        .execute(&mut *tx)
        .await?;
    let order = insert_order(db, &mut tx, checkout, price_cents).await?;
    tx.commit().await?;
    Ok(Placed::Created { order, remaining })
}

/// Writes the order and its `order.created` event in the caller's transaction.
async fn insert_order(
    db: &Db,
    conn: &mut PgConnection,
    checkout: &Checkout,
    price_cents: i64,
) -> Result<Order, ApiError> {
    db.statement("checkout.insert_order");
    let order = sqlx::query_as::<_, Order>(&format!(
        "INSERT INTO orders (user_id, product_id, quantity, total_cents, idempotency_key, request_id) \
         VALUES ($1, $2, $3, $4, $5, $6) RETURNING {ORDER_COLUMNS}"
    ))
    .bind(checkout.user_id)
    .bind(checkout.product_id)
    .bind(checkout.quantity)
    .bind(price_cents * i64::from(checkout.quantity))
    .bind(&checkout.idempotency_key)
    .bind(&checkout.request_id)
    .fetch_one(&mut *conn)
    .await?;
    db.statement("checkout.insert_outbox_event");
    sqlx::query("INSERT INTO outbox (event_type, order_id, payload) VALUES ('order.created', $1, $2)")
        .bind(order.id)
        .bind(json!({
            "order_id": order.id,
            "user_id": order.user_id,
            "product_id": order.product_id,
            "quantity": order.quantity,
            "total_cents": order.total_cents,
        }))
        .execute(&mut *conn)
        .await?;
    Ok(order)
}

/// One order of the given user, or not found (another user's order is not found either).
pub async fn get_order(db: &Db, user_id: i64, order_id: i64) -> Result<Order, ApiError> {
    db.statement("orders.get");
    sqlx::query_as::<_, Order>(&format!(
        "SELECT {ORDER_COLUMNS} FROM orders WHERE id = $1 AND user_id = $2"
    ))
    .bind(order_id)
    .bind(user_id)
    .fetch_optional(&mut *db.acquire().await?)
    .await?
    .ok_or(ApiError::NotFound("order"))
}
