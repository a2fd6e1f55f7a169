//! The vocabulary of predictions: what can be measured, and how an observation is compared.

use serde::{Deserialize, Serialize};

macro_rules! metrics {
    ($($variant:ident = $name:literal: $doc:literal,)*) => {
        /// A figure an experiment can predict, measured per phase (or over the whole run).
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        pub enum Metric {
            $(#[doc = $doc] #[serde(rename = $name)] $variant,)*
        }

        impl Metric {
            pub const ALL: &'static [Metric] = &[$(Metric::$variant,)*];

            pub fn name(self) -> &'static str {
                match self { $(Metric::$variant => $name,)* }
            }

            pub fn describe(self) -> &'static str {
                match self { $(Metric::$variant => $doc,)* }
            }
        }
    };
}

metrics! {
    OfferedRps = "offered_rps": "requests per second the load generator tried to send",
    ThroughputRps = "throughput_rps": "requests per second that completed",
    ErrorRate = "error_rate": "fraction of requests that failed (5xx, timeouts, connection errors)",
    P50Ms = "p50_ms": "client-side latency, 50th percentile, milliseconds",
    P95Ms = "p95_ms": "client-side latency, 95th percentile, milliseconds",
    P99Ms = "p99_ms": "client-side latency, 99th percentile, milliseconds",
    DbStatementsPerS = "db_statements_per_s": "statements per second the service issued (its own counter)",
    PgStatementsPerS = "pg_statements_per_s": "statements per second Postgres executed (pg_stat_statements)",
    PgTransactionsPerS = "pg_transactions_per_s": "transactions per second Postgres committed (pg_stat_database)",
    PgRowsPerS = "pg_rows_per_s": "rows per second Postgres statements returned or changed (pg_stat_statements)",
    RedisCommandsPerS = "redis_commands_per_s": "commands per second Redis processed, while it is up (INFO stats)",
    RedisHitsPerS = "redis_hits_per_s": "keyspace hits per second at Redis, while it is up (INFO stats)",
    RedisMissesPerS = "redis_misses_per_s": "keyspace misses per second at Redis, while it is up (INFO stats)",
    StatementsPerRequest = "statements_per_request": "Postgres statements per completed request",
    CacheHitRatio = "cache_hit_ratio": "cache hits over all cached reads",
    CacheErrorsPerS = "cache_errors_per_s": "Redis errors per second seen by the service",
    HitRatioRecoveryS = "hit_ratio_recovery_s": "seconds after a fault ends until the cache hit ratio is back above 0.9",
    OrdersPerS = "orders_per_s": "orders created per second",
    SoldOutPerS = "sold_out_per_s": "checkouts answered 409 sold_out per second",
    Http5xxRate = "http_5xx_rate": "fraction of responses with a 5xx status",
    OversoldUnits = "oversold_units": "units sold beyond the initial stock, summed over products (end of run)",
    UnitsSold = "units_sold": "units sold during the run (end of run)",
}

impl std::fmt::Display for Metric {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for Metric {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Metric::ALL
            .iter()
            .copied()
            .find(|m| m.name() == s)
            .ok_or_else(|| {
                let known: Vec<&str> = Metric::ALL.iter().map(|m| m.name()).collect();
                format!("unknown metric {s:?}; known metrics: {}", known.join(", "))
            })
    }
}

/// How an observation is held against a threshold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Comparison {
    #[serde(rename = "<")]
    Less,
    #[serde(rename = "<=")]
    AtMost,
    #[serde(rename = ">")]
    Greater,
    #[serde(rename = ">=")]
    AtLeast,
    #[serde(rename = "==")]
    Equal,
    /// Within `tolerance` (a fraction) of the threshold, either side: for figures predicted from a model.
    #[serde(rename = "within")]
    Within,
}

impl Comparison {
    /// Whether `observed` satisfies the comparison; `tolerance` only matters for `Within`.
    pub fn holds(self, observed: f64, threshold: f64, tolerance: f64) -> bool {
        match self {
            Self::Within => (observed - threshold).abs() <= tolerance * threshold.abs(),
            Self::Less => observed < threshold,
            Self::AtMost => observed <= threshold,
            Self::Greater => observed > threshold,
            Self::AtLeast => observed >= threshold,
            Self::Equal => (observed - threshold).abs() <= f64::EPSILON.max(threshold.abs() * 1e-9),
        }
    }

    pub fn symbol(self) -> &'static str {
        match self {
            Self::Less => "<",
            Self::AtMost => "<=",
            Self::Greater => ">",
            Self::AtLeast => ">=",
            Self::Equal => "==",
            Self::Within => "within",
        }
    }
}

/// A prediction as a reader would write it: `p95_ms in fault / baseline >= 3`,
/// `orders_per_s in far within 30% of 22.2`.
pub fn claim(
    metric: Metric,
    phase: &str,
    over: Option<&str>,
    compare: Comparison,
    threshold: f64,
    tolerance: Option<f64>,
) -> String {
    let over = over.map(|o| format!(" / {o}")).unwrap_or_default();
    match (compare, tolerance) {
        (Comparison::Within, Some(t)) => format!(
            "{metric} in {phase}{over} within {:.0}% of {threshold}",
            t * 100.0
        ),
        _ => format!("{metric} in {phase}{over} {} {threshold}", compare.symbol()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_parse_by_name_and_unknown_ones_list_the_known() {
        assert_eq!("p95_ms".parse::<Metric>().unwrap(), Metric::P95Ms);
        let error = "p42_ms".parse::<Metric>().unwrap_err();
        assert!(
            error.contains("p95_ms") && error.contains("cache_hit_ratio"),
            "{error}"
        );
    }

    #[test]
    fn comparisons_hold_as_written() {
        assert!(Comparison::AtLeast.holds(3.0, 3.0, 0.0));
        assert!(!Comparison::Less.holds(3.0, 3.0, 0.0));
        assert!(Comparison::Equal.holds(5.0, 5.0, 0.0));
        assert!(!Comparison::Equal.holds(5.0, 5.1, 0.0));
        assert!(Comparison::Within.holds(25.0, 28.6, 0.3));
        assert!(!Comparison::Within.holds(18.0, 28.6, 0.3));
    }
}
