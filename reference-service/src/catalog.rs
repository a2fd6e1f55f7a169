//! The product catalogue and its stock levels, as read by browsing shoppers (cache-aside in Redis).

use serde::{Deserialize, Serialize};

use crate::db::Db;
use crate::error::ApiError;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, sqlx::FromRow)]
pub struct Product {
    pub id: i64,
    pub sku: String,
    pub name: String,
    pub size: String,
    pub price_cents: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Availability {
    pub product_id: i64,
    pub available: i32,
}

/// A page of the catalogue, optionally only one size.
#[derive(Debug, Clone, PartialEq)]
pub struct ProductQuery {
    pub size: Option<String>,
    pub limit: i64,
    pub offset: i64,
}

impl ProductQuery {
    /// The Redis key of this page.
    pub fn cache_key(&self) -> String {
        format!(
            "products:{}:{}:{}",
            self.size.as_deref().unwrap_or("all"),
            self.limit,
            self.offset
        )
    }
}

pub fn product_key(id: i64) -> String {
    format!("product:{id}")
}

pub fn availability_key(id: i64) -> String {
    format!("availability:{id}")
}

pub async fn list_products(db: &Db, query: &ProductQuery) -> Result<Vec<Product>, ApiError> {
    db.statement("catalog.list_products");
    let products = sqlx::query_as::<_, Product>(
        "SELECT id, sku, name, size, price_cents FROM products \
         WHERE ($1::text IS NULL OR size = $1) ORDER BY id LIMIT $2 OFFSET $3",
    )
    .bind(&query.size)
    .bind(query.limit)
    .bind(query.offset)
    .fetch_all(&mut *db.acquire().await?)
    .await?;
    Ok(products)
}

pub async fn get_product(db: &Db, id: i64) -> Result<Product, ApiError> {
    db.statement("catalog.get_product");
    sqlx::query_as::<_, Product>("SELECT id, sku, name, size, price_cents FROM products WHERE id = $1")
        .bind(id)
        .fetch_optional(&mut *db.acquire().await?)
        .await?
        .ok_or(ApiError::NotFound("product"))
}

pub async fn availability(db: &Db, id: i64) -> Result<Availability, ApiError> {
    db.statement("catalog.availability");
    let available: Option<i32> = sqlx::query_scalar("SELECT quantity FROM inventory WHERE product_id = $1")
        .bind(id)
        .fetch_optional(&mut *db.acquire().await?)
        .await?;
    available
        .map(|available| Availability {
            product_id: id,
            available,
        })
        .ok_or(ApiError::NotFound("product"))
}
