//! `fortress experiment`: the front door. Prints the story and the predictions, runs the variants with
//! a progress bar per phase, then the verdicts, the invariants and where the run folder is.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use tokio_util::sync::CancellationToken;

use crate::cli::{ExperimentArgs, VariantChoice};
use crate::experiment::catalog;
use crate::experiment::definition::{Plan, VariantPlan};
use crate::experiment::output::{self, Summary};
use crate::experiment::runner::{self, Event, RunContext};
use crate::experiment::verdict::Outcome;

/// Runs the experiment and answers the process exit code (see `fortress experiment --help`).
pub async fn run(args: &ExperimentArgs, lab_binary: PathBuf) -> u8 {
    let plan = match catalog::load(&args.experiment, args.profile) {
        Ok(plan) => plan,
        Err(error) => {
            eprintln!("fortress: {error}");
            return 3;
        }
    };
    let wanted = |v: &&VariantPlan| match args.variant {
        VariantChoice::Both => true,
        VariantChoice::Vulnerable => v.name == "vulnerable",
        VariantChoice::Defended => v.name == "defended",
    };
    let mut variants: Vec<&VariantPlan> = plan.variants.iter().filter(wanted).collect();
    variants.sort_by_key(|v| v.name != "vulnerable");
    if variants.is_empty() {
        let known: Vec<&str> = plan.variants.iter().map(|v| v.name.as_str()).collect();
        eprintln!(
            "fortress: {} has no {:?} variant; it has: {}",
            plan.name,
            args.variant,
            known.join(", ")
        );
        return 3;
    }

    println!(
        "{} ({:?} profile, {:.0} s of load per variant)\n",
        plan.name,
        plan.profile,
        plan.run_seconds()
    );
    println!("{}\n", plan.story);
    println!("Predicted:");
    for p in plan
        .predictions
        .iter()
        .filter(|p| variants.iter().any(|v| v.name == p.variant))
    {
        println!("  {:<10} {}: {}", p.variant, p.claim(), p.why);
    }
    println!();

    let (summary, out_dir) = match execute(&plan, &variants, args.seed, &args.out, lab_binary).await {
        Ok(done) => done,
        Err(code) => return code,
    };
    print_verdicts(&summary);
    println!(
        "\nrun folder: {} (summary.json, report.html, time series, goose reports)",
        out_dir.display()
    );
    let meaning = match summary.exit_code {
        0 => "every prediction confirmed, every invariant held",
        1 => "a prediction was refuted or an invariant violated",
        _ => "some predictions could not be judged",
    };
    println!("exit {}: {meaning}", summary.exit_code);
    summary.exit_code
}

/// Runs `variants` of `plan` with a progress bar per phase, Ctrl-C reverting everything, and writes
/// the run folder under `out_root` with its report. Answers the summary and the folder, or the exit
/// code of what went wrong (4: environment, interrupted).
pub async fn execute(
    plan: &Plan,
    variants: &[&VariantPlan],
    seed: u64,
    out_root: &Path,
    lab_binary: PathBuf,
) -> Result<(Summary, PathBuf), u8> {
    let started = chrono::Utc::now();
    let out_dir = match output::run_dir(out_root, plan, started) {
        Ok(dir) => dir,
        Err(error) => {
            eprintln!(
                "fortress: cannot create the run folder under {}: {error}",
                out_root.display()
            );
            return Err(4);
        }
    };
    let stop = CancellationToken::new();
    let watcher = {
        let stop = stop.clone();
        tokio::spawn(async move {
            crate::load::interrupted().await;
            eprintln!("\ninterrupted: reverting faults and removing the lab...");
            stop.cancel();
        })
    };
    let bars = MultiProgress::new();
    let current: Mutex<HashMap<String, ProgressBar>> = Mutex::new(HashMap::new());
    let style = ProgressStyle::with_template("{prefix:>22} [{bar:30}] {pos:>3}/{len}s {msg}")
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ");
    let total = plan.run_seconds().ceil() as u64;
    let progress = |event: Event<'_>| {
        let mut current = current.lock().unwrap_or_else(|p| p.into_inner());
        match event {
            // Without a terminal the bars are hidden, and so would be their messages.
            Event::Message(text) if bars.is_hidden() => eprintln!("{text}"),
            Event::Message(text) => bars.println(text).unwrap_or(()),
            Event::Phase { variant, phase } => {
                if bars.is_hidden() {
                    let faults = phase.faults_text();
                    let faults = if faults.is_empty() {
                        faults
                    } else {
                        format!(": {faults}")
                    };
                    eprintln!("{variant}: phase {} ({} s){faults}", phase.name, phase.seconds);
                }
                let bar = current
                    .entry(variant.to_owned())
                    .or_insert_with(|| bars.add(ProgressBar::new(total).with_style(style.clone())));
                bar.set_prefix(format!("{variant}/{}", phase.name));
            }
            Event::Second {
                variant,
                at_s,
                figures,
                ..
            } => {
                if let Some(bar) = current.get(variant) {
                    bar.set_position(at_s as u64);
                    bar.set_message(figures);
                }
            }
        }
    };
    let ctx = RunContext {
        lab_binary,
        out_dir: &out_dir,
        stop: stop.clone(),
        progress: &progress,
    };
    let result = runner::run(plan, variants, seed, &ctx).await;
    watcher.abort();
    for bar in current.lock().unwrap_or_else(|p| p.into_inner()).values() {
        bar.finish();
    }
    let summary = match result {
        Ok(summary) => summary,
        Err(error) => {
            eprintln!("fortress: {error}");
            return Err(4);
        }
    };
    match crate::report::render(&out_dir) {
        Ok(rendered) => println!("report: {}", rendered.html.display()),
        Err(error) => eprintln!("fortress: the run is saved, but its report failed: {error}"),
    }
    Ok((summary, out_dir))
}

/// The verdict table: every prediction, every invariant, the load offered and achieved.
pub fn print_verdicts(summary: &Summary) {
    println!("\nVerdicts:");
    for variant in &summary.variants {
        for v in &variant.verdicts {
            let observed = v.observed.map_or_else(|| "-".to_owned(), |o| format!("{o:.3}"));
            let (word, reason) = match &v.outcome {
                Outcome::Confirmed => ("CONFIRMED", String::new()),
                Outcome::Refuted => ("REFUTED", String::new()),
                Outcome::Inconclusive { reason } => ("INCONCLUSIVE", format!(" ({reason})")),
            };
            println!(
                "  {:<10} {word:<12} {}  observed {observed}{reason}",
                variant.variant,
                v.claim()
            );
        }
        for check in &variant.invariants.checks {
            let (word, note) = match (&check.held, &check.predicted_by) {
                (true, _) => ("held", String::new()),
                (false, Some(claim)) => ("VIOLATED", format!(" (the failure predicted: {claim})")),
                (false, None) => ("VIOLATED", String::new()),
            };
            println!(
                "  {:<10} {word:<12} {}: {}{note}",
                variant.variant, check.name, check.detail
            );
        }
        println!(
            "  {:<10} load: {:.1} of {:.1} requests/s offered, {} requests",
            variant.variant, variant.achieved_rps, variant.offered_rps, variant.requests
        );
    }
}
