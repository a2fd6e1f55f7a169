//! The charts of a report, drawn with plotters into PNG files: one metric over time per chart, every
//! variant on the same axes, the phases labelled and the fault windows shaded.
//!
//! Text is drawn with a font compiled into the binary, so a chart looks the same on a machine with no
//! fonts installed.

use std::path::{Path, PathBuf};
use std::sync::Once;

use plotters::coord::types::RangedCoordf64;
use plotters::prelude::*;
use plotters::style::FontStyle;

use super::{ReportError, Run};
use crate::experiment::definition::RUN_PHASE;
use crate::vocabulary::{Metric, Role};

const FONT: &[u8] = include_bytes!("../../assets/fonts/DejaVuSans.ttf");
const WIDTH: u32 = 960;
const HEIGHT: u32 = 340;

/// One colour per variant, in the order the run lists them (vulnerable first, then defended).
const VARIANT_COLOURS: [RGBColor; 4] = [
    RGBColor(214, 39, 40),
    RGBColor(31, 119, 180),
    RGBColor(44, 160, 44),
    RGBColor(148, 103, 189),
];
/// One colour per replica, on the charts that draw one line per replica.
const REPLICA_COLOURS: [RGBColor; 4] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(140, 86, 75),
];
const FAULT_SHADE: RGBColor = RGBColor(255, 160, 60);
/// An operator's step (a replay): a dashed line at its instant, never a shaded window.
const OPERATOR_STEP: RGBColor = RGBColor(40, 120, 60);
/// The instant a stop condition tripped.
const ABORT_MARK: RGBColor = RGBColor(130, 80, 223);

/// A line on a chart: one metric of one variant.
struct Line {
    label: String,
    points: Vec<(f64, f64)>,
    colour: RGBColor,
    /// Thicker for the figure that matters most (p95 among the percentiles).
    width: u32,
    dashed: bool,
}

/// How a chart draws its data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// One line per variant (and metric) over the seconds of the run.
    Lines,
    /// One bar per variant of the metric's end-of-run figure.
    Bars,
    /// One line per replica and variant over the seconds of the run.
    PerReplica,
    /// The timing attacker's probes: the share of logins answered within each time, one line per
    /// variant and kind of email.
    Cdf,
}

/// What one chart shows.
pub struct ChartSpec {
    /// File name stem, `chart-<slug>.png`.
    pub slug: &'static str,
    pub title: String,
    pub unit: &'static str,
    pub metrics: Vec<Metric>,
    pub shape: Shape,
}

impl ChartSpec {
    fn new(slug: &'static str, title: &str, unit: &'static str, metrics: &[Metric]) -> Self {
        Self {
            slug,
            title: title.to_owned(),
            unit,
            metrics: metrics.to_vec(),
            shape: Shape::Lines,
        }
    }
}

/// The charts a report can have, in the order the page shows them (those without data are left out).
pub fn standard(run: &Run) -> Vec<ChartSpec> {
    let mut charts = vec![
        ChartSpec::new("throughput", "Throughput", "requests/s", &[Metric::ThroughputRps]),
        ChartSpec::new(
            "latency",
            "Latency from each request's slot: p50 / p95 (thick) / p99 (dashed)",
            "ms",
            &[Metric::P50Ms, Metric::P95Ms, Metric::P99Ms],
        ),
        ChartSpec::new(
            "errors",
            "Error rate",
            "fraction of requests",
            &[Metric::ErrorRate],
        ),
        ChartSpec::new(
            "pg-statements",
            "Postgres statements/s",
            "statements/s",
            &[Metric::PgStatementsPerS],
        ),
        ChartSpec::new(
            "cache-hit-ratio",
            "Cache hit ratio",
            "hits / reads",
            &[Metric::CacheHitRatio],
        ),
        ChartSpec::new(
            "redis-commands",
            "Redis commands/s (none while it is down)",
            "commands/s",
            &[Metric::RedisCommandsPerS],
        ),
    ];
    charts.extend(for_this_run(run));
    charts
}

