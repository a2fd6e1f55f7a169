//! The counters a run reads from a service's own `/metrics`: the reference service's from its own
//! series, a user's target's from the series its Compose file maps to each
//! (`x-fortress.metrics.counters`).

use super::Metric;

closed_set::closed_set! {
    /// One cumulative count a service replica keeps, as Fortress reads it.
    pub enum Counter, "counter" {
        Responses = "responses": "responses the service answered, whatever their status",
        Responses5xx = "responses_5xx": "responses with a 5xx status",
        Statements = "statements": "database statements the service issued",
        CacheHits = "cache_hits": "cached reads answered from the cache",
        CacheMisses = "cache_misses": "cached reads that missed and loaded from the database",
        CacheErrors = "cache_errors": "cached reads whose cache call failed",
        CacheBypassed = "cache_bypassed": "cached reads that did not ask the cache",
        OrdersCreated = "orders_created": "orders created",
        OrdersSoldOut = "orders_sold_out": "checkouts refused because the stock was gone",
    }
}

impl Counter {
    /// The counters `metric` is computed from (`observe::service_rates`); none when the service's
    /// counters do not produce it.
    pub fn feeding(metric: Metric) -> &'static [Counter] {
        use Counter::*;
        match metric {
            Metric::ServiceRps => &[Responses],
            Metric::DbStatementsPerS => &[Statements],
            Metric::CacheErrorsPerS => &[CacheErrors],
            Metric::CacheMissesPerS => &[CacheMisses],
            Metric::OrdersPerS => &[OrdersCreated],
            Metric::SoldOutPerS => &[OrdersSoldOut],
            Metric::CacheHitRatio => &[CacheHits, CacheMisses],
            Metric::Http5xxRate => &[Responses, Responses5xx],
            _ => &[],
        }
    }
}
