//! Checkout: turning one unit of stock into one order, exactly once.
//!
//! The defended path is one transaction that locks the inventory row, checks, decrements, and writes the
//! order and its outbox event together. `locking = none` is the version people write first: read the
//! stock, think for a moment (`race_window_ms`), write back what it computed. Two buyers inside that
//! window both see the last pair, and both get an order for it.
//!
//! The confirmation email goes out through the outbox (its event written with the order) unless
//! `email_delivery = inline`, where the checkout sends it itself before committing.
//!
//! With a payment provider, the order's payment is authorised before the order is confirmed:
//! `payments = guarded` before the transaction (and voided if the order then cannot be placed),
//! `payments = naive` inside it, holding the connection and the row lock while the provider answers.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::json;
use sqlx::PgConnection;

use crate::db::Db;
use crate::error::ApiError;
use crate::mail::Mailer;
use crate::modes::{Durability, EmailDelivery, Locking, Modes, Payments};
use crate::payments::{Authorized, Guards, Payment, PaymentClient};

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
    /// The payment provider's authorisation of the order, when the service takes payments.
    pub payment_id: Option<String>,
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

const ORDER_COLUMNS: &str =
    "id, user_id, product_id, quantity, total_cents, idempotency_key, payment_id, created_at";

/// The defended checkout's transaction as a pgbench script, statement for statement (`locking =
/// row_lock`, outbox delivery, no payment provider, quantity 1, an `Idempotency-Key` as the load
/// sends one): the key lookup, then BEGIN, lock, decrement, the order, its event, COMMIT; a product
/// sold out is left as the service leaves it, with nothing written (`\if`). It runs
/// with pgbench's `-D products=N -D users=M`, so the harness can set what the service's own load
/// could not exceed: the database's rate for this very transaction.
///
/// Two differences, both forced: pgbench builds no JSON or UUIDs on the client, so the event's
/// payload (the same object) is built by `jsonb_build_object` and the key is a random number; and
/// the event is written already delivered, so the service's outbox relay, idle beside it, does not
/// take the cores pgbench is measured on.
pub const PGBENCH_TRANSACTION: &str = r"\set pid random(1, :products)
\set uid random(1, :users)
\set key random(1, 1000000000000)
SELECT id, user_id, product_id, quantity, total_cents, idempotency_key, payment_id, created_at
 FROM orders WHERE user_id = :uid AND idempotency_key = 'pgbench-' || :key;
BEGIN;
SELECT i.quantity, p.price_cents FROM inventory i JOIN products p ON p.id = i.product_id
 WHERE i.product_id = :pid FOR UPDATE OF i \gset
\if :quantity > 0
UPDATE inventory SET quantity = quantity - 1 WHERE product_id = :pid RETURNING quantity \gset
INSERT INTO orders (user_id, product_id, quantity, total_cents, idempotency_key, request_id,
 payment_ref, payment_id) VALUES (:uid, :pid, 1, :price_cents, 'pgbench-' || :key, NULL, NULL, NULL)
 RETURNING id, user_id, product_id, quantity, total_cents, idempotency_key, payment_id, created_at \gset o_
INSERT INTO outbox (event_type, order_id, payload, status, attempts, delivered_at)
 VALUES ('order.created', :o_id, jsonb_build_object('order_id', :o_id::bigint, 'user_id',
 :o_user_id::bigint, 'product_id', :o_product_id::bigint, 'quantity', :o_quantity::int,
 'total_cents', :o_total_cents::bigint), 'delivered', 1, now()) RETURNING id;
\endif
COMMIT;
";

/// What a checkout talks to besides its database: the mail server and the payment provider, each
/// when the service has one.
#[derive(Debug, Clone, Copy, Default)]
pub struct Dependencies<'a> {
    pub mailer: Option<&'a Mailer>,
    pub payments: Option<&'a PaymentClient>,
}

/// How the order's payment is taken.
#[derive(Debug, Clone, Copy)]
enum Pay<'a> {
    /// The service takes no payments.
    Nothing,
    /// Authorised before the transaction, as `id` under `order_ref`.
    Authorized { order_ref: &'a str, id: &'a str },
    /// To authorise inside the transaction, once the price is known.
    Inline {
        client: &'a PaymentClient,
        order_ref: &'a str,
    },
}

/// Who sends an order's confirmation.
#[derive(Debug, Clone, Copy)]
enum Confirm<'a> {
    /// The outbox worker, after the commit: the event is written pending.
    Outbox,
    /// The checkout, before its commit, to the mail server if the service has one.
    Inline(Option<&'a Mailer>),
}

/// What writing an order needs besides the order: the database, how durably, who confirms it, and
/// how it is paid.
#[derive(Debug, Clone, Copy)]
struct Writer<'a> {
    db: &'a Db,
    durability: Durability,
    confirm: Confirm<'a>,
    pay: Pay<'a>,
}