/// The charts only some runs have: the service time and the generator's lag (not in runs saved
/// before latency was counted from the slot), logged-out users, the balancer's view, the mail server's
/// deliveries and the outbox's backlog, one line per replica, the timing attacker's probes.
fn for_this_run(run: &Run) -> Vec<ChartSpec> {
    let mut charts = generator_charts(run);
    if run.has_nonzero(Metric::LoggedOutShare) {
        charts.push(ChartSpec::new(
            "logged-out",
            "Logged out: the share of logged-in users' requests answered 401 for their session",
            "share of requests",
            &[Metric::LoggedOutShare],
        ));
    }
    charts.extend(balancer_charts(run));
    if run.has_series(Metric::MailDeliveredPerS) {
        charts.push(ChartSpec::new(
            "mail-delivered",
            "Emails per second the mail server delivered (its own mailbox)",
            "emails/s",
            &[Metric::MailDeliveredPerS],
        ));
        charts.push(ChartSpec::new(
            "outbox",
            "The outbox's backlog: events waiting to be sent (solid) and dead-lettered (dashed)",
            "events",
            &[Metric::OutboxPending, Metric::OutboxDead],
        ));
    }
    if run.has_series(Metric::ProviderRequestsPerS) {
        charts.push(ChartSpec::new(
            "provider",
            "The payment provider's own ledger: requests received (solid) and authorisations granted (dashed) per second",
            "per second",
            &[Metric::ProviderRequestsPerS, Metric::ProviderAuthorizedPerS],
        ));
    }
    if run.has_series(Metric::ServiceRps) && !run.has_replica_series(Metric::ServiceRps) {
        charts.push(ChartSpec::new(
            "service-requests",
            "Requests per second the service answered, by its own count",
            "requests/s",
            &[Metric::ServiceRps],
        ));
    }
    if run.has_replica_series(Metric::ServiceRps) {
        charts.push(ChartSpec {
            shape: Shape::PerReplica,
            ..ChartSpec::new(
                "replica-requests",
                "Requests per second each replica answered",
                "requests/s",
                &[Metric::ServiceRps],
            )
        });
    }
    if run.has_probes() {
        charts.push(ChartSpec {
            shape: Shape::Cdf,
            ..ChartSpec::new(
                "timing",
                "Wrong-password logins answered within a time: known account (solid), unknown email (dashed)",
                "share of logins",
                &[Metric::TimingAccuracy, Metric::TimingPValue],
            )
        });
    }
    charts
}

/// The service time against the latency from the slot, and the generator's lag; runs saved before
/// latency was counted from the slot have neither.
fn generator_charts(run: &Run) -> Vec<ChartSpec> {
    if !run.has_series(Metric::ServiceP95Ms) {
        return Vec::new();
    }
    vec![
        ChartSpec::new(
            "service-time",
            "p95 from the slot (solid) and from the send (dashed, the service time): the gap is the wait for a free user",
            "ms",
            &[Metric::P95Ms, Metric::ServiceP95Ms],
        ),
        ChartSpec::new(
            "generator",
            "How far behind its schedule the load generator sent (p99)",
            "ms",
            &[Metric::GeneratorLagMs],
        ),
    ]
}

/// What the balancer saw, when there is one: replicas in, requests sent each, requests retried.
fn balancer_charts(run: &Run) -> Vec<ChartSpec> {
    let mut charts = Vec::new();
    if run.has_series(Metric::ReplicasUp) {
        charts.push(ChartSpec::new(
            "replicas-in",
            "Replicas the balancer's health checks have in",
            "replicas",
            &[Metric::ReplicasUp],
        ));
    }
    if run.has_replica_series(Metric::BalancerRps) {
        charts.push(ChartSpec {
            shape: Shape::PerReplica,
            ..ChartSpec::new(
                "balancer-requests",
                "Requests per second the balancer sent each replica",
                "requests/s",
                &[Metric::BalancerRps],
            )
        });
    }
    if run.has_nonzero(Metric::BalancerRetriesPerS) {
        charts.push(ChartSpec::new(
            "balancer-retries",
            "Requests per second the balancer retried on another replica",
            "requests/s",
            &[Metric::BalancerRetriesPerS],
        ));
    }
    charts
}

