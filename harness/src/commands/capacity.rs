//! `fortress capacity`: prints the objective and the predictions, a line per step as the searches go,
//! then each variant's capacities, the verdicts, the invariants and where the run folder is.

use std::path::PathBuf;

use tokio_util::sync::CancellationToken;

use super::print_error;
use crate::capacity::{self, CapacityContext, CapacityError, CapacityReport};
use crate::cli::CapacityArgs;
use crate::experiment::catalog;
use crate::experiment::definition::{Plan, VariantPlan};
use crate::experiment::runner::Event;
use crate::run_folder::RunFolder;
use crate::vocabulary::{ExitCode, Outcome};

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
    let folder = match RunFolder::create(&args.out, &format!("{}-capacity", plan.name), chrono::Utc::now()) {
        Ok(folder) => folder,
        Err(error) => {
            eprintln!(
                "fortress: cannot create the run folder under {}: {error}",
                args.out.display()
            );
            return ExitCode::Environment;
        }
    };
    let stop = CancellationToken::new();
    let watcher = {
        let stop = stop.clone();
        tokio::spawn(async move {
            crate::interrupt::wait().await;
            stop.cancel();
        })
    };
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
    };
    let result = capacity::run(&plan, &variants, args.condition.conditions(), &ctx).await;
    watcher.abort();
    match result {
        Ok(report) => {
            let code = print_findings(&report);
            println!(
                "\nrun folder: {} (capacity.json, knee-<variant>.png)",
                folder.dir().display()
            );
            println!("{code}");
            code
        }
        Err(error) => {
            print_error(&error);
            ExitCode::Environment
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
    println!(
        "steps: {} s each ({} s warm-up not judged), from {}/s up to {}/s, bracket within {:.0}%, {} tries near the knee\n",
        capacity.step_seconds,
        capacity.warmup_seconds,
        capacity.from,
        capacity.max_rate,
        capacity.resolution * 100.0,
        capacity.repeats
    );
    println!("Predicted:");
    for p in (capacity.predictions.iter()).filter(|p| variants.iter().any(|v| v.variant == p.variant)) {
        println!("  {:<10} {p}: {}", p.variant, p.why);
    }
    println!();
}

/// The capacities, verdicts and invariants; answers the exit code they make.
fn print_findings(report: &CapacityReport) -> ExitCode {
    let mut code = ExitCode::Confirmed;
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
        for verdict in &variant.verdicts {
            let observed = verdict
                .observed
                .map_or_else(|| "-".to_owned(), |o| format!("{o:.3}"));
            println!(
                "  {v:<10} {}: {}, observed {observed}",
                verdict.claim, verdict.outcome
            );
            code = worse(code, &verdict.outcome);
        }
        for check in &variant.invariants.checks {
            println!("  {v:<10} invariant {}: {check} ({})", check.name, check.detail);
            if !check.held {
                code = ExitCode::Refuted;
            }
        }
    }
    code
}

fn worse(code: ExitCode, outcome: &Outcome) -> ExitCode {
    match (code, outcome) {
        (ExitCode::Refuted, _) | (_, Outcome::Refuted) => ExitCode::Refuted,
        (_, Outcome::Inconclusive { .. } | Outcome::Aborted { .. }) => ExitCode::Inconclusive,
        (code, Outcome::Confirmed) => code,
    }
}
