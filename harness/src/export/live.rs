//! The live view: while a run goes, a page on a local address shows each variant's phase, the faults
//! active right now and the last second's figures (those the stop conditions watch among them). It
//! is fed by the run's journal (a tap hears every event as it is written), so it shows what the
//! journal says, as it says it.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use axum::extract::State;
use axum::response::{Html, IntoResponse};
use axum::routing::get;
use axum::{Json, Router};
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use crate::experiment::journal::{Entry, Tap};
use crate::faults::Action;
use crate::vocabulary::{Metric, Variant};

/// What the page shows: the run as far as its journal has gone.
#[derive(Debug, Clone, Default, Serialize)]
pub struct LiveState {
    pub experiment: String,
    pub variants: BTreeMap<Variant, VariantNow>,
    /// How the run ended, once it has.
    pub ended: Option<String>,
}

/// One variant, now.
#[derive(Debug, Clone, Default, Serialize)]
pub struct VariantNow {
    pub phase: String,
    pub at_s: f64,
    /// The faults injected and not yet reverted, by injection number.
    pub faults: BTreeMap<u32, String>,
    /// The last second's figures.
    pub figures: BTreeMap<Metric, f64>,
}

impl LiveState {
    /// The run one event further on.
    fn apply(&mut self, entry: &Entry) {
        match entry {
            Entry::RunStarted { header } => self.experiment.clone_from(&header.experiment),
            Entry::PhaseStarted { variant, phase, at_s } => {
                let now = self.variants.entry(*variant).or_default();
                now.phase.clone_from(phase);
                now.at_s = *at_s;
            }
            Entry::Fault { variant, step } if !step.operator_step => {
                let faults = &mut self.variants.entry(*variant).or_default().faults;
                match step.action {
                    Action::Inject if step.error.is_none() => {
                        faults.insert(step.injection, step.fault.clone());
                    }
                    Action::Inject => {}
                    Action::Revert => {
                        faults.remove(&step.injection);
                    }
                }
            }
            Entry::Second { variant, sample } => {
                let now = self.variants.entry(*variant).or_default();
                now.at_s = sample.at_s;
                now.figures.clone_from(&sample.values);
            }
            Entry::RunEnded { exit_code, .. } => self.ended = Some(exit_code.to_string()),
            Entry::RunStopped { reason } => self.ended = Some(format!("stopped: {reason}")),
            Entry::Aborted { abort } => self.ended = Some(format!("stop condition tripped: {abort}")),
            Entry::Fault { .. } | Entry::Probes { .. } | Entry::VariantJudged { .. } => {}
        }
    }
}

/// The state the page reads, shared between the journal's tap and the server.
#[derive(Debug, Clone, Default)]
pub struct LiveView {
    state: Arc<Mutex<LiveState>>,
}

impl LiveView {
    /// The journal's tap that keeps this view current.
    pub fn tap(&self) -> Tap {
        let state = Arc::clone(&self.state);
        Arc::new(move |entry| {
            state.lock().unwrap_or_else(|p| p.into_inner()).apply(entry);
        })
    }

    pub fn now(&self) -> LiveState {
        self.state.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Serves the page (`/`) and its data (`/live.json`) on `listener` until `stop` is cancelled.
    pub async fn serve(
        self,
        listener: tokio::net::TcpListener,
        stop: CancellationToken,
    ) -> std::io::Result<()> {
        let app = Router::new()
            .route("/", get(page))
            .route("/live.json", get(now))
            .with_state(self);
        axum::serve(listener, app)
            .with_graceful_shutdown(stop.cancelled_owned())
            .await
    }
}

async fn now(State(view): State<LiveView>) -> Json<LiveState> {
    Json(view.now())
}

async fn page() -> impl IntoResponse {
    Html(PAGE)
}

/// One page, no outside resources: it asks for `/live.json` every second and draws it.
const PAGE: &str = r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Fortress: live</title>
<style>
body { font: 14px system-ui, sans-serif; margin: 2em; color: #222; }
section { border: 1px solid #ccc; border-radius: 6px; padding: 0.5em 1em; margin: 1em 0; }
.fault { color: #b00; font-weight: bold; }
table { border-collapse: collapse; } td { padding: 0 1em 0 0; }
</style></head>
<body>
<h1 id="experiment">Fortress: waiting for the run</h1>
<p id="ended"></p>
<div id="variants"></div>
<script>
function text(tag, content, cls) {
  const el = document.createElement(tag);
  el.textContent = content;
  if (cls) el.className = cls;
  return el;
}
function draw(run) {
  document.getElementById("experiment").textContent = "Fortress: " + (run.experiment || "starting");
  document.getElementById("ended").textContent = run.ended ? "ended: " + run.ended : "running";
  const root = document.getElementById("variants");
  root.replaceChildren();
  for (const [variant, now] of Object.entries(run.variants)) {
    const section = document.createElement("section");
    section.id = "variant-" + variant;
    section.append(text("h2", variant));
    section.append(text("p", "phase " + now.phase + " at " + now.at_s.toFixed(1) + " s", "phase"));
    const faults = Object.values(now.faults);
    section.append(text("p", faults.length ? "faults active: " + faults.join(", ") : "no fault active",
      faults.length ? "fault" : ""));
    const table = document.createElement("table");
    for (const [metric, value] of Object.entries(now.figures)) {
      const row = table.insertRow();
      row.insertCell().textContent = metric;
      row.insertCell().textContent = Number(value).toFixed(2);
    }
    section.append(table);
    root.append(section);
  }
}
async function poll() {
  try {
    const answer = await fetch("/live.json", { cache: "no-store" });
    if (answer.ok) draw(await answer.json());
  } catch (e) {
    document.getElementById("ended").textContent = "the run's view is gone (the run has ended)";
  }
  setTimeout(poll, 1000);
}
poll();
</script>
</body></html>
"#;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::faults::TimelineEntry;

    fn step(action: Action) -> TimelineEntry {
        TimelineEntry {
            injection: 1,
            fault: "kill redis".into(),
            action,
            started_at: chrono::Utc::now(),
            finished_at: chrono::Utc::now(),
            error: None,
            detail: None,
            evidence: None,
            observed: None,
            operator_step: false,
        }
    }

    #[test]
    fn a_fault_is_active_from_its_inject_to_its_revert() {
        let view = LiveView::default();
        let tap = view.tap();
        let variant = Variant::Defended;
        tap(&Entry::PhaseStarted {
            variant,
            phase: "fault".into(),
            at_s: 3.0,
        });
        tap(&Entry::Fault {
            variant,
            step: step(Action::Inject),
        });
        let now = view.now();
        assert_eq!(now.variants[&variant].phase, "fault");
        assert_eq!(now.variants[&variant].faults[&1], "kill redis");
        tap(&Entry::Fault {
            variant,
            step: step(Action::Revert),
        });
        assert!(view.now().variants[&variant].faults.is_empty());
        tap(&Entry::RunStopped {
            reason: "interrupted".into(),
        });
        assert_eq!(view.now().ended.as_deref(), Some("stopped: interrupted"));
    }
}
