//! The operator's switches: read and change the runtime modes, reseed the data set, and send the
//! outbox's dead letters again.

use axum::Json;
use axum::extract::State;
use serde_json::{Value, json};

use super::session::Operator;
use crate::app::AppState;
use crate::error::ApiError;
use crate::extract::ApiJson;
use crate::modes::{Modes, ModesPatch};
use crate::outbox;
use crate::seed::{self, SeedPlan};

pub async fn get_modes(State(state): State<AppState>, _: Operator) -> Json<Modes> {
    Json(state.modes.current())
}

/// `PUT /admin/modes` with any subset of the modes; answers with the full set now in force.
pub async fn put_modes(
    State(state): State<AppState>,
    _: Operator,
    ApiJson(patch): ApiJson<ModesPatch>,
) -> Result<Json<Modes>, ApiError> {
    let modes = state
        .modes
        .update(&patch)
        .map_err(|message| ApiError::unprocessable("invalid_mode", message))?;
    tracing::info!(?modes, "modes changed");
    Ok(Json(modes))
}

/// `POST /admin/seed`: replaces all data with the plan's (missing fields take their defaults) and empties
/// the cache, so no stale product outlives the data it came from.
pub async fn seed(
    State(state): State<AppState>,
    _: Operator,
    ApiJson(plan): ApiJson<SeedPlan>,
) -> Result<Json<Value>, ApiError> {
    seed::seed(&state.db, &plan).await?;
    let cache_cleared = match state.cache.clear().await {
        Ok(()) => true,
        Err(error) => {
            tracing::warn!(%error, "seeded, but could not clear Redis");
            false
        }
    };
    tracing::info!(?plan, "seeded");
    Ok(Json(json!({ "seeded": plan, "cache_cleared": cache_cleared })))
}

/// `POST /admin/outbox/replay`: every dead-lettered event goes back to pending, due now, with its
/// attempts reset; the worker sends them on its next batch. Answers how many.
pub async fn replay_dead_letters(
    State(state): State<AppState>,
    _: Operator,
) -> Result<Json<Value>, ApiError> {
    let replayed = outbox::replay_dead(&state.db).await?;
    tracing::info!(replayed, "dead letters replayed");
    Ok(Json(json!({ "replayed": replayed })))
}
