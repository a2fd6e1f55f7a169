//! Exploration on real labs: the lineage prunes a link nothing uses (its faults are never tried) and
//! grows by a link only a fault reaches, a schedule the lab refuses is classed and passed over, and a
//! breaking schedule with a harmless extra fault shrinks to the fault that matters, written as an
//! experiment file that loads.

use std::path::PathBuf;
use std::time::Duration;

use fortress::experiment::definition::{self, Profile};
use fortress::experiment::runner::Event;
use fortress::explore::{self, ExploreContext, ExploreReport, Settings};
use fortress::faults::Fault;
use fortress::faults::proxy::{NetworkFault, ScopedFault};
use fortress::report::escape;
use fortress::run_folder::RunFolder;
use fortress::vocabulary::{Class, Link, Role};
use tokio_util::sync::CancellationToken;

/// The explorations take turns: each loads the 2-core machine on its own.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// A lab with a mail server and a payment provider; the products, `mix` and `modes` vary.
fn experiment(products: u32, mix: &str, modes: &str) -> String {
    format!(
        r#"
name = "explored"
story = "A lab to explore."

[topology]
mail = true
payments = true

[seed]
products = {products}
users = 100
stock = 1000000
password_cost = "light"

[load]
rate = 40
users = 40
mix = {{ {mix} }}

[[phases]]
name = "steady"
seconds = 6

[variants.defended]
modes = {{ {modes} }}
"#
    )
}

async fn explored(text: &str, settings: impl FnOnce(&mut Settings)) -> (ExploreReport, PathBuf) {
    let plan = definition::parse("explored.toml", text, Profile::Quick).unwrap();
    let mut chosen = Settings::of(&plan, Profile::Quick);
    settings(&mut chosen);
    let out = std::env::temp_dir().join(format!("fortress-explore-{}", std::process::id()));
    let folder = RunFolder::create(&out, "explored", chrono::Utc::now()).unwrap();
    let show = |event: Event<'_>| {
        if let Event::Message(text) = event {
            eprintln!("{text}");
        }
    };
    let ctx = ExploreContext {
        lab_binary: PathBuf::from(env!("CARGO_BIN_EXE_fortress")),
        source: ("explored.toml", text),
        folder: &folder,
        stop: CancellationToken::new(),
        progress: &show,
    };
    let report = explore::run(&plan, &plan.variants[0], &chosen, &ctx)
        .await
        .unwrap();
    (report, folder.dir().to_owned())
}

