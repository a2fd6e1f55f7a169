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

/// A line on a chart: one metric of one variant.
struct Line {
    label: String,
    points: Vec<(f64, f64)>,
    colour: RGBColor,
    /// Thicker for the figure that matters most (p95 among the percentiles).
    width: u32,
    dashed: bool,
}

/// What one chart shows.
pub struct ChartSpec {
    /// File name stem, `chart-<slug>.png`.
    pub slug: &'static str,
    pub title: String,
    pub unit: &'static str,
    pub metrics: Vec<Metric>,
    /// One bar per variant of the metric's end-of-run figure, instead of lines over time.
    pub bars: bool,
    /// One line per replica (and variant) instead of one per variant.
    pub per_replica: bool,
}

impl ChartSpec {
    fn new(slug: &'static str, title: &str, unit: &'static str, metrics: &[Metric]) -> Self {
        Self {
            slug,
            title: title.to_owned(),
            unit,
            metrics: metrics.to_vec(),
            bars: false,
            per_replica: false,
        }
    }
}

/// The charts a report can have, in the order the page shows them (those without data are left out).
pub fn standard(run: &Run) -> Vec<ChartSpec> {
    let mut charts = vec![
        ChartSpec::new("throughput", "Throughput", "requests/s", &[Metric::ThroughputRps]),
        ChartSpec::new(
            "latency",
            "Latency p50 / p95 (thick) / p99 (dashed)",
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
    if run.has_replica_series(Metric::ServiceRps) {
        charts.push(ChartSpec {
            per_replica: true,
            ..ChartSpec::new(
                "replica-requests",
                "Requests per second each replica answered",
                "requests/s",
                &[Metric::ServiceRps],
            )
        });
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
        .filter(|c| !c.per_replica)
        .find(|c| c.metrics.contains(&metric))
        .unwrap_or_else(|| ChartSpec::new("", "", "", &[metric]));
    spec.slug = "headline";
    spec.title = format!("{}: {}", run.summary.experiment, metric.describe());
    if spec.unit.is_empty() {
        spec.unit = metric.name();
    }
    spec.metrics = vec![metric];
    spec.bars = !run.has_series(metric);
    spec
}

/// Whether `spec` has anything to draw in `run` (a chart of a metric nobody measured is left out).
pub fn has_data(run: &Run, spec: &ChartSpec) -> bool {
    spec.metrics.iter().any(|m| {
        run.has_series(*m)
            || (spec.bars && run.has_end_of_run(*m))
            || (spec.per_replica && run.has_replica_series(*m))
    })
}

fn register_font() {
    static REGISTER: Once = Once::new();
    REGISTER.call_once(|| {
        // The bytes are a known-good TrueType file compiled in; a failure here is a build defect.
        let _ = plotters::style::register_font("sans-serif", FontStyle::Normal, FONT);
    });
}

fn lines(run: &Run, spec: &ChartSpec) -> Vec<Line> {
    if spec.per_replica {
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
                dashed: *metric == Metric::P99Ms,
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
    let drawn = if spec.bars {
        draw_bars(run, spec, &path)
    } else {
        draw_into(run, spec, &path)
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
