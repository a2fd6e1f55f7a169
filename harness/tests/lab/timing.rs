//! The timing attacker against the service's default login: a wrong password for an account that
//! exists and one for an email nobody has may differ by the account's row being read, and no more:
//! whatever difference is left must be bounded within 5 ms. The same measurement against the leaky
//! login shows the harness's classifier tells the two apart.

use std::time::{Duration, Instant};

use fortress::env::Lab;
use fortress::experiment::timing::Probes;
use reference_service::modes::{LoginTiming, ModesPatch};
use reference_service::seed::SeedPlan;

use crate::start_lab;

/// Probes of each kind, sent one at a time, interleaved (the order alternating every pair).
const PAIRS: usize = 160;

/// One wrong-password login; answers its time in microseconds.
async fn probe(lab: &Lab, base: &str, email: &str) -> u64 {
    let started = Instant::now();
    let response = lab
        .http()
        .post(format!("{base}/auth/login"))
        .json(&serde_json::json!({ "email": email, "password": "not-the-password" }))
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let body = response.text().await.unwrap();
    assert_eq!(status, 401, "{body}");
    u64::try_from(started.elapsed().as_micros()).unwrap()
}

async fn probes(lab: &Lab) -> Probes {
    let base = lab.service_url(1).await.unwrap();
    let mut probes = Probes::default();
    for i in 0..PAIRS {
        let (known, unknown) = (
            format!("user{}@fortress.test", i % 20 + 1),
            format!("nobody{i}@fortress.test"),
        );
        let pair = if i % 2 == 0 {
            let known = probe(lab, &base, &known).await;
            (known, probe(lab, &base, &unknown).await)
        } else {
            let unknown = probe(lab, &base, &unknown).await;
            (probe(lab, &base, &known).await, unknown)
        };
        probes.known_us.push(pair.0);
        probes.unknown_us.push(pair.1);
        probes.pairs.push(pair);
    }
    probes
}

fn median_ms(samples: &[u64]) -> f64 {
    let mut sorted = samples.to_vec();
    sorted.sort_unstable();
    sorted[sorted.len() / 2] as f64 / 1000.0
}

#[tokio::test]
async fn with_the_default_modes_a_login_does_not_say_whether_the_account_exists() {
    let lab = start_lab().await;
    let plan = SeedPlan {
        products: 5,
        users: 20,
        stock: 10,
        orders_per_user: 0,
        seed: 42,
        ..SeedPlan::default()
    };
    lab.seed(&plan).await.unwrap();
    // Warm the argon2 path (the first checks allocate its memory).
    probes_warm_up(&lab).await;

    let constant = probes(&lab).await;
    let accuracy = constant.classifier_accuracy().unwrap();
    let leak = constant.leak_bound_ms().unwrap();
    eprintln!(
        "default: accuracy {accuracy:.3}, p {:.3}, leak at most {leak:.2} ms, medians known {:.1} ms, unknown {:.1} ms",
        constant.signed_rank_p().unwrap(),
        median_ms(&constant.known_us),
        median_ms(&constant.unknown_us)
    );
    // Judged on the size of what is left, as timing-attack's defended model is since 2026-12-04: the
    // default login fetches the account's row, a residual of a fraction of a millisecond that no code
    // removes. On a quiet machine a classifier picks it up: a clean-clone CI run of 2026-12-07 (12:08)
    // read accuracy 0.606 against the 0.6 this test asserted until then, with medians 20.1 ms known
    // and 19.7 ms unknown and the leak bounded at 0.65 ms. The accuracy is printed, not asserted.
    assert!(
        leak <= 5.0,
        "the default login leaks up to {leak:.2} ms (accuracy {accuracy:.3})"
    );

    let leaky = ModesPatch {
        login_timing: Some(LoginTiming::Leaky),
        ..ModesPatch::default()
    };
    lab.set_modes(1, &leaky).await.unwrap();
    let leaked = probes(&lab).await;
    let accuracy = leaked.classifier_accuracy().unwrap();
    eprintln!(
        "leaky: accuracy {accuracy:.3}, leak at most {:.2} ms, medians known {:.1} ms, unknown {:.1} ms",
        leaked.leak_bound_ms().unwrap(),
        median_ms(&leaked.known_us),
        median_ms(&leaked.unknown_us)
    );
    assert!(
        accuracy >= 0.95,
        "the classifier should see the leak: accuracy {accuracy:.3}"
    );
}

async fn probes_warm_up(lab: &Lab) {
    let base = lab.service_url(1).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(2);
    while Instant::now() < deadline {
        probe(lab, &base, "user1@fortress.test").await;
        probe(lab, &base, "nobody@fortress.test").await;
    }
}
