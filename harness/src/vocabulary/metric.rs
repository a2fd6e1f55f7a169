//! What can be measured: every figure the observer samples, a prediction judges, a chart draws and the
//! gate holds against its baseline. Each metric declares beside its name who produces it, how often,
//! and what the lab must have for it to exist; the every-second and per-replica lists, and the checks a
//! plan gets before any lab starts, are derived from that declaration alone.

use super::Scenario;

/// Who produces a metric.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Producer {
    /// The load generator's own record of its requests (`load::client_figures`).
    Client,
    /// Each service replica's own counters (`/metrics`), summed over the replicas.
    Service,
    /// Postgres's statistics views, read by the observer.
    Postgres,
    /// Redis's `INFO stats`, read by the observer.
    Redis,
    /// HAProxy's runtime statistics, per replica.
    Balancer,
    /// The mail server's own mailbox.
    Mail,
    /// The payment provider's own ledger.
    Provider,
    /// The fault proxy's count of what a link carried.
    Proxy,
    /// The judge, from the other figures over a phase or from the database and ledgers at the end.
    Judge,
}

/// How often a metric has a value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cadence {
    /// Every second of the time series; reduced per phase (and over the whole run).
    PerSecond,
    /// A figure of a whole phase (or of the whole run): a peak, a ratio of totals.
    PerPhase,
    /// A figure of a phase that follows a phase with faults: how long a recovery took in it.
    AfterFault,
    /// A figure of the whole run only (`phase = "run"`): what the database, the ledgers or the
    /// timing attacker hold at the end.
    PerRun,
}

/// What a lab (and its load) must have for a metric to be produced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Needs {
    Nothing,
    /// A load balancer in front of the replicas.
    Balancer,
    /// A mail server (`topology.mail`).
    Mail,
    /// A payment provider (`topology.payments`).
    Payments,
    /// The scenario in the load's mix.
    Scenario(Scenario),
    /// A scenario whose users log in (checkout or history) in the mix.
    LoggedIn,
}

impl std::fmt::Display for Needs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Nothing => f.write_str("nothing"),
            Self::Balancer => {
                f.write_str("a load balancer (topology.replicas above 1, or topology.balancer = true)")
            }
            Self::Mail => f.write_str("a mail server (topology.mail = true)"),
            Self::Payments => f.write_str("a payment provider (topology.payments = true)"),
            Self::Scenario(scenario) => write!(f, "the {scenario} scenario in load.mix"),
            Self::LoggedIn => f.write_str("users who log in (checkout or history in load.mix)"),
        }
    }
}

/// A metric's owner: who produces it, how often, and what it needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Owner {
    pub producer: Producer,
    pub cadence: Cadence,
    pub needs: Needs,
}

/// Declares `Metric` as a closed set whose every value also names its owner.
macro_rules! metrics {
    ($($variant:ident = $text:literal [$producer:ident, $cadence:ident, $($needs:tt)+]: $describe:literal,)+) => {
        closed_set::closed_set! {
            /// A figure measured once a second (and reduced per phase), or once a phase or a run.
            pub enum Metric, "metric" {
                $($variant = $text: $describe,)+
            }
        }

        impl Metric {
            /// Who produces it, how often, and what the lab needs for it.
            pub fn owner(self) -> Owner {
                match self {
                    $(Self::$variant => Owner {
                        producer: Producer::$producer,
                        cadence: Cadence::$cadence,
                        needs: Needs::$($needs)+,
                    },)+
                }
            }
        }
    };
}

