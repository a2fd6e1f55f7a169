//! Experiment files: the built-ins parse, and every mistake is reported with its file, line and field.

use fortress::experiment::catalog::{self, CatalogError};
use fortress::experiment::definition::{Arrangement, DefinitionError, Profile, parse};
use fortress::vocabulary::{Metric, Start, Variant};
use reference_service::modes::CacheFailure;

const GOOD: &str = r#"
name = "tiny"
story = "A small experiment."

[load]
rate = 10
users = 4
mix = { browse = 1 }

[[phases]]
name = "baseline"
seconds = 4

[[phases]]
name = "fault"
seconds = 6
faults = [{ kind = "latency", link = "postgres", ms = 20.0 }]

[variants.defended]
modes = { cache_failure = "breaker" }

[[predictions]]
variant = "defended"
metric = "p95_ms"
phase = "fault"
over = "baseline"
compare = ">="
threshold = 2.0
"#;

fn error_of(text: &str) -> DefinitionError {
    parse("bad.toml", text, Profile::Standard).expect_err("the file should be refused")
}

/// GOOD with one line replaced (the first line containing `from`).
fn with(from: &str, to: &str) -> String {
    assert!(GOOD.contains(from), "{from}");
    GOOD.replacen(from, to, 1)
}

fn line_of(text: &str, needle: &str) -> usize {
    text.lines().position(|l| l.contains(needle)).expect("needle") + 1
}

#[test]
fn the_built_in_experiments_parse_in_both_profiles() {
    let standard = catalog::all(Profile::Standard).unwrap();
    let quick = catalog::all(Profile::Quick).unwrap();
    let names: Vec<&str> = standard.iter().map(|p| p.name.as_str()).collect();
    for name in [
        "cache-outage",
        "cache-stampede",
        "crash-after-ack",
        "timing-attack",
        "missing-index",
        "replica-crash",
        "session-store-outage",
        "deploy",
        "email-outage",
    ] {
        assert!(names.contains(&name), "{name} is a built-in: {names:?}");
    }
    for (s, q) in standard.iter().zip(&quick) {
        assert!(!s.predictions.is_empty(), "{} predicts something", s.name);
        for (sp, qp) in s.phases.iter().zip(&q.phases) {
            assert!(
                qp.seconds.fract() == 0.0 && qp.seconds >= 1.0 && qp.seconds <= sp.seconds,
                "{} {}: a quick phase is whole seconds, no longer than the standard one ({} s)",
                s.name,
                qp.name,
                qp.seconds
            );
        }
        assert!(q.run_seconds() < s.run_seconds(), "{}: quick is shorter", s.name);
    }
}

#[test]
fn the_built_ins_are_every_file_of_the_experiments_folder() {
    let folder = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../experiments");
    let mut files: Vec<String> = std::fs::read_dir(folder)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .map(|p| p.file_stem().unwrap().to_string_lossy().into_owned())
        .collect();
    files.sort();
    let built_ins = catalog::built_ins().unwrap();
    let names: Vec<&str> = built_ins.iter().map(|b| b.name.as_str()).collect();
    assert_eq!(names, files);
    for built_in in &built_ins {
        let on_disk = std::fs::read_to_string(format!(
            "{}/../experiments/{}.toml",
            env!("CARGO_MANIFEST_DIR"),
            built_in.name
        ));
        assert_eq!(
            on_disk.unwrap(),
            built_in.text,
            "{} is as it is on disk",
            built_in.name
        );
    }
}

#[test]
fn a_good_file_becomes_a_plan() {
    let plan = parse("tiny.toml", GOOD, Profile::Standard).unwrap();
    assert_eq!(
        plan.phases[1].faults[0].to_string(),
        "latency 20ms on the postgres link"
    );
    assert_eq!(plan.predictions[0].claim.metric, Metric::P95Ms);
    assert_eq!(plan.variants[0].variant, Variant::Defended);
    assert_eq!(plan.variants[0].modes.cache_failure, Some(CacheFailure::Breaker));
    assert_eq!(plan.run_seconds(), 10.0);
    assert!(plan.aborts.is_empty());
    let guarded = with(
        "threshold = 2.0",
        "threshold = 2.0\n[[abort]]\nmetric = \"p99_ms\"\ncompare = \">\"\nthreshold = 5000.0\nseconds = 3",
    );
    let plan = parse("tiny.toml", &guarded, Profile::Standard).unwrap();
    assert_eq!(plan.aborts[0].to_string(), "p99_ms > 5000 for 3 s");
    // A stop condition ends the whole run: its variants run in turn.
    assert_eq!(plan.arrangement, Arrangement::InTurn);
    let together = guarded.replace("[load]", "[topology]\nvariants = \"side_by_side\"\n\n[load]");
    let refused = parse("tiny.toml", &together, Profile::Standard).unwrap_err();
    assert_eq!(refused.field, "topology.variants", "{refused}");
    assert_eq!(refused.line, line_of(&together, "side_by_side"), "{refused}");
    assert_eq!(
        parse("tiny.toml", GOOD, Profile::Standard).unwrap().arrangement,
        Arrangement::SideBySide
    );
    let two_of_three = with(
        "{ kind = \"latency\", link = \"postgres\", ms = 20.0 }",
        "{ kind = \"kill\", target = \"service\", count = 2 }",
    )
    .replace("[load]", "[topology]\nreplicas = 3\n\n[load]");
    let plan = parse("tiny.toml", &two_of_three, Profile::Standard).unwrap();
    assert_eq!(plan.phases[1].faults_text(), "kill service, kill service-2");
    let balancing = plan.variants[0].balancer.expect("three replicas get a balancer");
    assert!(!balancing.sticky, "round robin unless asked");
    let sticky = two_of_three.replace("replicas = 3", "replicas = 3\nsticky = true");
    let plan = parse("tiny.toml", &sticky, Profile::Standard).unwrap();
    assert!(plan.variants[0].balancer.expect("a balancer").sticky);
    assert!(
        parse("tiny.toml", GOOD, Profile::Standard).unwrap().variants[0]
            .balancer
            .is_none()
    );
    assert_eq!(
        plan.start,
        Start::Staggered,
        "each user goes on after its own login unless told"
    );
    let crowd = with(
        "mix = { browse = 1 }",
        "mix = { browse = 1 }\nstart = \"together\"",
    );
    assert_eq!(
        parse("tiny.toml", &crowd, Profile::Standard).unwrap().start,
        Start::Together
    );
    let share = with("ms = 20.0", "ms = 20.0, fraction = 0.25");
    let plan = parse("tiny.toml", &share, Profile::Standard).unwrap();
    assert_eq!(
        plan.phases[1].faults[0].to_string(),
        "latency 20ms on 25% of the postgres link's connections"
    );
}