/// Places an order as the current modes say: its payment authorised first when `payments = guarded`,
/// then the order written as the locking mode says.
pub async fn place_order(
    db: &Db,
    modes: &Modes,
    outside: Dependencies<'_>,
    checkout: &Checkout,
) -> Result<Placed, ApiError> {
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
    let order_ref = format!("pay_{}", uuid::Uuid::new_v4().simple());
    let authorized = match (outside.payments, modes.payments) {
        (Some(client), Payments::Guarded) => {
            let guards = Guards::of(modes);
            Some(authorize_first(db, client, checkout, &order_ref, guards).await?)
        }
        _ => None,
    };
    let writer = Writer {
        db,
        durability: modes.durability,
        confirm: match modes.email_delivery {
            EmailDelivery::Outbox => Confirm::Outbox,
            EmailDelivery::Inline => Confirm::Inline(outside.mailer),
        },
        pay: match (outside.payments, &authorized) {
            (None, _) => Pay::Nothing,
            (Some(_), Some(authorized)) => Pay::Authorized {
                order_ref: &order_ref,
                id: &authorized.id,
            },
            (Some(client), None) => Pay::Inline {
                client,
                order_ref: &order_ref,
            },
        },
    };
    let placed = write_order(writer, modes, checkout).await;
    if let (Some(client), Some(authorized)) = (outside.payments, &authorized)
        && !matches!(placed, Ok(Placed::Created { .. }))
    {
        // No order came of it (sold out, a replay, an error): release the money.
        client.void(authorized, &order_ref).await;
    }
    placed
}

/// The guarded payment: the stock and price read first (a sold-out product is never charged), then
/// the authorisation, with no database connection held while the provider answers.
async fn authorize_first(
    db: &Db,
    client: &PaymentClient,
    checkout: &Checkout,
    order_ref: &str,
    guards: Guards,
) -> Result<Authorized, ApiError> {
    let (_, price_cents) = read_stock(db, checkout, "checkout.read_price").await?;
    let payment = Payment {
        order_ref: order_ref.to_owned(),
        amount_cents: price_cents * i64::from(checkout.quantity),
    };
    client
        .authorize_guarded(&payment, guards)
        .await
        .map_err(ApiError::from)
}

