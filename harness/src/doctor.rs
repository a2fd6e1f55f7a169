//! `fortress doctor`: can this machine run the lab? Each check says what it found and, when it fails,
//! what to do about it.

use reference_service::error::cause_chain;

use crate::env::cleanup;
use crate::env::docker::DockerClient;
use crate::env::images::{BALANCER_DEFAULT, MAIL_DEFAULT, POSTGRES_DEFAULT, REDIS_DEFAULT, RUNTIME_BASE};

#[derive(Debug)]
pub struct Check {
    pub name: &'static str,
    pub ok: bool,
    pub found: String,
    /// How to fix it, when it is not ok.
    pub fix: Option<String>,
}

impl std::fmt::Display for Check {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mark = if self.ok { "ok  " } else { "FAIL" };
        write!(f, "{mark} {:<14} {}", self.name, self.found)?;
        if let Some(fix) = &self.fix {
            write!(f, "\n     fix: {fix}")?;
        }
        Ok(())
    }
}

fn check(name: &'static str, ok: bool, found: impl Into<String>, fix: impl Into<String>) -> Check {
    Check {
        name,
        ok,
        found: found.into(),
        fix: (!ok).then(|| fix.into()),
    }
}

/// Runs every check; the lab can run when all are ok.
pub async fn examine() -> Vec<Check> {
    let mut checks = Vec::new();
    match DockerClient::connect().await {
        Ok(docker) => {
            let version = docker.version().await.unwrap_or_else(|e| cause_chain(&e));
            checks.push(check("docker", true, format!("engine {version} answers"), ""));
            for image in [
                POSTGRES_DEFAULT,
                REDIS_DEFAULT,
                RUNTIME_BASE,
                BALANCER_DEFAULT,
                MAIL_DEFAULT,
            ] {
                checks.push(image_check(&docker, image).await);
            }
            checks.push(leftovers_check(&docker).await);
        }
        Err(error) => checks.push(check(
            "docker",
            false,
            cause_chain(&error),
            "run `ci/setup` as root (Debian/Ubuntu)",
        )),
    }
    checks.push(ports_check());
    checks
}

async fn image_check(docker: &DockerClient, image: &str) -> Check {
    let found = match docker.image_label(image, "fortress.image.source").await {
        Ok(Some(source)) => Ok(format!("{image} ({source})")),
        Ok(None) if docker.image_exists(image).await.unwrap_or(false) => Ok(format!("{image} (unlabelled)")),
        Ok(None) => Err(format!("{image} is missing")),
        Err(error) => Err(cause_chain(&error)),
    };
    let ok = found.is_ok();
    check(
        "image",
        ok,
        found.unwrap_or_else(|e| e),
        "run `ci/setup` (builds it offline if needed)",
    )
}

/// Removes the labs whose fortress was killed, and counts what is left: labs still in use by a running
/// fortress are fine; containers that name no owner (an older fortress's) need `fortress cleanup`.
async fn leftovers_check(docker: &DockerClient) -> Check {
    let reaped = match cleanup::remove_orphans(docker).await {
        Ok(reaped) => reaped,
        Err(error) => return check("leftovers", false, cause_chain(&error), "check the Docker engine"),
    };
    for orphan in &reaped.removed {
        println!("     {orphan}");
    }
    if let Some(stuck) = reaped.stuck.first() {
        let found = format!(
            "{} lab(s) of killed runs could not be removed: {stuck}",
            reaped.stuck.len()
        );
        return check(
            "leftovers",
            false,
            found,
            "restart the Docker engine, then run `fortress cleanup`",
        );
    }
    let orphans = reaped.removed;
    match docker.labelled_containers(None).await {
        Ok(left) => {
            let unowned = left.iter().filter(|c| c.owner.is_none()).count();
            let in_use = left.len() - unowned;
            let found = format!(
                "{} lab(s) of killed runs removed; {in_use} container(s) of running labs; {unowned} container(s) naming no owner",
                orphans.len()
            );
            check("leftovers", unowned == 0, found, "run `fortress cleanup`")
        }
        Err(error) => check("leftovers", false, cause_chain(&error), "check the Docker engine"),
    }
}

fn ports_check() -> Check {
    match std::net::TcpListener::bind("127.0.0.1:0") {
        Ok(listener) => {
            let port = listener.local_addr().map(|a| a.port()).unwrap_or(0);
            let range = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
                .map(|r| r.split_whitespace().collect::<Vec<_>>().join("-"))
                .unwrap_or_else(|_| "unknown".into());
            let found = format!("127.0.0.1 has free ports (got {port}; ephemeral range {range})");
            check("ports", true, found, "")
        }
        Err(error) => check(
            "ports",
            false,
            format!("cannot bind 127.0.0.1:0: {error}"),
            "free some local ports",
        ),
    }
}
