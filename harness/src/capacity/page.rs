//! `report.html` of a capacity run: the objective and the search's steps, each variant's capacities
//! and verdicts, its knee chart, every step with its figures, the invariants and the fault's
//! timeline, in one page that opens offline.

use std::fmt::Write as _;

use super::{CapacityReport, VariantCapacity};
use crate::report::{ReportError, STYLE, embedded, escape, figure};
use crate::run_folder::RunFolder;

/// The page of `report`, whose knee charts are in `folder`.
pub fn page(report: &CapacityReport, folder: &RunFolder) -> Result<String, ReportError> {
    let code = report.exit_code();
    let (word, plan) = (code.name(), &report.plan);
    let mut page = String::new();
    let _ = write!(
        page,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{name} capacity: {word}</title>\
         <style>{STYLE}</style></head><body>\n<h1>{name} capacity <span class=\"badge {word}\">{word}</span></h1>\n\
         <p class=\"meta\">{meaning} (exit code {n}) · {profile} profile · seed {seed} · started {started}</p>\n\
         <p>Objective: {objective}. The fault: phase <code>{phase}</code> ({faults}), injected once around the \
         whole search under fault. {steps}.</p>\n",
        name = escape(&report.experiment),
        meaning = code.meaning(),
        n = code.code(),
        profile = report.profile,
        seed = report.seed,
        started = report.started_at.format("%Y-%m-%d %H:%M:%S UTC"),
        objective = escape(&plan.objective.to_string()),
        phase = escape(&plan.fault_phase),
        faults = escape(
            &(plan.faults.iter().map(ToString::to_string))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        steps = escape(&plan.steps_text()),
    );
    capacities(report, &mut page);
    for variant in &report.variants {
        let chart = embedded(&folder.knee_chart(variant.variant))?;
        let _ = write!(
            page,
            "<h2>{v}</h2>\n<img class=\"chart\" alt=\"{v}: the knee\" src=\"{chart}\">\n",
            v = variant.variant
        );
        steps(variant, &mut page);
        invariants(variant, &mut page);
        timeline(variant, &mut page);
    }
    page.push_str("</body></html>\n");
    Ok(page)
}

/// Every search's capacity, and every prediction's verdict.
fn capacities(report: &CapacityReport, page: &mut String) {
    page.push_str("<h2>Capacity</h2>\n<table><tr><th>variant</th><th>search</th><th>capacity (requests/s)</th><th>found</th></tr>\n");
    for variant in &report.variants {
        for s in &variant.searches {
            let note = s
                .untouched
                .as_ref()
                .or(s.caveat.as_ref())
                .map_or("a knee", String::as_str);
            let _ = writeln!(
                page,
                "<tr><td>{}</td><td>{}</td><td class=\"num\">{}</td><td>{}</td></tr>",
                variant.variant,
                s.condition,
                figure(s.capacity),
                escape(note)
            );
        }
    }
    page.push_str("</table>\n");
    for variant in &report.variants {
        if let Some(anchor) = &variant.anchor {
            let _ = writeln!(
                page,
                "<p>{} anchor: {}.</p>",
                variant.variant,
                escape(&anchor.text())
            );
        }
    }
    page.push_str("<h2>Predicted</h2>\n<table><tr><th>variant</th><th>claim</th><th>observed</th><th>verdict</th><th>why</th></tr>\n");
    for variant in &report.variants {
        for v in &variant.verdicts {
            let _ = writeln!(
                page,
                "<tr><td>{}</td><td>{}</td><td class=\"num\">{}</td><td class=\"{}\">{}</td><td>{}</td></tr>",
                variant.variant,
                escape(&v.claim),
                v.observed.map_or_else(|| "-".to_owned(), figure),
                v.outcome.word(),
                escape(&v.outcome.to_string()),
                escape(&v.why)
            );
        }
    }
    page.push_str("</table>\n");
}

/// Every step of a variant's searches, in the order they ran.
fn steps(variant: &VariantCapacity, page: &mut String) {
    page.push_str(
        "<table><tr><th>at (s)</th><th>search</th><th>offered/s</th><th>done/s</th><th>p50 ms</th><th>p99 ms</th>\
         <th>service p99 ms</th><th>errors</th><th>never sent</th><th>generator lag p99 ms</th><th>step</th></tr>\n",
    );
    for t in variant.searches.iter().flat_map(|s| &s.trials) {
        let cells = t.figures.as_ref().map_or_else(
            || "<td colspan=\"7\">nothing completed after the warm-up</td>".to_owned(),
            |f| {
                [
                    f.achieved_rps,
                    f.p50_ms,
                    f.p99_ms,
                    f.service_p99_ms,
                    f.error_rate,
                    f.unsent_share,
                    f.own_lag_p99_ms,
                ]
                .iter()
                .map(|v| format!("<td class=\"num\">{}</td>", figure(*v)))
                .collect()
            },
        );
        let (class, said) = match &t.verdict {
            super::StepVerdict::Held => ("held", "held".to_owned()),
            super::StepVerdict::Broke { why } => ("violated", format!("broke: {why}")),
            super::StepVerdict::GeneratorBound { why } => ("inconclusive", format!("generator-bound: {why}")),
        };
        let _ = writeln!(
            page,
            "<tr><td class=\"num\">{:.0}</td><td>{}</td><td class=\"num\">{}</td>{cells}<td class=\"{class}\">{}</td></tr>",
            t.at_s,
            t.condition,
            figure(t.rate),
            escape(&said)
        );
    }
    page.push_str("</table>\n");
}

fn invariants(variant: &VariantCapacity, page: &mut String) {
    page.push_str("<table><tr><th>invariant, over every step's orders</th><th></th><th>found</th></tr>\n");
    for check in &variant.invariants.checks {
        let class = match (&check.held, &check.predicted_by) {
            (true, _) => "held",
            (false, Some(_)) => "predicted",
            (false, None) => "violated",
        };
        let _ = writeln!(
            page,
            "<tr><td>{}</td><td class=\"{class}\">{}</td><td>{}</td></tr>",
            escape(&check.name),
            escape(&check.to_string()),
            escape(&check.detail)
        );
    }
    page.push_str("</table>\n");
}

fn timeline(variant: &VariantCapacity, page: &mut String) {
    if variant.timeline.is_empty() {
        return;
    }
    page.push_str("<table><tr><th>fault</th><th>step</th><th>at</th><th>what was seen</th></tr>\n");
    for e in &variant.timeline {
        let seen = (e.observed.as_ref()).map_or_else(String::new, |o| {
            let touched = if o.touched {
                "touched the system"
            } else {
                "NO EVIDENCE it touched the system"
            };
            format!("{touched}: {}", o.facts.join("; "))
        });
        let _ = writeln!(
            page,
            "<tr><td><code>{}</code></td><td>{}</td><td>{}</td><td class=\"evidence\">{}</td></tr>",
            escape(&e.fault),
            e.action,
            e.finished_at.format("%H:%M:%S%.3f"),
            escape(&seen)
        );
    }
    page.push_str("</table>\n");
}