#[test]
fn mistakes_name_the_file_line_and_field() {
    struct Case {
        from: &'static str,
        to: &'static str,
        field: &'static str,
        says: &'static str,
    }
    let cases = [
        Case {
            from: "rate = 10",
            to: "rate = -5",
            field: "load.rate",
            says: "above 0",
        },
        Case {
            from: "rate = 10",
            to: "rate = \"fast\"",
            field: "rate",
            says: "invalid type",
        },
        Case {
            from: "users = 4",
            to: "users = 4\nturbo = true",
            field: "turbo",
            says: "unknown field `turbo`",
        },
        Case {
            from: "mix = { browse = 1 }",
            to: "mix = { shopping = 1 }",
            field: "load.mix",
            says: "browse, availability, checkout, history",
        },
        Case {
            from: "mix = { browse = 1 }",
            to: "mix = { browse = 1 }\nstart = \"all_at_once\"",
            field: "start",
            says: "staggered, together",
        },
        Case {
            from: "seconds = 6",
            to: "seconds = 6000",
            field: "phases.seconds",
            says: "at most 600",
        },
        Case {
            from: "metric = \"p95_ms\"",
            to: "metric = \"p42_ms\"",
            field: "predictions.metric",
            says: "unknown metric \"p42_ms\"; metrics: offered_rps",
        },
        Case {
            from: "phase = \"fault\"",
            to: "phase = \"storm\"",
            field: "predictions.phase",
            says: "phases: baseline, fault",
        },
        Case {
            from: "variant = \"defended\"",
            to: "variant = \"vulnerable\"",
            field: "predictions.variant",
            says: "no variant",
        },
        Case {
            from: "compare = \">=\"",
            to: "compare = \"~\"",
            field: "compare",
            says: "unknown variant",
        },
        Case {
            from: "kind = \"latency\", link = \"postgres\"",
            to: "kind = \"latency\", link = \"mysql\"",
            field: "phases.faults.link",
            says: "links: postgres, redis, mail",
        },
        Case {
            from: "ms = 20.0",
            to: "ms = -1.0",
            field: "phases.faults",
            says: "between 0 and 60000",
        },
        Case {
            from: "{ kind = \"latency\", link = \"postgres\", ms = 20.0 }",
            to: "{ kind = \"kill\", target = \"service-3\" }",
            field: "phases.faults.target",
            says: "there is no service-3: topology.replicas is 1",
        },
        Case {
            from: "{ kind = \"latency\", link = \"postgres\", ms = 20.0 }",
            to: "{ kind = \"kill\", target = \"redis\", count = 1 }",
            field: "phases.faults.count",
            says: "count takes target = \"service\"",
        },
        Case {
            from: "{ kind = \"latency\", link = \"postgres\", ms = 20.0 }",
            to: "{ kind = \"pause\", target = \"service\", count = 2 }",
            field: "phases.faults.count",
            says: "must be 1 to 1, the topology's replicas (got 2)",
        },
        Case {
            from: "{ kind = \"latency\", link = \"postgres\", ms = 20.0 }",
            to: "{ kind = \"down\", link = \"mail\" }",
            field: "phases.faults",
            says: "the mail server is only in labs with topology.mail = true",
        },
        Case {
            from: "{ kind = \"latency\", link = \"postgres\", ms = 20.0 }",
            to: "{ kind = \"http_status\", link = \"postgres\", status = 503 }",
            field: "phases.faults.link",
            says: "http_status is an HTTP fault; the postgres link carries raw TCP (HTTP links: payments)",
        },
        Case {
            from: "{ kind = \"latency\", link = \"postgres\", ms = 20.0 }",
            to: "{ kind = \"http_status\", link = \"payments\", status = 299 }",
            field: "phases.faults",
            says: "http_status status must be a known HTTP status",
        },
        Case {
            from: "{ kind = \"latency\", link = \"postgres\", ms = 20.0 }",
            to: "{ kind = \"http_lost_reply\", link = \"redis\", status = 504 }",
            field: "phases.faults.link",
            says: "http_lost_reply is an HTTP fault; the redis link carries raw TCP (HTTP links: payments)",
        },
        Case {
            from: "{ kind = \"latency\", link = \"postgres\", ms = 20.0 }",
            to: "{ kind = \"http_status\", link = \"payments\", status = 503, fraction = 1.5 }",
            field: "phases.faults",
            says: "fraction must be between 0 and 1",
        },
        Case {
            from: "{ kind = \"latency\", link = \"postgres\", ms = 20.0 }",
            to: "{ kind = \"http_delay\", link = \"payments\", ms = 2000.0 }",
            field: "phases.faults",
            says: "the payment provider is only in labs with topology.payments = true",
        },
        Case {
            from: "{ kind = \"latency\", link = \"postgres\", ms = 20.0 }",
            to: "{ kind = \"rolling_restart\" }",
            field: "phases.faults.kind",
            says: "a rolling restart needs at least 2 replicas behind the balancer (got 1)",
        },
        Case {
            from: "modes = { cache_failure = \"breaker\" }",
            to: "modes = { cache_failure = \"breaker\" }\nsticky = true",
            field: "variants.sticky",
            says: "sticky balancing needs the balancer",
        },
        Case {
            from: "ms = 20.0",
            to: "ms = 20.0, fraction = 2.0",
            field: "phases.faults",
            says: "fraction must be between 0 and 1",
        },
        Case {
            from: "{ kind = \"latency\", link = \"postgres\", ms = 20.0 }",
            to: "{ kind = \"teleport\" }",
            field: "faults",
            says: "unknown variant `teleport`",
        },
        Case {
            from: "{ kind = \"latency\", link = \"postgres\", ms = 20.0 }",
            to: "{ kind = \"kill\", target = \"mysql\" }",
            field: "phases.faults.target",
            says: "postgres, redis, mail, provider, proxy, service",
        },
        Case {
            from: "cache_failure = \"breaker\"",
            to: "cache_failure = \"pray\"",
            field: "variants.modes",
            says: "unknown variant `pray`",
        },
        Case {
            from: "[variants.defended]",
            to: "[variants.hardened]",
            field: "variants",
            says: "vulnerable, defended",
        },
        Case {
            from: "threshold = 2.0",
            to: "threshold = 2.0\n[[abort]]\ncompare = \">\"\nthreshold = 0.0\nmetric = \"lost_acknowledged_orders\"",
            field: "abort.metric",
            says: "lost_acknowledged_orders is not measured every second; a stop condition can watch offered_rps, throughput_rps",
        },
        Case {
            from: "threshold = 2.0",
            to: "threshold = 2.0\n[[abort]]\nmetric = \"error_rate\"\ncompare = \">\"\nthreshold = 0.5\nvariant = \"vulnerable\"",
            field: "abort.variant",
            says: "no variant \"vulnerable\"",
        },
        Case {
            from: "threshold = 2.0",
            to: "threshold = 2.0\n[[abort]]\nmetric = \"error_rate\"\ncompare = \">\"\nthreshold = 0.5\nseconds = 0",
            field: "abort.seconds",
            says: "must be 1 to 3600",
        },
        Case {
            from: "threshold = 2.0",
            to: "threshold = 2.0\n[[abort]]\nmetric = \"error_rate\"\nthreshold = 0.5\ncompare = \"within\"",
            field: "abort.compare",
            says: "use <, <=, >, >= or ==",
        },
        // What the lab cannot produce is refused when the plan is read, not after a whole run.
        Case {
            from: "metric = \"p95_ms\"",
            to: "metric = \"mail_delivered_per_s\"",
            field: "predictions.metric",
            says: "mail_delivered_per_s needs a mail server (topology.mail = true), which this lab does not have",
        },
        Case {
            from: "metric = \"p95_ms\"",
            to: "metric = \"replicas_up\"",
            field: "predictions.metric",
            says: "replicas_up needs a load balancer",
        },
        Case {
            from: "metric = \"p95_ms\"",
            to: "metric = \"checkout_p95_ms\"",
            field: "predictions.metric",
            says: "needs the checkout scenario in load.mix",
        },
        Case {
            from: "metric = \"p95_ms\"\nphase = \"fault\"\nover = \"baseline\"",
            to: "metric = \"oversold_units\"\nphase = \"fault\"",
            field: "predictions.phase",
            says: "oversold_units is a figure of the whole run: use phase = \"run\"",
        },
        Case {
            from: "metric = \"p95_ms\"\nphase = \"fault\"\nover = \"baseline\"",
            to: "metric = \"hit_ratio_recovery_s\"\nphase = \"fault\"",
            field: "predictions.phase",
            says: "hit_ratio_recovery_s is measured in a phase that follows a phase with faults; \"fault\" does not (such phases here: none)",
        },
        Case {
            from: "threshold = 2.0",
            to: "threshold = 2.0\n[[abort]]\ncompare = \">\"\nthreshold = 0.0\nmetric = \"payment_requests_per_s\"",
            field: "abort.metric",
            says: "payment_requests_per_s needs a payment provider",
        },
        Case {
            from: "threshold = 2.0",
            to: "threshold = 2.0\n[capacity]\np99_ms = 400\nfault_phase = \"baseline\"",
            field: "capacity.fault_phase",
            says: "phase \"baseline\" injects no fault",
        },
        Case {
            from: "threshold = 2.0",
            to: "threshold = 2.0\n[capacity]\nfault_phase = \"fault\"\np99_ms = -3",
            field: "capacity.p99_ms",
            says: "must be",
        },
        Case {
            from: "threshold = 2.0",
            to: "threshold = 2.0\n[capacity]\nfault_phase = \"fault\"\np99_ms = 400\nstep_seconds = 3",
            field: "capacity.step_seconds",
            says: "at least warmup_seconds + 2",
        },
        Case {
            from: "threshold = 2.0",
            to: "threshold = 2.0\n[capacity]\nfault_phase = \"fault\"\np99_ms = 400\nservice_cpus = 0",
            field: "capacity.service_cpus",
            says: "must be",
        },
        Case {
            from: "threshold = 2.0",
            to: "threshold = 2.0\n[capacity]\nfault_phase = \"fault\"\np99_ms = 400\nanchor = true",
            field: "capacity.anchor",
            says: "the load's mix must be checkout only",
        },
        Case {
            from: "threshold = 2.0",
            to: "threshold = 2.0\n[capacity]\nfault_phase = \"fault\"\np99_ms = 400\n[[capacity.predictions]]\nvariant = \"defended\"\ncompare = \">=\"\nthreshold = 0.5\nfigure = \"knee\"",
            field: "capacity.predictions.figure",
            says: "capacity, capacity_under_fault, capacity_kept",
        },
        Case {
            from: "threshold = 2.0",
            to: "threshold = 2.0\n[capacity]\nfault_phase = \"fault\"\np99_ms = 400\n[[capacity.predictions]]\nfigure = \"capacity_kept\"\ncompare = \">=\"\nthreshold = 0.5\nvariant = \"vulnerable\"",
            field: "capacity.predictions.variant",
            says: "no variant \"vulnerable\"",
        },
        Case {
            from: "threshold = 2.0",
            to: "threshold = 2.0\n[capacity]\nfault_phase = \"fault\"\np99_ms = 400\n[[capacity.predictions]]\nvariant = \"defended\"\ncompare = \">=\"\nthreshold = 1\nfigure = \"charges_without_order\"",
            field: "capacity.predictions.figure",
            says: "charges_without_order needs a payment provider",
        },
        Case {
            from: "threshold = 2.0",
            to: "threshold = 2.0\n[capacity]\nfault_phase = \"fault\"\np99_ms = 400\n[[capacity.predictions]]\nvariant = \"defended\"\ncompare = \">=\"\nthreshold = 1\nfigure = \"p95_ms\"",
            field: "capacity.predictions.figure",
            says: "or a count of an invariant's violations (oversold_units, stock_mismatch_units, lost_acknowledged_orders",
        },
    ];
    for case in cases {
        let text = with(case.from, case.to);
        let error = error_of(&text);
        let shown = error.to_string();
        assert_eq!(error.file, "bad.toml");
        assert_eq!(error.field, case.field, "{shown}");
        assert!(error.message.contains(case.says), "{shown}");
        let expected = line_of(&text, case.to.lines().last().unwrap());
        assert_eq!(error.line, expected, "{shown}");
    }
}

