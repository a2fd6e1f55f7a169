//! A run into Prometheus by remote write (the protocol's version 1: a snappy-compressed protobuf
//! `WriteRequest`, POSTed to the receiver's `/api/v1/write`).
//!
//! Every figure of every second becomes a sample of `fortress_<metric>` (`fortress_p95_ms`,
//! `fortress_throughput_rps`), labelled `experiment`, `variant`, `run` (the run folder's name) and
//! `phase`, stamped with the second's own time (the variant's load start plus its `at_s`). Each fault
//! becomes `fortress_fault_active`, labelled as well with `fault` and `injection`: 1 from its inject
//! to its revert, a sample a second, and 0 at the revert, so `fortress_fault_active == 1` is the
//! fault's window and Grafana draws it as an annotation (a query annotation on that expression).

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};

use crate::experiment::output::{Summary, VariantReport};
use crate::experiment::verdict::Sample;
use crate::faults::{Action, TimelineEntry};

/// The protocol's messages (prometheus/prompb/remote.proto and types.proto), the fields Fortress
/// writes.
mod wire {
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct WriteRequest {
        #[prost(message, repeated, tag = "1")]
        pub timeseries: Vec<TimeSeries>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct TimeSeries {
        #[prost(message, repeated, tag = "1")]
        pub labels: Vec<Label>,
        #[prost(message, repeated, tag = "2")]
        pub samples: Vec<Sample>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Label {
        #[prost(string, tag = "1")]
        pub name: String,
        #[prost(string, tag = "2")]
        pub value: String,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Sample {
        #[prost(double, tag = "1")]
        pub value: f64,
        /// Milliseconds since the Unix epoch.
        #[prost(int64, tag = "2")]
        pub timestamp: i64,
    }
}

/// Why a run could not be written to Prometheus.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error("cannot reach {url}")]
    Unreachable {
        url: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("{url} refused the write: {status} {body}")]
    Refused { url: String, status: u16, body: String },
    #[error("cannot compress the write request")]
    Compress(#[source] snap::Error),
}

/// What was written: series and samples.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Written {
    pub series: usize,
    pub samples: usize,
}

/// Writes `summary`'s variants (their seconds and fault windows) to the remote-write receiver at `url`.
pub async fn write(url: &str, summary: &Summary, run: &str) -> Result<Written, ExportError> {
    let request = write_request(summary, run);
    let written = Written {
        series: request.timeseries.len(),
        samples: request.timeseries.iter().map(|s| s.samples.len()).sum(),
    };
    let body = snap::raw::Encoder::new()
        .compress_vec(&prost::Message::encode_to_vec(&request))
        .map_err(ExportError::Compress)?;
    let response = reqwest::Client::new()
        .post(url)
        .header("Content-Encoding", "snappy")
        .header("Content-Type", "application/x-protobuf")
        .header("X-Prometheus-Remote-Write-Version", "0.1.0")
        .timeout(std::time::Duration::from_secs(30))
        .body(body)
        .send()
        .await
        .map_err(|source| ExportError::Unreachable {
            url: url.to_owned(),
            source,
        })?;
    let status = response.status();
    if !status.is_success() {
        let body = response.text().await.unwrap_or_default();
        return Err(ExportError::Refused {
            url: url.to_owned(),
            status: status.as_u16(),
            body: body.trim().chars().take(500).collect(),
        });
    }
    Ok(written)
}

/// The labels every series of a variant carries.
struct Labels<'a> {
    experiment: &'a str,
    variant: &'a str,
    run: &'a str,
}

impl Labels<'_> {
    /// `__name__` first, then these, then `extra`, sorted by name as the protocol asks.
    fn with(&self, name: &str, extra: &[(&str, String)]) -> Vec<wire::Label> {
        let mut labels: Vec<(String, String)> = [
            ("__name__", name.to_owned()),
            ("experiment", self.experiment.to_owned()),
            ("variant", self.variant.to_owned()),
            ("run", self.run.to_owned()),
        ]
        .into_iter()
        .chain(extra.iter().cloned())
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
        labels.sort();
        labels
            .into_iter()
            .map(|(name, value)| wire::Label { name, value })
            .collect()
    }
}

