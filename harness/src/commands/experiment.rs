//! `fortress experiment`: the front door. Prints the story and the predictions, runs the variants with
//! a progress bar per phase, then the verdicts, the invariants and where the run folder is.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use tokio_util::sync::CancellationToken;

use super::print_error;
use crate::cli::{ExperimentArgs, VariantChoice};
use crate::experiment::definition::{Plan, VariantPlan};
use crate::experiment::journal::{Journal, Tap};
use crate::experiment::output::Summary;
use crate::experiment::runner::{self, Event, RunContext};
use crate::experiment::{catalog, without};
use crate::export::live::LiveView;
use crate::run_folder::RunFolder;
use crate::vocabulary::{ExitCode, Outcome, Variant};

/// Runs the experiment and answers the process exit code (see `fortress experiment --help`).
pub async fn run(args: &ExperimentArgs, lab_binary: PathBuf) -> ExitCode {
    let plan = match catalog::load(&args.experiment, args.profile) {
        Ok(plan) => plan,
        Err(error) => {
            print_error(&error);
            return ExitCode::Usage;
        }
    };
    let plan = match switched_off(plan, args) {
        Ok(plan) => plan,
        Err(message) => {
            eprintln!("fortress: {message}");
            return ExitCode::Usage;
        }
    };
    let variants: Vec<&VariantPlan> = plan
        .variants
        .iter()
        .filter(|v| args.variant.includes(v.variant))
        .collect();
    if variants.is_empty() {
        let known: Vec<&str> = plan.variants.iter().map(|v| v.variant.name()).collect();
        eprintln!(
            "fortress: {} has no {:?} variant; it has: {}",
            plan.name,
            args.variant,
            known.join(", ")
        );
        return ExitCode::Usage;
    }
    print_plan(&plan, &variants);
    let live = match args.live {
        Some(addr) => match LiveServer::start(addr).await {
            Ok(live) => Some(live),
            Err(code) => return code,
        },
        None => None,
    };
    let tap = live.as_ref().map(|l| l.view.tap());
    let executed = execute(
        &plan,
        &variants,
        args.seed,
        &args.out,
        lab_binary,
        runner::Handover::default(),
        tap,
    )
    .await;
    if let Some(live) = live {
        live.stop().await;
    }
    let (summary, folder) = match executed {
        Ok(done) => done,
        Err(code) => return code,
    };
    print_verdicts(&summary);
    println!(
        "\nrun folder: {} (summary.json, report.html, time series, goose reports)",
        folder.dir().display()
    );
    if let Some(url) = &args.prometheus
        && !exported(url, &summary, &folder).await
    {
        return ExitCode::Environment;
    }
    println!("{}", summary.exit_code);
    summary.exit_code
}

