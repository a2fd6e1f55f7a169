//! `report.html` of an exploration: the space it searched (the lineage, and what it pruned), every
//! trial classed, and the minimal schedules it found with links to the experiment files that replay
//! them, in one page that opens offline beside `explore.json`.

use std::fmt::Write as _;

use super::{ExploreReport, Finding, TrialReport};
use crate::report::{STYLE, escape, figure};
use crate::vocabulary::Class;

/// The page of `report`.
pub fn page(report: &ExploreReport) -> String {
    let name = escape(&report.experiment);
    let mut page = String::new();
    let _ = write!(
        page,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{name}: explore</title>\
         <style>{STYLE}</style></head><body>\n<h1>{name}: explore, {variant} variant</h1>\n\
         <p class=\"meta\">seed {seed} · started {started} · took {took:.0} s of a {budget:.0} s budget{stopped}</p>\n",
        variant = report.variant,
        seed = report.seed,
        started = report.started_at.format("%Y-%m-%d %H:%M:%S UTC"),
        took = report.took_s,
        budget = report.settings.budget.as_secs_f64(),
        stopped = if report.interrupted {
            " · stopped by Ctrl-C: what follows is what was done until then"
        } else {
            ""
        },
    );
    space(report, &mut page);
    findings(report, &mut page);
    trials(&report.trials, &mut page);
    page.push_str("</body></html>\n");
    page
}

/// The links only a fault's trial went through, and the fault that opened each.
fn grown(report: &ExploreReport, page: &mut String) {
    if report.lineage.grown.is_empty() {
        return;
    }
    page.push_str(
        "<p>The lineage grew: links the trial without faults left unused that a single fault's trial \
         sent traffic down, each then faulted paired with each fault that opened it (slow first):</p>\n<ul>\n",
    );
    for g in &report.lineage.grown {
        let statements: String = (g.statements.iter())
            .map(|s| {
                format!(
                    "<br><code>{}</code>: {} runs against {} without a fault",
                    escape(&s.query),
                    s.under_fault,
                    s.without
                )
            })
            .collect();
        let _ = writeln!(
            page,
            "<li>{} ({} bytes) under {}{statements}</li>",
            escape(&g.link.to_string()),
            g.bytes,
            escape(&g.by.to_string())
        );
    }
    page.push_str("</ul>\n");
}

/// The space: what the lineage saw, what it pruned, how the trials came out against the search's
/// exhaustive count.
fn space(report: &ExploreReport, page: &mut String) {
    let s = &report.settings;
    let used: Vec<String> = (report.lineage.used.iter())
        .map(|(link, bytes)| format!("{link} ({bytes} bytes)"))
        .collect();
    let unused: Vec<String> = report.lineage.unused.iter().map(ToString::to_string).collect();
    let entry: Vec<String> = report.lineage.entry.iter().map(ToString::to_string).collect();
    let (indexes, indexes_unused) = (&report.lineage.indexes, &report.lineage.indexes_unused);
    let _ = write!(
        page,
        "<h2>The space</h2>\n<p>Each trial: {trial} s of load, the schedule's faults injected together for \
         {window} s from {at} s into it (every schedule at each instant before any at the next); objective \
         {objective}.</p>\n<p>Lineage (the trial without faults): the load \
         went through {used}; nothing went through {unused}; it entered by {entry}; its queries scanned \
         the indexes {indexes}, and not {indexes_unused}. Single faults in the \
         lab's space: {unpruned}; after pruning what the load never touched: {pruned}{pairs}. Trials run: \
         {ran}; schedules the budget left untried: {untried}.</p>\n",
        trial = figure(s.trial_seconds),
        at = (s.instants().into_iter().map(figure))
            .collect::<Vec<_>>()
            .join(" s, then "),
        window = figure(s.fault_seconds),
        objective = escape(&s.objective.to_string()),
        used = escape(&or_none(&used)),
        unused = escape(&or_none(&unused)),
        entry = escape(&or_none(&entry)),
        indexes = escape(&or_none(indexes)),
        indexes_unused = escape(&or_none(indexes_unused)),
        unpruned = report.space_unpruned,
        pruned = report.space_pruned,
        pairs = if s.pairs { ", then pairs among them" } else { "" },
        ran = report.trials.len(),
        untried = report.not_tried,
    );
    grown(report, page);
    page.push_str("<table><tr><th>class</th><th>trials</th><th>meaning</th></tr>\n");
    for class in Class::ALL {
        let _ = writeln!(
            page,
            "<tr><td class=\"{css}\">{class}</td><td class=\"num\">{n}</td><td>{meaning}</td></tr>",
            css = css(*class),
            n = report.count(*class),
            meaning = escape(class.describe()),
        );
    }
    page.push_str("</table>\n");
}

