//! `fortress list` and `fortress plan`: the experiments, as a reader wants to see them before running one.

use super::print_error;
use crate::cli::PlanArgs;
use crate::experiment::catalog;
use crate::experiment::definition::Profile;
use crate::vocabulary::ExitCode;

/// Prints each built-in experiment: name, length, faults, and the first sentence of its story.
pub fn list() -> ExitCode {
    let plans = match catalog::all(Profile::Standard) {
        Ok(plans) => plans,
        Err(error) => {
            eprint!("a built-in experiment does not parse: ");
            print_error(&error);
            return ExitCode::Usage;
        }
    };
    for plan in plans {
        let faults: Vec<String> = plan
            .phases
            .iter()
            .flat_map(|p| p.faults.iter().map(ToString::to_string))
            .collect();
        let faults = if faults.is_empty() {
            "none (the load is the fault)".to_owned()
        } else {
            faults.join(", ")
        };
        println!("{}  ({:.0} s standard)", plan.name, plan.run_seconds());
        println!("  faults: {faults}");
        let story = plan.story.split_whitespace().collect::<Vec<_>>().join(" ");
        let first = story.split_inclusive(". ").next().unwrap_or(&story);
        println!("  {}\n", first.trim());
    }
    ExitCode::Confirmed
}

/// Checks an experiment file (or a built-in) and prints its plan; a usage error when the file is wrong.
pub fn plan(args: &PlanArgs) -> ExitCode {
    let plan = match catalog::load(&args.experiment, args.profile) {
        Ok(plan) => plan,
        Err(error) => {
            print_error(&error);
            return ExitCode::Usage;
        }
    };
    println!(
        "{} ({} profile, {:.0} s of load, variants {}, from {})\n",
        plan.name,
        plan.profile,
        plan.run_seconds(),
        plan.arrangement,
        plan.source
    );
    println!("{}\n", plan.story);
    let mix: Vec<String> = plan.mix.iter().map(|(s, w)| format!("{s} {w}")).collect();
    println!(
        "load: {} requests/s from {} users, mix {}, start {}",
        plan.rate,
        plan.users,
        mix.join(", "),
        plan.start
    );
    println!(
        "topology: {} replica(s), pool of {}{}",
        plan.replicas,
        plan.pool_size,
        if plan.mail { ", a mail server" } else { "" }
    );
    for phase in &plan.phases {
        println!(
            "phase {:<10} {:>5.1} s  {}",
            phase.name,
            phase.seconds,
            phase.faults_text()
        );
    }
    for variant in &plan.variants {
        let balancer = match variant.balancer {
            Some(b) if b.sticky => ", behind the balancer, sticky",
            Some(_) => ", behind the balancer, round robin",
            None => "",
        };
        println!(
            "variant {:<10} modes {}{balancer}",
            variant.variant, variant.modes
        );
    }
    print_predictions(&plan);
    print_capacity(&plan);
    ExitCode::Confirmed
}

/// The models a prediction replaced, oldest first.
fn print_revisions(revisions: &[crate::experiment::definition::Revision]) {
    for (n, revision) in (1..).zip(revisions) {
        println!(
            "  REVISED ({n} of {}): was {}; refuted by {}; now because {}",
            revisions.len(),
            revision.was,
            revision.refuted_by,
            revision.because
        );
    }
}

/// The `[capacity]` search, if the file has one (`fortress capacity`).
fn print_capacity(plan: &crate::experiment::definition::Plan) {
    let Some(capacity) = &plan.capacity else { return };
    println!(
        "
capacity: objective {}; the fault: phase {:?}; {}",
        capacity.objective,
        capacity.fault_phase,
        capacity.steps_text()
    );
    for p in &capacity.predictions {
        println!("predict {:<10} {p}  ({})", p.variant, p.why);
        print_revisions(&p.revisions);
    }
}

/// Each prediction with what it needs to be judged and the models it replaced.
fn print_predictions(plan: &crate::experiment::definition::Plan) {
    for p in &plan.predictions {
        println!("predict {:<10} {}  ({})", p.variant, p.claim, p.why);
        for requirement in &p.requires {
            println!("  judged only if {}  ({})", requirement.claim, requirement.why);
        }
        print_revisions(&p.revisions);
    }
    let revised = plan
        .predictions
        .iter()
        .filter(|p| !p.revisions.is_empty())
        .count();
    if revised > 0 {
        println!("\n{revised} prediction(s) revised after a run; each keeps its first model above");
    }
}