/// The live view's page, served while the run goes.
struct LiveServer {
    view: LiveView,
    stop: CancellationToken,
    serving: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl LiveServer {
    async fn start(addr: std::net::SocketAddr) -> Result<Self, ExitCode> {
        let listener = tokio::net::TcpListener::bind(addr).await.map_err(|error| {
            eprintln!(
                "fortress: cannot serve the live view on {addr}: {error}; choose another --live address"
            );
            ExitCode::Usage
        })?;
        println!("live view: http://{addr}/");
        let (view, stop) = (LiveView::default(), CancellationToken::new());
        let serving = tokio::spawn(view.clone().serve(listener, stop.clone()));
        Ok(Self { view, stop, serving })
    }

    async fn stop(self) {
        self.stop.cancel();
        if let Ok(Err(error)) = self.serving.await {
            eprintln!("fortress: the live view failed: {error}");
        }
    }
}

/// Writes the run to Prometheus; says what was written, or why not (the run folder has it all).
async fn exported(url: &str, summary: &Summary, folder: &RunFolder) -> bool {
    match crate::export::prometheus::write(url, summary, &folder.name()).await {
        Ok(written) => {
            println!(
                "prometheus: {} series, {} samples written to {url} (run=\"{}\")",
                written.series,
                written.samples,
                folder.name()
            );
            true
        }
        Err(error) => {
            eprintln!("fortress: the run is saved, but not in Prometheus:");
            print_error(&error);
            false
        }
    }
}

/// The plan with the defences of `--without` switched off in its defended variant, which must be the
/// only one run (a vulnerable variant beside it would compare naive code with naive code).
fn switched_off(plan: Plan, args: &ExperimentArgs) -> Result<Plan, String> {
    if args.without.is_empty() {
        return Ok(plan);
    }
    if args.variant != VariantChoice::Defended {
        return Err(
            "--without switches a defence off in the defended variant: add --variant defended".into(),
        );
    }
    without::switch_off(&plan, &args.without).map_err(|e| e.to_string())
}

fn print_plan(plan: &Plan, variants: &[&VariantPlan]) {
    println!(
        "{} ({} profile, {:.0} s of load per variant)\n",
        plan.name,
        plan.profile,
        plan.run_seconds()
    );
    println!("{}\n", plan.story);
    println!("Predicted:");
    for p in plan
        .predictions
        .iter()
        .filter(|p| variants.iter().any(|v| v.variant == p.variant))
    {
        println!("  {:<10} {}: {}", p.variant, p.claim, p.why);
    }
    for v in variants.iter().filter(|v| !v.without.is_empty()) {
        println!(
            "\n{} WITHOUT {}: its predictions are judged as written; those the defence holds up should be refuted",
            v.variant,
            v.without.join(", ")
        );
    }
    println!();
}

/// The progress of a run: a bar per variant on a terminal, a line per phase without one.
struct Progress {
    bars: MultiProgress,
    current: Mutex<HashMap<Variant, ProgressBar>>,
    style: ProgressStyle,
    total_s: u64,
}

impl Progress {
    fn new(plan: &Plan) -> Self {
        Self {
            bars: MultiProgress::new(),
            current: Mutex::new(HashMap::new()),
            style: ProgressStyle::with_template("{prefix:>22} [{bar:30}] {pos:>3}/{len}s {msg}")
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
            total_s: plan.run_seconds().ceil() as u64,
        }
    }

    fn show(&self, event: Event<'_>) {
        let mut current = self.current.lock().unwrap_or_else(|p| p.into_inner());
        let hidden = self.bars.is_hidden();
        match event {
            // Without a terminal the bars are hidden, and so would be their messages.
            Event::Message(text) if hidden => eprintln!("{text}"),
            Event::Message(text) => self.bars.println(text).unwrap_or(()),
            Event::Phase { variant, phase } => {
                if hidden {
                    let faults = phase.faults_text();
                    let faults = if faults.is_empty() {
                        faults
                    } else {
                        format!(": {faults}")
                    };
                    eprintln!("{variant}: phase {} ({} s){faults}", phase.name, phase.seconds);
                }
                let bar = current.entry(variant).or_insert_with(|| {
                    self.bars
                        .add(ProgressBar::new(self.total_s).with_style(self.style.clone()))
                });
                bar.set_prefix(format!("{variant}/{}", phase.name));
            }
            Event::Second {
                variant,
                at_s,
                figures,
                ..
            } => {
                if let Some(bar) = current.get(&variant) {
                    bar.set_position(at_s as u64);
                    bar.set_message(figures);
                }
            }
        }
    }

