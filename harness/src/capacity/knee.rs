//! The knee chart of a variant: every step's latency (p50 and p99 from the intended send) and error
//! rate against the rate it offered, steady and under the fault on the same axes, with the
//! objective's limits and the capacities found marked.

use std::path::Path;

use plotters::prelude::*;

use super::{SearchReport, VariantCapacity};
use crate::experiment::definition::Objective;
use crate::report::charts::register_font;
use crate::vocabulary::Condition;

const WIDTH: u32 = 960;
const HEIGHT: u32 = 620;
const STEADY: RGBColor = RGBColor(31, 119, 180);
const FAULT: RGBColor = RGBColor(214, 39, 40);
const LIMIT: RGBColor = RGBColor(90, 90, 90);

type DrawResult = Result<(), Box<dyn std::error::Error + Send + Sync>>;

fn colour(condition: Condition) -> RGBColor {
    match condition {
        Condition::Steady => STEADY,
        Condition::Fault => FAULT,
    }
}

/// Draws `variant`'s knee chart into `path`.
pub fn draw(path: &Path, variant: &VariantCapacity, objective: &Objective) -> DrawResult {
    register_font();
    let rates = variant
        .searches
        .iter()
        .flat_map(|s| s.trials.iter().map(|t| t.rate));
    let x_max = rates.fold(1.0_f64, f64::max) * 1.1;
    let root = BitMapBackend::new(path, (WIDTH, HEIGHT)).into_drawing_area();
    root.fill(&WHITE)?;
    let (top, bottom) = root.split_vertically(HEIGHT * 3 / 5);
    latency(&top, variant, objective, x_max)?;
    errors(&bottom, variant, objective, x_max)?;
    root.present()?;
    Ok(())
}

/// Each step's (rate, figure) of a search, by rate.
fn points(search: &SearchReport, figure: impl Fn(&super::StepFigures) -> f64) -> Vec<(f64, f64)> {
    let mut points: Vec<(f64, f64)> = (search.trials.iter())
        .filter_map(|t| t.figures.as_ref().map(|f| (t.rate, figure(f))))
        .collect();
    points.sort_by(|a, b| a.0.total_cmp(&b.0));
    points
}

fn latency(
    area: &DrawingArea<BitMapBackend<'_>, plotters::coord::Shift>,
    variant: &VariantCapacity,
    objective: &Objective,
    x_max: f64,
) -> DrawResult {
    let y_max = (variant.searches.iter())
        .flat_map(|s| points(s, |f| f.p99_ms))
        .fold(objective.p99_ms * 2.0, |m, (_, y)| m.max(y))
        * 1.5;
    let y_min = (variant.searches.iter())
        .flat_map(|s| points(s, |f| f.p50_ms))
        .fold(objective.p99_ms, |m, (_, y)| m.min(y))
        .max(0.2)
        / 2.0;
    let mut chart = ChartBuilder::on(area)
        .caption(
            format!(
                "{}: latency from the intended send against offered rate",
                variant.variant
            ),
            ("sans-serif", 18),
        )
        .margin(12)
        .x_label_area_size(30)
        .y_label_area_size(64)
        .build_cartesian_2d(0.0..x_max, (y_min..y_max).log_scale())?;
    chart
        .configure_mesh()
        .y_desc("ms (log): p99 solid, p50 dashed")
        .light_line_style(RGBColor(235, 235, 235))
        .label_style(("sans-serif", 12))
        .draw()?;
    let limit = [(0.0, objective.p99_ms), (x_max, objective.p99_ms)];
    chart
        .draw_series(DashedLineSeries::new(limit, 6, 4, LIMIT.stroke_width(1)))?
        .label(format!("objective: p99 <= {} ms", objective.p99_ms))
        .legend(|(x, y)| PathElement::new([(x, y), (x + 18, y)], LIMIT));
    for search in &variant.searches {
        let c = colour(search.condition);
        let p99 = points(search, |f| f.p99_ms.max(y_min));
        chart
            .draw_series(LineSeries::new(p99.clone(), c.stroke_width(2)))?
            .label(format!("{}: capacity {:.1}/s", search.condition, search.capacity))
            .legend(move |(x, y)| PathElement::new([(x, y), (x + 18, y)], c.stroke_width(2)));
        chart.draw_series(p99.iter().map(|&p| Circle::new(p, 3, c.filled())))?;
        let p50 = points(search, |f| f.p50_ms.max(y_min));
        chart.draw_series(DashedLineSeries::new(p50, 4, 3, c.stroke_width(1)))?;
        let knee = [(search.capacity, y_min), (search.capacity, y_max)];
        chart.draw_series(DashedLineSeries::new(knee, 3, 3, c.mix(0.6).stroke_width(1)))?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerRight)
        .background_style(WHITE.mix(0.85))
        .border_style(RGBColor(200, 200, 200))
        .label_font(("sans-serif", 12))
        .draw()?;
    Ok(())
}

fn errors(
    area: &DrawingArea<BitMapBackend<'_>, plotters::coord::Shift>,
    variant: &VariantCapacity,
    objective: &Objective,
    x_max: f64,
) -> DrawResult {
    let mut chart = ChartBuilder::on(area)
        .caption("error rate against offered rate", ("sans-serif", 16))
        .margin(12)
        .x_label_area_size(34)
        .y_label_area_size(64)
        .build_cartesian_2d(0.0..x_max, 0.0..1.05)?;
    chart
        .configure_mesh()
        .x_desc("offered requests/s")
        .y_desc("errors / requests")
        .light_line_style(RGBColor(235, 235, 235))
        .label_style(("sans-serif", 12))
        .draw()?;
    let limit = [(0.0, objective.error_rate), (x_max, objective.error_rate)];
    chart.draw_series(DashedLineSeries::new(limit, 6, 4, LIMIT.stroke_width(1)))?;
    for search in &variant.searches {
        let c = colour(search.condition);
        let points = points(search, |f| f.error_rate);
        chart.draw_series(LineSeries::new(points.clone(), c.stroke_width(2)))?;
        chart.draw_series(points.iter().map(|&p| Circle::new(p, 3, c.filled())))?;
    }
    Ok(())
}
