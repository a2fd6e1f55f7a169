//! The test bench: a real Postgres and a real Redis in containers, and the service running in-process
//! on a real TCP port, all on 127.0.0.1.
//!
//! Every test gets its own containers, so a test may stop, pause or fill them without touching another.
//! Containers are removed when the `Lab` is dropped. Without Docker the tests fail, saying how to get it.

use std::future::Future;
use std::time::{Duration, Instant};

use reference_service::seed::SeedPlan;
use reference_service::{AppState, Config};
use serde_json::{Value, json};
use sqlx::postgres::PgPoolOptions;
use sqlx::{PgPool, Row};
use testcontainers::bollard::models::{HostConfig, PortBinding};
use testcontainers::core::{ContainerPort, WaitFor};
use testcontainers::runners::AsyncRunner;
use testcontainers::{ContainerAsync, GenericImage, ImageExt};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub const POSTGRES_IMAGE: (&str, &str) = ("fortress/postgres", "15");
pub const REDIS_IMAGE: (&str, &str) = ("fortress/redis", "7");
pub const ADMIN_TOKEN: &str = "test-admin-token";
const PG_PASSWORD: &str = "fortress-test";

/// Publishes `port` on 127.0.0.1 only (testcontainers would bind every interface).
fn loopback_only(port: u16) -> impl Fn(&mut HostConfig) + Send + Sync + 'static {
    move |host: &mut HostConfig| {
        let binding = PortBinding {
            host_ip: Some("127.0.0.1".into()),
            host_port: Some(String::new()),
        };
        host.publish_all_ports = Some(false);
        host.port_bindings = Some(
            [(format!("{port}/tcp"), Some(vec![binding]))]
                .into_iter()
                .collect(),
        );
    }
}

fn no_docker(what: &str, error: impl std::fmt::Display) -> ! {
    panic!(
        "could not start the {what} container: {error}\n\
         These tests need a Docker engine and Fortress's images: run `ci/setup` (it installs Docker on \
         Debian/Ubuntu, starts it and builds the images offline)."
    )
}

pub struct Lab {
    pub postgres: ContainerAsync<GenericImage>,
    pub redis: ContainerAsync<GenericImage>,
    pub database_url: String,
    pub redis_url: String,
    /// A pool of the test's own, for looking at the database from outside the service.
    pub pg: PgPool,
}

impl Lab {
    pub async fn start() -> Self {
        // The service's logs, shown with a failing test's output.
        let _ = tracing_subscriber::fmt()
            .with_test_writer()
            .with_env_filter("info,sqlx=warn")
            .try_init();
        let (pg_image, pg_tag) = POSTGRES_IMAGE;
        let postgres = GenericImage::new(pg_image, pg_tag)
            .with_exposed_port(ContainerPort::Tcp(5432))
            .with_wait_for(WaitFor::message_on_stderr(
                "database system is ready to accept connections",
            ))
            .with_env_var("POSTGRES_PASSWORD", PG_PASSWORD)
            .with_env_var("POSTGRES_DB", "shop")
            .with_cmd([
                "postgres",
                "-c",
                "shared_preload_libraries=pg_stat_statements",
                "-c",
                "fsync=off",
            ])
            .with_host_config_modifier(loopback_only(5432))
            .with_label("fortress.test", "reference-service")
            .start();
        let (redis_image, redis_tag) = REDIS_IMAGE;
        let redis = GenericImage::new(redis_image, redis_tag)
            .with_exposed_port(ContainerPort::Tcp(6379))
            .with_wait_for(WaitFor::message_on_stdout("Ready to accept connections"))
            .with_host_config_modifier(loopback_only(6379))
            .with_label("fortress.test", "reference-service")
            .start();
        let (postgres, redis) = tokio::join!(postgres, redis);
        let postgres = postgres.unwrap_or_else(|e| no_docker("postgres", e));
        let redis = redis.unwrap_or_else(|e| no_docker("redis", e));
        let pg_port = postgres
            .get_host_port_ipv4(5432)
            .await
            .expect("postgres port published on 127.0.0.1");
        let redis_port = redis
            .get_host_port_ipv4(6379)
            .await
            .expect("redis port published on 127.0.0.1");
        let database_url = format!("postgres://postgres:{PG_PASSWORD}@127.0.0.1:{pg_port}/shop");
        let pg = PgPoolOptions::new()
            .max_connections(4)
            .connect(&database_url)
            .await
            .expect("connect to postgres");
        sqlx::query("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
            .execute(&pg)
            .await
            .expect("extension");
        Self {
            postgres,
            redis,
            database_url,
            redis_url: format!("redis://127.0.0.1:{redis_port}"),
            pg,
        }
    }

    /// Starts the service against this lab, with `tweak` applied to the default test configuration.
    pub async fn service(&self, tweak: impl FnOnce(&mut Config)) -> Service {
        let mut config = Config::for_urls(&self.database_url, &self.redis_url);
        config.admin_token = ADMIN_TOKEN.into();
        config.outbox_poll_ms = 50;
        tweak(&mut config);
        let state = AppState::connect(&config).expect("valid test configuration");
        state
            .db
            .migrate(Duration::from_secs(30))
            .await
            .expect("migrations apply");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind 127.0.0.1:0");
        let base = format!("http://{}", listener.local_addr().expect("local address"));
        let stop = CancellationToken::new();
        let stopped = stop.clone();
        let server = tokio::spawn(reference_service::run(listener, state.clone(), async move {
            stopped.cancelled().await;
        }));
        let service = Service {
            base,
            state,
            stop,
            server: Some(server),
            http: reqwest::Client::new(),
        };
        wait_until(
            "the service answers /healthz",
            Duration::from_secs(10),
            || async { service.get("/healthz").await.0 == 200 },
        )
        .await;
        service
    }

    /// Counts executions, since the last reset, of the statements matching any of `query_like`
    /// (ILIKE patterns), except the test's own probes and the outbox relay's background polls.
    pub async fn statements_since_reset(&self, query_like: &[&str]) -> i64 {
        sqlx::query(
            "SELECT coalesce(sum(calls), 0)::bigint AS calls FROM pg_stat_statements \
             WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database()) \
               AND query NOT ILIKE '%pg_stat_statements%' AND query NOT ILIKE '%outbox%' \
               AND query ILIKE ANY($1)",
        )
        .bind(query_like)
        .fetch_one(&self.pg)
        .await
        .expect("read pg_stat_statements")
        .get("calls")
    }

    pub async fn reset_statements(&self) {
        sqlx::query("SELECT pg_stat_statements_reset()")
            .execute(&self.pg)
            .await
            .expect("reset statements");
    }

    pub async fn scalar(&self, sql: &str) -> i64 {
        sqlx::query_scalar::<_, i64>(sql)
            .fetch_one(&self.pg)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"))
    }
}

pub struct Service {
    pub base: String,
    pub state: AppState,
    stop: CancellationToken,
    server: Option<JoinHandle<Result<(), reference_service::StartError>>>,
    pub http: reqwest::Client,
}

/// A response reduced to what the tests look at.
pub type Reply = (u16, Value);

async fn reply(response: reqwest::Response) -> Reply {
    let status = response.status().as_u16();
    let body = response.text().await.expect("response body");
    (status, serde_json::from_str(&body).unwrap_or(Value::String(body)))
}

impl Service {
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub async fn get(&self, path: &str) -> Reply {
        reply(self.http.get(self.url(path)).send().await.expect("GET")).await
    }

