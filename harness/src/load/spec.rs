//! What one load run is: the target, the arrival rate, the users and the mix, how long, and the seeded
//! ranges the users draw from; its checks (loopback targets only) and its goose configuration, built
//! in code so goose never reads the command line.

use std::path::Path;
use std::time::Duration;

use goose::config::GooseConfiguration;
use serde::Serialize;

use super::LoadError;
use super::sessions::SessionBook;
use crate::vocabulary::{Scenario, Start};

/// One load run.
#[derive(Debug, Clone, Serialize)]
pub struct LoadSpec {
    /// A service replica, `http://127.0.0.1:<port>` (loopback only).
    pub base_url: String,
    /// Target arrival rate, requests per second.
    pub rate: f64,
    /// Virtual users; enough that `rate x the slowest expected latency` of them can wait at once.
    pub users: u32,
    /// Scenarios and their weights; goose gives each scenario a share of the users by weight.
    pub mix: Vec<(Scenario, u32)>,
    /// When the users begin their scenarios' own requests, after their logins.
    pub start: Start,
    /// How long to load once every user has started, rounded up to whole seconds.
    pub duration: Duration,
    /// Seeded products (ids `1..=products`) and users (`user1..=user{shoppers}@fortress.test`).
    pub products: u32,
    pub shoppers: u32,
    /// A request without an answer by then is an error (a timeout).
    pub request_timeout: Duration,
    /// Shoppers' tokens from earlier loads that share it: those shoppers do not log in again.
    #[serde(skip)]
    pub sessions: SessionBook,
    /// The requests of a user's file (`[[load.requests]]`), sent instead of the mix's scenarios.
    #[serde(skip)]
    pub script: Option<std::sync::Arc<super::Script>>,
}

impl LoadSpec {
    fn run_seconds(&self) -> u64 {
        self.duration.as_secs() + u64::from(self.duration.subsec_nanos() > 0)
    }

    pub(super) fn check(&self) -> Result<(), LoadError> {
        let invalid = |why: String| Err(LoadError::InvalidSpec(why));
        let url = reqwest::Url::parse(&self.base_url)
            .map_err(|e| LoadError::InvalidSpec(format!("base_url {:?}: {e}", self.base_url)))?;
        let loopback = url.host_str().is_some_and(|host| {
            host == "localhost"
                || host
                    .trim_matches(['[', ']'])
                    .parse::<std::net::IpAddr>()
                    .is_ok_and(|ip| ip.is_loopback())
        });
        if !loopback || url.scheme() != "http" {
            return invalid(format!(
                "base_url must be http on 127.0.0.1 (got {})",
                self.base_url
            ));
        }
        if !(self.rate > 0.0 && self.rate <= 1_000_000.0) {
            return invalid(format!(
                "rate must be above 0 and at most 1000000 (got {})",
                self.rate
            ));
        }
        if !(1..=2000).contains(&self.users) {
            return invalid(format!("users must be 1 to 2000 (got {})", self.users));
        }
        if self.script.as_ref().is_some_and(|s| s.requests.is_empty()) {
            return invalid("the script needs at least one request".into());
        }
        if self.script.is_none() && self.mix.iter().all(|(_, w)| *w == 0) {
            return invalid("the mix needs a scenario with a weight above 0".into());
        }
        if self.run_seconds() == 0 || self.run_seconds() > 3600 {
            return invalid(format!(
                "duration must be above 0 and at most an hour (got {:?})",
                self.duration
            ));
        }
        if self.products == 0 || self.shoppers == 0 {
            return invalid("products and shoppers (the seeded counts) must be at least 1".into());
        }
        if self.request_timeout < Duration::from_millis(1) || self.request_timeout > Duration::from_secs(120)
        {
            return invalid(format!(
                "request_timeout must be 1 ms to 120 s (got {:?})",
                self.request_timeout
            ));
        }
        Ok(())
    }

    pub(super) fn goose_configuration(&self, report: &Path) -> GooseConfiguration {
        let mut config = GooseConfiguration::default();
        config.host = Some(self.base_url.clone());
        config.users = Some(self.users as usize);
        // Every user within about a tenth of a second.
        config.increase_rate = Some((f64::from(self.users) * 10.0).to_string());
        config.run_time = Some(self.run_seconds().to_string());
        // No `throttle_requests`: the users pace themselves on `Arrivals` (goose's throttle drifts).
        config.timeout = Some(format!("{:.3}", self.request_timeout.as_secs_f64()));
        // Count the start-up too, so goose's figures and the recorder's cover the same requests.
        config.no_reset_metrics = true;
        config.report_file = vec![report.to_string_lossy().into_owned()];
        config.no_print_metrics = true;
        config.quiet = 1;
        // No controller listening on 127.0.0.1:5116 (the telnet one is on unless switched off).
        config.no_telnet = true;
        config
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(base_url: &str) -> LoadSpec {
        LoadSpec {
            base_url: base_url.into(),
            rate: 40.4,
            users: 10,
            mix: vec![(Scenario::Browse, 1)],
            start: Start::Staggered,
            duration: Duration::from_millis(2500),
            products: 10,
            shoppers: 10,
            request_timeout: Duration::from_secs(5),
            sessions: SessionBook::default(),
            script: None,
        }
    }

    #[test]
    fn only_loopback_over_http_is_a_target() {
        for ok in [
            "http://127.0.0.1:8080",
            "http://localhost:1",
            "http://[::1]:80",
            "http://127.0.0.2:9",
        ] {
            assert!(spec(ok).check().is_ok(), "{ok}");
        }
        for bad in [
            "http://10.0.0.1:8080",
            "https://127.0.0.1:1",
            "http://example.com",
            "not a url",
        ] {
            assert!(
                matches!(spec(bad).check(), Err(LoadError::InvalidSpec(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn goose_is_configured_in_whole_seconds_without_its_throttle() {
        let spec = spec("http://127.0.0.1:8080");
        let config = spec.goose_configuration(Path::new("/tmp/r.html"));
        assert_eq!(config.throttle_requests, None);
        assert_eq!(config.run_time.as_deref(), Some("3"));
        assert!(config.no_telnet && config.no_reset_metrics);
        assert_eq!(config.report_file, ["/tmp/r.html"]);
    }
}
