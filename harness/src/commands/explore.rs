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
        println!(
            "  broke it again in {} of {} more trials{}",
            finding.reproduced,
            explore::CONFIRMATIONS,
            if finding.reproduced < explore::CONFIRMATIONS {
                ": not reproducible, so not the fault's doing for certain (not written out)"
            } else {
                ""
            }
        );
        match &finding.file {
            Some(file) => println!("  replay: fortress experiment {}", file.display()),
            None if finding.reproduced == explore::CONFIRMATIONS => {
                println!("  (no metric counts these violations: not written as an experiment)")
            }
            None => {}
        }
    }
    if report.reproduced().next().is_none() {
        println!("\nno schedule tried broke an invariant reproducibly");
        ExitCode::Confirmed
    } else {
        ExitCode::Refuted
    }
}
