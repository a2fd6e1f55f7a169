//! Browsing: the product list, one product, and how many are left. All three read through the cache.

use axum::Json;
use axum::extract::State;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::app::AppState;
use crate::catalog::{self, Availability, Product, ProductQuery};
use crate::error::ApiError;
use crate::extract::{ApiPath, ApiQuery};

const MAX_PAGE: i64 = 100;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListParams {
    size: Option<String>,
    limit: Option<i64>,
    offset: Option<i64>,
}

impl ListParams {
    fn validate(self) -> Result<ProductQuery, ApiError> {
        let limit = self.limit.unwrap_or(20);
        if !(1..=MAX_PAGE).contains(&limit) {
            return Err(ApiError::unprocessable(
                "invalid_limit",
                format!("limit must be 1 to {MAX_PAGE}"),
            ));
        }
        let offset = self.offset.unwrap_or(0);
        if !(0..=1_000_000).contains(&offset) {
            return Err(ApiError::unprocessable(
                "invalid_offset",
                "offset must be 0 to 1000000",
            ));
        }
        let well_formed = |size: &str| {
            (1..=8).contains(&size.len()) && size.chars().all(|c| c.is_ascii_alphanumeric() || c == '.')
        };
        if self.size.as_deref().is_some_and(|size| !well_formed(size)) {
            return Err(ApiError::unprocessable(
                "invalid_size",
                "size must be 1 to 8 ASCII letters, digits or dots (e.g. 42 or 42.5)",
            ));
        }
        Ok(ProductQuery {
            size: self.size,
            limit,
            offset,
        })
    }
}

pub async fn list_products(
    State(state): State<AppState>,
    ApiQuery(params): ApiQuery<ListParams>,
) -> Result<Json<Value>, ApiError> {
    let query = params.validate()?;
    let modes = state.modes.current();
    let products: Vec<Product> = state
        .cache
        .read_through(&modes, &query.cache_key(), || {
            catalog::list_products(&state.db, &query)
        })
        .await?;
    Ok(Json(json!({ "products": products })))
}

fn product_id(id: i64) -> Result<i64, ApiError> {
    if id < 1 {
        Err(ApiError::NotFound("product"))
    } else {
        Ok(id)
    }
}

pub async fn get_product(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<i64>,
) -> Result<Json<Product>, ApiError> {
    let id = product_id(id)?;
    let modes = state.modes.current();
    let key = catalog::product_key(id);
    state
        .cache
        .read_through(&modes, &key, || catalog::get_product(&state.db, id))
        .await
        .map(Json)
}

pub async fn availability(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<i64>,
) -> Result<Json<Availability>, ApiError> {
    let id = product_id(id)?;
    let modes = state.modes.current();
    let key = catalog::availability_key(id);
    state
        .cache
        .read_through(&modes, &key, || catalog::availability(&state.db, id))
        .await
        .map(Json)
}
