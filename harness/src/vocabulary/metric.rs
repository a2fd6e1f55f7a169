//! What can be measured: every figure the observer samples, a prediction judges, a chart draws and the
//! gate holds against its baseline.

closed_set! {
    /// A figure measured once a second (and reduced per phase), or once at the end of a run.
    pub enum Metric, "metric" {
        OfferedRps = "offered_rps": "requests per second the load generator tried to send",
        ThroughputRps = "throughput_rps": "requests per second that completed",
        ErrorRate = "error_rate": "fraction of requests that failed (5xx, timeouts, connection errors)",
        P50Ms = "p50_ms": "client-side latency, 50th percentile, milliseconds",
        P95Ms = "p95_ms": "client-side latency, 95th percentile, milliseconds",
        P99Ms = "p99_ms": "client-side latency, 99th percentile, milliseconds",
        BrowseP95Ms = "browse_p95_ms": "client-side latency of browsing (product list and pages), 95th percentile, milliseconds",
        CheckoutP95Ms = "checkout_p95_ms": "client-side latency of checkouts, 95th percentile, milliseconds",
        HistoryP95Ms = "history_p95_ms": "client-side latency of order-history reads, 95th percentile, milliseconds",
        ServiceRps = "service_rps": "requests per second the service answered (its own counter)",
        DbStatementsPerS = "db_statements_per_s": "statements per second the service issued (its own counter)",
        PgStatementsPerS = "pg_statements_per_s": "statements per second Postgres executed (pg_stat_statements)",
        PgStatementsPeak = "pg_statements_peak": "the most statements Postgres executed in one sample (about a second) of the phase: the burst, counted, not the mean",
        PgTransactionsPerS = "pg_transactions_per_s": "transactions per second Postgres committed (pg_stat_database)",
        PgRowsPerS = "pg_rows_per_s": "rows per second Postgres statements returned or changed (pg_stat_statements)",
        PgTuplesReadPerS = "pg_tuples_read_per_s": "rows per second Postgres read from tables to answer: sequential-scan rows plus index fetches (pg_stat_user_tables)",
        TuplesReadPerRequest = "tuples_read_per_request": "rows Postgres read from tables per completed request",
        RedisCommandsPerS = "redis_commands_per_s": "commands per second Redis processed, while it is up (INFO stats)",
        RedisHitsPerS = "redis_hits_per_s": "keyspace hits per second at Redis, while it is up (INFO stats)",
        RedisMissesPerS = "redis_misses_per_s": "keyspace misses per second at Redis, while it is up (INFO stats)",
        StatementsPerRequest = "statements_per_request": "Postgres statements per completed request",
        CacheHitRatio = "cache_hit_ratio": "cache hits over all cached reads",
        CacheErrorsPerS = "cache_errors_per_s": "Redis errors per second seen by the service",
        CacheMissesPerS = "cache_misses_per_s": "cached reads per second that missed and loaded from the database (the service's own counter)",
        CacheMissesPeak = "cache_misses_peak": "the most cache misses (each a database load) in one sample (about a second) of the phase: the burst, counted, not the mean",
        HitRatioRecoveryS = "hit_ratio_recovery_s": "seconds after a fault ends until the cache hit ratio is back above 0.9",
        OrdersPerS = "orders_per_s": "orders created per second",
        SoldOutPerS = "sold_out_per_s": "checkouts answered 409 sold_out per second",
        Http5xxRate = "http_5xx_rate": "fraction of responses with a 5xx status",
        LoggedOutShare = "logged_out_share": "share of logged-in users' requests answered 401 for want of a session: users logged out",
        ReplicasUp = "replicas_up": "service replicas the balancer's health checks have in (per replica: 1 in, 0 out)",
        BalancerRps = "balancer_rps": "requests per second the balancer sent to the replicas (per replica: to that one)",
        BalancerRetriesPerS = "balancer_retries_per_s": "requests per second the balancer had to retry on another replica: the connection failed, or the replica died before answering (per replica: sent to that one)",
        OutboxPending = "outbox_pending": "outbox events waiting to be sent, those waiting for a retry included (Postgres, at each sample)",
        OutboxDead = "outbox_dead": "outbox events dead-lettered after their last attempt and not replayed (Postgres, at each sample)",
        MailDeliveredPerS = "mail_delivered_per_s": "emails per second the mail server put in its mailbox (its own count)",
        EmailBacklogClearS = "email_backlog_clear_s": "seconds after a fault ends until the outbox has nothing pending or dead: every order's email sent",
        ProviderRequestsPerS = "provider_requests_per_s": "authorisation requests per second the payment provider received (its own ledger)",
        ProviderAuthorizedPerS = "provider_authorized_per_s": "authorisations per second the payment provider granted (its own ledger)",
        CheckoutsPerS = "checkouts_per_s": "checkout requests per second the client completed, whatever their answer",
        PaymentRequestsPerS = "payment_requests_per_s": "requests per second sent to the payment provider over the proxy's payments link, retries included (the proxy's count: passed on or answered by a fault)",
        PaymentRequestsPerCheckout = "payment_requests_per_checkout": "requests sent to the payment provider per checkout over the phase, retries included",
        OversoldUnits = "oversold_units": "units sold beyond the initial stock, summed over products (end of run)",
        UnitsSold = "units_sold": "units sold during the run (end of run)",
        LostAcknowledgedOrders = "lost_acknowledged_orders": "orders the client saw acknowledged (201) that the database does not have (end of run)",
        PaymentsChargedTwice = "payments_charged_twice": "payments (one per checkout) with more than one standing authorisation at the provider: customers charged twice (its ledger; end of run)",
        ChargesWithoutOrder = "charges_without_order": "payments standing at the provider for no order of the run: customers charged for nothing (its ledger; end of run)",
        OrdersEmailedTwice = "orders_emailed_twice": "orders of the run with more than one confirmation in the mail server's mailbox (end of run)",
        EmailsWithoutOrder = "emails_without_order": "confirmations in the mail server's mailbox for an order the database does not hold: an order rolled back after its email went out (end of run)",
        TimingAccuracy = "timing_accuracy": "balanced accuracy of a response-time classifier telling a wrong password for an existing account from one for an unknown email, on held-out probes (0.5 is chance; end of run)",
        TimingPValue = "timing_p_value": "two-sided Mann-Whitney p-value that both kinds of wrong-password login take times from one distribution (end of run)",
    }
}

