//! `report.html`: one page a reader can open offline and understand without the terminal: the story,
//! the verdict, each prediction with what was observed, the charts (embedded), the invariants, the
//! fault timeline with its evidence, and the environment the run had.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use base64::Engine as _;

use super::charts::ChartSpec;
use super::{ReportError, Run};
use crate::faults::proxy::Evidence;
use crate::faults::timeline::still_injected;
use crate::vocabulary::Metric;

pub const STYLE: &str = "
body { font-family: 'DejaVu Sans', Verdana, sans-serif; margin: 2em auto; max-width: 1000px; color: #222; }
h1 { margin-bottom: 0.2em; } .meta { color: #666; font-size: 0.9em; }
.story { white-space: pre-wrap; background: #f6f6f6; padding: 0.8em 1em; border-left: 4px solid #bbb; }
table { border-collapse: collapse; width: 100%; margin: 0.5em 0 1.5em; font-size: 0.9em; }
th, td { border-bottom: 1px solid #ddd; padding: 0.35em 0.5em; text-align: left; vertical-align: top; }
th { background: #fafafa; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
.confirmed, .held { color: #1a7f37; font-weight: bold; } .refuted, .violated { color: #cf222e; font-weight: bold; }
.inconclusive, .predicted { color: #9a6700; font-weight: bold; } .aborted { color: #8250df; font-weight: bold; }
.badge { display: inline-block; padding: 0.2em 0.7em; border-radius: 1em; color: white; }
.badge.confirmed { background: #1a7f37; } .badge.refuted { background: #cf222e; } .badge.inconclusive { background: #9a6700; } .badge.aborted { background: #8250df; }
img.chart { width: 100%; max-width: 960px; border: 1px solid #eee; }
code, .evidence { font-family: 'DejaVu Sans Mono', monospace; font-size: 0.85em; }
";

/// Marks the page with how many charts loaded (`data-images`, `data-broken-images` on `<body>`) so a
/// headless browser can check it, and tells a reader when one did not.
const SELF_CHECK: &str = "<script>
window.addEventListener('load', function () {
  var images = Array.prototype.slice.call(document.images);
  var broken = images.filter(function (i) { return !i.complete || i.naturalWidth === 0; });
  document.body.dataset.images = images.length;
  document.body.dataset.brokenImages = broken.length;
  if (broken.length > 0) {
    var note = document.createElement('p');
    note.className = 'refuted';
    note.textContent = broken.length + ' chart(s) failed to load: draw them again with fortress report <run-dir>';
    document.body.insertBefore(note, document.body.firstChild);
  }
});
</script>
";

/// Text made safe to put between tags or in an attribute.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A figure with the precision a reader wants: integers as integers, small ratios with 3 digits.
pub fn figure(value: f64) -> String {
    if !value.is_finite() {
        return "never".into();
    }
    let magnitude = value.abs();
    if magnitude >= 100.0 || value.fract() == 0.0 {
        format!("{value:.0}")
    } else if magnitude >= 1.0 {
        format!("{value:.2}")
    } else {
        format!("{value:.3}")
    }
}

pub fn embedded(path: &Path) -> Result<String, ReportError> {
    let bytes = std::fs::read(path).map_err(|source| ReportError::Read {
        path: path.to_owned(),
        source,
    })?;
    Ok(format!(
        "data:image/png;base64,{}",
        base64::engine::general_purpose::STANDARD.encode(bytes)
    ))
}

pub fn page(
    run: &Run,
    headline: (&ChartSpec, &PathBuf),
    charts: &[(ChartSpec, PathBuf)],
) -> Result<String, ReportError> {
    let s = &run.summary;
    let (word, meaning) = (s.exit_code.name(), s.exit_code.meaning());
    let mut page = String::new();
    let _ = write!(
        page,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{name}: {word}</title>\
         <style>{STYLE}</style></head><body>\n<h1>{name} <span class=\"badge {word}\">{word}</span></h1>\n\
         <p class=\"meta\">{meaning} (exit code {code}) · {profile} profile · seed {seed} · started {started} · \
         revision {rev}</p>\n<div class=\"story\">{story}</div>\n",
        name = escape(&s.experiment),
        code = s.exit_code.code(),
        profile = s.profile,
        seed = s.seed,
        started = s.started_at.format("%Y-%m-%d %H:%M:%S UTC"),
        rev = escape(s.git_revision.as_deref().unwrap_or("unknown")),
        story = escape(s.story.trim()),
    );
    for v in s.variants.iter().filter(|v| !v.without.is_empty()) {
        let _ = writeln!(
            page,
            "<p class=\"aborted\">{} WITHOUT {}: a defence switched off on purpose. Its predictions are judged \
             as written; one refuted is consistent with the defence holding it up (one run is not a series).</p>",
            v.variant,
            escape(&v.without.join(", "))
        );
    }
    stopped_early(run, &mut page);
    let _ = write!(
        page,
        "<h2>At a glance</h2>\n<img class=\"chart\" id=\"headline\" alt=\"{}\" src=\"{}\">\n\
         <p class=\"meta\">Shaded: the fault windows. Vertical lines: phase boundaries.</p>\n",
        escape(&headline.0.title),
        embedded(headline.1)?
    );
    predictions(run, &mut page);
    phases(run, &mut page);
    page.push_str("<h2>Over time</h2>\n");
    for (spec, path) in charts {
        let _ = writeln!(
            page,
            "<img class=\"chart\" alt=\"{}\" src=\"{}\">",
            escape(&spec.title),
            embedded(path)?
        );
    }
    invariants(run, &mut page);
    lost_orders(run, &mut page);
    server_errors(run, &mut page);
    timeline(run, &mut page);
    environment(run, &mut page);
    page.push_str(SELF_CHECK);
    page.push_str("</body></html>\n");
    Ok(page)
}

/// The stop condition that ended the run, and what the proxy and Docker said of the lab after it.
fn stopped_early(run: &Run, page: &mut String) {
    for variant in &run.summary.variants {
        let Some(abort) = &variant.aborted else {
            continue;
        };
        let audit = variant
            .audit
            .as_ref()
            .map_or_else(String::new, |a| format!(" After it: {a}."));
        let _ = writeln!(
            page,
            "<p class=\"aborted\">Stopped early in {}: {}. The phase's faults were reverted at once, \
             the load stopped, and no later phase or variant ran (the purple line on the charts).{}</p>",
            variant.variant,
            escape(&abort.to_string()),
            escape(&audit)
        );
    }
}

fn predictions(run: &Run, page: &mut String) {
    page.push_str(
        "<h2>Predictions</h2>\n<table><tr><th>variant</th><th>prediction</th><th>why</th>\
         <th>observed</th><th>verdict</th></tr>\n",
    );
    for variant in &run.summary.variants {
        for v in &variant.verdicts {
            let _ = writeln!(
                page,
                "<tr><td>{}</td><td><code>{}</code></td><td>{}</td><td class=\"num\">{}</td>\
                 <td class=\"{}\">{}</td></tr>",
                v.variant,
                escape(&v.claim.to_string()),
                escape(&v.why),
                v.observed.map_or_else(|| "-".into(), figure),
                v.outcome.word(),
                escape(&v.outcome.to_string())
            );
        }
    }
    page.push_str("</table>\n");
}

fn phases(run: &Run, page: &mut String) {
    let s = &run.summary;
    page.push_str("<h2>Phases</h2>\n<table><tr><th>phase</th><th>seconds</th><th>faults</th>");
    for v in &s.variants {
        let _ = write!(
            page,
            "<th>{0}: achieved of offered req/s</th><th>{0}: p95 ms</th>",
            v.variant
        );
    }
    page.push_str("</tr>\n");
    for phase in &s.phases {
        let _ = write!(
            page,
            "<tr><td>{}</td><td class=\"num\">{}</td><td>{}</td>",
            escape(&phase.name),
            figure(phase.seconds),
            escape(&phase.faults.join(", "))
        );
        for v in &s.variants {
            let get = |m| v.phase_stats.get(&phase.name, m);
            let _ = write!(
                page,
                "<td class=\"num\">{} of {}</td><td class=\"num\">{}</td>",
                get(Metric::ThroughputRps).map_or_else(|| "-".into(), figure),
                figure(v.offered_rps),
                get(Metric::P95Ms).map_or_else(|| "-".into(), figure)
            );
        }
        page.push_str("</tr>\n");
    }
    page.push_str("</table>\n");
}

fn invariants(run: &Run, page: &mut String) {
    page.push_str(
        "<h2>Invariants</h2>\n<table><tr><th>variant</th><th>invariant</th><th>held</th><th>what was found</th></tr>\n",
    );
    for variant in &run.summary.variants {
        for check in &variant.invariants.checks {
            let class = match (&check.held, &check.predicted_by) {
                (true, _) => "held",
                (false, Some(_)) => "predicted",
                (false, None) => "violated",
            };
            let _ = writeln!(
                page,
                "<tr><td>{}</td><td>{}</td><td class=\"{class}\">{}</td><td>{}</td></tr>",
                variant.variant,
                escape(&check.name),
                escape(&check.to_string()),
                escape(&check.detail)
            );
        }
    }
    page.push_str("</table>\n");
}

/// Each acknowledged order the database lost, set against the faults: when the client was told, and
/// when the next fault was asked for and done (the lost orders cluster just before it).
fn lost_orders(run: &Run, page: &mut String) {
    if run.summary.variants.iter().all(|v| v.lost_orders.is_empty()) {
        return;
    }
    page.push_str(
        "<h2>Acknowledged, then lost</h2>\n<p class=\"meta\">Orders the client was told about (201) that \
         the database does not have, with the fault that followed: asked for at the first time, done by the \
         second (seconds since the load started).</p>\n<table id=\"lost-orders\"><tr><th>variant</th>\
         <th>order</th><th>sent at (s)</th><th>acknowledged at (s)</th><th>next fault</th>\
         <th>fault injected (s)</th></tr>\n",
    );
    for variant in &run.summary.variants {
        let since = |t: chrono::DateTime<chrono::Utc>| (t - variant.load_started_at).as_seconds_f64();
        let injects: Vec<_> = variant
            .timeline
            .iter()
            .filter(|e| e.action == crate::faults::Action::Inject)
            .collect();
        for lost in &variant.lost_orders {
            let next = injects.iter().find(|e| e.finished_at >= lost.acknowledged_at);
            let (name, when) = next.map_or(("-".to_owned(), "-".to_owned()), |e| {
                let window = format!("{:.3} to {:.3}", since(e.started_at), since(e.finished_at));
                (e.fault.clone(), window)
            });
            let _ = writeln!(
                page,
                "<tr><td>{}</td><td class=\"num\">{}</td><td class=\"num\">{:.3}</td><td class=\"num\">{:.3}</td>\
                 <td><code>{}</code></td><td class=\"num\">{when}</td></tr>",
                variant.variant,
                lost.id,
                since(lost.sent_at),
                since(lost.acknowledged_at),
                escape(&name),
            );
        }
    }
    page.push_str("</table>\n");
}

/// The 5xx answers by status and code, each with a few request ids and the log lines that name
/// them, and the log files kept.
fn server_errors(run: &Run, page: &mut String) {
    let variants = &run.summary.variants;
    if variants.iter().all(|v| {
        v.forensics.server_errors.is_empty() && v.forensics.logs.is_empty() && v.forensics.refused.is_empty()
    }) {
        return;
    }
    page.push_str(
        "<h2>Server errors and their causes</h2>\n<p class=\"meta\">Every 5xx answer the client saw, \
         by status and error code, with the request ids of the first few and the service's log lines that \
         name them. The warning and error lines of each container are kept beside this page.</p>\n\
         <table id=\"server-errors\"><tr><th>variant</th><th>status</th><th>code</th><th>answers</th>\
         <th>request ids</th><th>log lines</th></tr>\n",
    );
    for variant in variants {
        for class in &variant.forensics.server_errors {
            let answers = &class.answers;
            let lines: Vec<String> = class.log_lines.iter().map(|l| escape(l)).collect();
            let _ = writeln!(
                page,
                "<tr><td>{}</td><td class=\"num\">{}</td><td><code>{}</code></td><td class=\"num\">{}</td>\
                 <td class=\"evidence\">{}</td><td class=\"evidence\">{}</td></tr>",
                variant.variant,
                answers.status,
                escape(&answers.code),
                answers.count,
                escape(&answers.request_ids.join(" ")),
                if lines.is_empty() {
                    "none found".to_owned()
                } else {
                    lines.join("<br>")
                },
            );
        }
    }
    page.push_str("</table>\n");
    refused(run, page);
    page.push_str("<p class=\"meta\">Log lines kept:");
    if variants.iter().all(|v| v.forensics.logs.is_empty()) {
        page.push_str(" none (no container logged a warning or an error)");
    }
    for variant in variants {
        for log in &variant.forensics.logs {
            let dropped = if log.dropped > 0 {
                format!(", {} more not kept", log.dropped)
            } else {
                String::new()
            };
            let _ = write!(
                page,
                " <a href=\"{0}\">{0}</a> ({1} lines{dropped})",
                escape(&log.file),
                log.lines
            );
        }
    }
    page.push_str("</p>\n");
}

fn timeline(run: &Run, page: &mut String) {
    page.push_str(
        "<h2>Fault timeline</h2>\n<table><tr><th>variant</th><th>at (s)</th><th>fault</th><th>action</th>\
         <th>took</th><th>result</th><th>evidence</th></tr>\n",
    );
    for variant in &run.summary.variants {
        for e in &variant.timeline {
            let at = (e.started_at - variant.load_started_at).as_seconds_f64();
            let took = (e.finished_at - e.started_at).as_seconds_f64() * 1000.0;
            let result = match (&e.error, &e.detail) {
                (Some(error), _) => format!("failed: {error}"),
                (None, Some(detail)) => format!("ok: {detail}"),
                (None, None) => "ok".into(),
            };
            let action = if e.operator_step {
                "operator step".to_owned()
            } else {
                e.action.to_string()
            };
            let _ = writeln!(
                page,
                "<tr><td>{}</td><td class=\"num\">{at:.1}</td><td><code>{}</code></td><td>{action}</td>\
                 <td class=\"num\">{took:.0} ms</td><td>{}</td><td class=\"evidence\">{}</td></tr>",
                variant.variant,
                escape(&e.fault),
                escape(&result),
                seen(e)
            );
        }
    }
    page.push_str("</table>\n");
    reverted(run, page);
}

/// The unexpected 4xx answers by status and code: a 401 for a logged-in user (a logout, however the
/// service words it), or a refusal the scenario did not expect.
fn refused(run: &Run, page: &mut String) {
    let variants = &run.summary.variants;
    if variants.iter().all(|v| v.forensics.refused.is_empty()) {
        return;
    }
    page.push_str(
        "<p class=\"meta\">Unexpected 4xx answers (a 401 to a logged-in user counts as logged out, \
         whatever its code):</p>\n<table id=\"refused\"><tr><th>variant</th><th>status</th><th>code</th>\
         <th>answers</th><th>request ids</th></tr>\n",
    );
    for variant in variants {
        for class in &variant.forensics.refused {
            let _ = writeln!(
                page,
                "<tr><td>{}</td><td class=\"num\">{}</td><td><code>{}</code></td><td class=\"num\">{}</td>\
                 <td class=\"evidence\">{}</td></tr>",
                variant.variant,
                class.status,
                escape(&class.code),
                class.count,
                escape(&class.request_ids.join(" ")),
            );
        }
    }
    page.push_str("</table>\n");
}

/// What was seen of a fault (escaped HTML): whether it touched the system, the facts, and the
/// proxy's counters of a network fault.
fn seen(e: &crate::faults::TimelineEntry) -> String {
    let mut shown = String::new();
    if let Some(observed) = &e.observed {
        let verdict = if observed.touched {
            "touched the system"
        } else {
            "NO EVIDENCE it touched the system"
        };
        let _ = write!(shown, "<b>{verdict}</b>");
        for fact in &observed.facts {
            let _ = write!(shown, "<br>{}", escape(fact));
        }
    }
    if let Some(evidence) = &e.evidence {
        let _ = write!(shown, "<br>{}", escape(&evidence_text(evidence)));
    }
    shown
}

/// Says, per variant, that every fault injected was reverted (or which ones were not).
fn reverted(run: &Run, page: &mut String) {
    for variant in &run.summary.variants {
        let injections = variant
            .timeline
            .iter()
            .filter(|e| e.action == crate::faults::Action::Inject)
            .count();
        let left = still_injected(&variant.timeline);
        let (class, text) = if left.is_empty() {
            (
                "held",
                format!(
                    "{}: every fault injected was reverted ({injections} injection(s)).",
                    variant.variant
                ),
            )
        } else {
            (
                "violated",
                format!(
                    "{}: still injected at the end: {}",
                    variant.variant,
                    left.join(", ")
                ),
            )
        };
        let _ = writeln!(
            page,
            "<p class=\"{class}\" id=\"reverted-{}\">{}</p>",
            variant.variant,
            escape(&text)
        );
    }
}

/// The proxy's evidence as `key value` pairs, leaving out what stayed zero.
fn evidence_text(evidence: &Evidence) -> String {
    match serde_json::to_value(evidence) {
        Ok(serde_json::Value::Object(fields)) => fields
            .iter()
            .filter(|(_, v)| v.as_f64() != Some(0.0))
            .map(|(k, v)| format!("{} {v}", k.replace('_', " ")))
            .collect::<Vec<_>>()
            .join(", "),
        _ => format!("{evidence:?}"),
    }
}

fn environment(run: &Run, page: &mut String) {
    let s = &run.summary;
    let _ = write!(
        page,
        "<h2>Environment</h2>\n<table>\
         <tr><th>fortress</th><td>{} (revision {})</td></tr>\
         <tr><th>docker</th><td>{}</td></tr>\
         <tr><th>machine</th><td>{} CPUs, {:.1} GiB, {}</td></tr>\
         <tr><th>definition</th><td>{}</td></tr>\
         <tr><th>profile, seed</th><td>{}, {}</td></tr>\n",
        escape(&s.fortress_version),
        escape(s.git_revision.as_deref().unwrap_or("unknown")),
        escape(s.docker_version.as_deref().unwrap_or("unknown")),
        s.machine.cpus,
        s.machine.memory_gib,
        escape(&s.machine.kernel),
        escape(&s.source),
        s.profile,
        s.seed
    );
    for v in &s.variants {
        let images: Vec<String> = v
            .images
            .iter()
            .map(|i| format!("{}: {} ({})", i.role, i.image, i.source))
            .collect();
        let folder = &run.folder;
        let _ = writeln!(
            page,
            "<tr><th>{0}</th><td>modes <code>{1}</code>; lab {2} ready in {3:.1} s; {4} requests<br>{5}<br>\
             <a href=\"{6}\">goose's report</a> · <a href=\"{7}\">time series (CSV)</a></td></tr>",
            v.variant,
            escape(&v.modes.to_string()),
            escape(&v.run_id),
            v.ready_in_s,
            v.requests,
            escape(&images.join("; ")),
            escape(&folder.link(&folder.goose_report(v.variant))),
            escape(&folder.link(&folder.series_csv(v.variant))),
        );
    }
    let summary = run.folder.link(&run.folder.summary());
    let _ = writeln!(
        page,
        "</table>\n<p class=\"meta\"><a href=\"{0}\">{0}</a> holds every figure on this page.</p>",
        escape(&summary)
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_markup() {
        assert_eq!(
            escape("<a href=\"x\">&'"),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;"
        );
    }

    #[test]
    fn figures_read_naturally() {
        assert_eq!(figure(150.0), "150");
        assert_eq!(figure(3.6736), "3.67");
        assert_eq!(figure(0.00423), "0.004");
        assert_eq!(figure(f64::INFINITY), "never");
    }
}
