//! Liveness, readiness and metrics: what the lab and an orchestrator ask the service about itself.

use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::http::header::CONTENT_TYPE;
use axum::response::IntoResponse;
use serde_json::{Value, json};

use crate::app::AppState;
use crate::cache::BreakerState;

/// How long a readiness check or a metrics query may take before the dependency counts as down.
const PROBE_DEADLINE: Duration = Duration::from_millis(500);

pub async fn healthz() -> Json<Value> {
    Json(json!({ "status": "ok" }))
}

async fn postgres_up(state: &AppState) -> bool {
    let probe = async {
        let mut conn = state.db.acquire().await?;
        sqlx::query_scalar::<_, i32>("SELECT 1")
            .fetch_one(&mut *conn)
            .await
    };
    matches!(tokio::time::timeout(PROBE_DEADLINE, probe).await, Ok(Ok(1)))
}

fn breaker_name(state: BreakerState) -> &'static str {
    match state {
        BreakerState::Closed => "closed",
        BreakerState::Open => "open",
        BreakerState::HalfOpen => "half_open",
    }
}

/// `GET /readyz`: 200 `ready` when both dependencies answer, 200 `degraded` when only Redis is down (reads
/// still work from Postgres), 503 `unavailable` when Postgres is down (nothing can be sold).
pub async fn readyz(State(state): State<AppState>) -> impl IntoResponse {
    let (postgres, redis) = tokio::join!(postgres_up(&state), state.cache.ping(PROBE_DEADLINE));
    let (status, word) = match (postgres, redis) {
        (true, true) => (StatusCode::OK, "ready"),
        (true, false) => (StatusCode::OK, "degraded"),
        (false, _) => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
    };
    let up = |ok: bool| if ok { "up" } else { "down" };
    let body = json!({
        "status": word,
        "dependencies": { "postgres": up(postgres), "redis": up(redis) },
        "cache_breaker": breaker_name(state.cache.breaker_state()),
        "modes": state.modes.current(),
    });
    (status, Json(body))
}

/// `GET /metrics`: refreshes the gauges that are read rather than counted, then renders everything.
pub async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    state.db.publish_pool_gauges();
    state
        .metrics
        .cache_breaker_state
        .set(state.cache.breaker_state().as_gauge());
    // A scrape must not queue for the pool behind the requests it is measuring, nor hang on a sick
    // database: with no idle connection at hand, the outbox gauges keep their last values.
    let counts = async {
        let Some(mut conn) = state.db.pool().try_acquire() else {
            return Ok(None);
        };
        // Only the events still to deliver (through their partial index): the delivered ones grow
        // with every order, and a scrape a second must not read them all (`outbox_relayed_total`
        // counts them instead).
        sqlx::query_as::<_, (String, i64)>(
            "SELECT status, count(*) FROM outbox WHERE status <> 'delivered' GROUP BY status",
        )
        .fetch_all(&mut *conn)
        .await
        .map(Some)
    };
    if let Ok(Ok(Some(rows))) = tokio::time::timeout(PROBE_DEADLINE, counts).await {
        for status in ["pending", "dead"] {
            let count = rows.iter().find(|(s, _)| s == status).map_or(0, |(_, n)| *n);
            state
                .metrics
                .outbox_events
                .with_label_values(&[status])
                .set(count);
        }
    }
    (
        [(CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")],
        state.metrics.render(),
    )
}