metrics! {
    OfferedRps = "offered_rps" [Client, PerSecond, Nothing]: "requests per second due on the load generator's arrival schedule: the load offered",
    ThroughputRps = "throughput_rps" [Client, PerSecond, Nothing]: "requests per second that completed",
    ErrorRate = "error_rate" [Client, PerSecond, Nothing]: "fraction of requests that failed: a 5xx, an unexpected 4xx (a logged-in user's 401 among them), a malformed answer, a timeout, a connection error",
    P50Ms = "p50_ms" [Client, PerSecond, Nothing]: "client-side latency from the slot each request was due in, 50th percentile, milliseconds",
    P95Ms = "p95_ms" [Client, PerSecond, Nothing]: "client-side latency from the slot each request was due in, 95th percentile, milliseconds",
    P99Ms = "p99_ms" [Client, PerSecond, Nothing]: "client-side latency from the slot each request was due in, 99th percentile, milliseconds",
    ServiceP95Ms = "service_p95_ms" [Client, PerSecond, Nothing]: "client-side service time, from the instant each request left (not its slot), 95th percentile, milliseconds",
    GeneratorLagMs = "generator_lag_ms" [Client, PerSecond, Nothing]: "how far behind its arrival schedule the load generator sent: 99th percentile of the delay from each request's slot to its send, milliseconds (slots wait for a free user while every user waits on a stalled service)",
    GeneratorOwnLagMs = "generator_own_lag_ms" [Client, PerSecond, Nothing]: "of that delay, the part after a user was free to send: the generator's own timer and CPU, 99th percentile, milliseconds",
    BusyUsers = "busy_users" [Client, PerSecond, Nothing]: "virtual users waiting on an answer, the most at once in the second",
    BrowseP95Ms = "browse_p95_ms" [Client, PerSecond, Scenario(Scenario::Browse)]: "client-side latency of browsing (product list and pages), 95th percentile, milliseconds",
    CheckoutP95Ms = "checkout_p95_ms" [Client, PerSecond, Scenario(Scenario::Checkout)]: "client-side latency of checkouts, 95th percentile, milliseconds",
    HistoryP95Ms = "history_p95_ms" [Client, PerSecond, Scenario(Scenario::History)]: "client-side latency of order-history reads, 95th percentile, milliseconds",
    ServiceRps = "service_rps" [Service, PerSecond, Nothing]: "requests per second the service answered (its own counter)",
    DbStatementsPerS = "db_statements_per_s" [Service, PerSecond, Nothing]: "statements per second the service issued (its own counter)",
    PgStatementsPerS = "pg_statements_per_s" [Postgres, PerSecond, Nothing]: "statements per second Postgres executed (pg_stat_statements)",
    PgStatementsPeak = "pg_statements_peak" [Judge, PerPhase, Nothing]: "the most statements Postgres executed in one sample (about a second) of the phase: the burst, counted, not the mean",
    PgTransactionsPerS = "pg_transactions_per_s" [Postgres, PerSecond, Nothing]: "transactions per second Postgres committed (pg_stat_database)",
    PgRowsPerS = "pg_rows_per_s" [Postgres, PerSecond, Nothing]: "rows per second Postgres statements returned or changed (pg_stat_statements)",
    PgTuplesReadPerS = "pg_tuples_read_per_s" [Postgres, PerSecond, Nothing]: "rows per second Postgres read from tables to answer: sequential-scan rows plus index fetches (pg_stat_user_tables)",
    TuplesReadPerRequest = "tuples_read_per_request" [Judge, PerSecond, Nothing]: "rows Postgres read from tables per completed request",
    RedisCommandsPerS = "redis_commands_per_s" [Redis, PerSecond, Nothing]: "commands per second Redis processed, while it is up (INFO stats)",
    RedisHitsPerS = "redis_hits_per_s" [Redis, PerSecond, Nothing]: "keyspace hits per second at Redis, while it is up (INFO stats)",
    RedisMissesPerS = "redis_misses_per_s" [Redis, PerSecond, Nothing]: "keyspace misses per second at Redis, while it is up (INFO stats)",
    StatementsPerRequest = "statements_per_request" [Judge, PerSecond, Nothing]: "Postgres statements per completed request",
    CacheHitRatio = "cache_hit_ratio" [Service, PerSecond, Nothing]: "cache hits over all cached reads",
    CacheErrorsPerS = "cache_errors_per_s" [Service, PerSecond, Nothing]: "Redis errors per second seen by the service",
    CacheMissesPerS = "cache_misses_per_s" [Service, PerSecond, Nothing]: "cached reads per second that missed and loaded from the database (the service's own counter)",
    CacheMissesPeak = "cache_misses_peak" [Judge, PerPhase, Nothing]: "the most cache misses (each a database load) in one sample (about a second) of the phase: the burst, counted, not the mean",
    HitRatioRecoveryS = "hit_ratio_recovery_s" [Judge, AfterFault, Nothing]: "seconds after a fault ends until the cache hit ratio is back above 0.9",
    OrdersPerS = "orders_per_s" [Service, PerSecond, Nothing]: "orders created per second",
    SoldOutPerS = "sold_out_per_s" [Service, PerSecond, Nothing]: "checkouts answered 409 sold_out per second",
    Http5xxRate = "http_5xx_rate" [Service, PerSecond, Nothing]: "fraction of responses with a 5xx status",
    LoggedOutShare = "logged_out_share" [Client, PerSecond, LoggedIn]: "share of logged-in users' requests answered 401 for want of a session: users logged out",
    ReplicasUp = "replicas_up" [Balancer, PerSecond, Balancer]: "service replicas the balancer's health checks have in (per replica: 1 in, 0 out)",
    BalancerRps = "balancer_rps" [Balancer, PerSecond, Balancer]: "requests per second the balancer sent to the replicas (per replica: to that one)",
    BalancerRetriesPerS = "balancer_retries_per_s" [Balancer, PerSecond, Balancer]: "requests per second the balancer had to retry on another replica: the connection failed, or the replica died before answering (per replica: sent to that one)",
    OutboxPending = "outbox_pending" [Postgres, PerSecond, Nothing]: "outbox events waiting to be sent, those waiting for a retry included (Postgres, at each sample)",
    OutboxDead = "outbox_dead" [Postgres, PerSecond, Nothing]: "outbox events dead-lettered after their last attempt and not replayed (Postgres, at each sample)",
    MailDeliveredPerS = "mail_delivered_per_s" [Mail, PerSecond, Mail]: "emails per second the mail server put in its mailbox (its own count)",
    EmailBacklogClearS = "email_backlog_clear_s" [Judge, AfterFault, Mail]: "seconds after a fault ends until the outbox has nothing pending or dead: every order's email sent",
    ProviderRequestsPerS = "provider_requests_per_s" [Provider, PerSecond, Payments]: "authorisation requests per second the payment provider received (its own ledger)",
    ProviderAuthorizedPerS = "provider_authorized_per_s" [Provider, PerSecond, Payments]: "authorisations per second the payment provider granted (its own ledger)",
    CheckoutsPerS = "checkouts_per_s" [Client, PerSecond, Scenario(Scenario::Checkout)]: "checkout requests per second the client completed, whatever their answer",
    PaymentRequestsPerS = "payment_requests_per_s" [Proxy, PerSecond, Payments]: "requests per second sent to the payment provider over the proxy's payments link, retries included (the proxy's count: passed on or answered by a fault)",
    PaymentRequestsPerCheckout = "payment_requests_per_checkout" [Judge, PerPhase, Payments]: "requests sent to the payment provider per checkout over the phase, retries included",
    OversoldUnits = "oversold_units" [Judge, PerRun, Nothing]: "units sold beyond the initial stock, summed over products (end of run)",
    StockMismatchUnits = "stock_mismatch_units" [Judge, PerRun, Nothing]: "units by which products' stock is out of step with their orders (initial stock less what is left, against the units ordered), summed over products: lost updates, half-kept checkouts (end of run)",
    UnitsSold = "units_sold" [Judge, PerRun, Nothing]: "units sold during the run (end of run)",
    LostAcknowledgedOrders = "lost_acknowledged_orders" [Judge, PerRun, Nothing]: "orders the client saw acknowledged (201) that the database does not have (end of run)",
    PaymentsChargedTwice = "payments_charged_twice" [Judge, PerRun, Payments]: "payments (one per checkout) with more than one standing authorisation at the provider: customers charged twice (its ledger; end of run)",
    ChargesWithoutOrder = "charges_without_order" [Judge, PerRun, Payments]: "payments standing at the provider for no order of the run: customers charged for nothing (its ledger; end of run)",
    OrdersEmailedTwice = "orders_emailed_twice" [Judge, PerRun, Mail]: "orders of the run with more than one confirmation in the mail server's mailbox (end of run)",
    EmailsWithoutOrder = "emails_without_order" [Judge, PerRun, Mail]: "confirmations in the mail server's mailbox for an order the database does not hold: an order rolled back after its email went out (end of run)",
    TimingAccuracy = "timing_accuracy" [Judge, PerRun, Scenario(Scenario::LoginProbe)]: "balanced accuracy of a response-time classifier telling a wrong password for an existing account from one for an unknown email, on held-out probes (0.5 is chance; end of run)",
    TimingDetectableMs = "timing_detectable_ms" [Judge, PerRun, Scenario(Scenario::LoginProbe)]: "the smallest difference between the two kinds of wrong-password login's typical times that this run's pairs of probes would have shown (signed-rank test at 0.1%, four times in five), milliseconds: what a verdict of no leak could have seen (end of run)",
    TimingPValue = "timing_p_value" [Judge, PerRun, Scenario(Scenario::LoginProbe)]: "two-sided Wilcoxon signed-rank p-value, over pairs of probes sent one after the other in a random order, that neither kind of wrong-password login is the slower one (end of run)",
    TimingLeakMs = "timing_leak_ms" [Judge, PerRun, Scenario(Scenario::LoginProbe)]: "how much slower or faster a seeded email's wrong-password login can typically be than an unknown email's in a pair, at most: the farther end from zero of the 99.9% confidence interval of the pairs' typical difference (Hodges-Lehmann, from the signed-rank test), milliseconds (end of run)",
}

impl Metric {
    /// Whether the time series has it every second; the others are figures of a whole phase (peaks,
    /// recovery times) or of the whole run (what the database holds at the end, the timing attack).
    pub fn every_second(self) -> bool {
        self.owner().cadence == Cadence::PerSecond
    }

    /// Whether each replica has its own series: the service's own `/metrics` figures, and the balancer's.
    pub fn per_replica(self) -> bool {
        matches!(self.owner().producer, Producer::Service | Producer::Balancer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_parse_by_name_and_unknown_ones_list_the_known() {
        assert_eq!("p95_ms".parse::<Metric>().unwrap(), Metric::P95Ms);
        let error = "p42_ms".parse::<Metric>().unwrap_err().to_string();
        assert!(
            error.starts_with("unknown metric \"p42_ms\"; metrics: offered_rps,")
                && error.contains("cache_hit_ratio"),
            "{error}"
        );
        for metric in Metric::ALL {
            assert_eq!(metric.name().parse::<Metric>().unwrap(), *metric);
        }
    }
}
