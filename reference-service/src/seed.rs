//! Deterministic test data: the same plan gives the same products, users, stock and order history.
//!
//! Seeded orders count as sold units, so `initial_stock = quantity + units sold in the seed`, and the
//! invariant "units sold never exceed the initial stock" holds from the first second of a run.

use serde::{Deserialize, Serialize};

use crate::auth::hash_password_at;
use crate::db::Db;
use crate::error::ApiError;

/// Every seeded user logs in with this password; their emails are `user{N}@fortress.test`, N from 1.
pub const SEED_PASSWORD: &str = "fortress-password";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SeedPlan {
    pub products: u32,
    pub users: u32,
    /// Units in stock per product after seeding.
    pub stock: u32,
    /// Past orders per user, each for one unit.
    pub orders_per_user: u32,
    /// Varies names, prices and which products past orders are for.
    pub seed: u64,
    /// What checking a seeded user's password costs.
    pub password_cost: PasswordCost,
}

/// What checking a seeded user's password costs: the parameters of the argon2id hash the seed stores
/// (a check runs with the parameters its hash names).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PasswordCost {
    /// argon2id's defaults, as a real shop's: 19 MiB and two passes, ~20 ms of CPU a login here.
    #[default]
    Standard,
    /// argon2id at its minimum (8 KiB, one pass): a login costs microseconds. For stories where
    /// logging the load's users in is set-up and not what they measure: 100 standard logins take
    /// ~3 s of CPU, two labs' login storms at once fill both cores. (An unknown email's check in
    /// `login_timing = "constant"` still costs a standard hash: a story about login timing keeps
    /// `standard`.)
    Light,
}

impl Default for SeedPlan {
    fn default() -> Self {
        Self {
            products: 100,
            users: 100,
            stock: 100,
            orders_per_user: 5,
            seed: 42,
            password_cost: PasswordCost::Standard,
        }
    }
}

const MAX_PRODUCTS: u32 = 100_000;
const MAX_USERS: u32 = 100_000;
const MAX_STOCK: u32 = 1_000_000;
const MAX_ORDERS_PER_USER: u32 = 1_000;

impl SeedPlan {
    pub fn validate(&self) -> Result<(), ApiError> {
        let check = |field: &str, value: u32, min: u32, max: u32| {
            if (min..=max).contains(&value) {
                Ok(())
            } else {
                Err(ApiError::unprocessable(
                    "invalid_seed_plan",
                    format!("{field} must be between {min} and {max} (got {value})"),
                ))
            }
        };
        check("products", self.products, 1, MAX_PRODUCTS)?;
        check("users", self.users, 1, MAX_USERS)?;
        check("stock", self.stock, 0, MAX_STOCK)?;
        check("orders_per_user", self.orders_per_user, 0, MAX_ORDERS_PER_USER)
    }
}

/// Replaces all data with the plan's. Runs in one transaction: a failed seed leaves the old data.
pub async fn seed(db: &Db, plan: &SeedPlan) -> Result<(), ApiError> {
    plan.validate()?;
    let salt = format!("fortress-seed-{:016x}", plan.seed);
    let hash = {
        let salt = salt.clone();
        let cost = plan.password_cost;
        tokio::task::spawn_blocking(move || hash_password_at(SEED_PASSWORD, salt.as_bytes(), cost))
            .await
            .map_err(|e| ApiError::Internal(format!("hashing panicked: {e}")))??
    };
    let seed = i64::try_from(plan.seed % 1_000_003).unwrap_or(0);
    let mut tx = db.begin().await?;
    skip_foreign_key_checks(&mut tx).await?;
    let statements: [(&str, &str); 8] = [
        (
            "seed.truncate",
            "TRUNCATE emails, outbox, orders, inventory, products, users RESTART IDENTITY CASCADE",
        ),
        (
            "seed.products",
            "INSERT INTO products (sku, name, size, price_cents) \
             SELECT format('SNK-%s', lpad(n::text, 6, '0')), \
                    (ARRAY['Runner','Court','Trail','Retro','Glide','Summit'])[1 + (n + $4) % 6] || ' ' || \
                    (ARRAY['Black','White','Red','Volt','Navy','Sand','Olive'])[1 + (n * 3 + $4) % 7], \
                    (38 + (n + $4) % 9)::text, 5000 + ((n * 7919 + $4) % 20000) \
             FROM generate_series(1, $1::int) AS n",
        ),
        (
            "seed.users",
            "INSERT INTO users (email, password_hash) \
             SELECT format('user%s@fortress.test', n), $5 FROM generate_series(1, $2::int) AS n",
        ),
        (
            "seed.orders",
            "INSERT INTO orders (user_id, product_id, quantity, total_cents, created_at) \
             SELECT u, p.id, 1, p.price_cents, now() - make_interval(mins => (u * $3 + i)::int) \
             FROM generate_series(1, $2::int) AS u, generate_series(1, $3::int) AS i \
             JOIN LATERAL (SELECT id, price_cents FROM products \
                           WHERE id = 1 + ((u * 31 + i * 7 + $4) % $1::int)) p ON true",
        ),
        (
            "seed.inventory",
            "INSERT INTO inventory (product_id, quantity, initial_stock) \
             SELECT p.id, $6, $6 + (SELECT count(*) FROM orders o WHERE o.product_id = p.id) FROM products p",
        ),
        (
            "seed.outbox",
            "INSERT INTO outbox (event_type, order_id, payload, status, delivered_at) \
             SELECT 'order.created', o.id, jsonb_build_object('order_id', o.id, 'seeded', true), \
                    'delivered', now() FROM orders o",
        ),
        (
            "seed.emails",
            "INSERT INTO emails (event_id, order_id, recipient, subject) \
             SELECT e.id, e.order_id, u.email, format('Order %s confirmed', e.order_id) \
             FROM outbox e JOIN orders o ON o.id = e.order_id JOIN users u ON u.id = o.user_id",
        ),
        ("seed.analyze", "ANALYZE"),
    ];
    for (name, sql) in statements {
        db.statement(name);
        sqlx::query(sql)
            .bind(i64::from(plan.products))
            .bind(i64::from(plan.users))
            .bind(i64::from(plan.orders_per_user))
            .bind(seed)
            .bind(&hash)
            .bind(i64::from(plan.stock))
            .execute(&mut *tx)
            .await
            .map_err(|e| ApiError::Internal(format!("{name}: {e}")))?;
    }
    tx.commit().await?;
    Ok(())
}

/// The seed's rows reference each other by construction (every order's user and product, every
/// email's event), so checking each of 600,000 foreign keys one row at a time only costs time: half
/// of a 200,000-order seed (8.8 s against 4.2 s on the lab's Postgres). A superuser can switch the
/// checks off for this transaction; another role seeds with them on. The invariants check the
/// data after every run either way.
async fn skip_foreign_key_checks(tx: &mut sqlx::PgConnection) -> Result<(), ApiError> {
    let superuser: bool = sqlx::query_scalar("SELECT rolsuper FROM pg_roles WHERE rolname = current_user")
        .fetch_optional(&mut *tx)
        .await?
        .unwrap_or(false);
    if superuser {
        sqlx::query("SET LOCAL session_replication_role = replica")
            .execute(&mut *tx)
            .await?;
    }
    Ok(())
}