/// A `[capacity]` section becomes the search's plan: the fault phase's faults, the objective, the
/// defaults, and the quick profile's shorter steps without repeats.
#[test]
fn a_capacity_section_becomes_the_search_plan() {
    let text = format!(
        "{GOOD}\n[capacity]\nfault_phase = \"fault\"\np99_ms = 400\n\n[[capacity.predictions]]\nvariant = \"defended\"\nfigure = \"capacity_kept\"\ncompare = \">=\"\nthreshold = 0.5\n"
    );
    let standard = parse("good.toml", &text, Profile::Standard)
        .unwrap()
        .capacity
        .unwrap();
    assert_eq!(standard.fault_phase, "fault");
    assert_eq!(standard.faults.len(), 1);
    assert_eq!(
        (standard.objective.p99_ms, standard.objective.error_rate),
        (400.0, 0.01)
    );
    assert_eq!((standard.from, standard.max_rate), (10.0, 160.0));
    assert_eq!((standard.step_seconds, standard.repeats), (10.0, 3));
    assert_eq!(standard.predictions[0].to_string(), "capacity_kept >= 0.5");
    let counted = format!(
        "{text}\n[[capacity.predictions]]\nvariant = \"defended\"\nfigure = \"oversold_units\"\ncompare = \">=\"\nthreshold = 1\n"
    );
    let counted = parse("good.toml", &counted, Profile::Standard)
        .unwrap()
        .capacity
        .unwrap();
    assert_eq!(counted.predictions[1].to_string(), "oversold_units >= 1");
    assert!(counted.predictions[1].figure.needs().is_empty());
    let quick = parse("good.toml", &text, Profile::Quick)
        .unwrap()
        .capacity
        .unwrap();
    assert_eq!((quick.step_seconds, quick.repeats), (5.0, 1));
    assert!(
        parse("good.toml", GOOD, Profile::Standard)
            .unwrap()
            .capacity
            .is_none()
    );
}

