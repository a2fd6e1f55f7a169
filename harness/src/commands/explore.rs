//! `fortress explore`: prints what is explored and how, a line per trial as the search goes, then
//! the classes counted, each finding with its replay file, and where the run folder is.

use std::path::PathBuf;

use super::print_error;
use crate::cli::ExploreArgs;
use crate::experiment::definition::Plan;
use crate::experiment::runner::Event;
use crate::experiment::{catalog, without};
use crate::explore::{self, ExploreContext, ExploreError, ExploreReport, Settings};
use crate::run_folder::RunFolder;
use crate::vocabulary::{Class, ExitCode, Variant};

/// Runs the exploration and answers the exit code: refuted when an invariant broke (something was
/// found), inconclusive when the lab was not harmless without a fault, confirmed when nothing broke.
pub async fn run(args: &ExploreArgs, lab_binary: PathBuf) -> ExitCode {
    let (plan, source) = match plan_of(args) {
        Ok(loaded) => loaded,
        Err(message) => {
            eprintln!("fortress: {message}");
            return ExitCode::Usage;
        }
    };
    let Some(variant) = plan.variants.iter().find(|v| v.variant == args.variant) else {
        eprintln!("fortress: {} has no {} variant", plan.name, args.variant);
        return ExitCode::Usage;
    };
    let mut settings = Settings::of(&plan, args.profile);
    settings.pairs = args.pairs;
    settings.shrink = !args.no_shrink;
    if let Some(budget) = args.budget {
        settings.budget = std::time::Duration::from_secs(budget);
    }
    if let Err(refused) = settings.set_instants(&args.instants) {
        eprintln!("fortress: --at: {refused}");
        return ExitCode::Usage;
    }
    print_plan(&plan, args, &settings);
    let folder = match RunFolder::create(&args.out, &format!("{}-explore", plan.name), chrono::Utc::now()) {
        Ok(folder) => folder,
        Err(error) => {
            eprintln!(
                "fortress: cannot create the run folder under {}: {error}",
                args.out.display()
            );
            return ExitCode::Environment;
        }
    };
    let (stop, watcher) = super::stop_on_interrupt();
    let show = |event: Event<'_>| {
        if let Event::Message(text) = event {
            eprintln!("{text}");
        }
    };
    let ctx = ExploreContext {
        lab_binary,
        source: (&source.0, &source.1),
        folder: &folder,
        stop,
        progress: &show,
    };
    let result = explore::run(&plan, variant, &settings, &ctx).await;
    watcher.abort();
    match result {
        Ok(report) if !crate::interrupt::pressed() => {
            let code = print_findings(&report);
            println!(
                "\nrun folder: {} (report.html, explore.json, found-<n>.toml)",
                folder.dir().display()
            );
            println!("{code}");
            code
        }
        Ok(_) | Err(ExploreError::Interrupted) => {
            eprintln!(
                "fortress: interrupted (Ctrl-C); every fault was reverted and the lab removed; \
                 explore.json holds the trials done, if the one without faults was"
            );
            super::experiment::mark_interrupted(&folder);
            ExitCode::Environment
        }
        Err(error) => {
            print_error(&error);
            ExitCode::Environment
        }
    }
}

/// The plan, its `--without` defences switched off, with the seed asked for; and its source file's
/// name and text (the replay files start from it).
fn plan_of(args: &ExploreArgs) -> Result<(Plan, (String, String)), String> {
    let source = catalog::text(&args.experiment).map_err(|e| e.to_string())?;
    let mut plan = catalog::load(&args.experiment, args.profile).map_err(|e| e.to_string())?;
    if plan.target.is_some() {
        return Err(format!(
            "{} runs against a user's target; explore searches the reference lab's fault space only, so far",
            plan.source
        ));
    }
    if !args.without.is_empty() {
        if args.variant != Variant::Defended {
            return Err(
                "--without switches a defence off in the defended variant: add --variant defended".into(),
            );
        }
        plan = without::switch_off(&plan, &args.without).map_err(|e| e.to_string())?;
    }
    plan.seed.seed = args.seed;
    Ok((plan, source))
}

