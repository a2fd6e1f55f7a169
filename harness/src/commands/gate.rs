//! `fortress gate`: runs the gate suite's experiments (quick profile, both variants), prints every
//! test case, writes JUnit XML, and fails on a refuted prediction, a broken invariant or a figure that
//! regressed against the committed baseline.

use std::path::{Path, PathBuf};

use tokio_util::sync::CancellationToken;

use super::print_error;
use crate::capacity::SearchGoal;
use crate::cli::GateArgs;
use crate::commands::experiment::execute;
use crate::experiment::definition::VariantPlan;
use crate::experiment::output::Summary;
use crate::experiment::runner::{Handover, Labs, Removals};
use crate::gate::{self, Case, CaseKind, baseline, suite};
use crate::vocabulary::ExitCode;

/// Every case passed: confirmed; a case failed: refuted; a bad suite or baseline: usage.
pub async fn run(args: &GateArgs, lab_binary: PathBuf) -> ExitCode {
    let suite = match suite::load(&args.suite) {
        Ok(suite) => suite,
        Err(error) => {
            print_error(&error);
            return ExitCode::Usage;
        }
    };
    // Every baseline is read before anything runs: a bad one should not cost a suite's run time.
    let baselines = match (suite.gates.iter())
        .map(|g| baseline::read(&args.baseline, &g.plan.name))
        .collect::<Result<Vec<_>, _>>()
    {
        Ok(baselines) => baselines,
        Err(error) => {
            print_error(&error);
            return ExitCode::Usage;
        }
    };
    let mut took = Vec::new();
    let mut cases = match experiments(args, &suite.gates, &baselines, &lab_binary, &mut took).await {
        Ok(cases) => cases,
        Err(code) => return code,
    };
    for c in &suite.capacity {
        let started = std::time::Instant::now();
        match capacity_one(args, c, lab_binary.clone()).await {
            Ok(judged) => cases.extend(judged),
            Err(code) => return code,
        }
        took.push((format!("{} capacity", c.plan.name), started.elapsed()));
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

/// Each experiment of the suite in turn, each one's labs started while the one before is judged;
/// answers their cases, and adds each one's wall time to `took`.
async fn experiments(
    args: &GateArgs,
    gates: &[suite::Gate],
    baselines: &[Option<baseline::Baseline>],
    lab_binary: &Path,
    took: &mut Vec<(String, std::time::Duration)>,
) -> Result<Vec<Case>, ExitCode> {
    let mut cases: Vec<Case> = Vec::new();
    let mut ahead: Option<Ahead> = None;
    let removals = Removals::default();
    for (i, (g, base)) in gates.iter().zip(baselines).enumerate() {
        let started = std::time::Instant::now();
        let labs = match ahead.take() {
            Some(next) => next.await.ok().flatten(),
            None => None,
        };
        let loads_over = CancellationToken::new();
        ahead = gates
            .get(i + 1)
            .map(|next| start_ahead(args, next, lab_binary, loads_over.clone()));
        let handover = Handover {
            labs,
            loads_over,
            removals: Some(removals.clone()),
        };
        let judged = run_one(args, g, base.as_ref(), lab_binary.to_owned(), handover).await;
        // The run's labs went while its report was written; they are gone before the next run.
        removals.finish().await;
        match judged {
            Ok(judged) => cases.extend(judged),
            Err(code) => {
                // The run cancelled `loads_over` as it ended: the next labs start (or not) now.
                if let Some(next) = ahead
                    && let Ok(Some(labs)) = next.await
                {
                    labs.remove().await;
                }
                return Err(code);
            }
        }
        let name = format!("{} (variants {})", g.plan.name, g.plan.arrangement);
        took.push((name, started.elapsed()));
    }
    Ok(cases)
}

/// The next experiment's labs, started in the background once the current run's load is over
/// (none if Ctrl-C came first).
type Ahead = tokio::task::JoinHandle<Option<Labs>>;

/// Starts `next`'s labs as soon as `loads_over` is cancelled: while the current experiment is
/// judged, reported and its labs removed (~2.5 s of each), which uses Docker and a little CPU but
/// no longer shares the cores with a load being measured.
fn start_ahead(
    args: &GateArgs,
    next: &suite::Gate,
    lab_binary: &Path,
    loads_over: CancellationToken,
) -> Ahead {
    let plan = next.plan.clone();
    let variants: Vec<VariantPlan> = chosen(next).into_iter().cloned().collect();
    let (seed, out, binary) = (args.seed, args.out.clone(), lab_binary.to_owned());
    tokio::spawn(async move {
        loads_over.cancelled().await;
        if crate::interrupt::pressed() {
            return None;
        }
        let variants: Vec<&VariantPlan> = variants.iter().collect();
        Some(Labs::start(&plan, &variants, seed, &binary, &out, &|_| {}).await)
    })
}

/// The variants of `g`'s experiment the suite gates.
fn chosen(g: &suite::Gate) -> Vec<&VariantPlan> {
    g.plan
        .variants
        .iter()
        .filter(|v| g.variants.contains(&v.variant))
        .collect()
}

/// One experiment of the suite: run, judged, printed, and its baseline rewritten if asked.
async fn run_one(
    args: &GateArgs,
    g: &suite::Gate,
    base: Option<&baseline::Baseline>,
    lab_binary: PathBuf,
    handover: Handover,
) -> Result<Vec<Case>, ExitCode> {
    println!("\n=== gate: {} (quick profile)", g.plan.name);
    let variants = chosen(g);
    let (summary, folder) = execute(
        &g.plan, &variants, args.seed, &args.out, lab_binary, handover, None,
    )
    .await?;
    let judged = gate::judge(g, &summary, base);
    print_cases(&judged);
    println!("  run folder: {}", folder.dir().display());
    if args.update_baseline {
        update(args, g, &summary, &judged);
    }
    Ok(judged)
}

/// One capacity search of the suite, its cases printed.
async fn capacity_one(
    args: &GateArgs,
    c: &suite::CapacityGate,
    lab_binary: PathBuf,
) -> Result<Vec<Case>, ExitCode> {
    println!("\n=== gate: {} capacity (quick profile)", c.plan.name);
    let variants: Vec<&VariantPlan> = (c.plan.variants.iter())
        .filter(|v| c.variants.contains(&v.variant))
        .collect();
    // The gate judges the claims, not the knee: the search under fault stops once they are decided.
    let search = (c.conditions.as_slice(), SearchGoal::Verdicts);
    let (report, folder) =
        super::capacity::execute(&c.plan, &variants, search, &args.out, lab_binary).await?;
    let judged = crate::capacity::gate_cases(&report);
    print_cases(&judged);
    println!("  run folder: {}", folder.dir().display());
    Ok(judged)
}

fn print_cases(cases: &[Case]) {
    for case in cases {
        let word = match case.passed {
            Some(true) => "pass",
            Some(false) => "FAIL",
            None => "skip",
        };
        println!("  {word}  {}  {}", case.name, case.message);
    }
}

/// Each run's wall time, slowest first, so a new one can be held to a budget.
fn print_times(took: &[(String, std::time::Duration)]) {
    let mut took = took.to_vec();
    took.sort_by_key(|(_, t)| std::cmp::Reverse(*t));
    let total: std::time::Duration = took.iter().map(|(_, t)| *t).sum();
    println!(
        "\ngate: time per experiment ({:.0} s in all)",
        total.as_secs_f64()
    );
    for (name, t) in took {
        println!("  {:>5.1} s  {name}", t.as_secs_f64());
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
