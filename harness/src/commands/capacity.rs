//! `fortress capacity`: prints the objective and the predictions, a line per step as the searches go,
//! then each variant's capacities, the verdicts, the invariants and where the run folder is.

use std::path::{Path, PathBuf};

use super::print_error;
use crate::capacity::{self, CapacityContext, CapacityError, CapacityReport, SearchGoal};
use crate::cli::CapacityArgs;
use crate::experiment::catalog;
use crate::experiment::definition::{Plan, VariantPlan};
use crate::experiment::runner::Event;
use crate::run_folder::RunFolder;
use crate::vocabulary::{Condition, ExitCode};

/// Runs the capacity searches and answers the process exit code.
pub async fn run(args: &CapacityArgs, lab_binary: PathBuf) -> ExitCode {
    let mut plan = match catalog::load(&args.experiment, args.profile) {
        Ok(plan) => plan,
        Err(error) => {
            print_error(&error);
            return ExitCode::Usage;
        }
    };
    plan.seed.seed = args.seed;
    if plan.capacity.is_none() {
        print_error(&CapacityError::NoSection(plan.source.clone()));
        return ExitCode::Usage;
    }
    let variants: Vec<&VariantPlan> = (plan.variants.iter())
        .filter(|v| args.variant.includes(v.variant))
        .collect();
    if variants.is_empty() {
        eprintln!("fortress: {} has no {:?} variant", plan.name, args.variant);
        return ExitCode::Usage;
    }
    print_plan(&plan, &variants);
    let (report, folder) = match execute(
        &plan,
        &variants,
        (args.condition.conditions(), SearchGoal::Knee),
        &args.out,
        lab_binary,
    )
    .await
    {
        Ok(done) => done,
        Err(code) => return code,
    };
    let code = print_findings(&report);
    println!(
        "\nrun folder: {} (report.html, capacity.json, knee-<variant>.png)",
        folder.dir().display()
    );
    println!("{code}");
    code
}

/// Runs the searches of `variants` under `conditions`, as far as `goal`, with Ctrl-C reverting everything, and writes
/// the run folder under `out_root`. Answers the findings and the folder, or the exit code of what
/// went wrong (the environment, or Ctrl-C: the folder is marked `INTERRUPTED`).
pub async fn execute(
    plan: &Plan,
    variants: &[&VariantPlan],
    (conditions, goal): (&[Condition], SearchGoal),
    out_root: &Path,
    lab_binary: PathBuf,
) -> Result<(CapacityReport, RunFolder), ExitCode> {
    let name = format!("{}-capacity", plan.name);
    let folder = RunFolder::create(out_root, &name, chrono::Utc::now()).map_err(|error| {
        eprintln!(
            "fortress: cannot create the run folder under {}: {error}",
            out_root.display()
        );
        ExitCode::Environment
    })?;
    let (stop, watcher) = super::stop_on_interrupt();
    let show = |event: Event<'_>| {
        if let Event::Message(text) = event {
            eprintln!("{text}");
        }
    };
    let ctx = CapacityContext {
        lab_binary,
        folder: &folder,
        stop,
        progress: &show,
        goal,
    };
    let result = capacity::run(plan, variants, conditions, &ctx).await;
    watcher.abort();
    let interrupted = crate::interrupt::pressed() || matches!(result, Err(CapacityError::Interrupted));
    match result {
        Ok(report) if !interrupted => Ok((report, folder)),
        Ok(_) => {
            eprintln!(
                "fortress: interrupted (Ctrl-C) as the searches ended; every fault was reverted and the lab removed"
            );
            super::experiment::mark_interrupted(&folder);
            Err(ExitCode::Environment)
        }
        Err(error) => {
            print_error(&error);
            if interrupted {
                super::experiment::mark_interrupted(&folder);
            }
            Err(ExitCode::Environment)
        }
    }
}

fn print_plan(plan: &Plan, variants: &[&VariantPlan]) {
    let Some(capacity) = &plan.capacity else { return };
    println!("{} capacity ({} profile)\n", plan.name, plan.profile);
    println!("objective: {}", capacity.objective);
    println!(
        "fault: phase {:?}: {}",
        capacity.fault_phase,
        (capacity.faults.iter().map(ToString::to_string))
            .collect::<Vec<_>>()
            .join(", ")
    );
    println!("{}\n", capacity.steps_text());
    println!("Predicted:");
    for p in (capacity.predictions.iter()).filter(|p| variants.iter().any(|v| v.variant == p.variant)) {
        println!("  {:<10} {p}: {}", p.variant, p.why);
    }
    println!();
}

/// The capacities, verdicts and invariants; answers the exit code they make.
fn print_findings(report: &CapacityReport) -> ExitCode {
    println!("\nCapacity:");
    for variant in &report.variants {
        let v = variant.variant;
        for search in &variant.searches {
            println!("  {v:<10} {:<7} {}", search.condition.name(), search.found);
            if let Some(untouched) = &search.untouched {
                println!(
                    "  {v:<10} {:<7} INCONCLUSIVE: {untouched}",
                    search.condition.name()
                );
            }
        }
        for (figure, value) in &variant.figures {
            println!("  {v:<10} {figure} = {value:.3}");
        }
        if let Some(anchor) = &variant.anchor {
            println!("  {v:<10} anchor: {}", anchor.text());
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
    }
    report.exit_code()
}