    fn finish(&self) {
        for bar in self.current.lock().unwrap_or_else(|p| p.into_inner()).values() {
            bar.finish();
        }
    }
}

/// Runs `variants` of `plan` with a progress bar per phase, Ctrl-C reverting everything, and writes
/// the run folder under `out_root` with its report. Answers the summary and the folder, or the exit
/// code of what went wrong (the environment, or Ctrl-C). `handover` brings labs started ahead, if
/// any (see [`runner::Handover`]); `tap`, if any, hears every event of the run's journal.
pub async fn execute(
    plan: &Plan,
    variants: &[&VariantPlan],
    seed: u64,
    out_root: &Path,
    lab_binary: PathBuf,
    handover: runner::Handover,
    tap: Option<Tap>,
) -> Result<(Summary, RunFolder), ExitCode> {
    let folder = RunFolder::create(out_root, &plan.name, chrono::Utc::now()).map_err(|error| {
        eprintln!(
            "fortress: cannot create the run folder under {}: {error}",
            out_root.display()
        );
        ExitCode::Environment
    })?;
    let (stop, watcher) = super::stop_on_interrupt();
    let progress = Progress::new(plan);
    let show = |event: Event<'_>| progress.show(event);
    let journal = Journal::create(&folder.journal()).unwrap_or_else(|error| {
        eprintln!("fortress: the run goes on without its journal: {error}");
        Journal::none()
    });
    let journal = match tap {
        Some(tap) => journal.tapped(tap),
        None => journal,
    };
    let ctx = RunContext {
        lab_binary,
        folder: &folder,
        stop: stop.clone(),
        progress: &show,
        journal,
    };
    let result = runner::run(plan, variants, seed, &ctx, handover).await;
    watcher.abort();
    progress.finish();
    let summary = result.map_err(|error| {
        print_error(&error);
        if matches!(error, runner::RunError::Interrupted) {
            mark_interrupted(&folder);
        }
        ExitCode::Environment
    })?;
    // Ctrl-C after the last verdict is still Ctrl-C: the user asked to stop, and gets no green run.
    if crate::interrupt::pressed() {
        eprintln!(
            "fortress: interrupted (Ctrl-C) as the run ended; every fault was reverted and the lab removed"
        );
        mark_interrupted(&folder);
        return Err(ExitCode::Environment);
    }
    match crate::report::render(folder.dir()) {
        Ok(rendered) => println!("report: {}", rendered.html.display()),
        Err(error) => {
            eprint!("the run is saved, but its report failed: ");
            print_error(&error);
        }
    }
    if crate::interrupt::pressed() {
        eprintln!("fortress: interrupted (Ctrl-C) while the report was written");
        mark_interrupted(&folder);
        return Err(ExitCode::Environment);
    }
    Ok((summary, folder))
}

/// Leaves the run folder saying it was interrupted: it has no verdicts, and `fortress report` says so.
pub(super) fn mark_interrupted(folder: &RunFolder) {
    let note = format!(
        "interrupted (Ctrl-C) at {}: every fault was reverted and the lab removed; this run has no verdicts\n",
        chrono::Utc::now().format("%Y-%m-%d %H:%M:%S UTC")
    );
    if let Err(error) = std::fs::write(folder.interrupted(), note) {
        eprintln!(
            "fortress: could not mark {} interrupted: {error}",
            folder.dir().display()
        );
    }
}

/// The verdict table: every prediction, every invariant, the load offered and achieved.
pub fn print_verdicts(summary: &Summary) {
    println!("\nVerdicts:");
    for variant in &summary.variants {
        let v = variant.variant;
        if !variant.without.is_empty() {
            let refuted = (variant.verdicts.iter())
                .filter(|v| v.outcome == Outcome::Refuted)
                .count();
            println!(
                "  {v:<10} WITHOUT {}: {refuted} of its {} predictions refuted (a refuted one is consistent with the defence holding it up; one run is not a series)",
                variant.without.join(", "),
                variant.verdicts.len()
            );
        }
        if let Some(abort) = &variant.aborted {
            println!("  {v:<10} STOPPED EARLY: {abort}");
        }
        if let Some(audit) = variant.audit.as_ref().filter(|_| variant.aborted.is_some()) {
            println!("  {v:<10} after the revert: {audit}");
        }
        for verdict in &variant.verdicts {
            let observed = verdict
                .observed
                .map_or_else(|| "-".to_owned(), |o| format!("{o:.3}"));
            println!(
                "  {v:<10} {}: {}, observed {observed}",
                verdict.claim, verdict.outcome
            );
        }
        for check in &variant.invariants.checks {
            println!("  {v:<10} invariant {}: {check} ({})", check.name, check.detail);
        }
        println!(
            "  {v:<10} load: {:.1} of {:.1} requests/s offered, {} requests",
            variant.achieved_rps, variant.offered_rps, variant.requests
        );
        for class in &variant.forensics.server_errors {
            let answers = &class.answers;
            println!(
                "  {v:<10} {} x {} {} (log lines: {}; the report has them)",
                answers.count,
                answers.status,
                answers.code,
                class.log_lines.len()
            );
        }
    }
}
