//! The service's Prometheus metrics, one registry per service instance.
//!
//! A registry per instance (rather than a process-global recorder) keeps two services in one test
//! process from counting into each other, so a test can read exactly what its own service did.

use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
    TextEncoder,
};

/// Latency buckets from 1 ms to 10 s: fine enough to see a 50 ms Redis deadline and a 2 s pool timeout.
const LATENCY_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

#[derive(Debug, Clone)]
pub struct Metrics {
    registry: Registry,
    pub http_requests: IntCounterVec,
    pub http_duration: HistogramVec,
    pub db_statements: IntCounterVec,
    pub db_pool_connections: IntGaugeVec,
    pub db_pool_waiting: IntGauge,
    pub db_pool_acquire: Histogram,
    pub cache_requests: IntCounterVec,
    pub cache_breaker_state: IntGauge,
    pub orders: IntCounterVec,
    pub outbox_events: IntGaugeVec,
    pub outbox_relayed: IntCounterVec,
    pub payments: IntCounterVec,
    /// Guarded checkouts and payment releases still running on tasks of their own: each ends in an
    /// order or a released payment, so a ledger read while this is above 0 may see money mid-way.
    pub payments_in_flight: IntGauge,
    /// Password checks (argon2, on the blocking pool) queued or running. A check outlives a login
    /// whose client gave up, so a service can be busy hashing for clients long gone.
    pub password_checks_in_flight: IntGauge,
}

fn register<T: prometheus::core::Collector + Clone + 'static>(registry: &Registry, metric: T) -> T {
    registry
        .register(Box::new(metric.clone()))
        .expect("metric names are unique and valid");
    metric
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let registry = Registry::new_custom(Some("fortress".into()), None).expect("valid prefix");
        let r = &registry;
        let counter = |name: &str, help: &str, labels: &[&str]| {
            register(
                r,
                IntCounterVec::new(Opts::new(name, help), labels).expect("valid counter"),
            )
        };
        Self {
            http_requests: counter(
                "http_requests_total",
                "HTTP requests by route and status",
                &["method", "route", "status"],
            ),
            http_duration: register(
                r,
                HistogramVec::new(
                    HistogramOpts::new("http_request_duration_seconds", "HTTP request latency by route")
                        .buckets(LATENCY_BUCKETS.to_vec()),
                    &["method", "route"],
                )
                .expect("valid histogram"),
            ),
            db_statements: counter(
                "db_statements_total",
                "Database statements by query name",
                &["query"],
            ),
            db_pool_connections: register(
                r,
                IntGaugeVec::new(
                    Opts::new("db_pool_connections", "Pooled connections by state"),
                    &["state"],
                )
                .expect("valid gauge"),
            ),
            db_pool_waiting: register(
                r,
                IntGauge::new("db_pool_waiting", "Callers waiting for a pooled connection").expect("valid"),
            ),
            db_pool_acquire: register(
                r,
                Histogram::with_opts(
                    HistogramOpts::new("db_pool_acquire_seconds", "Time spent waiting for a connection")
                        .buckets(LATENCY_BUCKETS.to_vec()),
                )
                .expect("valid histogram"),
            ),
            cache_requests: counter("cache_requests_total", "Cached reads by outcome", &["outcome"]),
            cache_breaker_state: register(
                r,
                IntGauge::new(
                    "cache_breaker_state",
                    "Redis circuit breaker: 0 closed, 1 half-open, 2 open",
                )
                .expect("valid"),
            ),
            orders: counter("orders_total", "Checkout attempts by result", &["result"]),
            outbox_events: register(
                r,
                IntGaugeVec::new(
                    Opts::new(
                        "outbox_events",
                        "Outbox events still to deliver, by status (pending, dead)",
                    ),
                    &["status"],
                )
                .expect("valid gauge"),
            ),
            outbox_relayed: counter(
                "outbox_relayed_total",
                "Outbox relay attempts by result",
                &["result"],
            ),
            payments: counter(
                "payment_calls_total",
                "Calls to the payment provider by outcome (authorized, declined, failed, unreachable, \
                 timeout; busy and circuit_open never reached it)",
                &["outcome"],
            ),
            payments_in_flight: register(
                r,
                IntGauge::new(
                    "payments_in_flight",
                    "Guarded checkouts and payment releases still running on their own tasks",
                )
                .expect("valid"),
            ),
            password_checks_in_flight: register(
                r,
                IntGauge::new(
                    "password_checks_in_flight",
                    "Password checks queued or running on the blocking pool, whether or not their client still waits",
                )
                .expect("valid"),
            ),
            registry,
        }
    }

    /// Counts one task in `payments_in_flight` until the returned guard is dropped (the task's end,
    /// however it ends).
    pub fn count_payment_in_flight(&self) -> InFlight {
        self.payments_in_flight.inc();
        InFlight(self.payments_in_flight.clone())
    }

    /// Counts one password check in `password_checks_in_flight` until the returned guard is dropped.
    pub fn count_password_check_in_flight(&self) -> InFlight {
        self.password_checks_in_flight.inc();
        InFlight(self.password_checks_in_flight.clone())
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut buffer = Vec::new();
        TextEncoder::new()
            .encode(&self.registry.gather(), &mut buffer)
            .expect("text encoding cannot fail");
        String::from_utf8(buffer).expect("the text format is UTF-8")
    }

    pub fn statement(&self, query: &'static str) {
        self.db_statements.with_label_values(&[query]).inc();
    }
}

/// A task counted in a gauge while it runs (`Metrics::count_payment_in_flight`,
/// `Metrics::count_password_check_in_flight`).
#[derive(Debug)]
pub struct InFlight(IntGauge);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.dec();
    }
}
