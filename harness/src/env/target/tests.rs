use std::path::Path;

use super::*;

const SHOP: &str = r#"name: shop
services:
  web:
    build: ./web
    image: shop/web:dev
    command: ["gunicorn", "shop.wsgi", "--bind", "0.0.0.0:8000"]
    environment:
      DATABASE_URL: postgres://shop:shop@db:5432/shop
      REDIS_HOST: cache
    ports: ["8080:8000"]
    depends_on:
      db: { condition: service_healthy }
      cache: { condition: service_started }
    deploy: { replicas: 2 }
  db:
    image: fortress/postgres:16
    environment: ["POSTGRES_PASSWORD=shop"]
    healthcheck:
      test: ["CMD", "pg_isready"]
      interval: 1s
  cache:
    image: fortress/redis:7
    restart: "no"
x-fortress:
  entry: { service: web, port: 8000, ready: /healthz }
  links:
    - { from: web, to: db, port: 5432, address_in: DATABASE_URL }
    - { from: web, to: cache, port: 6379, address_in: REDIS_HOST }
  databases:
    shop: { service: db, port: 5432, url: "postgres://shop:shop@{address}/shop" }
"#;

fn parse(text: &str) -> Result<Target, TargetError> {
    Target::parse(Path::new("compose.yaml"), text)
}

/// The error's `(line, field)`, and its message.
fn refused(text: &str) -> (usize, String, String) {
    match parse(text) {
        Err(TargetError::Invalid {
            line, field, message, ..
        }) => (line, field, message),
        other => panic!("expected the file refused, got {other:?}"),
    }
}

/// `SHOP` with one line replaced.
fn shop_with(line: &str, instead: &str) -> String {
    assert!(SHOP.contains(line), "{line:?} is not in the example");
    SHOP.replacen(line, instead, 1)
}

#[test]
fn a_compose_file_with_its_fortress_section_is_read_whole() {
    let target = parse(SHOP).unwrap();
    let names: Vec<&str> = target.services.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["web", "db", "cache"], "in the file's order");
    let web = target.service("web").unwrap();
    assert_eq!(web.replicas, 2);
    assert_eq!(
        web.ports,
        [Port {
            container: 8000,
            host_asked: Some(8080)
        }]
    );
    assert!(
        matches!(&web.image, ImageSource::Built { build, tag: Some(tag) } if build.context == "./web" && tag == "shop/web:dev")
    );
    assert_eq!(
        web.depends_on,
        [
            ("db".to_owned(), Condition::ServiceHealthy),
            ("cache".to_owned(), Condition::ServiceStarted)
        ]
    );
    assert_eq!(
        target.service("db").unwrap().environment["POSTGRES_PASSWORD"],
        "shop"
    );
    assert_eq!(
        target.entry,
        Entry {
            service: "web".into(),
            port: 8000,
            ready: "/healthz".into(),
            balancer: None,
        }
    );
    assert_eq!(target.links.len(), 2);
    assert_eq!(target.databases[0].url, "postgres://shop:shop@{address}/shop");
}

#[test]
fn an_unknown_service_key_is_refused_with_its_line_and_path() {
    let (line, field, message) = refused(&shop_with(
        "    restart: \"no\"\n",
        "    restart: \"no\"\n    privileged: true\n",
    ));
    assert_eq!((line, field.as_str()), (24, "services.cache.privileged"));
    assert!(message.contains("privileged"), "{message}");
}

#[test]
fn an_unsupported_top_level_key_says_why() {
    let (line, field, message) = refused(&format!("{SHOP}volumes:\n  data: {{}}\n"));
    assert_eq!((line, field.as_str()), (31, "volumes"));
    assert!(message.contains("clean state"), "{message}");
}

#[test]
fn a_name_the_section_uses_must_be_a_service() {
    let (line, field, message) = refused(&shop_with(
        "{ service: web, port: 8000",
        "{ service: front, port: 8000",
    ));
    assert_eq!((line, field.as_str()), (25, "x-fortress.entry.service"));
    assert!(
        message.contains("front") && message.contains("web, db, cache"),
        "{message}"
    );
}

