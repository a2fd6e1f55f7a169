//! `fortress gate`: runs the gate suite's experiments (quick profile, both variants), prints every
//! test case, writes JUnit XML, and fails on a refuted prediction, a broken invariant or a figure that
//! regressed against the committed baseline.

use std::path::PathBuf;

use crate::cli::GateArgs;
use crate::commands::experiment::execute;
use crate::experiment::definition::VariantPlan;
use crate::gate::{self, Case, CaseKind, baseline, suite};

/// Exit codes: 0 every case passed; 1 a case failed; 3 a bad suite or baseline; 4 environment.
pub async fn run(args: &GateArgs, lab_binary: PathBuf) -> u8 {
    let gates = match suite::load(&args.suite) {
        Ok(gates) => gates,
        Err(error) => {
            eprintln!("fortress: {error}");
            return 3;
        }
    };
    // Every baseline is read before anything runs: a bad one should not cost a suite's run time.
    let mut baselines = Vec::new();
    for g in &gates {
        match baseline::read(&args.baseline, &g.plan.name) {
            Ok(b) => baselines.push(b),
            Err(error) => {
                eprintln!("fortress: {error}");
                return 3;
            }
        }
    }

    let mut cases: Vec<Case> = Vec::new();
    for (g, base) in gates.iter().zip(&baselines) {
        println!("\n=== gate: {} (quick profile)", g.plan.name);
        let variants: Vec<&VariantPlan> = g
            .variants
            .iter()
            .filter_map(|name| g.plan.variants.iter().find(|v| v.name == *name))
            .collect();
        let (summary, out_dir) =
            match execute(&g.plan, &variants, args.seed, &args.out, lab_binary.clone()).await {
                Ok(done) => done,
                Err(code) => return code,
            };
        let judged = gate::judge(g, &summary, base.as_ref());
        for case in &judged {
            let word = match case.passed {
                Some(true) => "pass",
                Some(false) => "FAIL",
                None => "skip",
            };
            println!("  {word}  {}  {}", case.name, case.message);
        }
        println!("  run folder: {}", out_dir.display());
        if args.update_baseline {
            update(args, g, &summary, &judged);
        }
        cases.extend(judged);
    }

    if let Some(path) = &args.junit {
        let written = gate::junit(&cases)
            .map_err(|e| e.to_string())
            .and_then(|xml| std::fs::write(path, xml).map_err(|e| e.to_string()));
        match written {
            Ok(()) => println!("\nJUnit: {}", path.display()),
            Err(error) => {
                eprintln!("fortress: cannot write {}: {error}", path.display());
                return 4;
            }
        }
    }
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
    u8::from(!failed.is_empty())
}

fn update(args: &GateArgs, g: &suite::Gate, summary: &crate::experiment::output::Summary, judged: &[Case]) {
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
        profile: summary.profile.clone(),
        revision: summary.git_revision.clone(),
        written_at: chrono::Utc::now(),
        figures: gate::figures_of(g, summary),
    };
    match baseline::write(&args.baseline, &baseline) {
        Ok(path) => println!("  baseline written: {}", path.display()),
        Err(error) => eprintln!("fortress: {error}"),
    }
}
