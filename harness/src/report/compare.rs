//! Two runs side by side: the key figures of each (per variant and phase, and every prediction's
//! observed value) with their change, as text for a terminal and as a page.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use super::html::{escape, figure};
use super::{ReportError, Run};
use crate::vocabulary::Metric;

/// The per-phase figures a comparison (and a baseline) looks at.
pub const KEY_METRICS: &[Metric] = &[
    Metric::ThroughputRps,
    Metric::P95Ms,
    Metric::ErrorRate,
    Metric::PgStatementsPerS,
    Metric::CacheHitRatio,
];

/// `"defended / fault / p95_ms"` → value, for every key metric the run measured, plus
/// `"defended / prediction / <claim>"` → observed value for each prediction.
pub fn key_figures(run: &Run) -> BTreeMap<String, f64> {
    let mut figures = BTreeMap::new();
    for variant in &run.summary.variants {
        for phase in &run.summary.phases {
            for metric in KEY_METRICS {
                if let Some(value) = variant.phase_stats.get(&phase.name, *metric) {
                    figures.insert(
                        format!("{} / {} / {}", variant.variant, phase.name, metric),
                        value,
                    );
                }
            }
        }
        for verdict in &variant.verdicts {
            if let Some(observed) = verdict.observed {
                figures.insert(
                    format!("{} / prediction / {}", variant.variant, verdict.claim),
                    observed,
                );
            }
        }
    }
    figures
}

/// One figure in both runs.
#[derive(Debug, Clone, PartialEq)]
pub struct Change {
    pub key: String,
    pub a: Option<f64>,
    pub b: Option<f64>,
}

impl Change {
    /// b over a, when both are finite and a is not zero.
    pub fn ratio(&self) -> Option<f64> {
        match (self.a, self.b) {
            (Some(a), Some(b)) if a != 0.0 && a.is_finite() && b.is_finite() => Some(b / a),
            _ => None,
        }
    }

    fn change_text(&self) -> String {
        match (self.a, self.b, self.ratio()) {
            (_, _, Some(r)) => format!("{:+.1}%", (r - 1.0) * 100.0),
            (Some(a), Some(b), None) if a == b => "=".into(),
            (None, Some(_), _) => "new".into(),
            (Some(_), None, _) => "gone".into(),
            _ => "-".into(),
        }
    }
}

pub fn changes(a: &Run, b: &Run) -> Vec<Change> {
    let (fa, fb) = (key_figures(a), key_figures(b));
    let mut keys: Vec<&String> = fa.keys().chain(fb.keys()).collect();
    keys.sort();
    keys.dedup();
    keys.into_iter()
        .map(|k| Change {
            key: k.clone(),
            a: fa.get(k).copied(),
            b: fb.get(k).copied(),
        })
        .collect()
}

fn shown(value: Option<f64>) -> String {
    value.map_or_else(|| "-".into(), figure)
}

fn run_name(run: &Run) -> String {
    run.folder.name()
}

/// The comparison as a fixed-width table.
pub fn text(a: &Run, b: &Run, changes: &[Change]) -> String {
    let width = changes.iter().map(|c| c.key.len()).max().unwrap_or(10).max(10);
    let mut out = format!(
        "a: {} (exit {})\nb: {} (exit {})\n\n{:<width$}  {:>10}  {:>10}  {:>8}\n",
        run_name(a),
        a.summary.exit_code.code(),
        run_name(b),
        b.summary.exit_code.code(),
        "figure",
        "a",
        "b",
        "change"
    );
    for c in changes {
        let _ = writeln!(
            out,
            "{:<width$}  {:>10}  {:>10}  {:>8}",
            c.key,
            shown(c.a),
            shown(c.b),
            c.change_text()
        );
    }
    out
}

/// The comparison as a page, written to `path`.
pub fn write_page(a: &Run, b: &Run, changes: &[Change], path: &Path) -> Result<(), ReportError> {
    let mut page = format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>compare {a} and {b}</title>\
         <style>{style}</style></head><body>\n<h1>{a} → {b}</h1>\n\
         <p class=\"meta\">a: exit {ea}, revision {ra} · b: exit {eb}, revision {rb}</p>\n\
         <table><tr><th>figure</th><th>a</th><th>b</th><th>change</th></tr>\n",
        a = escape(&run_name(a)),
        b = escape(&run_name(b)),
        style = super::html::STYLE,
        ea = a.summary.exit_code.code(),
        eb = b.summary.exit_code.code(),
        ra = escape(a.summary.git_revision.as_deref().unwrap_or("unknown")),
        rb = escape(b.summary.git_revision.as_deref().unwrap_or("unknown")),
    );
    for c in changes {
        let _ = writeln!(
            page,
            "<tr><td>{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td></tr>",
            escape(&c.key),
            shown(c.a),
            shown(c.b),
            c.change_text()
        );
    }
    page.push_str("</table>\n</body></html>\n");
    std::fs::write(path, page).map_err(|source| ReportError::Write {
        path: path.to_owned(),
        source,
    })
}