#[test]
fn a_link_whose_variable_does_not_name_the_dependency_is_refused() {
    let (line, field, message) = refused(&shop_with("REDIS_HOST: cache", "REDIS_HOST: localhost"));
    assert_eq!((line, field.as_str()), (28, "x-fortress.links.address_in"));
    assert!(message.contains("localhost"), "{message}");
    let (_, _, message) = refused(&shop_with("db:5432/shop\n", "db:5433/shop\n"));
    assert!(message.contains("5433"), "{message}");
    let (_, _, message) = refused(&shop_with("address_in: REDIS_HOST", "address_in: CACHE_URL"));
    assert!(message.contains("CACHE_URL"), "{message}");
}

#[test]
fn a_restart_policy_would_undo_a_kill_and_is_refused() {
    let (line, field, _) = refused(&shop_with("restart: \"no\"", "restart: unless-stopped"));
    assert_eq!((line, field.as_str()), (23, "services.cache.restart"));
}

#[test]
fn values_compose_would_take_from_the_shell_are_refused() {
    let (_, field, _) = refused(&shop_with(
        "REDIS_HOST: cache",
        "REDIS_HOST: cache\n      SECRET: ${SECRET}",
    ));
    assert_eq!(field, "services.web.environment.SECRET");
    let (_, _, message) = refused(&shop_with(
        "[\"POSTGRES_PASSWORD=shop\"]",
        "[\"POSTGRES_PASSWORD\"]",
    ));
    assert!(message.contains("not taken from the shell"), "{message}");
}

#[test]
fn anchors_duplicates_and_a_missing_section_are_named() {
    let (line, _, message) = refused(&shop_with("  cache:\n", "  cache: &cache\n"));
    assert_eq!(line, 22, "where the anchored mapping begins");
    assert!(message.contains("anchors"), "{message}");
    let (line, _, message) = refused(&shop_with(
        "      interval: 1s\n",
        "      interval: 1s\n      interval: 2s\n",
    ));
    assert_eq!(line, 21, "the second of the two");
    assert!(message.contains("twice"), "{message}");
    let (_, field, _) = refused(SHOP.split("x-fortress:").next().unwrap());
    assert_eq!(field, "x-fortress");
}

#[test]
fn a_string_command_asks_for_the_list_form() {
    let (line, field, message) = refused(&shop_with(
        "command: [\"gunicorn\", \"shop.wsgi\", \"--bind\", \"0.0.0.0:8000\"]",
        "command: gunicorn shop.wsgi",
    ));
    assert_eq!((line, field.as_str()), (6, "services.web.command"));
    assert!(message.contains("list"), "{message}");
}

#[test]
fn a_service_needs_an_image_or_a_build() {
    let (line, field, _) = refused(&shop_with("    image: fortress/redis:7\n", ""));
    assert_eq!((line, field.as_str()), (21, "services.cache.image"));
}

#[test]
fn an_address_is_pointed_at_the_proxy_whatever_its_form() {
    let proxy = "fortress-ab-proxy";
    assert_eq!(pointed_at("db", "db", proxy), proxy);
    assert_eq!(pointed_at("db:5432", "db", proxy), "fortress-ab-proxy:5432");
    assert_eq!(
        pointed_at("postgres://u:p@db:5432/shop?sslmode=disable", "db", proxy),
        "postgres://u:p@fortress-ab-proxy:5432/shop?sslmode=disable"
    );
    assert_eq!(
        pointed_at("redis://cache/0", "cache", proxy),
        "redis://fortress-ab-proxy/0"
    );
    assert_eq!(
        pointed_at("redis://other/0", "cache", proxy),
        "redis://other/0",
        "another host is left alone"
    );
}

#[test]
fn waiting_for_a_healthy_service_needs_its_healthcheck() {
    let (line, field, message) = refused(&shop_with(
        "      cache: { condition: service_started }",
        "      cache: { condition: service_healthy }",
    ));
    assert_eq!((line, field.as_str()), (12, "services.web.depends_on"));
    assert!(message.contains("cache has no `healthcheck`"), "{message}");
}

#[test]
fn a_balanced_entry_may_be_sticky_and_sticky_needs_the_balancer() {
    let entry = "entry: { service: web, port: 8000, ready: /healthz }";
    let balanced = parse(&shop_with(
        entry,
        "entry: { service: web, port: 8000, ready: /healthz, balancer: true, sticky: true }",
    ))
    .unwrap();
    assert_eq!(
        balanced.entry.balancer,
        Some(crate::env::balancer::Balancing { sticky: true })
    );
    let (line, field, message) = refused(&shop_with(
        entry,
        "entry: { service: web, port: 8000, ready: /healthz, sticky: true }",
    ));
    assert_eq!(field, "x-fortress.entry.sticky");
    assert!(message.contains("balancer: true"), "{message}");
    assert!(line > 1);
}