#[test]
fn malformed_toml_is_located() {
    let error = error_of("name = \"x\"\nstory = \"y\"\n[load\nrate = 1\n");
    assert_eq!(error.line, 3, "{error}");
}

#[test]
fn unknown_experiments_list_the_built_ins_and_user_files_load_by_path() {
    let error = catalog::load("cache-outgae", Profile::Standard).unwrap_err();
    assert!(matches!(error, CatalogError::Unknown { .. }));
    assert!(
        error
            .to_string()
            .contains("built-in experiments: cache-outage, cache-stampede, crash-after-ack, db-latency,"),
        "{error}"
    );

    let dir = std::env::temp_dir().join(format!("fortress-definitions-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("tiny.toml");
    std::fs::write(&path, GOOD).unwrap();
    let plan = catalog::load(path.to_str().unwrap(), Profile::Quick).unwrap();
    assert_eq!(plan.name, "tiny");
    assert_eq!(plan.run_seconds(), 5.0, "quick is half by default");
    let missing = catalog::load(dir.join("nope.toml").to_str().unwrap(), Profile::Quick).unwrap_err();
    assert!(missing.to_string().starts_with("cannot read"), "{missing}");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// `--without` is checked before any lab starts: it needs the defended variant alone, a mode the
/// defended variant sets, and a value the service takes; each mistake says what to do (exit 3).
#[test]
fn a_defence_switched_off_by_mistake_is_refused_before_a_lab_starts() {
    let refused = |args: &[&str]| {
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_fortress"))
            .args(["experiment", "cache-outage", "--profile", "quick"])
            .args(args)
            .output()
            .unwrap();
        assert_eq!(output.status.code(), Some(3), "{output:?}");
        String::from_utf8_lossy(&output.stderr).into_owned()
    };
    assert!(refused(&["--without", "cache_failure"]).contains("add --variant defended"));
    let not_set = refused(&["--variant", "defended", "--without", "locking"]);
    assert!(
        not_set.contains("does not set locking (it sets: cache_failure, cache_deadline"),
        "{not_set}"
    );
    let unknown = refused(&["--variant", "defended", "--without", "turbo"]);
    assert!(
        unknown.contains("not a mode of the service; modes: "),
        "{unknown}"
    );
    let value = refused(&["--variant", "defended", "--without", "cache_failure=pray"]);
    assert!(
        value.contains("cache_failure=pray is not a value the service takes"),
        "{value}"
    );
}

/// `fortress plan x | head -1`: a reader that stops early ends the printing command quietly (by
/// SIGPIPE, as `cat` would), not with a panic about a failed print.
#[test]
fn a_reader_that_stops_early_ends_a_printing_command_quietly() {
    use std::io::Read;
    use std::os::unix::process::ExitStatusExt;
    use std::process::{Command, Stdio};
    for args in [&["plan", "timing-attack"][..], &["list"][..]] {
        let mut child = Command::new(env!("CARGO_BIN_EXE_fortress"))
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut first = [0u8; 16];
        child.stdout.take().unwrap().read_exact(&mut first).unwrap(); // then the pipe closes
        let output = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
        assert!(
            output.status.success() || output.status.signal() == Some(13),
            "{args:?}: {:?}",
            output.status
        );
    }
}

/// The pretix examples' folder: an experiment against a target finds its Compose file beside it.
fn pretix(file: &str) -> String {
    format!("{}/../examples/pretix/{file}", env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn the_pretix_experiments_parse_against_their_compose_file_in_both_profiles() {
    for file in ["rush.toml", "redis-outage.toml"] {
        let path = pretix(file);
        let text = std::fs::read_to_string(&path).unwrap();
        for profile in [Profile::Standard, Profile::Quick] {
            let plan = parse(&path, &text, profile).unwrap_or_else(|e| panic!("{e}"));
            let target = plan.target.as_ref().expect("a target plan");
            assert_eq!(target.target.entry.service, "web", "{file}");
            assert!(!target.script.requests.is_empty(), "{file}");
            assert_eq!(plan.arrangement, Arrangement::InTurn, "{file}");
        }
    }
    let rush = std::fs::read_to_string(pretix("rush.toml")).unwrap();
    let plan = parse(&pretix("rush.toml"), &rush, Profile::Standard).unwrap();
    let target = plan.target.unwrap();
    assert_eq!(
        target.environment[&Variant::Vulnerable]["web"]["FORTRESS_SKIP_LOCKING"],
        "1"
    );
    assert_eq!(
        target.environment[&Variant::Defended]["setup"]["FORTRESS_QUOTA"],
        "20"
    );
    assert!(!target.environment[&Variant::Defended]["web"].contains_key("FORTRESS_SKIP_LOCKING"));
}

/// An experiment against pretix's Compose file with `from` replaced by `to`, refused.
fn pretix_error(from: &str, to: &str) -> (DefinitionError, String) {
    pretix_file_error("rush.toml", from, to)
}

/// pretix's experiment `file` with `from` replaced by `to`, refused.
fn pretix_file_error(file: &str, from: &str, to: &str) -> (DefinitionError, String) {
    let path = pretix(file);
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.contains(from), "{from}");
    let text = text.replacen(from, to, 1);
    let error = parse(&path, &text, Profile::Standard).expect_err("the file should be refused");
    (error, text)
}

#[test]
fn a_mistake_against_a_target_names_the_line_the_field_and_what_the_target_has() {
    let latency = "faults = [{ kind = \"latency\", link = \"web-db\", ms = 10.0 }]";
    let (error, text) = pretix_error(latency, "faults = [{ kind = \"kill\", target = \"cache\" }]");
    assert_eq!(error.field, "phases.faults.target");
    assert_eq!(error.line, line_of(&text, "target = \"cache\""));
    assert!(
        error.message.contains("services: web, setup, db, redis"),
        "{error}"
    );

    let (error, _) = pretix_error(latency, "faults = [{ kind = \"down\", link = \"web-cache\" }]");
    assert_eq!(error.field, "phases.faults.link");
    assert!(error.message.contains("links: web-db, web-redis"), "{error}");

    let http = "faults = [{ kind = \"http_status\", link = \"web-db\", status = 503 }]";
    let (error, _) = pretix_error(latency, http);
    assert_eq!(error.field, "phases.faults.kind");
    assert!(error.message.contains("needs `http: true`"), "{error}");

    let (error, _) = pretix_error(latency, "faults = [{ kind = \"rolling_restart\" }]");
    assert_eq!(error.field, "phases.faults.kind");
    assert!(
        error
            .message
            .contains("`deploy.replicas` of web: 1) and `balancer: true`"),
        "{error}"
    );

    let (error, _) = pretix_error(latency, "faults = [{ kind = \"expire_cache\" }]");
    assert!(error.message.contains("needs the reference service"), "{error}");

    let (error, text) = pretix_error("metric = \"error_rate\"", "metric = \"pg_statements_per_s\"");
    assert_eq!(error.field, "predictions.metric");
    assert_eq!(error.line, line_of(&text, "pg_statements_per_s"));
    assert!(error.message.contains("only the reference lab has"), "{error}");

    let (error, _) = pretix_error("metric = \"error_rate\"", "metric = \"http_5xx_rate\"");
    assert_eq!(error.field, "predictions.metric");
    assert!(
        error
            .message
            .contains("service's own counters (responses, responses_5xx)")
            && error
                .message
                .contains("x-fortress.metrics.counters (it maps: none)"),
        "{error}"
    );

    let (error, _) = pretix_error("buyer{{request}}", "buyer{{seat}}");
    assert_eq!(error.field, "load.requests.body");
    assert!(error.message.contains("unknown variable {{seat}}"), "{error}");

    let (error, _) = pretix_error("web = { FORTRESS_SKIP", "webshop = { FORTRESS_SKIP");
    assert_eq!(error.field, "variants.environment");
    assert!(error.message.contains("no service \"webshop\""), "{error}");

    let (error, _) = pretix_error("database = \"pretix\"", "database = \"shop\"");
    assert!(error.message.contains("databases: pretix"), "{error}");

    let (error, _) = pretix_error("target = \"compose.yaml\"", "target = \"missing.yaml\"");
    assert_eq!(error.field, "target");
    assert!(error.message.contains("relative to this file"), "{error}");
}

#[test]
fn an_acknowledgement_needs_its_lookup_and_a_lookup_its_acknowledgement() {
    let outage = "redis-outage.toml";
    let ack = "acknowledges = { status = 201, id = \"/code\" }";
    let (error, _) = pretix_file_error(outage, ack, "acknowledges = { status = 201, id = \"code\" }");
    assert_eq!(error.field, "load.requests.acknowledges");
    assert!(error.message.contains("JSON pointer"), "{error}");

    let (error, _) = pretix_file_error(outage, ack, "");
    assert_eq!(error.field, "acknowledged");
    assert!(error.message.contains("no request acknowledges"), "{error}");

    let (error, _) = pretix_file_error(outage, "= ANY($1)", "= ANY('{}')");
    assert_eq!(error.field, "acknowledged.sql");

    let lookup = "[acknowledged]\ndatabase = \"pretix\"\nsql = \"SELECT code FROM pretixbase_order WHERE code = ANY($1)\"\n";
    let (error, _) = pretix_file_error(outage, lookup, "");
    assert_eq!(error.field, "acknowledged");
    assert!(error.message.contains("a request acknowledges"), "{error}");
}

#[test]
fn a_stop_condition_on_a_target_watches_the_clients_figures_only() {
    let abort = |metric: &str| {
        format!("[[abort]]\nmetric = \"{metric}\"\ncompare = \">\"\nthreshold = 0.0\n\n[[predictions]]")
    };
    let path = pretix("rush.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    let stopping = text.replacen("[[predictions]]", &abort("error_rate"), 1);
    let plan = parse(&path, &stopping, Profile::Quick).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(plan.aborts[0].to_string(), "error_rate > 0 for 1 s");

    let (error, text) = pretix_error("[[predictions]]", &abort("oversold_units"));
    assert_eq!(error.field, "abort.metric");
    assert_eq!(error.line, line_of(&text, "metric = \"oversold_units\""));
    assert!(
        error.message.contains("counted live only in the reference lab"),
        "{error}"
    );

    let (error, _) = pretix_error("[[predictions]]", &abort("pg_statements_per_s"));
    assert_eq!(error.field, "abort.metric");
    assert!(error.message.contains("only the reference lab has"), "{error}");
}

#[test]
fn a_start_request_captures_values_the_requests_use_and_nothing_else_does() {
    let start = "[load.start]\ngroup = \"login\"\nmethod = \"POST\"\npath = \"/login\"\nok = [200]\n\
                 capture = { token = \"/token\" }\n\n[[load.requests]]";
    let path = pretix("rush.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    let bearer = text.replacen("[[load.requests]]", start, 1).replacen(
        "Token fortress-lab",
        "Token {{token}} fortress-lab",
        1,
    );
    let plan = parse(&path, &bearer, Profile::Quick).unwrap_or_else(|e| panic!("{e}"));
    let script = &plan.target.unwrap().script;
    assert_eq!(script.start.as_ref().unwrap().captures[0].pointer, "/token");

    // A variable nobody captures, named with the ones that exist.
    let (error, text) = pretix_error("Token fortress-lab", "Token {{token}} fortress-lab");
    assert_eq!(error.field, "load.requests.headers");
    assert_eq!(error.line, line_of(&text, "{{token}}"));
    assert!(error.message.contains("captured by [load.start]"), "{error}");

    // Captures belong to the start request; the start request has no weight; a capture is a pointer.
    let (error, _) = pretix_error("ok = [201]", "ok = [201]\ncapture = { code = \"/code\" }");
    assert_eq!(error.field, "load.requests.capture");
    let (error, _) = pretix_error(
        "[[load.requests]]",
        &start.replace("ok = [200]", "ok = [200]\nweight = 2"),
    );
    assert_eq!(error.field, "load.start.weight");
    let (error, _) = pretix_error("[[load.requests]]", &start.replace("\"/token\"", "\"token\""));
    assert_eq!(error.field, "load.start.capture");
    assert!(error.message.contains("JSON pointer"), "{error}");
}

#[test]
fn an_http_invariant_or_lookup_is_a_request_to_the_entry_checked_at_its_line() {
    use fortress::experiment::definition::{InvariantCheck, Lookup};
    let path = pretix("redis-outage.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    let sql_lookup =
        "database = \"pretix\"\nsql = \"SELECT code FROM pretixbase_order WHERE code = ANY($1)\"";
    let by_get = "http = { path = \"/api/v1/organizers/fortress/events/rush/orders/{{id}}/\", headers = { \
                  Authorization = \"Token fortress-lab-api-token-not-a-secret\" } }\n\n\
                  [[invariants]]\nname = \"the shop answers\"\nhttp = { path = \"/healthcheck/\", status = [200] }";
    let http = text.replacen(sql_lookup, by_get, 1);
    let plan = parse(&path, &http, Profile::Quick).unwrap_or_else(|e| panic!("{e}"));
    let target = plan.target.unwrap();
    let Some(Lookup::Http(lookup)) = &target.acknowledged else {
        panic!("an HTTP lookup: {:?}", target.acknowledged)
    };
    assert_eq!(
        (lookup.found.as_slice(), lookup.missing.as_slice()),
        (&[200][..], &[404][..])
    );
    assert!(matches!(&target.invariants[0].check, InvariantCheck::Http(c) if c.status == [200]));

    let (error, text) = pretix_file_error("redis-outage.toml", sql_lookup, "http = { path = \"/orders/\" }");
    assert_eq!(error.field, "acknowledged.http.path");
    assert_eq!(error.line, line_of(&text, "path = \"/orders/\""));
    let both = "http = { path = \"/o/{{id}}\", found = [200, 404] }";
    let (error, _) = pretix_file_error("redis-outage.toml", sql_lookup, both);
    assert_eq!(error.field, "acknowledged.http");
    assert!(error.message.contains("404 cannot mean both"), "{error}");
    let (error, _) = pretix_file_error("redis-outage.toml", sql_lookup, &format!("{sql_lookup}\n{both}"));
    assert!(
        error.message.contains("either database and sql, or http"),
        "{error}"
    );

    let (error, _) = pretix_error(
        "database = \"pretix\"\ncounted_by",
        "http = { path = \"/x\" }\ndatabase = \"pretix\"\ncounted_by",
    );
    assert_eq!(error.field, "invariants");
    let bad_path = "[[invariants]]\nname = \"x\"\nhttp = { path = \"x\" }\n\n[[predictions]]";
    let (error, text) = pretix_error("[[predictions]]", bad_path);
    assert_eq!(error.field, "invariants.http.path");
    assert_eq!(error.line, line_of(&text, "path = \"x\""));
}

#[test]
fn a_variants_images_name_services_of_the_target() {
    let path = pretix("rush.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    let release = text.replacen(
        "[variants.defended]",
        "[variants.defended]\nimages = { web = \"shop/web:v2\" }",
        1,
    );
    let plan = parse(&path, &release, Profile::Quick).unwrap_or_else(|e| panic!("{e}"));
    let target = plan.target.unwrap();
    assert_eq!(target.images[&Variant::Defended]["web"], "shop/web:v2");
    assert!(!target.images.contains_key(&Variant::Vulnerable));
    let swapped = target.target.with_images(&target.images[&Variant::Defended]);
    assert!(format!("{:?}", swapped.service("web").unwrap().image).contains("shop/web:v2"));

    let (error, text) = pretix_error(
        "[variants.defended]",
        "[variants.defended]\nimages = { shop = \"shop/web:v2\" }",
    );
    assert_eq!(error.field, "variants.images");
    assert_eq!(error.line, line_of(&text, "images = { shop"));
    assert!(
        error.message.contains("services: web, setup, db, redis"),
        "{error}"
    );
}

#[test]
fn a_variants_compose_overrides_merge_over_the_target_and_their_mistakes_name_their_file() {
    let dir = std::env::temp_dir().join(format!("fortress-overrides-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let good = dir.join("compose.pr.yaml");
    let pr =
        "services:\n  web:\n    environment:\n      PRETIX_WORKERS: \"3\"\n      FORTRESS_PR: \"1234\"\n";
    std::fs::write(&good, pr).unwrap();
    let bad = dir.join("compose.bad.yaml");
    std::fs::write(&bad, "services:\n  web:\n    volumes: [\"data:/data\"]\n").unwrap();
    let with = |file: &std::path::Path| format!("[variants.defended]\ncompose = [\"{}\"]", file.display());

    let path = pretix("rush.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    let plan = parse(
        &path,
        &text.replacen("[variants.defended]", &with(&good), 1),
        Profile::Quick,
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let target = plan.target.unwrap();
    let merged = &target.targets[&Variant::Defended];
    let web = &merged.service("web").unwrap().environment;
    assert_eq!(
        (web["PRETIX_WORKERS"].as_str(), web["FORTRESS_PR"].as_str()),
        ("3", "1234")
    );
    assert_eq!(
        web["PRETIX_REDIS_SESSIONS"], "true",
        "the rest of web's environment stays"
    );
    assert!(!target.targets.contains_key(&Variant::Vulnerable));

    let (error, _) = pretix_error("[variants.defended]", &with(&bad));
    assert_eq!(
        (error.file.as_str(), error.line),
        (bad.to_str().unwrap(), 3),
        "{error}"
    );
    assert!(error.field.contains("volumes"), "{error}");

    let (error, _) = pretix_error("[variants.defended]", &with(&dir.join("nope.yaml")));
    assert_eq!(error.field, "variants.compose");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn an_experiments_compose_overrides_merge_for_every_variant_before_a_variants_own() {
    let path = pretix("redis-outage.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    let plan = parse(&path, &text, Profile::Quick).unwrap_or_else(|e| panic!("{e}"));
    let target = plan.target.unwrap();
    let metrics = (target.target.metrics.as_ref()).expect("metrics.yaml's section, merged");
    assert_eq!(metrics.path, "/metrics");
    assert!(metrics.basic_auth.is_some(), "pretix's page asks for its login");

    let dir = std::env::temp_dir().join(format!("fortress-shared-overrides-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let own = dir.join("compose.pr.yaml");
    std::fs::write(
        &own,
        "services:\n  web:\n    environment:\n      PRETIX_WORKERS: \"3\"\n",
    )
    .unwrap();
    let rush = pretix("rush.toml");
    let text = std::fs::read_to_string(&rush).unwrap();
    let both = (text.replacen(
        "target = \"compose.yaml\"",
        "target = \"compose.yaml\"\ncompose = [\"metrics.yaml\"]",
        1,
    ))
    .replacen(
        "[variants.defended]",
        &format!("[variants.defended]\ncompose = [\"{}\"]", own.display()),
        1,
    );
    let plan = parse(&rush, &both, Profile::Quick).unwrap_or_else(|e| panic!("{e}"));
    let target = plan.target.unwrap();
    assert!(target.target.metrics.is_some(), "every variant's");
    let defended = &target.targets[&Variant::Defended];
    let web = &defended.service("web").unwrap().environment;
    assert_eq!(web["PRETIX_WORKERS"], "3", "the variant's own, over the shared");
    assert_eq!(web["PRETIX_METRICS_ENABLED"], "true", "the shared, under it");

    let (error, text) = pretix_error(
        "target = \"compose.yaml\"",
        "target = \"compose.yaml\"\ncompose = [\"nope.yaml\"]",
    );
    assert_eq!(
        (error.field.as_str(), error.line),
        ("compose", line_of(&text, "compose = [\"nope.yaml\"]"))
    );
    assert!(error.message.contains("nope.yaml"), "{error}");
    std::fs::remove_dir_all(&dir).unwrap();
}
