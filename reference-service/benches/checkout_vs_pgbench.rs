//! Checkout throughput through HTTP, set against pgbench running the same SQL transaction.
//!
//! One run starts Postgres (`max_connections=200`, `fsync=off` as in the test lab) and Redis in
//! containers on 127.0.0.1, runs the service in-process (pool of 32, outbox worker off), and for each
//! scenario alternates: reseed, 32 HTTP clients posting `POST /orders` (each with an `Idempotency-Key`)
//! for a fixed time, reseed, pgbench with 32 clients running the same transaction
//! (`checkout::PGBENCH_TRANSACTION`: the key lookup, then `place_locked` + `insert_order` in row-lock
//! mode, the script `fortress capacity` anchors with). It prints
//! HTTP checkouts/s, pgbench TPS and their ratio (target: >= 0.7), and writes the figures to
//! `target/bench/checkout_vs_pgbench.json`. Missing the target is reported, not an error.
//!
//! Scenarios: `spread` (a random product of 1000) and `hot row` (every checkout buys product 1).
//!
//! Run: `cargo bench -p reference-service --bench checkout_vs_pgbench`
//! (env `BENCH_SECONDS`, default 10; `BENCH_MAX_REQUESTS` caps HTTP requests per run, default 1000000).
//! Needs Docker with the `fortress/*` images (`ci/setup`) and `pgbench` (package postgresql-client).

use std::collections::BTreeMap;
use std::path::Path;
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use reference_service::{AppState, Config, checkout};
use serde_json::json;
use testcontainers::bollard::models::{HostConfig, PortBinding};
use testcontainers::core::{ContainerPort, WaitFor};
use testcontainers::runners::AsyncRunner;
use testcontainers::{ContainerAsync, ContainerRequest, GenericImage, ImageExt};
use tokio_util::sync::CancellationToken;

const CLIENTS: u32 = 32;
const PRODUCTS: u32 = 1000;
const STOCK: u32 = 1_000_000;
const TARGET_RATIO: f64 = 0.7;
const ADMIN_TOKEN: &str = "bench-admin-token";
const PG_PASSWORD: &str = "fortress-bench";
/// pgbench's options besides the connection, `-c` and `-T`: prepared statements as sqlx uses, no vacuum.
const PGBENCH_ARGS: &str = "-M prepared -n -j 2";

type Container = ContainerAsync<GenericImage>;

/// Starts a container with `port` published on 127.0.0.1 only (testcontainers would bind every
/// interface); returns it with the host port. Dropping the container removes it.
async fn start(request: ContainerRequest<GenericImage>, port: u16) -> anyhow::Result<(Container, u16)> {
    let loopback_only = move |host: &mut HostConfig| {
        let binding = PortBinding {
            host_ip: Some("127.0.0.1".into()),
            host_port: Some(String::new()),
        };
        host.publish_all_ports = Some(false);
        host.port_bindings = Some([(format!("{port}/tcp"), Some(vec![binding]))].into());
    };
    let started = request.with_host_config_modifier(loopback_only).start().await;
    let container = started.context("failed to start a container (run ci/setup for Docker and images)")?;
    let host_port = container.get_host_port_ipv4(port).await;
    Ok((container, host_port.context("failed to read a port")?))
}

