//! A target: a backend Fortress did not write, described by the Compose file its team already has
//! plus a Fortress section (`x-fortress:`), read into a checked [`Target`].
//!
//! Every mistake is reported as `file:line: field: what is wrong and what to write instead`, before
//! anything starts; a key outside the supported part of the Compose specification ([`compose`]) is
//! refused, never ignored. The file is read with `marked_yaml`, which keeps every value's line; it
//! does not take YAML anchors and aliases, so a file that uses them is refused at the anchor.

mod compose;
pub mod lab;
mod merge;
mod section;

use std::path::{Path, PathBuf};

use marked_yaml::{LoaderOptions, Marker, Node, Span, Spanned};

use self::compose::RawService;
pub use self::compose::{Build, Condition, Healthcheck, Port};
use self::section::{RawBasicAuth, RawEntry, RawLink, RawMetrics, RawSection};
use crate::exposition::Selector;
use crate::vocabulary::Counter;

/// A mistake in a target's Compose file, or the file unreadable.
#[derive(Debug, thiserror::Error)]
pub enum TargetError {
    #[error("{file}: cannot read it: {source}")]
    Unreadable {
        file: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{file}:{line}: {field}: {message}")]
    Invalid {
        file: String,
        line: usize,
        field: String,
        message: String,
    },
}

/// Where a service's image comes from.
#[derive(Debug, Clone, PartialEq)]
pub enum ImageSource {
    /// An image present in the local Docker (nothing is pulled: there may be no registry).
    Present(String),
    /// Built with Docker from a context, relative to the Compose file; tagged `image` if given.
    Built { build: Build, tag: Option<String> },
}

/// One service of the target, checked.
#[derive(Debug, Clone, PartialEq)]
pub struct Service {
    pub name: String,
    pub image: ImageSource,
    pub command: Option<Vec<String>>,
    pub entrypoint: Option<Vec<String>>,
    pub environment: std::collections::BTreeMap<String, String>,
    pub ports: Vec<Port>,
    /// Ports other services reach it on, not published to the host.
    pub expose: Vec<u16>,
    pub depends_on: Vec<(String, Condition)>,
    pub healthcheck: Option<Healthcheck>,
    pub replicas: u32,
    pub working_dir: Option<String>,
    pub user: Option<String>,
}

/// Where the load goes in, and the path that answers 2xx once the target is ready.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub service: String,
    pub port: u16,
    pub ready: String,
    /// HAProxy in front of the entry's replicas, when asked for: the load and the checks go
    /// through it, and a replica that dies is taken out of its rotation.
    pub balancer: Option<crate::env::balancer::Balancing>,
}

/// A dependency put through the fault proxy: `from` reaches `to` on `port`, by the address in its
/// variable `address_in`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    pub from: String,
    pub to: String,
    pub port: u16,
    pub address_in: String,
    /// It carries HTTP/1.1: the proxy reads its requests, and HTTP faults apply to it.
    pub http: bool,
}

/// A Postgres database the invariants may query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Database {
    pub name: String,
    pub service: String,
    pub port: u16,
    /// The connection URL with `{address}` where the published host and port go.
    pub url: String,
}

/// The entry service's own Prometheus page: where each replica serves it, and which series each
/// service counter is summed from.
#[derive(Debug, Clone, PartialEq)]
pub struct Metrics {
    pub path: String,
    pub port: u16,
    pub counters: Vec<(Counter, Selector)>,
    /// The page asks for HTTP basic authentication.
    pub basic_auth: Option<BasicAuth>,
}

/// The metrics page's HTTP basic authentication: the user, and where its password is read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BasicAuth {
    pub user: String,
    pub password: PasswordSource,
}

/// Where a password is read when a lab starts. A target keeps the variable's name, never its value,
/// so it can be printed, logged and compared without the secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PasswordSource {
    /// A variable of the entry service's environment, with a variant's overrides: the password as
    /// the service itself is given it.
    Service(String),
    /// A variable of Fortress's own environment.
    Fortress(String),
}

impl std::fmt::Display for PasswordSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Service(variable) => write!(f, "the entry's environment variable {variable}"),
            Self::Fortress(variable) => write!(f, "Fortress's environment variable {variable}"),
        }
    }
}

