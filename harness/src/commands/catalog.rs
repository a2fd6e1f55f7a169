//! `fortress list` and `fortress plan`: the experiments, as a reader wants to see them before running one.

use crate::cli::PlanArgs;
use crate::experiment::catalog;
use crate::experiment::definition::Profile;

/// Prints each built-in experiment: name, length, faults, and the first sentence of its story.
pub fn list() -> u8 {
    let plans = match catalog::all(Profile::Standard) {
        Ok(plans) => plans,
        Err(error) => {
            eprintln!("fortress: a built-in experiment does not parse: {error}");
            return 3;
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
    0
}

/// Checks an experiment file (or a built-in) and prints its plan; 3 when the file is wrong.
pub fn plan(args: &PlanArgs) -> u8 {
    let plan = match catalog::load(&args.experiment, args.profile) {
        Ok(plan) => plan,
        Err(error) => {
            eprintln!("fortress: {error}");
            return 3;
        }
    };
    println!(
        "{} ({:?} profile, {:.0} s of load, from {})\n",
        plan.name,
        plan.profile,
        plan.run_seconds(),
        plan.source
    );
    println!("{}\n", plan.story);
    println!(
        "load: {} requests/s from {} users, mix {:?}",
        plan.rate, plan.users, plan.mix
    );
    println!(
        "topology: {} replica(s), pool of {}",
        plan.replicas, plan.pool_size
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
        println!("variant {:<10} modes {}", variant.name, variant.modes);
    }
    for p in &plan.predictions {
        println!("predict {:<10} {}  ({})", p.variant, p.claim(), p.why);
    }
    0
}