impl Metric {
    /// Whether the time series has it every second; the others are figures of a whole phase (peaks,
    /// recovery times) or of the whole run (what the database holds at the end, the timing attack).
    pub fn every_second(self) -> bool {
        !matches!(
            self,
            Self::OfferedRps
                | Self::PgStatementsPeak
                | Self::CacheMissesPeak
                | Self::HitRatioRecoveryS
                | Self::EmailBacklogClearS
                | Self::PaymentRequestsPerCheckout
                | Self::OversoldUnits
                | Self::UnitsSold
                | Self::LostAcknowledgedOrders
                | Self::PaymentsChargedTwice
                | Self::ChargesWithoutOrder
                | Self::OrdersEmailedTwice
                | Self::EmailsWithoutOrder
                | Self::TimingAccuracy
                | Self::TimingPValue
        )
    }

    /// Whether each replica has its own series: the service's own `/metrics` figures, and the balancer's.
    pub fn per_replica(self) -> bool {
        matches!(
            self,
            Self::ServiceRps
                | Self::DbStatementsPerS
                | Self::CacheHitRatio
                | Self::CacheErrorsPerS
                | Self::CacheMissesPerS
                | Self::OrdersPerS
                | Self::SoldOutPerS
                | Self::Http5xxRate
                | Self::ReplicasUp
                | Self::BalancerRps
                | Self::BalancerRetriesPerS
        )
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
