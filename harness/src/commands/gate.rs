//! `fortress gate`: runs the gate suite's experiments (quick profile, both variants), prints every
//! test case, writes JUnit XML, and fails on a refuted prediction, a broken invariant or a figure that
//! regressed against the committed baseline.

use std::path::PathBuf;

use super::print_error;
use crate::cli::GateArgs;
use crate::commands::experiment::execute;
use crate::experiment::definition::VariantPlan;
use crate::experiment::output::Summary;
use crate::gate::{self, Case, CaseKind, baseline, suite};
use crate::vocabulary::ExitCode;

/// Every case passed: confirmed; a case failed: refuted; a bad suite or baseline: usage.
pub async fn run(args: &GateArgs, lab_binary: PathBuf) -> ExitCode {
    let gates = match suite::load(&args.suite) {
        Ok(gates) => gates,
        Err(error) => {
            print_error(&error);
            return ExitCode::Usage;
        }
    };
    // Every baseline is read before anything runs: a bad one should not cost a suite's run time.
    let baselines = match gates
        .iter()
        .map(|g| baseline::read(&args.baseline, &g.plan.name))
        .collect::<Result<Vec<_>, _>>()
    {
        Ok(baselines) => baselines,
        Err(error) => {
            print_error(&error);
            return ExitCode::Usage;
        }
    };
    let mut cases: Vec<Case> = Vec::new();
    let mut took = Vec::new();
    for (g, base) in gates.iter().zip(&baselines) {
        let started = std::time::Instant::now();
        match run_one(args, g, base.as_ref(), lab_binary.clone()).await {
            Ok(judged) => cases.extend(judged),
            Err(code) => return code,
        }
        took.push((g, started.elapsed()));
    }
    print_times(&took);
    if let Some(path) = &args.junit {
        let written = gate::junit(&cases)
            .map_err(|e| e.to_string())
            .and_then(|xml| std::fs::write(path, xml).map_err(|e| e.to_string()));
        match written {
            Ok(()) => println!("\nJUnit: {}", path.display()),
            Err(error) => {
                eprintln!("fortress: cannot write {}: {error}", path.display());
                return ExitCode::Environment;
            }
        }
    }
    print_totals(&cases)
}

/// One experiment of the suite: run, judged, printed, and its baseline rewritten if asked.
async fn run_one(
    args: &GateArgs,
    g: &suite::Gate,
    base: Option<&baseline::Baseline>,
    lab_binary: PathBuf,
) -> Result<Vec<Case>, ExitCode> {
    println!("\n=== gate: {} (quick profile)", g.plan.name);
    let variants: Vec<&VariantPlan> = g
        .plan
        .variants
        .iter()
        .filter(|v| g.variants.contains(&v.variant))
        .collect();
    let (summary, folder) = execute(&g.plan, &variants, args.seed, &args.out, lab_binary).await?;
    let judged = gate::judge(g, &summary, base);
    for case in &judged {
        let word = match case.passed {
            Some(true) => "pass",
            Some(false) => "FAIL",
            None => "skip",
        };
        println!("  {word}  {}  {}", case.name, case.message);
    }
    println!("  run folder: {}", folder.dir().display());
    if args.update_baseline {
        update(args, g, &summary, &judged);
    }
    Ok(judged)
}

/// Each experiment's wall time, slowest first, so a new one can be held to a budget.
fn print_times(took: &[(&suite::Gate, std::time::Duration)]) {
    let mut took = took.to_vec();
    took.sort_by_key(|(_, t)| std::cmp::Reverse(*t));
    let total: std::time::Duration = took.iter().map(|(_, t)| *t).sum();
    println!(
        "\ngate: time per experiment ({:.0} s in all)",
        total.as_secs_f64()
    );
    for (g, t) in took {
        println!(
            "  {:>5.1} s  {:<22} variants {}",
            t.as_secs_f64(),
            g.plan.name,
            g.plan.arrangement
        );
    }
}

fn print_totals(cases: &[Case]) -> ExitCode {
    let failed: Vec<&Case> = cases.iter().filter(|c| c.passed == Some(false)).collect();
    let skipped = cases.iter().filter(|c| c.passed.is_none()).count();
    println!(
        "\ngate: {} cases, {} failed, {skipped} skipped",
        cases.len(),
        failed.len()
    );
    for case in &failed {
        println!("  FAILED {} / {}: {}", case.experiment, case.name, case.message);
    }
    if failed.is_empty() {
        ExitCode::Confirmed
    } else {
        ExitCode::Refuted
    }
}

fn update(args: &GateArgs, g: &suite::Gate, summary: &Summary, judged: &[Case]) {
    if judged
        .iter()
        .any(|c| c.passed == Some(false) && c.kind != CaseKind::Figure)
    {
        println!(
            "  baseline not updated: a prediction or invariant failed, and a baseline must be a good run"
        );
        return;
    }
    let baseline = baseline::Baseline {
        schema: baseline::BASELINE_SCHEMA,
        experiment: g.plan.name.clone(),
        profile: summary.profile.to_string(),
        revision: summary.git_revision.clone(),
        written_at: chrono::Utc::now(),
        figures: gate::figures_of(g, summary),
    };
    match baseline::write(&args.baseline, &baseline) {
        Ok(path) => println!("  baseline written: {}", path.display()),
        Err(error) => print_error(&error),
    }
}