/// The headline: the metric the experiment's first prediction is about, over time when it is a time
/// series, as one bar per variant when it is an end-of-run figure (oversold units); throughput when no
/// prediction gives a chart.
pub fn headline(run: &Run) -> ChartSpec {
    let predicted = run
        .summary
        .variants
        .iter()
        .flat_map(|v| &v.verdicts)
        .map(|v| v.claim.metric)
        .find(|m| run.has_series(*m) || run.has_end_of_run(*m));
    let metric = predicted.unwrap_or(Metric::ThroughputRps);
    let mut spec = standard(run)
        .into_iter()
        .filter(|c| c.shape != Shape::PerReplica)
        .find(|c| c.metrics.contains(&metric))
        .unwrap_or_else(|| ChartSpec::new("", "", "", &[metric]));
    spec.slug = "headline";
    if spec.unit.is_empty() {
        spec.unit = metric.name();
    }
    if spec.shape == Shape::Cdf {
        spec.title = format!("{}: {}", run.summary.experiment, spec.title);
        return spec;
    }
    spec.title = format!("{}: {}", run.summary.experiment, metric.describe());
    spec.metrics = vec![metric];
    if !run.has_series(metric) {
        spec.shape = Shape::Bars;
    }
    spec
}

/// Whether `spec` has anything to draw in `run` (a chart of a metric nobody measured is left out).
pub fn has_data(run: &Run, spec: &ChartSpec) -> bool {
    match spec.shape {
        Shape::Lines => spec.metrics.iter().any(|m| run.has_series(*m)),
        Shape::Bars => spec.metrics.iter().any(|m| run.has_end_of_run(*m)),
        Shape::PerReplica => spec.metrics.iter().any(|m| run.has_replica_series(*m)),
        Shape::Cdf => run.has_probes(),
    }
}

/// Registers the compiled-in font as `sans-serif` (once per process): every chart calls it first.
pub fn register_font() {
    static REGISTER: Once = Once::new();
    REGISTER.call_once(|| {
        // The bytes are a known-good TrueType file compiled in; a failure here is a build defect.
        let _ = plotters::style::register_font("sans-serif", FontStyle::Normal, FONT);
    });
}

fn lines(run: &Run, spec: &ChartSpec) -> Vec<Line> {
    if spec.shape == Shape::PerReplica {
        return replica_lines(run, spec);
    }
    let mut lines = Vec::new();
    for (i, variant) in run.summary.variants.iter().enumerate() {
        let colour = VARIANT_COLOURS[i % VARIANT_COLOURS.len()];
        let samples = run.samples(variant.variant);
        for metric in &spec.metrics {
            let points: Vec<(f64, f64)> = samples
                .iter()
                .filter_map(|s| s.values.get(metric).map(|v| (s.at_s, *v)))
                .filter(|(_, v)| v.is_finite())
                .collect();
            let label = if spec.metrics.len() > 1 {
                format!("{} {}", variant.variant, metric.name().trim_end_matches("_ms"))
            } else {
                variant.variant.to_string()
            };
            lines.push(Line {
                label,
                points,
                colour,
                width: if *metric == Metric::P50Ms && spec.metrics.len() > 1 {
                    1
                } else {
                    2
                },
                dashed: matches!(
                    metric,
                    Metric::P99Ms
                        | Metric::ServiceP95Ms
                        | Metric::OutboxDead
                        | Metric::ProviderAuthorizedPerS
                ),
            });
        }
    }
    lines
}