fn env_u64(name: &str, default: u64) -> anyhow::Result<u64> {
    let value = std::env::var(name).map_or(Ok(default), |value| value.parse());
    value.with_context(|| format!("failed to parse {name} as a number"))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let seconds = env_u64("BENCH_SECONDS", 10)?.max(1);
    let max_requests = env_u64("BENCH_MAX_REQUESTS", u64::from(STOCK))?;
    let pgbench_version = std::process::Command::new("pgbench").arg("--version").output();
    if !pgbench_version.is_ok_and(|output| output.status.success()) {
        bail!("pgbench not found on PATH; install it with: apt-get install postgresql-client");
    }
    // The service's warnings and errors (set RUST_LOG for more).
    let filter = std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".into());
    let _ = tracing_subscriber::fmt().with_env_filter(filter).try_init();

    let label = ("fortress.bench", "checkout_vs_pgbench");
    let postgres = GenericImage::new("fortress/postgres", "15")
        .with_exposed_port(ContainerPort::Tcp(5432))
        .with_wait_for(WaitFor::message_on_stderr(
            "database system is ready to accept connections",
        ))
        .with_env_var("POSTGRES_PASSWORD", PG_PASSWORD)
        .with_env_var("POSTGRES_DB", "shop")
        .with_cmd(["postgres", "-c", "max_connections=200", "-c", "fsync=off"])
        .with_label(label.0, label.1);
    let redis = GenericImage::new("fortress/redis", "7")
        .with_exposed_port(ContainerPort::Tcp(6379))
        .with_wait_for(WaitFor::message_on_stdout("Ready to accept connections"))
        .with_label(label.0, label.1);
    let ((postgres, pg_port), (redis, redis_port)) =
        tokio::try_join!(start(postgres, 5432), start(redis, 6379))?;

    let mut config = Config::for_urls(
        &format!("postgres://postgres:{PG_PASSWORD}@127.0.0.1:{pg_port}/shop"),
        &format!("redis://127.0.0.1:{redis_port}"),
    );
    config.admin_token = ADMIN_TOKEN.into();
    config.db_pool_size = CLIENTS;
    config.outbox_worker = false;
    let state = AppState::connect(&config).context("failed to build the service state")?;
    let migrated = state.db.migrate(Duration::from_secs(60)).await;
    migrated.context("failed to migrate the database")?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}", listener.local_addr()?);
    let stop = CancellationToken::new();
    let shutdown = stop.clone();
    let server = tokio::spawn(reference_service::run(listener, state.clone(), async move {
        shutdown.cancelled().await;
    }));
    let http = reqwest::Client::builder().tcp_nodelay(true).build()?;
    let tokens = (1..=CLIENTS).map(|user| state.tokens.issue(i64::from(user)));
    let tokens: Vec<_> = tokens
        .collect::<Result<_, _>>()
        .context("failed to issue tokens")?;
    // The bench runs as target/<profile>/deps/<bench>.
    let exe = std::env::current_exe().context("failed to locate the bench executable")?;
    let target = exe.ancestors().nth(3).context("failed to find target/")?;
    let bench_dir = target.join("bench");
    std::fs::create_dir_all(&bench_dir).context("failed to create target/bench")?;

    println!(
        "checkout vs pgbench: {CLIENTS} clients, {seconds} s per run, db pool {CLIENTS}, outbox worker OFF \
         (so it does not compete), Postgres fsync=off, {PRODUCTS} products x {STOCK} stock"
    );
    // Warm-up: opens the pool's connections and prepares the statements before anything is timed.
    seed(&http, &base, &state).await?;
    http_load(&http, &base, &tokens, false, Duration::from_secs(2), max_requests).await?;

    let (mut rows, mut table) = (Vec::new(), Vec::new());
    for (scenario, hot, products) in [("spread", false, PRODUCTS), ("hot row", true, 1)] {
        seed(&http, &base, &state).await?;
        let duration = Duration::from_secs(seconds);
        let (created, http_seconds, failures) =
            http_load(&http, &base, &tokens, hot, duration, max_requests).await?;
        expect_orders(&state, created).await?;
        let http_rate = created as f64 / http_seconds;
        println!("{scenario:8} HTTP    {http_rate:>9.1} checkouts/s ({created} in {http_seconds:.2} s)");
        for (failure, count) in &failures {
            println!("{scenario:8} HTTP    non-201 x{count}: {failure}");
        }

        seed(&http, &base, &state).await?;
        let script_path = bench_dir.join("checkout_vs_pgbench.sql");
        std::fs::write(&script_path, checkout::PGBENCH_TRANSACTION)
            .context("failed to write the pgbench script")?;
        let (tps, transactions, failed) = pgbench(&script_path, pg_port, seconds, products).await?;
        expect_orders(&state, transactions).await?;
        println!("{scenario:8} pgbench {tps:>9.1} tps ({transactions} transactions, {failed} failed)");
        let ratio = http_rate / tps;
        table.push((scenario, http_rate, tps, ratio));
        rows.push(json!({
            "scenario": scenario, "http_checkouts_per_sec": http_rate, "http_created": created,
            "http_seconds": http_seconds, "http_non_201": failures, "pgbench_tps": tps,
            "pgbench_transactions": transactions, "pgbench_failed": failed, "ratio": ratio,
            "target_met": ratio >= TARGET_RATIO,
        }));
    }

    println!(
        "\n| scenario | HTTP checkouts/s | pgbench TPS | ratio (HTTP/pgbench) | target ({CLIENTS} clients) |"
    );
    println!("|----------|-----------------:|------------:|---------------------:|---------------------|");
    for (scenario, http_rate, tps, ratio) in table {
        let verdict = if ratio >= TARGET_RATIO { "met" } else { "MISSED" };
        let target = format!(">= {TARGET_RATIO:.1}: {verdict}");
        println!("| {scenario:8} | {http_rate:>16.1} | {tps:>11.1} | {ratio:>20.2} | {target:<19} |");
    }
    let report = json!({
        "clients": CLIENTS, "seconds": seconds, "db_pool_size": CLIENTS, "outbox_worker": false,
        "postgres": { "max_connections": 200, "fsync": false }, "products": PRODUCTS, "stock": STOCK,
        "pgbench": format!("{PGBENCH_ARGS} -c {CLIENTS} -T {seconds}"), "target_ratio": TARGET_RATIO,
        "scenarios": rows,
    });
    let json_path = bench_dir.join("checkout_vs_pgbench.json");
    std::fs::write(&json_path, format!("{report:#}\n")).context("failed to write the JSON report")?;
    println!("\nwrote {}", json_path.display());

    stop.cancel();
    let served = server.await.context("failed to join the server task")?;
    served.context("the service failed")?;
    drop((postgres, redis)); // removes both containers
    Ok(())
}