fn print_plan(plan: &Plan, args: &ExploreArgs, settings: &Settings) {
    println!(
        "{} explore ({} variant, {} profile)\n",
        plan.name, args.variant, args.profile
    );
    let switched_off = (plan.variants.iter())
        .filter(|v| v.variant == args.variant)
        .flat_map(|v| &v.without);
    for off in switched_off {
        println!("defence switched off: {off}");
    }
    println!(
        "trials: {} s of load at {} requests/s, faults at {} s for {} s; budget {} s{}",
        settings.trial_seconds,
        plan.rate,
        (settings.instants().iter())
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(" s, then at "),
        settings.fault_seconds,
        settings.budget.as_secs(),
        if settings.pairs {
            "; singles, then pairs"
        } else {
            "; single faults"
        }
    );
    println!("objective: {}\n", settings.objective);
}

/// The classes counted and each finding; answers the exit code.
fn print_findings(report: &ExploreReport) -> ExitCode {
    let baseline = &report.trials[0];
    println!(
        "\nspace: {} single faults, {} after pruning by lineage ({} link(s) unused)",
        report.space_unpruned,
        report.space_pruned,
        report.lineage.unused.len()
    );
    let counts: Vec<String> = (Class::ALL.iter())
        .map(|class| format!("{} {class}", report.count(*class)))
        .collect();
    println!(
        "trials: {} in {:.0} s: {}; {} not tried (budget)",
        report.trials.len(),
        report.took_s,
        counts.join(", "),
        report.not_tried
    );
    if baseline.class != Class::Harmless {
        println!("without a fault the lab was {}: {}", baseline.class, baseline.why);
        return ExitCode::Inconclusive;
    }
    for (n, finding) in report.findings.iter().enumerate() {
        println!("\nfinding {}: {}", n + 1, finding.smallest);
        println!(
            "  found as {}; shrunk in {} trial(s)",
            finding.found, finding.shrink_trials
        );
        println!("  broke: {}", finding.violated.join(", "));
        println!("  {}", confirmation(finding));
        match &finding.file {
            Some(file) => println!("  replay: fortress experiment {}", file.display()),
            None if finding.reproduced == explore::CONFIRMATIONS => {
                println!("  (no metric counts these violations: not written as an experiment)")
            }
            None => {}
        }
    }
    let unconfirmed = report.unconfirmed().count();
    if report.reproduced().next().is_some() {
        ExitCode::Refuted
    } else if unconfirmed > 0 {
        println!(
            "\n{unconfirmed} schedule(s) broke an invariant, but the budget ran out before they were tried again: \
             run with a larger --budget to confirm or refute them"
        );
        ExitCode::Inconclusive
    } else {
        println!("\nno schedule tried broke an invariant reproducibly");
        ExitCode::Confirmed
    }
}

/// What the trials after the shrinking said of a finding.
fn confirmation(finding: &explore::Finding) -> String {
    let (again, ran, needed) = (finding.reproduced, finding.confirmations, explore::CONFIRMATIONS);
    if ran < needed {
        format!(
            "tried again {ran} of {needed} times before the budget ran out (broke it {again} time(s)): \
             not confirmed, not refuted (not written out; a larger --budget decides it)"
        )
    } else if again < needed {
        format!(
            "broke it again in {again} of {needed} more trials: not reproducible, so not the fault's doing for \
             certain (not written out)"
        )
    } else {
        format!("broke it again in {again} of {needed} more trials")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::explore::{Finding, Schedule};

    fn finding(reproduced: usize, confirmations: usize) -> Finding {
        let schedule = Schedule::new(Vec::new(), 2.0, 2.0);
        Finding {
            found: schedule.clone(),
            smallest: schedule,
            violated: vec!["stock matches orders".into()],
            shrink_trials: 0,
            reproduced,
            confirmations,
            file: None,
        }
    }

    /// A finding whose confirmations the budget cut short was tried too few times to be called
    /// not reproducible: it says so, and what decides it.
    #[test]
    fn a_finding_the_budget_left_untried_is_not_called_unreproducible() {
        let untried = confirmation(&finding(0, 0));
        assert!(untried.contains("not confirmed, not refuted"), "{untried}");
        assert!(!untried.contains("not reproducible"), "{untried}");
        let refuted = confirmation(&finding(1, explore::CONFIRMATIONS));
        assert!(refuted.contains("not reproducible"), "{refuted}");
        let confirmed = confirmation(&finding(explore::CONFIRMATIONS, explore::CONFIRMATIONS));
        assert_eq!(confirmed, "broke it again in 2 of 2 more trials");
    }
}