fn write_request(summary: &Summary, run: &str) -> wire::WriteRequest {
    let mut timeseries = Vec::new();
    for report in &summary.variants {
        let labels = Labels {
            experiment: &summary.experiment,
            variant: report.variant.name(),
            run,
        };
        timeseries.extend(figures(&labels, report));
        timeseries.extend(fault_windows(&labels, report));
    }
    wire::WriteRequest { timeseries }
}

/// Milliseconds since the epoch of the second `at_s` into a variant's load.
fn stamp(load_started_at: DateTime<Utc>, at_s: f64) -> i64 {
    load_started_at.timestamp_millis() + (at_s * 1000.0).round() as i64
}

/// One series per metric and phase: each second's value.
fn figures(labels: &Labels<'_>, report: &VariantReport) -> Vec<wire::TimeSeries> {
    let mut series: BTreeMap<(String, String), Vec<wire::Sample>> = BTreeMap::new();
    for Sample {
        at_s, phase, values, ..
    } in &report.samples
    {
        for (metric, value) in values.iter().filter(|(_, v)| v.is_finite()) {
            series
                .entry((metric.to_string(), phase.clone()))
                .or_default()
                .push(wire::Sample {
                    value: *value,
                    timestamp: stamp(report.load_started_at, *at_s),
                });
        }
    }
    series
        .into_iter()
        .map(|((metric, phase), samples)| wire::TimeSeries {
            labels: labels.with(&format!("fortress_{metric}"), &[("phase", phase)]),
            samples,
        })
        .collect()
}

/// One series per injection: 1 a second from its inject to its revert, then 0.
fn fault_windows(labels: &Labels<'_>, report: &VariantReport) -> Vec<wire::TimeSeries> {
    let steps = |action| {
        report
            .timeline
            .iter()
            .filter(move |s: &&TimelineEntry| s.action == action && !s.operator_step)
    };
    steps(Action::Inject)
        .map(|inject| {
            let revert = steps(Action::Revert).find(|r| r.injection == inject.injection);
            let (from, to) = (
                inject.finished_at.timestamp_millis(),
                revert
                    .map_or(inject.finished_at, |r| r.started_at)
                    .timestamp_millis(),
            );
            let mut samples: Vec<wire::Sample> = (from..to)
                .step_by(1000)
                .map(|timestamp| wire::Sample {
                    value: 1.0,
                    timestamp,
                })
                .collect();
            samples.push(wire::Sample {
                value: 0.0,
                timestamp: to.max(from + 1),
            });
            let extra = [
                ("fault", inject.fault.clone()),
                ("injection", inject.injection.to_string()),
            ];
            wire::TimeSeries {
                labels: labels.with("fortress_fault_active", &extra),
                samples,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_sorted_by_name_as_the_protocol_asks() {
        let labels = Labels {
            experiment: "cache-outage",
            variant: "defended",
            run: "cache-outage-20261204T170000Z",
        };
        let names: Vec<String> = labels
            .with(
                "fortress_p95_ms",
                &[("phase", "fault".into()), ("fault", "kill redis".into())],
            )
            .into_iter()
            .map(|l| l.name)
            .collect();
        assert_eq!(
            names,
            ["__name__", "experiment", "fault", "phase", "run", "variant"]
        );
    }

    #[test]
    fn a_second_is_stamped_from_its_variants_load_start() {
        let start = DateTime::parse_from_rfc3339("2026-12-04T17:00:00Z")
            .unwrap()
            .to_utc();
        assert_eq!(stamp(start, 2.0004), start.timestamp_millis() + 2000);
    }
}
