//! The service's own view, from its `/metrics` (Prometheus text): statements it issued, cache outcomes,
//! orders by result, responses by status; a user's target's, from the series its Compose file names.

use crate::exposition::{self, Selector};
use crate::vocabulary::Counter;

/// Cumulative counters at one scrape.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct ServiceCounters {
    pub statements: f64,
    pub cache_hits: f64,
    pub cache_misses: f64,
    pub cache_errors: f64,
    pub cache_bypassed: f64,
    pub orders_created: f64,
    pub orders_sold_out: f64,
    pub responses: f64,
    pub responses_5xx: f64,
}

impl ServiceCounters {
    /// Every counter of `self` and `other` combined by `f`.
    fn combine(&self, other: &Self, mut f: impl FnMut(f64, f64) -> f64) -> Self {
        Self {
            statements: f(self.statements, other.statements),
            cache_hits: f(self.cache_hits, other.cache_hits),
            cache_misses: f(self.cache_misses, other.cache_misses),
            cache_errors: f(self.cache_errors, other.cache_errors),
            cache_bypassed: f(self.cache_bypassed, other.cache_bypassed),
            orders_created: f(self.orders_created, other.orders_created),
            orders_sold_out: f(self.orders_sold_out, other.orders_sold_out),
            responses: f(self.responses, other.responses),
            responses_5xx: f(self.responses_5xx, other.responses_5xx),
        }
    }

    /// The count of `counter`.
    pub(super) fn get_mut(&mut self, counter: Counter) -> &mut f64 {
        match counter {
            Counter::Responses => &mut self.responses,
            Counter::Responses5xx => &mut self.responses_5xx,
            Counter::Statements => &mut self.statements,
            Counter::CacheHits => &mut self.cache_hits,
            Counter::CacheMisses => &mut self.cache_misses,
            Counter::CacheErrors => &mut self.cache_errors,
            Counter::CacheBypassed => &mut self.cache_bypassed,
            Counter::OrdersCreated => &mut self.orders_created,
            Counter::OrdersSoldOut => &mut self.orders_sold_out,
        }
    }

    /// The counts since `before`; `None` when a counter went backwards (the replica restarted).
    pub fn since(&self, before: &Self) -> Option<Self> {
        let mut backwards = false;
        let delta = self.combine(before, |now, then| {
            backwards |= now < then;
            now - then
        });
        (!backwards).then_some(delta)
    }
}

/// Two replicas' counts together.
impl std::ops::Add for ServiceCounters {
    type Output = Self;
    fn add(self, other: Self) -> Self {
        self.combine(&other, |a, b| a + b)
    }
}

/// Guarded checkouts and payment releases running on their own tasks (the reference service's gauge).
pub const PAYMENTS_IN_FLIGHT: &str = "fortress_payments_in_flight";
/// Password checks queued or running on the service's blocking pool (the reference service's gauge).
pub const PASSWORD_CHECKS_IN_FLIGHT: &str = "fortress_password_checks_in_flight";

/// The value of the unlabelled gauge `name` in a `/metrics` body, if it has one.
pub fn gauge(text: &str, name: &str) -> Option<f64> {
    (text.lines().filter_map(exposition::parse_line))
        .find(|l| l.name == name && l.labels.is_empty())
        .map(|l| l.value)
}

/// Which series each counter is summed from: the reference service's own, or what a user's target
/// maps in its Compose file. A counter with no series reads 0.
#[derive(Debug, Clone, PartialEq)]
pub struct CounterMap(Vec<(Counter, Selector)>);

impl CounterMap {
    pub fn new(series: Vec<(Counter, Selector)>) -> Self {
        Self(series)
    }

    /// The reference service's series (`reference_service::metrics`).
    pub fn reference() -> Self {
        let series = [
            (Counter::Statements, "fortress_db_statements_total"),
            (
                Counter::CacheHits,
                r#"fortress_cache_requests_total{outcome="hit"}"#,
            ),
            (
                Counter::CacheMisses,
                r#"fortress_cache_requests_total{outcome="miss"}"#,
            ),
            (
                Counter::CacheErrors,
                r#"fortress_cache_requests_total{outcome="error"}"#,
            ),
            (
                Counter::CacheBypassed,
                r#"fortress_cache_requests_total{outcome="bypass"}"#,
            ),
            (
                Counter::OrdersCreated,
                r#"fortress_orders_total{result="created"}"#,
            ),
            (
                Counter::OrdersSoldOut,
                r#"fortress_orders_total{result="sold_out"}"#,
            ),
            (Counter::Responses, "fortress_http_requests_total"),
            (
                Counter::Responses5xx,
                r#"fortress_http_requests_total{status=~"5.."}"#,
            ),
        ];
        Self(
            (series.into_iter())
                .map(|(counter, selector)| (counter, selector.parse().expect("a valid selector")))
                .collect(),
        )
    }

    /// Reads the counters out of a `/metrics` body.
    pub fn read(&self, text: &str) -> ServiceCounters {
        let lines = exposition::lines(text);
        let mut counters = ServiceCounters::default();
        for (counter, selector) in &self.0 {
            *counters.get_mut(*counter) = selector.sum(&lines);
        }
        counters
    }
}

/// Reads the reference service's counters out of its `/metrics` body.
pub fn parse(text: &str) -> ServiceCounters {
    static REFERENCE: std::sync::LazyLock<CounterMap> = std::sync::LazyLock::new(CounterMap::reference);
    REFERENCE.read(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_are_read_from_the_service_text_format() {
        let text = "\
# HELP fortress_cache_requests_total Cached reads by outcome
# TYPE fortress_cache_requests_total counter
fortress_cache_requests_total{outcome=\"hit\"} 90
fortress_cache_requests_total{outcome=\"miss\"} 10
# TYPE fortress_db_statements_total counter
fortress_db_statements_total{query=\"catalog.get_product\"} 7
fortress_db_statements_total{query=\"checkout.insert_order\"} 3
# TYPE fortress_http_requests_total counter
fortress_http_requests_total{method=\"GET\",route=\"/products/{id}\",status=\"200\"} 95
fortress_http_requests_total{method=\"POST\",route=\"/orders\",status=\"503\"} 5
";
        let counters = parse(text);
        assert_eq!((counters.cache_hits, counters.cache_misses), (90.0, 10.0));
        assert_eq!(counters.statements, 10.0);
        assert_eq!((counters.responses, counters.responses_5xx), (100.0, 5.0));
    }
}