/// Replaces all data with the bench's plan through `POST /admin/seed`, then checkpoints, so every run
/// starts from the same data and no run pays for the previous one's dirty pages.
async fn seed(http: &reqwest::Client, base: &str, state: &AppState) -> anyhow::Result<()> {
    let plan = json!({ "products": PRODUCTS, "users": CLIENTS, "stock": STOCK, "orders_per_user": 0 });
    let request = http.post(format!("{base}/admin/seed")).bearer_auth(ADMIN_TOKEN);
    let response = request
        .json(&plan)
        .send()
        .await
        .context("failed to POST /admin/seed")?;
    let status = response.status();
    let body = response
        .text()
        .await
        .context("failed to read the seed response")?;
    ensure!(status.is_success(), "failed to seed: {status} {body}");
    let checkpoint = sqlx::query("CHECKPOINT").execute(state.db.pool()).await;
    checkpoint.context("failed to checkpoint")?;
    Ok(())
}

/// Checks that the database holds as many orders as the load generator counted.
async fn expect_orders(state: &AppState, counted: u64) -> anyhow::Result<()> {
    let query = sqlx::query_scalar::<_, i64>("SELECT count(*) FROM orders");
    let orders = query
        .fetch_one(state.db.pool())
        .await
        .context("failed to count orders")?;
    let counted = i64::try_from(counted)?;
    ensure!(orders == counted, "{orders} orders stored, {counted} counted");
    Ok(())
}