/// One line per replica of the chart's metric: a colour per replica, the second variant dashed.
fn replica_lines(run: &Run, spec: &ChartSpec) -> Vec<Line> {
    let metric = spec.metrics[0];
    let mut lines = Vec::new();
    for (i, variant) in run.summary.variants.iter().enumerate() {
        let samples = run.samples(variant.variant);
        let replicas: std::collections::BTreeSet<u32> =
            samples.iter().flat_map(|s| s.replicas.keys().copied()).collect();
        for replica in replicas {
            let points = samples
                .iter()
                .filter_map(|s| s.replicas.get(&replica)?.get(&metric).map(|v| (s.at_s, *v)))
                .filter(|(_, v)| v.is_finite())
                .collect();
            lines.push(Line {
                label: format!("{} {}", variant.variant, Role::Service(replica)),
                points,
                colour: REPLICA_COLOURS[(replica as usize - 1) % REPLICA_COLOURS.len()],
                width: 2,
                dashed: i > 0,
            });
        }
    }
    lines
}

/// Draws `spec` for `run` into its run folder, answering the PNG's path.
pub fn draw(run: &Run, spec: &ChartSpec) -> Result<PathBuf, ReportError> {
    register_font();
    let path = run.folder.chart(spec.slug);
    let drawn = match spec.shape {
        Shape::Bars => draw_bars(run, spec, &path),
        Shape::Cdf => draw_cdf(run, spec, &path),
        Shape::Lines | Shape::PerReplica => draw_into(run, spec, &path),
    };
    drawn.map_err(|source| ReportError::Chart {
        path: path.clone(),
        source,
    })?;
    Ok(path)
}

/// A chart of seconds against a figure, as `draw_into` builds it.
type Chart<'a, 'b> = ChartContext<'a, BitMapBackend<'b>, Cartesian2d<RangedCoordf64, RangedCoordf64>>;
type DrawResult = Result<(), Box<dyn std::error::Error + Send + Sync>>;

/// The fault windows shaded, and the phases marked and named.
fn draw_backdrop(chart: &mut Chart<'_, '_>, run: &Run, x_max: f64, y_max: f64) -> DrawResult {
    for window in run.fault_windows() {
        chart.draw_series(std::iter::once(Rectangle::new(
            [(window.start_s, 0.0), (window.end_s, y_max)],
            FAULT_SHADE.mix(0.18).filled(),
        )))?;
    }
    for step in run.operator_steps() {
        chart.draw_series(DashedLineSeries::new(
            [(step.start_s, 0.0), (step.start_s, y_max)],
            6,
            4,
            OPERATOR_STEP.stroke_width(2),
        ))?;
    }
    for (name, start, _) in run.phase_spans() {
        if start > 0.0 {
            chart.draw_series(std::iter::once(PathElement::new(
                vec![(start, 0.0), (start, y_max)],
                BLACK.mix(0.35).stroke_width(1),
            )))?;
        }
        chart.draw_series(std::iter::once(Text::new(
            name,
            (start + x_max * 0.005, y_max * 0.97),
            ("sans-serif", 12).into_font().color(&BLACK.mix(0.6)),
        )))?;
    }
    for at_s in run
        .summary
        .variants
        .iter()
        .filter_map(|v| v.aborted.as_ref())
        .map(|a| a.at_s)
    {
        chart.draw_series(std::iter::once(PathElement::new(
            vec![(at_s, 0.0), (at_s, y_max)],
            ABORT_MARK.stroke_width(2),
        )))?;
        // Left of the line when it is near the right edge, where the run ended.
        let label_x = if at_s > x_max * 0.9 {
            at_s - x_max * 0.065
        } else {
            at_s + x_max * 0.005
        };
        chart.draw_series(std::iter::once(Text::new(
            "aborted",
            (label_x, y_max * 0.88),
            ("sans-serif", 12).into_font().color(&ABORT_MARK),
        )))?;
    }
    Ok(())
}