/// Writes the order as the locking mode says; a unique violation on the idempotency key is the
/// replay of a concurrent request with the same key.
async fn write_order(writer: Writer<'_>, modes: &Modes, checkout: &Checkout) -> Result<Placed, ApiError> {
    let db = writer.db;
    let placed = match modes.locking {
        Locking::RowLock => place_locked(writer, checkout).await,
        Locking::None => {
            let race_window = Duration::from_millis(modes.race_window_ms);
            place_unlocked(writer, checkout, race_window).await
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

/// The product's stock and price, read without a lock (named `statement` in the metrics); sold out
/// when it has fewer units than the checkout wants.
async fn read_stock(db: &Db, checkout: &Checkout, statement: &'static str) -> Result<(i32, i64), ApiError> {
    db.statement(statement);
    let row: Option<(i32, i64)> = sqlx::query_as(
        "SELECT i.quantity, p.price_cents FROM inventory i JOIN products p ON p.id = i.product_id \
         WHERE i.product_id = $1",
    )
    .bind(checkout.product_id)
    .fetch_optional(&mut *db.acquire().await?)
    .await?;
    enough_stock(row, checkout)
}

/// The stock and price of a product row as read, or why the checkout cannot have it: no such
/// product, or fewer units than it wants.
fn enough_stock(row: Option<(i32, i64)>, checkout: &Checkout) -> Result<(i32, i64), ApiError> {
    let (available, price_cents) = row.ok_or(ApiError::NotFound("product"))?;
    if available < checkout.quantity {
        return Err(ApiError::SoldOut {
            requested: checkout.quantity,
            available,
        });
    }
    Ok((available, price_cents))
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

async fn place_locked(writer: Writer<'_>, checkout: &Checkout) -> Result<Placed, ApiError> {
    let db = writer.db;
    let mut tx = db.begin_as(writer.durability).await?;
    db.statement("checkout.lock_inventory");
    let row: Option<(i32, i64)> = sqlx::query_as(
        "SELECT i.quantity, p.price_cents FROM inventory i JOIN products p ON p.id = i.product_id \
         WHERE i.product_id = $1 FOR UPDATE OF i",
    )
    .bind(checkout.product_id)
    .fetch_optional(&mut *tx)
    .await?;
    let (_, price_cents) = enough_stock(row, checkout)?;
    db.statement("checkout.decrement_inventory");
    let remaining: i32 = sqlx::query_scalar(
        "UPDATE inventory SET quantity = quantity - $2 WHERE product_id = $1 RETURNING quantity",
    )
    .bind(checkout.product_id)
    .bind(checkout.quantity)
    .fetch_one(&mut *tx)
    .await?;
    let order = insert_order(writer, &mut tx, checkout, price_cents).await?;
    tx.commit().await?;
    Ok(Placed::Created { order, remaining })
}

/// The naive checkout: nothing stops a second buyer between the read and the write.
async fn place_unlocked(
    writer: Writer<'_>,
    checkout: &Checkout,
    race_window: Duration,
) -> Result<Placed, ApiError> {
    let db = writer.db;
    let (available, price_cents) = read_stock(db, checkout, "checkout.read_inventory").await?;
    tokio::time::sleep(race_window).await;
    let remaining = available - checkout.quantity;
    let mut tx = db.begin_as(writer.durability).await?;
    db.statement("checkout.write_inventory");
    sqlx::query("UPDATE inventory SET quantity = $2 WHERE product_id = $1")
        .bind(checkout.product_id)
        .bind(remaining)
        .execute(&mut *tx)
        .await?;
    let order = insert_order(writer, &mut tx, checkout, price_cents).await?;
    tx.commit().await?;
    Ok(Placed::Created { order, remaining })
}

/// Writes the order and its `order.created` event in the caller's transaction (and, inline, takes
/// its payment and sends its confirmation).
async fn insert_order(
    writer: Writer<'_>,
    conn: &mut PgConnection,
    checkout: &Checkout,
    price_cents: i64,
) -> Result<Order, ApiError> {
    let db = writer.db;
    let total_cents = price_cents * i64::from(checkout.quantity);
    let (payment_ref, payment_id) = match writer.pay {
        Pay::Nothing => (None, None),
        Pay::Authorized { order_ref, id } => (Some(order_ref), Some(id.to_owned())),
        Pay::Inline { client, order_ref } => {
            let payment = Payment {
                order_ref: order_ref.to_owned(),
                amount_cents: total_cents,
            };
            let authorized = client.authorize_naive(&payment).await?;
            (Some(order_ref), Some(authorized.id))
        }
    };
    db.statement("checkout.insert_order");
    let order = sqlx::query_as::<_, Order>(&format!(
        "INSERT INTO orders (user_id, product_id, quantity, total_cents, idempotency_key, request_id, \
         payment_ref, payment_id) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING {ORDER_COLUMNS}"
    ))
    .bind(checkout.user_id)
    .bind(checkout.product_id)
    .bind(checkout.quantity)
    .bind(total_cents)
    .bind(&checkout.idempotency_key)
    .bind(&checkout.request_id)
    .bind(payment_ref)
    .bind(payment_id)
    .fetch_one(&mut *conn)
    .await?;
    let delivered = match writer.confirm {
        Confirm::Outbox => false,
        Confirm::Inline(mailer) => {
            confirm_inline(db, conn, &order, mailer).await?;
            true
        }
    };
    db.statement("checkout.insert_outbox_event");
    let event_id: i64 = sqlx::query_scalar(
        "INSERT INTO outbox (event_type, order_id, payload, status, attempts, delivered_at) \
         VALUES ('order.created', $1, $2, CASE WHEN $3 THEN 'delivered' ELSE 'pending' END, \
         CASE WHEN $3 THEN 1 ELSE 0 END, CASE WHEN $3 THEN now() END) RETURNING id",
    )
    .bind(order.id)
    .bind(json!({
        "order_id": order.id,
        "user_id": order.user_id,
        "product_id": order.product_id,
        "quantity": order.quantity,
        "total_cents": order.total_cents,
    }))
    .bind(delivered)
    .fetch_one(&mut *conn)
    .await?;
    if delivered {
        record_email(db, conn, event_id, &order).await?;
    }
    Ok(order)
}

/// Sends the order's confirmation now, inside the checkout's transaction: an error rolls the order
/// back, and the time it takes is time the inventory row stays locked.
async fn confirm_inline(
    db: &Db,
    conn: &mut PgConnection,
    order: &Order,
    mailer: Option<&Mailer>,
) -> Result<(), ApiError> {
    let Some(mailer) = mailer else { return Ok(()) };
    db.statement("checkout.read_recipient");
    let recipient: String = sqlx::query_scalar("SELECT email FROM users WHERE id = $1")
        .bind(order.user_id)
        .fetch_one(&mut *conn)
        .await?;
    mailer
        .send_confirmation(order.id, &recipient)
        .await
        .map_err(ApiError::EmailUnavailable)
}

/// The `emails` row of a confirmation sent inline, as the outbox worker writes it for its own.
async fn record_email(
    db: &Db,
    conn: &mut PgConnection,
    event_id: i64,
    order: &Order,
) -> Result<(), ApiError> {
    db.statement("checkout.record_email");
    sqlx::query(
        "INSERT INTO emails (event_id, order_id, recipient, subject) \
         SELECT $1, $2, u.email, format('Order %s confirmed', $2) FROM users u WHERE u.id = $3",
    )
    .bind(event_id)
    .bind(order.id)
    .bind(order.user_id)
    .execute(&mut *conn)
    .await?;
    Ok(())
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
