//! The service's own view, from its `/metrics` (Prometheus text): statements it issued, cache outcomes,
//! orders by result, responses by status.

use prometheus_parse::{Sample, Scrape, Value};

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
    /// 0 closed, 1 half-open, 2 open.
    pub breaker_state: f64,
}

fn value(sample: &Sample) -> f64 {
    match sample.value {
        Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => v,
        _ => 0.0,
    }
}

/// Sums the samples of `metric` whose `label` is `wanted` (or all of them when `wanted` is `None`).
fn sum(scrape: &Scrape, metric: &str, label: &str, wanted: Option<&str>) -> f64 {
    scrape
        .samples
        .iter()
        .filter(|s| s.metric == metric && wanted.is_none_or(|w| s.labels.get(label) == Some(w)))
        .map(value)
        .sum()
}

/// Reads the counters out of a `/metrics` body.
pub fn parse(text: &str) -> Result<ServiceCounters, std::io::Error> {
    let scrape = Scrape::parse(text.lines().map(|l| Ok(l.to_owned())))?;
    let cache = |outcome| sum(&scrape, "fortress_cache_requests_total", "outcome", Some(outcome));
    let orders = |result| sum(&scrape, "fortress_orders_total", "result", Some(result));
    let responses_5xx = scrape
        .samples
        .iter()
        .filter(|s| {
            s.metric == "fortress_http_requests_total"
                && s.labels.get("status").is_some_and(|c| c.starts_with('5'))
        })
        .map(value)
        .sum();
    Ok(ServiceCounters {
        statements: sum(&scrape, "fortress_db_statements_total", "query", None),
        cache_hits: cache("hit"),
        cache_misses: cache("miss"),
        cache_errors: cache("error"),
        cache_bypassed: cache("bypass"),
        orders_created: orders("created"),
        orders_sold_out: orders("sold_out"),
        responses: sum(&scrape, "fortress_http_requests_total", "status", None),
        responses_5xx,
        breaker_state: sum(&scrape, "fortress_cache_breaker_state", "", None),
    })
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
# TYPE fortress_cache_breaker_state gauge
fortress_cache_breaker_state 2
";
        let counters = parse(text).unwrap();
        assert_eq!((counters.cache_hits, counters.cache_misses), (90.0, 10.0));
        assert_eq!(counters.statements, 10.0);
        assert_eq!((counters.responses, counters.responses_5xx), (100.0, 5.0));
        assert_eq!(counters.breaker_state, 2.0);
    }
}