/// One client per token, each posting checkouts back to back until the time or the request budget runs
/// out. Returns the 201s, the seconds taken, and the other answers by status and body.
async fn http_load(
    http: &reqwest::Client,
    base: &str,
    tokens: &[String],
    hot: bool,
    duration: Duration,
    max_requests: u64,
) -> anyhow::Result<(u64, f64, BTreeMap<String, u64>)> {
    let url = format!("{base}/orders");
    let issued = Arc::new(AtomicU64::new(0));
    let failures = Arc::new(Mutex::new(BTreeMap::<String, u64>::new()));
    let started = Instant::now();
    let deadline = started + duration;
    let mut clients = tokio::task::JoinSet::new();
    for (client, token) in tokens.iter().enumerate() {
        let (http, url, token) = (http.clone(), url.clone(), token.clone());
        let (issued, failures) = (issued.clone(), failures.clone());
        clients.spawn(async move {
            let mut rng = StdRng::seed_from_u64(client as u64);
            let mut created = 0_u64;
            while Instant::now() < deadline && issued.fetch_add(1, Ordering::Relaxed) < max_requests {
                let product_id = if hot { 1 } else { rng.random_range(1..=PRODUCTS) };
                let body = json!({ "product_id": product_id, "quantity": 1 });
                let key = uuid::Uuid::new_v4().to_string();
                let request = http.post(&url).bearer_auth(&token).header("Idempotency-Key", key);
                let failure = match request.json(&body).send().await {
                    Ok(response) if response.status() == reqwest::StatusCode::CREATED => {
                        let body = response.bytes().await;
                        body.err().map(|e| format!("201 with an unreadable body: {e}"))
                    }
                    Ok(response) => {
                        let status = response.status();
                        let text = response.text().await.unwrap_or_default();
                        Some(format!("{status} {}", text.chars().take(160).collect::<String>()))
                    }
                    Err(e) => Some(format!("transport error: {e}")),
                };
                match failure {
                    None => created += 1,
                    Some(failure) => *failures.lock().unwrap().entry(failure).or_default() += 1,
                }
            }
            created
        });
    }
    let created = clients.join_all().await.into_iter().sum();
    let failures = std::mem::take(&mut *failures.lock().unwrap());
    Ok((created, started.elapsed().as_secs_f64(), failures))
}

/// Runs pgbench with the bench's concurrency; returns its TPS (without initial connection time), the
/// transactions processed and the transactions failed.
async fn pgbench(script: &Path, port: u16, seconds: u64, products: u32) -> anyhow::Result<(f64, u64, u64)> {
    let args = format!(
        "-h 127.0.0.1 -p {port} -U postgres {PGBENCH_ARGS} -c {CLIENTS} -T {seconds} \
         -D products={products} -D users={CLIENTS} -f"
    );
    let output = tokio::process::Command::new("pgbench")
        .args(args.split(' '))
        .args([script.as_os_str(), "shop".as_ref()])
        .env("PGPASSWORD", PG_PASSWORD)
        .output()
        .await
        .context("failed to run pgbench")?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    let status = output.status;
    ensure!(status.success(), "pgbench failed ({status}):\n{stdout}\n{stderr}");
    // "tps = 1234.5 (without initial connection time)"
    let tps = stdout
        .lines()
        .filter(|line| line.contains("without initial connection time"));
    let tps = field(&tps.collect::<String>(), "tps = ")?;
    let transactions = field(&stdout, "number of transactions actually processed: ")?;
    let failed = field(&stdout, "number of failed transactions: ")?;
    Ok((tps, transactions, failed))
}

/// The first word after `prefix` at the start of a line of pgbench's summary, parsed.
fn field<T: FromStr<Err: std::error::Error + Send + Sync + 'static>>(
    out: &str,
    prefix: &str,
) -> anyhow::Result<T> {
    let value = out
        .lines()
        .find_map(|line| line.strip_prefix(prefix)?.split_whitespace().next());
    let value = value.with_context(|| format!("failed to find {prefix:?} in pgbench's output:\n{out}"))?;
    value
        .parse()
        .with_context(|| format!("failed to parse {prefix}{value}"))
}