#[test]
fn the_entrys_metrics_map_counters_to_series_and_a_mistake_is_named() {
    let with = |metrics: &str| shop_with("  databases:\n", &format!("  metrics: {metrics}\n  databases:\n"));
    let counters = r#"{ responses: http_requests_total, responses_5xx: 'http_requests_total{code=~"5.."}' }"#;
    let target = parse(&with(&format!("{{ path: /metrics, counters: {counters} }}"))).unwrap();
    let metrics = target.metrics.expect("the section's metrics");
    assert_eq!(
        (metrics.path.as_str(), metrics.port),
        ("/metrics", 8000),
        "the entry's port"
    );
    let read: Vec<(Counter, String)> = (metrics.counters.iter())
        .map(|(c, s)| (*c, s.to_string()))
        .collect();
    assert_eq!(
        read,
        [
            (Counter::Responses, "http_requests_total".to_owned()),
            (
                Counter::Responses5xx,
                r#"http_requests_total{code=~"5.."}"#.to_owned()
            ),
        ]
    );
    assert_eq!(parse(SHOP).unwrap().metrics, None);

    let (line, field, message) = refused(&with("{ path: /metrics, counters: { hits: x_total } }"));
    assert_eq!((line, field.as_str()), (29, "x-fortress.metrics.counters.hits"));
    assert!(
        message.starts_with("unknown counter \"hits\"; counters: responses,"),
        "{message}"
    );
    let (line, field, message) = refused(&with(
        r#"{ path: /metrics, counters: { responses: 'x{code=5}' } }"#,
    ));
    assert_eq!(
        (line, field.as_str()),
        (29, "x-fortress.metrics.counters.responses")
    );
    assert!(message.contains("not in double quotes"), "{message}");
    let (_, field, _) = refused(&with("{ path: metrics, counters: { responses: x } }"));
    assert_eq!(field, "x-fortress.metrics.path");
    let (_, field, _) = refused(&with("{ path: /metrics, counters: {} }"));
    assert_eq!(field, "x-fortress.metrics.counters");
}

#[test]
fn a_metrics_password_is_named_by_where_it_is_kept_and_must_be_there() {
    let with = |auth: &str| {
        let metrics = format!(
            "  metrics:\n    path: /metrics\n    counters: {{ responses: x_total }}\n    basic_auth: {auth}\n"
        );
        shop_with("  databases:\n", &format!("{metrics}  databases:\n"))
    };
    let in_service = with("{ user: metrics, password_in: REDIS_HOST }");
    let auth = parse(&in_service).unwrap().metrics.unwrap().basic_auth;
    assert_eq!(
        auth,
        Some(BasicAuth {
            user: "metrics".into(),
            password: PasswordSource::Service("REDIS_HOST".into()),
        })
    );
    let auth = parse(&with("{ user: m, password_env: PATH }"))
        .unwrap()
        .metrics
        .unwrap()
        .basic_auth;
    assert_eq!(auth.unwrap().password, PasswordSource::Fortress("PATH".into()));

    let (line, field, message) = refused(&with("{ user: metrics, password_in: METRICS_PASSWORD }"));
    assert_eq!(
        (line, field.as_str()),
        (32, "x-fortress.metrics.basic_auth.password_in")
    );
    assert!(
        message.starts_with("web has no variable \"METRICS_PASSWORD\""),
        "{message}"
    );
    let absent = "FORTRESS_TEST_NO_SUCH_VARIABLE";
    assert!(std::env::var_os(absent).is_none());
    let (_, field, message) = refused(&with(&format!("{{ user: m, password_env: {absent} }}")));
    assert_eq!(field, "x-fortress.metrics.basic_auth.password_env");
    assert!(message.contains(&format!("export {absent}=")), "{message}");
    for neither_or_both in [
        "{ user: m }",
        "{ user: m, password_in: REDIS_HOST, password_env: PATH }",
    ] {
        let (_, field, message) = refused(&with(neither_or_both));
        assert_eq!(field, "x-fortress.metrics.basic_auth", "{neither_or_both}");
        assert!(message.contains("never written here"), "{message}");
    }
    let (_, field, message) = refused(&with("{ user: m, password: hunter2 }"));
    assert_eq!(
        field, "x-fortress.metrics.basic_auth.password",
        "a password in the section is refused"
    );
    assert!(message.contains("password_in"), "{message}");
}