fn draw_lines<'a>(chart: &mut Chart<'a, 'a>, lines: &[Line]) -> DrawResult {
    for line in lines {
        let style = line.colour.stroke_width(line.width);
        let legend_colour = line.colour;
        let dashed = line.dashed;
        let drawn = if line.dashed {
            chart.draw_series(DashedLineSeries::new(line.points.iter().copied(), 6, 4, style))?
        } else {
            chart.draw_series(LineSeries::new(line.points.iter().copied(), style))?
        };
        drawn.label(&line.label).legend(move |(x, y)| {
            // A dashed line's key is dashed too: two strokes with a gap; a solid one, two that touch.
            let gap = if dashed { 4 } else { 0 };
            let style = legend_colour.stroke_width(2);
            EmptyElement::at((x, y))
                + PathElement::new(vec![(0, 0), (7, 0)], style)
                + PathElement::new(vec![(7 + gap, 0), (18, 0)], style)
        });
    }
    Ok(())
}

fn draw_into(run: &Run, spec: &ChartSpec, path: &Path) -> DrawResult {
    let lines = lines(run, spec);
    let x_max = run.duration_s().max(1.0);
    let y_top = lines
        .iter()
        .flat_map(|l| l.points.iter().map(|p| p.1))
        .fold(0.0_f64, f64::max);
    let y_max = match spec.metrics.as_slice() {
        [Metric::CacheHitRatio] => 1.05,
        _ if y_top <= 0.0 => 1.0,
        _ => y_top * 1.15,
    };

    let root = BitMapBackend::new(path, (WIDTH, HEIGHT)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(&spec.title, ("sans-serif", 18))
        .margin(12)
        .x_label_area_size(34)
        .y_label_area_size(64)
        .build_cartesian_2d(0.0..x_max, 0.0..y_max)?;
    chart
        .configure_mesh()
        .x_desc("seconds since the load started")
        .y_desc(spec.unit)
        .y_label_formatter(&|v| super::html::figure(*v))
        // Whole seconds only: a short run would otherwise label 0, 0, 1, 1, ...
        .x_labels((x_max as usize + 1).clamp(2, 12))
        .x_label_formatter(&|v| format!("{v:.0}"))
        .light_line_style(RGBColor(235, 235, 235))
        .label_style(("sans-serif", 12))
        .draw()?;

    draw_backdrop(&mut chart, run, x_max, y_max)?;
    draw_lines(&mut chart, &lines)?;
    if !run.fault_windows().is_empty() {
        chart
            .draw_series(std::iter::once(Rectangle::new(
                [(0.0, 0.0), (0.0, 0.0)],
                FAULT_SHADE.mix(0.18).filled(),
            )))?
            .label("fault injected")
            .legend(|(x, y)| Rectangle::new([(x, y - 5), (x + 18, y + 5)], FAULT_SHADE.mix(0.4).filled()));
    }
    if !run.operator_steps().is_empty() {
        chart
            .draw_series(std::iter::once(PathElement::new(
                vec![(0.0, 0.0), (0.0, 0.0)],
                OPERATOR_STEP.stroke_width(2),
            )))?
            .label("operator step (e.g. replay)")
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], OPERATOR_STEP.stroke_width(2)));
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK.mix(0.3))
        .label_font(("sans-serif", 12))
        .draw()?;
    root.present()?;
    Ok(())
}