/// Reads of four products' stock, all from Redis once cached: the trial without faults sends
/// nothing to Postgres, the mail server or the provider. A cache that falls through to Postgres
/// when Redis fails makes Postgres a dependency only a Redis fault reaches: the lineage grows by it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_link_nothing_uses_is_pruned_and_one_only_a_fault_reaches_grows_the_lineage() {
    let _turn = ONE_AT_A_TIME.lock().await;
    let modes = r#"payments = "guarded", cache_failure = "fallthrough""#;
    let (report, folder) = explored(&experiment(4, "availability = 1", modes), |s| {
        s.budget = Duration::from_secs(25);
    })
    .await;
    assert_eq!(report.trials[0].class, Class::Harmless, "{:?}", report.trials[0]);
    for unused in [Link::Mail, Link::Payments, Link::Postgres] {
        assert!(report.lineage.unused.contains(&unused), "{:?}", report.lineage);
    }
    assert!(report.space_pruned < report.space_unpruned);
    let faulted: Vec<&Vec<Fault>> = (report.trials.iter()).map(|t| &t.schedule.faults).collect();
    assert!(faulted.len() > 1, "the budget let some trials run");
    for faults in &faulted {
        let named: Vec<String> = faults.iter().map(ToString::to_string).collect();
        assert!(
            named
                .iter()
                .all(|f| !f.contains("mail") && !f.contains("payments") && !f.contains("provider")),
            "{named:?} was tried on a link the load never used"
        );
        assert!(
            !(faults.len() == 1 && named[0].contains("postgres")),
            "{named:?}: Postgres is only reached through a Redis fault, never faulted alone"
        );
    }
    // The first single is Redis's link down: the reads fall through to Postgres.
    let grown = (report.lineage.grown.iter())
        .find(|g| g.link == Link::Postgres)
        .unwrap_or_else(|| panic!("the lineage did not grow by Postgres: {:?}", report.lineage));
    assert!(grown.by.faults[0].to_string().contains("redis"), "{grown:?}");
    // Postgres's own count names the fallback's query: the stock read ran only under the fault.
    assert!(
        (grown.statements.iter()).any(|s| s.query.contains("inventory") && s.under_fault >= 2 * s.without),
        "no statement of the stock read counted as opened: {grown:?}"
    );
    let page = std::fs::read_to_string(folder.join("report.html")).expect("report.html");
    assert!(page.contains("The lineage grew"), "{page}");
    std::fs::remove_dir_all(folder).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_schedule_is_passed_over_and_a_breaking_one_sheds_its_harmless_fault() {
    let _turn = ONE_AT_A_TIME.lock().await;
    let lost_replies = Fault::Network {
        link: Link::Payments,
        fault: ScopedFault::from(NetworkFault::HttpLostReply { status: 504 }),
    };
    let harmless = Fault::Pause(Role::Mail);
    // A flush cannot reach a stopped Redis: the lab refuses the schedule, and the search goes on.
    let refused = vec![Fault::Stop(Role::Redis), Fault::ExpireCache];
    let candidates = vec![refused.clone(), vec![harmless, lost_replies.clone()]];
    // The naive payment retries an authorisation whose answer was lost: charged twice.
    let modes = r#"payments = "naive""#;
    let (report, folder) = explored(&experiment(50, "browse = 1, checkout = 1", modes), |s| {
        s.candidates = Some(candidates);
    })
    .await;
    let tried = (report.trials.iter())
        .find(|t| t.schedule.faults == refused)
        .expect("the refused schedule was tried");
    assert_eq!(tried.class, Class::NotInjected, "{tried:?}");
    assert!(tried.why.contains("could not inject expire"), "{}", tried.why);
    let finding = report
        .findings
        .first()
        .unwrap_or_else(|| panic!("nothing broke: {report:?}"));
    assert_eq!(finding.found.faults.len(), 2);
    assert_eq!(finding.smallest.faults, [lost_replies], "{finding:?}");
    assert!(
        finding.violated.iter().any(|v| v == "no payment charged twice"),
        "{finding:?}"
    );
    assert_eq!(finding.reproduced, explore::CONFIRMATIONS, "{finding:?}");
    let file = finding.file.as_ref().expect("a replay file");
    let text = std::fs::read_to_string(file).unwrap();
    let replay = definition::parse(&file.display().to_string(), &text, Profile::Quick).unwrap();
    assert_eq!(replay.phases[1].faults, finding.smallest.faults);
    assert!(
        (replay.predictions.iter()).any(|p| p.claim.metric.to_string() == "payments_charged_twice"),
        "{text}"
    );
    // The page: every trial classed, and the smallest schedule with a link to its replay beside it.
    let page = std::fs::read_to_string(folder.join("report.html")).expect("report.html");
    let name = file.file_name().unwrap().to_string_lossy();
    assert!(page.contains(&format!("<a href=\"{name}\">")), "{page}");
    assert!(page.contains(&escape(&finding.smallest.to_string())), "{page}");
    let (_, trials) = page.split_once("<h2>Trials</h2>").expect("the trials' table");
    assert_eq!(
        trials.matches("<td class=\"violated\">broken</td>").count(),
        report.count(Class::Broken),
        "{page}"
    );
    std::fs::remove_dir_all(folder).unwrap();
}