    pub async fn get_as(&self, token: &str, path: &str) -> Reply {
        reply(
            self.http
                .get(self.url(path))
                .bearer_auth(token)
                .send()
                .await
                .expect("GET"),
        )
        .await
    }

    pub async fn admin(&self, method: reqwest::Method, path: &str, body: Value) -> Reply {
        let request = self
            .http
            .request(method, self.url(path))
            .bearer_auth(ADMIN_TOKEN)
            .json(&body);
        reply(request.send().await.expect("admin request")).await
    }

    pub async fn set_modes(&self, modes: Value) {
        let (status, body) = self.admin(reqwest::Method::PUT, "/admin/modes", modes).await;
        assert_eq!(status, 200, "PUT /admin/modes: {body}");
    }

    pub async fn seed(&self, plan: SeedPlan) {
        let (status, body) = self
            .admin(reqwest::Method::POST, "/admin/seed", json!(plan))
            .await;
        assert_eq!(status, 200, "POST /admin/seed: {body}");
    }

    /// A token for a seeded user, issued directly (the login route has its own test; argon2 is slow).
    pub fn token(&self, user_id: i64) -> String {
        self.state.tokens.issue(user_id).expect("issue token")
    }

    pub async fn checkout(&self, token: &str, product_id: i64, quantity: i64, key: Option<&str>) -> Reply {
        let mut request = self
            .http
            .post(self.url("/orders"))
            .bearer_auth(token)
            .json(&json!({ "product_id": product_id, "quantity": quantity }));
        if let Some(key) = key {
            request = request.header("Idempotency-Key", key);
        }
        reply(request.send().await.expect("POST /orders")).await
    }

    /// The value of one series of the service's `/metrics`, e.g.
    /// `fortress_cache_requests_total{outcome="bypass"}`: 0 when the service exports the metric but
    /// has not counted that series yet (a label set is only shown once it is used). A metric the
    /// service does not export at all fails the test, so a renamed metric cannot read as a zero.
    pub async fn metric(&self, series: &str) -> f64 {
        let text = self
            .http
            .get(self.url("/metrics"))
            .send()
            .await
            .expect("GET /metrics")
            .text()
            .await
            .unwrap();
        if let Some(value) = text
            .lines()
            .find_map(|line| line.strip_prefix(series).and_then(|rest| rest.strip_prefix(' ')))
        {
            return value.trim().parse().expect("a number");
        }
        let family = series.split('{').next().unwrap_or(series);
        let exported = text.lines().any(|line| {
            line.strip_prefix("# TYPE ")
                .is_some_and(|rest| rest.split(' ').next() == Some(family))
        });
        assert!(
            exported,
            "the service exports no metric {family:?}; it exports:\n{}",
            text.lines()
                .filter(|l| l.starts_with("# TYPE "))
                .collect::<Vec<_>>()
                .join("\n")
        );
        0.0
    }

    /// Signals shutdown and waits for the server (and its outbox worker) to finish draining.
    pub async fn shutdown(mut self) {
        self.stop.cancel();
        let server = self.server.take().expect("running");
        server
            .await
            .expect("server task")
            .expect("server stopped cleanly");
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// Polls `condition` until it holds, failing the test with `what` at the deadline.
pub async fn wait_until<F, Fut>(what: &str, deadline: Duration, mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let started = Instant::now();
    while !condition().await {
        assert!(
            started.elapsed() < deadline,
            "timed out after {deadline:?} waiting until {what}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}