/// One line per variant and kind of email: the share of its probes answered within x ms.
fn cdf_lines(run: &Run) -> Vec<Line> {
    let mut lines = Vec::new();
    for (i, variant) in run.summary.variants.iter().enumerate() {
        let Some(probes) = run.probes(variant.variant) else {
            continue;
        };
        for (samples, kind, dashed) in [
            (&probes.known_us, "known account", false),
            (&probes.unknown_us, "unknown email", true),
        ] {
            let mut sorted = samples.clone();
            sorted.sort_unstable();
            let n = sorted.len().max(1) as f64;
            // At most ~400 points: every k-th sample, and the last.
            let step = (sorted.len() / 400).max(1);
            let mut points: Vec<(f64, f64)> = (0..sorted.len())
                .step_by(step)
                .chain(sorted.len().checked_sub(1))
                .map(|k| (sorted[k] as f64 / 1000.0, (k + 1) as f64 / n))
                .collect();
            points.dedup();
            lines.push(Line {
                label: format!("{} {kind}", variant.variant),
                points,
                colour: VARIANT_COLOURS[i % VARIANT_COLOURS.len()],
                width: 2,
                dashed,
            });
        }
    }
    lines
}

fn draw_cdf(run: &Run, spec: &ChartSpec, path: &Path) -> DrawResult {
    let lines = cdf_lines(run);
    // The slowest 1% left off the axis: one stall on a noisy machine would squeeze the rest flat.
    let mut all: Vec<f64> = lines.iter().flat_map(|l| l.points.iter().map(|p| p.0)).collect();
    all.sort_by(f64::total_cmp);
    let x_max = all.get(all.len() * 99 / 100).copied().unwrap_or(1.0).max(1.0) * 1.1;
    let root = BitMapBackend::new(path, (WIDTH, HEIGHT)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(&spec.title, ("sans-serif", 16))
        .margin(12)
        .x_label_area_size(34)
        .y_label_area_size(64)
        .build_cartesian_2d(0.0..x_max, 0.0..1.05)?;
    chart
        .configure_mesh()
        .x_desc("response time, ms")
        .x_label_formatter(&|v| format!("{v:.0}"))
        .y_desc(spec.unit)
        .light_line_style(RGBColor(235, 235, 235))
        .label_style(("sans-serif", 12))
        .draw()?;
    draw_lines(&mut chart, &lines)?;
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerRight)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK.mix(0.3))
        .label_font(("sans-serif", 12))
        .draw()?;
    root.present()?;
    Ok(())
}

fn draw_bars(run: &Run, spec: &ChartSpec, path: &Path) -> DrawResult {
    let metric = spec.metrics[0];
    let bars: Vec<(String, f64, RGBColor)> = run
        .summary
        .variants
        .iter()
        .enumerate()
        .filter_map(|(i, v)| {
            let value = v.phase_stats.get(RUN_PHASE, metric)?;
            Some((
                v.variant.to_string(),
                value,
                VARIANT_COLOURS[i % VARIANT_COLOURS.len()],
            ))
        })
        .collect();
    let top = bars.iter().map(|b| b.1).fold(0.0_f64, f64::max);
    let y_max = if top > 0.0 { top * 1.25 } else { 1.0 };
    let root = BitMapBackend::new(path, (WIDTH, HEIGHT)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(&spec.title, ("sans-serif", 18))
        .margin(12)
        .x_label_area_size(20)
        .y_label_area_size(64)
        .build_cartesian_2d(0.0..bars.len().max(1) as f64, 0.0..y_max)?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(0)
        .y_desc(spec.unit)
        .y_label_formatter(&|v| super::html::figure(*v))
        .light_line_style(RGBColor(235, 235, 235))
        .label_style(("sans-serif", 12))
        .draw()?;
    for (i, (name, value, colour)) in bars.iter().enumerate() {
        let x = i as f64;
        chart.draw_series(std::iter::once(Rectangle::new(
            [(x + 0.2, 0.0), (x + 0.8, *value)],
            colour.filled(),
        )))?;
        chart.draw_series(std::iter::once(Text::new(
            format!("{name}: {}", super::html::figure(*value)),
            (x + 0.2, value + y_max * 0.1),
            ("sans-serif", 16).into_font(),
        )))?;
    }
    root.present()?;
    Ok(())
}