/// A target, checked: every name it uses refers to a service of the file.
#[derive(Debug, Clone, PartialEq)]
pub struct Target {
    pub file: PathBuf,
    /// Services in the file's order.
    pub services: Vec<Service>,
    pub entry: Entry,
    pub links: Vec<Link>,
    pub databases: Vec<Database>,
    /// The entry's own counters, when the section names its `/metrics`.
    pub metrics: Option<Metrics>,
}

impl Target {
    /// This target with some services run from another image, present in the local Docker (a
    /// variant's `images`: the release before and after a change).
    pub fn with_images(&self, images: &std::collections::BTreeMap<String, String>) -> Self {
        let mut target = self.clone();
        for service in &mut target.services {
            if let Some(image) = images.get(&service.name) {
                service.image = ImageSource::Present(image.clone());
            }
        }
        target
    }

    /// Reads and checks the Compose file at `path`.
    pub fn load(path: &Path) -> Result<Self, TargetError> {
        Self::load_merged(path, &[])
    }

    /// Reads the Compose file at `path` with `overrides` merged over it in order, as `docker compose
    /// -f path -f override...` does, and checks the result. A mistake is named in the file it is in.
    pub fn load_merged(path: &Path, overrides: &[PathBuf]) -> Result<Self, TargetError> {
        let paths: Vec<&Path> = std::iter::once(path)
            .chain(overrides.iter().map(PathBuf::as_path))
            .collect();
        let texts = (paths.iter())
            .map(|path| {
                std::fs::read_to_string(path).map_err(|source| TargetError::Unreadable {
                    file: path.display().to_string(),
                    source,
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let texts: Vec<&str> = texts.iter().map(String::as_str).collect();
        Self::parse_merged(&paths, &texts)
    }

    /// Checks `text`, the Compose file at `path` (named in errors; build contexts are relative to it).
    pub fn parse(path: &Path, text: &str) -> Result<Self, TargetError> {
        Self::parse_merged(&[path], &[text])
    }

    /// Checks the Compose files' texts, each merged over the ones before it; build contexts are
    /// relative to the first.
    fn parse_merged(paths: &[&Path], texts: &[&str]) -> Result<Self, TargetError> {
        let file = File {
            names: paths.iter().map(|p| p.display().to_string()).collect(),
        };
        let mut root = None;
        for (source, text) in texts.iter().enumerate() {
            let options = LoaderOptions::default().error_on_duplicate_keys(true);
            let node = marked_yaml::parse_yaml_with_options(source, text, options)
                .map_err(|e| file.load_error(source, &e))?;
            match &mut root {
                None => root = Some(node),
                Some(base) => merge::merge(base, &node, "").map_err(|refusal| {
                    let (span, field, message) = *refusal;
                    file.at(&span, &field, message)
                })?,
            }
        }
        let root = root.expect("at least the Compose file itself");
        let path = paths[0];
        let (services, section) = file.top_level(&root)?;
        let checker = Checker {
            file: &file,
            services,
        };
        let section = section.ok_or_else(|| file.invalid(1, "x-fortress", NO_SECTION))?;
        Ok(Self {
            file: path.to_path_buf(),
            entry: checker.entry(&section)?,
            links: (section.links.iter())
                .map(|link| checker.link(link))
                .collect::<Result<_, _>>()?,
            databases: checker.databases(&section)?,
            metrics: (section.metrics.as_ref())
                .map(|metrics| checker.metrics(metrics, &section.entry))
                .transpose()?,
            services: checker.services()?,
        })
    }

    pub fn service(&self, name: &str) -> Option<&Service> {
        self.services.iter().find(|s| s.name == name)
    }
}

const NO_SECTION: &str = "the file has no Fortress section: add `x-fortress:` with at least \
    `entry: { service: <name>, port: <port>, ready: /<path that answers 2xx> }` (see docs/your-own-service.md)";

/// A service as written, with its name where the file gives it.
type NamedService = (Spanned<String>, RawService);

/// The files being read (the Compose file, then its overrides, by source id), for locating mistakes.
struct File {
    names: Vec<String>,
}

impl File {
    /// A mistake at `line` of the Compose file itself.
    fn invalid(&self, line: usize, field: &str, message: impl Into<String>) -> TargetError {
        self.invalid_in(0, line, field, message)
    }

    fn invalid_in(&self, source: usize, line: usize, field: &str, message: impl Into<String>) -> TargetError {
        TargetError::Invalid {
            file: self.names.get(source).unwrap_or(&self.names[0]).clone(),
            line,
            field: field.to_owned(),
            message: message.into(),
        }
    }

    /// A mistake where `span` starts, in whichever file that is.
    fn at(&self, span: &Span, field: &str, message: impl Into<String>) -> TargetError {
        let source = span.start().map_or(0, Marker::source);
        self.invalid_in(source, line_of(span.start()), field, message)
    }

    fn load_error(&self, source: usize, error: &marked_yaml::LoadError) -> TargetError {
        use marked_yaml::LoadError::*;
        let (marker, message) = match error {
            TopLevelMustBeMapping(m) => (Some(*m), "a Compose file is a mapping at its top".to_owned()),
            UnexpectedAnchor(m) => (
                Some(*m),
                "YAML anchors and aliases are not supported: write the values out".to_owned(),
            ),
            MappingKeyMustBeScalar(m) => (Some(*m), "keys must be plain names".to_owned()),
            UnexpectedTag(m) => (Some(*m), "YAML tags are not supported".to_owned()),
            ScanError(m, e) => (Some(*m), format!("not valid YAML: {e}")),
            DuplicateKey(inner) => (
                inner.key.span().start().copied(),
                format!("`{}` is written twice in the same mapping", inner.key.as_str()),
            ),
            other => (None, other.to_string()),
        };
        self.invalid_in(source, line_of(marker.as_ref()), "(yaml)", message)
    }

    /// Deserialises `node` as a `T`, locating any mistake under `field`.
    fn read<T: serde::de::DeserializeOwned>(&self, node: &Node, field: &str) -> Result<T, TargetError> {
        marked_yaml::from_node(node).map_err(|error| {
            let marker = error.start_mark().or(node.span().start().copied());
            let path = match error.path() {
                Some(inner) if !inner.is_empty() && inner != "." => format!("{field}.{inner}"),
                _ => field.to_owned(),
            };
            let source = marker.map_or(0, |m| m.source());
            self.invalid_in(
                source,
                line_of(marker.as_ref()),
                &path,
                error.into_inner().to_string(),
            )
        })
    }

    /// The services and the Fortress section; any other top-level key but `name`, `version` and
    /// `x-` extensions is refused.
    fn top_level(&self, root: &Node) -> Result<(Vec<NamedService>, Option<RawSection>), TargetError> {
        let mut services = Vec::new();
        let mut section = None;
        for (key, value) in root.as_mapping().into_iter().flat_map(|m| m.iter()) {
            match key.as_str() {
                "services" => services = self.services(value)?,
                "x-fortress" => section = Some(self.read(value, "x-fortress")?),
                "name" | "version" => {}
                extension if extension.starts_with("x-") => {}
                other => return Err(self.at(key.span(), other, unsupported_top_level(other))),
            }
        }
        Ok((services, section))
    }

    fn services(&self, node: &Node) -> Result<Vec<NamedService>, TargetError> {
        let Some(mapping) = node.as_mapping() else {
            return Err(self.at(node.span(), "services", "a mapping of service names to services"));
        };
        (mapping.iter())
            .map(|(name, service)| {
                let field = format!("services.{}", name.as_str());
                let raw = self.read(service, &field)?;
                Ok((Spanned::new(*name.span(), name.as_str().to_owned()), raw))
            })
            .collect()
    }
}

fn unsupported_top_level(key: &str) -> String {
    let why = match key {
        "volumes" => "a lab starts from a clean state each run, so named volumes are not supported",
        "networks" => "each run makes its own isolated network and puts every service on it",
        "configs" | "secrets" => "write what the service needs into its `environment` or its image",
        "include" => "write the included services into this file",
        _ => "not a part of the Compose specification Fortress supports",
    };
    format!("{why} (supported: services, name, version, x-fortress and other x- extension fields)")
}

/// Lines are counted from 1; a mistake without a position is reported at the top.
fn line_of(marker: Option<&Marker>) -> usize {
    marker.map_or(1, |m| m.line())
}

/// The cross-references of a file: every name the section and `depends_on` use is a service.
struct Checker<'a> {
    file: &'a File,
    services: Vec<NamedService>,
}

impl Checker<'_> {
    fn raw(&self, name: &Spanned<String>, field: &str) -> Result<&RawService, TargetError> {
        (self.services.iter())
            .find(|(n, _)| n.as_str() == name.as_str())
            .map(|(_, raw)| raw)
            .ok_or_else(|| {
                let known: Vec<&str> = self.services.iter().map(|(n, _)| n.as_str()).collect();
                let message = format!(
                    "no service is called {:?} (the file has: {})",
                    name.as_str(),
                    known.join(", ")
                );
                self.file.at(name.span(), field, message)
            })
    }

    fn entry(&self, section: &RawSection) -> Result<Entry, TargetError> {
        let entry = &section.entry;
        self.raw(&entry.service, "x-fortress.entry.service")?;
        if !entry.ready.starts_with('/') {
            let message = format!(
                "{:?} is not a path: write the path of a GET that answers 2xx once the service is ready, such as /healthz",
                entry.ready.as_str()
            );
            return Err(self
                .file
                .at(entry.ready.span(), "x-fortress.entry.ready", message));
        }
        let balanced = entry.balancer.as_ref().is_some_and(|b| **b);
        if let Some(sticky) = entry.sticky.as_ref().filter(|s| ***s && !balanced) {
            let message =
                "sticky pins each client to a replica behind the balancer: set `balancer: true` too";
            return Err(self.file.at(sticky.span(), "x-fortress.entry.sticky", message));
        }
        Ok(Entry {
            service: entry.service.to_string(),
            port: *entry.port,
            ready: entry.ready.to_string(),
            balancer: balanced.then(|| crate::env::balancer::Balancing {
                sticky: entry.sticky.as_ref().is_some_and(|s| **s),
            }),
        })
    }

    fn link(&self, link: &RawLink) -> Result<Link, TargetError> {
        let from = self.raw(&link.from, "x-fortress.links.from")?;
        self.raw(&link.to, "x-fortress.links.to")?;
        if link.from.as_str() == link.to.as_str() {
            return Err(self.file.at(
                link.to.span(),
                "x-fortress.links.to",
                "a link joins two different services",
            ));
        }
        let field = "x-fortress.links.address_in";
        let value = (from.environment.as_ref())
            .and_then(|env| env.0.get(link.address_in.as_str()))
            .ok_or_else(|| {
                let message = format!(
                    "{} has no variable {:?} in its `environment`: name the variable that carries {}'s address",
                    link.from.as_str(), link.address_in.as_str(), link.to.as_str()
                );
                self.file.at(link.address_in.span(), field, message)
            })?;
        address_in(value, link.to.as_str(), *link.port)
            .map_err(|message| self.file.at(link.address_in.span(), field, message))?;
        Ok(Link {
            from: link.from.to_string(),
            to: link.to.to_string(),
            port: *link.port,
            address_in: link.address_in.to_string(),
            http: link.http.as_ref().is_some_and(|h| **h),
        })
    }

    fn databases(&self, section: &RawSection) -> Result<Vec<Database>, TargetError> {
        (section.databases.iter())
            .map(|(name, db)| {
                self.raw(&db.service, &format!("x-fortress.databases.{name}.service"))?;
                if !db.url.contains("{address}") {
                    let message = "write `{address}` where the host and port go (`postgres://user:password@{address}/name`): Fortress fills in the port it publishes";
                    return Err(self.file.at(db.url.span(), &format!("x-fortress.databases.{name}.url"), message));
                }
                Ok(Database {
                    name: name.clone(),
                    service: db.service.to_string(),
                    port: *db.port,
                    url: db.url.to_string(),
                })
            })
            .collect()
    }

    fn metrics(&self, raw: &RawMetrics, entry: &RawEntry) -> Result<Metrics, TargetError> {
        if !raw.path.starts_with('/') {
            let message = format!(
                "{:?} is not a path: write where the entry serves its metrics, such as /metrics",
                raw.path.as_str()
            );
            return Err(self.file.at(raw.path.span(), "x-fortress.metrics.path", message));
        }
        let counters = (raw.counters.iter())
            .map(|(name, selector)| {
                let field = format!("x-fortress.metrics.counters.{name}");
                let counter = name
                    .parse::<Counter>()
                    .map_err(|e| self.file.at(selector.span(), &field, e.to_string()))?;
                let selector = selector
                    .parse::<Selector>()
                    .map_err(|e| self.file.at(selector.span(), &field, e.to_string()))?;
                Ok((counter, selector))
            })
            .collect::<Result<Vec<_>, TargetError>>()?;
        if counters.is_empty() {
            return Err(self.file.at(raw.path.span(), "x-fortress.metrics.counters", "name at least one counter and the series it is read from, such as `responses: http_requests_total`"));
        }
        Ok(Metrics {
            path: raw.path.to_string(),
            port: raw.port.as_ref().map_or(*entry.port, |p| **p),
            counters,
            basic_auth: (raw.basic_auth.as_ref())
                .map(|auth| self.basic_auth(auth, entry))
                .transpose()?,
        })
    }

    /// The metrics page's user, and the one variable its password is read from, which must be set
    /// where it is looked for.
    fn basic_auth(&self, raw: &RawBasicAuth, entry: &RawEntry) -> Result<BasicAuth, TargetError> {
        let field = "x-fortress.metrics.basic_auth";
        let password = match (&raw.password_in, &raw.password_env) {
            (Some(variable), None) => {
                let service = self.raw(&entry.service, "x-fortress.entry.service")?;
                let env = service.environment.as_ref().map(|e| &e.0);
                if !env.is_some_and(|env| env.contains_key(variable.as_str())) {
                    let message = format!(
                        "{} has no variable {:?} in its `environment`: name the variable the service reads its metrics password from, or use password_env",
                        entry.service.as_str(),
                        variable.as_str()
                    );
                    return Err(self
                        .file
                        .at(variable.span(), &format!("{field}.password_in"), message));
                }
                PasswordSource::Service(variable.to_string())
            }
            (None, Some(variable)) => {
                if std::env::var_os(variable.as_str()).is_none() {
                    let message = format!(
                        "Fortress's environment has no {:?}: export it before the run (`export {}=...`)",
                        variable.as_str(),
                        variable.as_str()
                    );
                    return Err(self
                        .file
                        .at(variable.span(), &format!("{field}.password_env"), message));
                }
                PasswordSource::Fortress(variable.to_string())
            }
            _ => {
                let message = "name where the password is read, once: `password_in: <a variable of the entry's environment>` or `password_env: <a variable of Fortress's environment>` (the password itself is never written here)";
                return Err(self.file.at(raw.user.span(), field, message));
            }
        };
        Ok(BasicAuth {
            user: raw.user.to_string(),
            password,
        })
    }

    fn services(&self) -> Result<Vec<Service>, TargetError> {
        if self.services.is_empty() {
            return Err(self.file.invalid(1, "services", "the file names no services"));
        }
        (self.services.iter())
            .map(|(name, raw)| self.service(name, raw))
            .collect()
    }

    fn service(&self, name: &Spanned<String>, raw: &RawService) -> Result<Service, TargetError> {
        let field = |f: &str| format!("services.{}.{f}", name.as_str());
        let image = match (&raw.build, &raw.image) {
            (Some(build), tag) => ImageSource::Built {
                build: (**build).clone(),
                tag: tag.as_ref().map(|t| t.to_string()),
            },
            (None, Some(image)) => ImageSource::Present(image.to_string()),
            (None, None) => {
                return Err(self.file.at(
                    name.span(),
                    &field("image"),
                    "give the service an `image:` present in the local Docker, or a `build:` context",
                ));
            }
        };
        if let Some(restart) = raw.restart.as_ref().filter(|r| r.as_str() != "no") {
            let message = format!(
                "{:?} would undo a kill or stop fault: Fortress restarts containers itself (remove it, or write \"no\")",
                restart.as_str()
            );
            return Err(self.file.at(restart.span(), &field("restart"), message));
        }
        let mut depends_on = Vec::new();
        for (on, condition) in raw.depends_on.iter().flat_map(|d| d.0.iter()) {
            let spanned = Spanned::new(
                raw.depends_on
                    .as_ref()
                    .map(|d| *d.span())
                    .unwrap_or_else(Span::new_blank),
                on.clone(),
            );
            let dependency = self.raw(&spanned, &field("depends_on"))?;
            let checked = dependency.healthcheck.as_ref().is_some_and(|h| !h.disable);
            if *condition == Condition::ServiceHealthy && !checked {
                let message = format!(
                    "{on} has no `healthcheck`, so it can never be healthy: give it one, or wait for `service_started`"
                );
                return Err(self.file.at(spanned.span(), &field("depends_on"), message));
            }
            depends_on.push((on.clone(), *condition));
        }
        self.no_interpolation(raw, name)?;
        Ok(Service {
            name: name.to_string(),
            image,
            command: raw.command.as_ref().map(|c| c.0.clone()),
            entrypoint: raw.entrypoint.as_ref().map(|c| c.0.clone()),
            environment: raw.environment.as_ref().map(|e| e.0.clone()).unwrap_or_default(),
            ports: raw.ports.iter().map(|p| **p).collect(),
            expose: raw.expose.iter().map(|p| p.container).collect(),
            depends_on,
            healthcheck: raw.healthcheck.clone().filter(|h| !h.disable),
            replicas: self.replicas(name, raw)?,
            working_dir: raw.working_dir.clone(),
            user: raw.user.clone(),
        })
    }

    fn replicas(&self, name: &Spanned<String>, raw: &RawService) -> Result<u32, TargetError> {
        let deploy = raw.deploy.as_ref().and_then(|d| d.replicas.as_ref());
        let field = format!("services.{}.scale", name.as_str());
        match (deploy, raw.scale.as_ref()) {
            (Some(d), Some(s)) if **d != **s => Err(self.file.at(
                s.span(),
                &field,
                format!("scale {} and deploy.replicas {} disagree: write one", **s, **d),
            )),
            (Some(n), _) | (None, Some(n)) if **n == 0 => {
                Err(self.file.at(n.span(), &field, "at least one replica"))
            }
            (Some(n), _) | (None, Some(n)) => Ok(**n),
            (None, None) => Ok(1),
        }
    }

    /// Compose fills `${VAR}` from the shell and `.env`; a lab must not depend on either.
    fn no_interpolation(&self, raw: &RawService, name: &Spanned<String>) -> Result<(), TargetError> {
        let env = raw.environment.as_ref();
        let found = (env.into_iter().flat_map(|e| e.0.iter()))
            .find(|(_, value)| value.contains("${"))
            .map(|(key, _)| (env.map(|e| *e.span()), format!("environment.{key}")))
            .or_else(|| {
                (raw.image.as_ref().filter(|i| i.contains("${")))
                    .map(|i| (Some(*i.span()), "image".to_owned()))
            });
        match found {
            Some((span, field)) => Err(self.file.at(
                &span.unwrap_or_else(Span::new_blank),
                &format!("services.{}.{field}", name.as_str()),
                "`${...}` is filled from the shell by Compose, and a lab must not depend on it: write the value",
            )),
            None => Ok(()),
        }
    }
}

/// Where the host of an address is in `value` (`host`, `host:port`, or a URL), and the port written
/// after it, if any.
fn host_of(value: &str) -> (std::ops::Range<usize>, Option<&str>) {
    let start = value.find("://").map_or(0, |i| i + 3);
    let authority_end = value[start..].find(['/', '?']).map_or(value.len(), |i| start + i);
    let host_start = value[start..authority_end]
        .rfind('@')
        .map_or(start, |i| start + i + 1);
    match value[host_start..authority_end].rfind(':') {
        Some(i) => (
            host_start..host_start + i,
            Some(&value[host_start + i + 1..authority_end]),
        ),
        None => (host_start..authority_end, None),
    }
}

/// Checks that `value` (a variable of the link's `from`) names `to` as a host, so Fortress can point
/// it at the proxy: `to`, `to:port`, or a URL whose host is `to`. A port written there must be the
/// link's.
fn address_in(value: &str, to: &str, port: u16) -> Result<(), String> {
    let (host, written_port) = host_of(value);
    if &value[host] != to {
        return Err(format!(
            "its value {value:?} does not name {to:?} as a host: Fortress points the address at the proxy, so it must read `{to}`, `{to}:{port}` or a URL with host {to}"
        ));
    }
    match written_port {
        Some(p) if p != port.to_string() => Err(format!(
            "its value {value:?} names port {p}, the link says {port}"
        )),
        _ => Ok(()),
    }
}

/// `value` with its host `to` replaced by `proxy` (the proxy listens on the link's own port, so the
/// port stays as written).
pub(crate) fn pointed_at(value: &str, to: &str, proxy: &str) -> String {
    let (host, _) = host_of(value);
    if &value[host.clone()] != to {
        return value.to_owned();
    }
    format!("{}{proxy}{}", &value[..host.start], &value[host.end..])
}

#[cfg(test)]
mod tests;