fn or_none(items: &[String]) -> String {
    if items.is_empty() {
        "none".to_owned()
    } else {
        items.join(", ")
    }
}

/// Each finding: the schedule found, the smallest one that still broke, and its replay file.
fn findings(report: &ExploreReport, page: &mut String) {
    page.push_str("<h2>Found</h2>\n");
    if report.findings.is_empty() {
        page.push_str("<p>No schedule broke an invariant.</p>\n");
        return;
    }
    page.push_str(
        "<table><tr><th>found</th><th>smallest</th><th>violated</th><th>reproduced</th><th>replay</th></tr>\n",
    );
    for finding in &report.findings {
        let _ = writeln!(
            page,
            "<tr><td>{}</td><td>{}</td><td class=\"violated\">{}</td><td class=\"num\">{} of {}</td><td>{}</td></tr>",
            escape(&finding.found.to_string()),
            escape(&finding.smallest.to_string()),
            escape(&finding.violated.join(", ")),
            finding.reproduced,
            finding.confirmations,
            replay_link(finding),
        );
    }
    page.push_str("</table>\n");
}

/// A link to the finding's experiment file (beside the page), or why there is none.
fn replay_link(finding: &Finding) -> String {
    let name = (finding.file.as_ref())
        .and_then(|file| file.file_name())
        .map(|name| name.to_string_lossy().into_owned());
    match name {
        Some(name) => format!(
            "<a href=\"{n}\"><code>{n}</code></a> (<code>fortress experiment {n}</code>)",
            n = escape(&name)
        ),
        None if finding.confirmations < super::CONFIRMATIONS => {
            "not written: the budget ran out before it was tried again (not confirmed, not refuted)".into()
        }
        None if finding.reproduced < super::CONFIRMATIONS => {
            "not written: not reproduced by every confirmation".into()
        }
        None => "not written: no metric counts what it broke".into(),
    }
}

/// Every trial in the order it ran, the shrinking's included.
fn trials(trials: &[TrialReport], page: &mut String) {
    page.push_str(
        "<h2>Trials</h2>\n<table><tr><th>#</th><th>schedule</th><th>class</th><th>why</th><th>p99 ms</th>\
         <th>errors</th><th>took s</th></tr>\n",
    );
    for (n, t) in trials.iter().enumerate() {
        let (p99, errors) = t.figures.as_ref().map_or_else(
            || ("-".to_owned(), "-".to_owned()),
            |f| (figure(f.p99_ms), figure(f.error_rate)),
        );
        let _ = writeln!(
            page,
            "<tr><td class=\"num\">{n}</td><td>{}</td><td class=\"{}\">{}</td><td>{}</td><td class=\"num\">{p99}</td>\
             <td class=\"num\">{errors}</td><td class=\"num\">{:.0}</td></tr>",
            escape(&t.schedule.to_string()),
            css(t.class),
            t.class,
            escape(&t.why),
            t.took_s,
        );
    }
    page.push_str("</table>\n");
}

/// The page's colour for a class: red broken, amber degraded or unmeasured, green harmless.
fn css(class: Class) -> &'static str {
    match class {
        Class::Broken => "violated",
        Class::Degraded | Class::Untouched | Class::NotInjected => "inconclusive",
        Class::Harmless => "held",
    }
}
