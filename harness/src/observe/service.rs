//! The service's own view, from its `/metrics` (Prometheus text): statements it issued, cache outcomes,
//! orders by result, responses by status.

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

impl ServiceCounters {
    /// Every counter of `self` and `other` combined by `f` (the breaker state, a gauge, is `self`'s).
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
            breaker_state: self.breaker_state,
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

/// One line of the text exposition format: `name{label="value",...} value`.
#[derive(Debug, PartialEq)]
struct Line<'a> {
    name: &'a str,
    labels: Vec<(&'a str, String)>,
    value: f64,
}

impl Line<'_> {
    fn label(&self, key: &str) -> Option<&str> {
        self.labels
            .iter()
            .find(|(k, _)| *k == key)
            .map(|(_, v)| v.as_str())
    }
}

/// Parses a sample line. Written here because the `prometheus-parse` crate drops every sample whose
/// label values contain a brace, and the service's routes do (`/products/{id}`).
fn parse_line(line: &str) -> Option<Line<'_>> {
    let line = line.trim();
    if line.is_empty() || line.starts_with('#') {
        return None;
    }
    let name_end = line.find(['{', ' ']).unwrap_or(line.len());
    let name = &line[..name_end];
    let mut rest = &line[name_end..];
    let mut labels = Vec::new();
    if let Some(inner) = rest.strip_prefix('{') {
        let mut chars = inner.char_indices();
        let mut key_start = 0;
        loop {
            let (eq, _) = chars.by_ref().find(|(_, c)| *c == '=' || *c == '}')?;
            if inner[eq..].starts_with('}') {
                rest = &inner[eq + 1..];
                break;
            }
            let key = inner[key_start..eq].trim_matches(|c: char| c == ',' || c.is_whitespace());
            let (_, quote) = chars.next()?;
            if quote != '"' {
                return None;
            }
            let mut value = String::new();
            loop {
                match chars.next()? {
                    (_, '\\') => match chars.next()?.1 {
                        'n' => value.push('\n'),
                        other => value.push(other),
                    },
                    (_, '"') => break,
                    (_, c) => value.push(c),
                }
            }
            labels.push((key, value));
            key_start = chars.clone().next().map_or(inner.len(), |(i, _)| i);
        }
    }
    let value = rest.split_whitespace().next()?.parse().ok()?;
    Some(Line { name, labels, value })
}

/// Guarded checkouts and payment releases running on their own tasks (the reference service's gauge).
pub const PAYMENTS_IN_FLIGHT: &str = "fortress_payments_in_flight";
/// Password checks queued or running on the service's blocking pool (the reference service's gauge).
pub const PASSWORD_CHECKS_IN_FLIGHT: &str = "fortress_password_checks_in_flight";

/// The value of the unlabelled gauge `name` in a `/metrics` body, if it has one.
pub fn gauge(text: &str, name: &str) -> Option<f64> {
    (text.lines().filter_map(parse_line))
        .find(|l| l.name == name && l.labels.is_empty())
        .map(|l| l.value)
}

/// Reads the counters out of a `/metrics` body.
pub fn parse(text: &str) -> ServiceCounters {
    let lines: Vec<Line<'_>> = text.lines().filter_map(parse_line).collect();
    let sum = |metric: &str, label: &str, wanted: Option<&str>| -> f64 {
        lines
            .iter()
            .filter(|l| l.name == metric && wanted.is_none_or(|w| l.label(label) == Some(w)))
            .map(|l| l.value)
            .sum()
    };
    let cache = |outcome| sum("fortress_cache_requests_total", "outcome", Some(outcome));
    let orders = |result| sum("fortress_orders_total", "result", Some(result));
    let responses_5xx = lines
        .iter()
        .filter(|l| {
            l.name == "fortress_http_requests_total" && l.label("status").is_some_and(|c| c.starts_with('5'))
        })
        .map(|l| l.value)
        .sum();
    ServiceCounters {
        statements: sum("fortress_db_statements_total", "query", None),
        cache_hits: cache("hit"),
        cache_misses: cache("miss"),
        cache_errors: cache("error"),
        cache_bypassed: cache("bypass"),
        orders_created: orders("created"),
        orders_sold_out: orders("sold_out"),
        responses: sum("fortress_http_requests_total", "status", None),
        responses_5xx,
        breaker_state: sum("fortress_cache_breaker_state", "", None),
    }
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
        let counters = parse(text);
        assert_eq!((counters.cache_hits, counters.cache_misses), (90.0, 10.0));
        assert_eq!(counters.statements, 10.0);
        assert_eq!((counters.responses, counters.responses_5xx), (100.0, 5.0));
        assert_eq!(counters.breaker_state, 2.0);
    }

    #[test]
    fn label_values_may_hold_braces_commas_and_escaped_quotes() {
        let line = parse_line(r#"m{route="/a/{id}",note="x, \"y\"",z="1"} 7"#).unwrap();
        assert_eq!(line.name, "m");
        assert_eq!(line.label("route"), Some("/a/{id}"));
        assert_eq!(line.label("note"), Some(r#"x, "y""#));
        assert_eq!(line.label("z"), Some("1"));
        assert_eq!(line.value, 7.0);
        assert_eq!(parse_line("plain 3.5").unwrap().value, 3.5);
        assert!(parse_line("# HELP m help").is_none());
        assert!(parse_line(r#"broken{a="1"#).is_none());
    }
}
