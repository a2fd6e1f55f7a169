//! An experiment file against a user's target (`target = "compose.yaml"`), checked into a `Plan`
//! whose `target` holds what replaces the reference lab's seed, mix and modes.
//!
//! The Compose file is read and checked first, so every name the experiment uses (a service to kill,
//! a link to break, a database to query, a service whose environment a variant sets) is checked
//! against it, and a mistake in the Compose file is reported at its own file and line.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use toml::Spanned;

use super::{
    FaultsOf, LabShape, Source, abort, length_factor, name, network_parts, phase_list, predictions, rate,
    scoped,
};
use crate::env::target::{Target, TargetError};
use crate::experiment::abort::AbortCondition;
use crate::experiment::definition::{
    Arrangement, DefinitionError, HttpCheck, HttpLookup, InvariantCheck, Lookup, Overrides, Plan, Profile,
    SqlFigure, SqlLookup, TargetInvariant, TargetPlan, VariantPlan,
};
use crate::experiment::schema::{
    AbortFile, AcknowledgesFile, FaultFile, HttpCheckFile, HttpLookupFile, InvariantFile, RequestFile,
    SqlFigureFile, TargetExperimentFile, TargetLoadFile,
};
use crate::faults::{ContainerAction, Fault};
use crate::load::Group;
use crate::load::script::{Acknowledgement, Capture, Method, Script, ScriptedRequest, Template};
use crate::vocabulary::{Cadence, Counter, Metric, Needs, Producer, Start, Variant};

/// Whether `text` is an experiment against a user's target: it names one at the top level.
pub(super) fn is_target_file(text: &str) -> bool {
    toml::from_str::<toml::Table>(text).is_ok_and(|table| table.contains_key("target"))
}

/// What a target's run can measure: the client's figures of the groups its requests are filed
/// under, the end-of-run figures its `[figures]` compute, the service rates of the counters its
/// Compose file maps to its entry's own series, and its databases' activity.
pub(super) struct Shape {
    groups: BTreeSet<Group>,
    figures: BTreeSet<Metric>,
    counters: BTreeSet<Counter>,
    databases: bool,
}

impl Shape {
    /// Why `metric` has no figure on this target, if it has none.
    pub(super) fn lacks(&self, metric: Metric) -> Option<String> {
        let owner = metric.owner();
        let has = match (owner.producer, owner.needs) {
            (Producer::Client, Needs::Nothing) => true,
            (Producer::Client, Needs::Scenario(scenario)) => self.groups.iter().any(|g| g.sent_by(scenario)),
            (Producer::Judge, _) if owner.cadence == Cadence::PerRun => self.figures.contains(&metric),
            (Producer::Service | Producer::Postgres, _) => {
                let mapped: Vec<Counter> = self.counters.iter().copied().collect();
                crate::observe::target_produces(metric, &mapped, self.databases)
            }
            _ => false,
        };
        if has {
            return None;
        }
        Some(match owner.producer {
            Producer::Client => format!(
                "{metric} needs requests of its group in load.requests (their groups here: {})",
                names(&self.groups)
            ),
            Producer::Judge if owner.cadence == Cadence::PerRun => {
                format!("{metric} is computed on a target by a [figures.{metric}] query; this file has none")
            }
            Producer::Service if !Counter::feeding(metric).is_empty() => format!(
                "{metric} is read from the service's own counters ({}): map each to a series of the entry's \
                 /metrics in the Compose file's x-fortress.metrics.counters (it maps: {})",
                names(&Counter::feeding(metric).iter().copied().collect()),
                names(&self.counters)
            ),
            Producer::Postgres if crate::observe::target_produces(metric, &[], true) => format!(
                "{metric} is read from the target's Postgres: name its database in the Compose file's \
                 x-fortress.databases"
            ),
            producer => format!(
                "{metric} comes from {producer:?}, which only the reference lab has; on a target, predictions \
                 take the client's figures (error_rate, p95_ms, throughput_rps...), its databases' \
                 pg_transactions_per_s and pg_tuples_read_per_s, the service rates of x-fortress.metrics, \
                 and [figures]"
            ),
        })
    }
}

fn names<T: std::fmt::Display>(set: &BTreeSet<T>) -> String {
    let names: Vec<String> = set.iter().map(ToString::to_string).collect();
    if names.is_empty() {
        "none".into()
    } else {
        names.join(", ")
    }
}

/// Parses and checks an experiment against a target; `file` names it in errors, and the Compose
/// file is found relative to it.
pub(super) fn parse(file: &str, text: &str, profile: Profile) -> Result<Plan, DefinitionError> {
    let src = Source { file, text };
    let parsed: TargetExperimentFile = toml::from_str(text).map_err(|e| src.toml_error(&e))?;
    let name = name(&src, &parsed.name)?;
    let target = target(&src, &parsed)?;
    let users = src.in_range(&parsed.load.users, "load.users", 1..=2000)?;
    let rate = rate(&src, &parsed.load.rate)?;
    let script = script(&src, &parsed.load)?;
    let factor = length_factor(&src, profile, parsed.profiles.as_ref())?;
    let faults_of = |fault: &Spanned<FaultFile>| target_fault(&src, fault, &target);
    let phases = phase_list(&src, &parsed.phases, profile, factor, &faults_of as &FaultsOf<'_>)?;
    let (
        variants,
        VariantSetup {
            environment,
            images,
            targets,
        },
    ) = variants(&src, &parsed, &target)?;
    let figures = figures(&src, &parsed.figures, &target)?;
    let acknowledged = acknowledged(&src, &parsed, &script, &target)?;
    let mut shape = Shape {
        groups: (script.requests.iter().chain(&script.start))
            .map(|r| r.group)
            .collect(),
        figures: figures.iter().map(|f| f.metric).collect(),
        counters: (target.metrics.iter())
            .flat_map(|m| m.counters.iter().map(|(counter, _)| *counter))
            .collect(),
        databases: !target.databases.is_empty(),
    };
    if acknowledged.is_some() {
        shape.figures.insert(Metric::LostAcknowledgedOrders);
    }
    let invariants = (parsed.invariants.iter())
        .map(|i| invariant(&src, i, &target, &shape))
        .collect::<Result<_, _>>()?;
    let lab = LabShape {
        target: Some(&shape),
        mail: false,
        payments: false,
        mix: &[],
        phases: &phases,
        variants: &variants,
    };
    let predictions = predictions(&src, &parsed.predictions, &lab)?;
    let aborts: Vec<AbortCondition> = (parsed.abort.iter())
        .map(|a| stop_condition(&src, a, &lab))
        .collect::<Result<_, _>>()?;
    Ok(Plan {
        name,
        story: parsed.story.trim().to_owned(),
        source: file.to_owned(),
        profile,
        replicas: 1,
        pool_size: 1,
        mail: false,
        payments: false,
        // Each variant starts the whole target, which a user's service may size for the machine.
        arrangement: Arrangement::InTurn,
        seed: Default::default(),
        rate,
        users,
        mix: Vec::new(),
        start: Start::Staggered,
        phases,
        variants,
        predictions,
        aborts,
        capacity: None,
        target: Some(Arc::new(TargetPlan {
            target,
            script,
            environment,
            images,
            targets,
            invariants,
            figures,
            acknowledged,
        })),
    })
}

/// A stop condition, as on the reference lab, on one of the client's per-second figures: the live
/// count of oversold units needs the reference lab's own database.
fn stop_condition(
    src: &Source<'_>,
    written: &AbortFile,
    lab: &LabShape<'_>,
) -> Result<AbortCondition, DefinitionError> {
    let condition = abort(src, written, lab)?;
    if condition.metric == Metric::OversoldUnits {
        let message = "oversold_units is counted live only in the reference lab; on a target it is an \
                       end-of-run [figures] query: stop on error_rate, p95_ms or another per-second figure";
        return Err(src.error(&written.metric.span(), "abort.metric", message));
    }
    Ok(condition)
}

/// The Compose file, relative to the experiment file; its own mistakes keep its own file and line.
fn target(src: &Source<'_>, experiment: &TargetExperimentFile) -> Result<Target, DefinitionError> {
    merged_target(src, experiment, None)
}

/// The Compose file with the override files merged over it in order (`compose = [...]`, the
/// experiment's for every variant, then `variant`'s own), all relative to this file; a mistake in
/// any of them keeps its own file and line.
fn merged_target(
    src: &Source<'_>,
    experiment: &TargetExperimentFile,
    variant: Option<&Spanned<Vec<String>>>,
) -> Result<Target, DefinitionError> {
    let base = Path::new(src.file).parent().unwrap_or(Path::new("."));
    let lists = [
        (experiment.compose.as_ref(), "compose"),
        (variant, "variants.compose"),
    ];
    let overrides: Vec<(PathBuf, &Spanned<Vec<String>>, &str)> = (lists.into_iter())
        .filter_map(|(list, field)| Some((list?, field)))
        .flat_map(|(list, field)| (list.get_ref().iter()).map(move |f| (base.join(f), list, field)))
        .collect();
    let paths: Vec<PathBuf> = overrides.iter().map(|(path, ..)| path.clone()).collect();
    let target = &experiment.target;
    Target::load_merged(&base.join(target.get_ref()), &paths).map_err(|error| match error {
        TargetError::Invalid {
            file,
            line,
            field,
            message,
        } => DefinitionError {
            file,
            line,
            field,
            message,
        },
        TargetError::Unreadable { ref file, .. } => {
            let (span, field) = (overrides.iter())
                .find(|(path, ..)| path.display().to_string() == *file)
                .map_or((target.span(), "target"), |(_, list, field)| {
                    (list.span(), *field)
                });
            let message = format!("{error} (the path is relative to this file)");
            src.error(&span, field, message)
        }
    })
}

/// The start request (its values captured for the others), then the requests, whose templates may
/// use what the start captures.
fn script(src: &Source<'_>, load: &TargetLoadFile) -> Result<Script, DefinitionError> {
    let start = (load.start.as_ref())
        .map(|start| start_request(src, start))
        .transpose()?;
    let captured: Vec<String> = (start.iter())
        .flat_map(|s| s.captures.iter().map(|c| c.name.clone()))
        .collect();
    let written = &load.requests;
    if written.get_ref().is_empty() {
        let message = "at least one request: [[load.requests]] with group, method, path and ok";
        return Err(src.error(&written.span(), "load.requests", message));
    }
    let requests = (written.get_ref().iter())
        .map(|r| {
            if let Some(capture) = &r.get_ref().capture {
                let message = "a value is captured from [load.start]'s answer, which each user sends first";
                return Err(src.error(&capture.span(), "load.requests.capture", message));
            }
            request(src, r.get_ref(), &captured, "load.requests")
        })
        .collect::<Result<_, _>>()?;
    Ok(Script::new(start, requests))
}

/// `[load.start]`: a request like the others, without a weight (every user sends it), and the
/// values it captures: names for templates, JSON pointers into its ok answer.
fn start_request(
    src: &Source<'_>,
    written: &Spanned<RequestFile>,
) -> Result<ScriptedRequest, DefinitionError> {
    let r = written.get_ref();
    if let Some(weight) = &r.weight {
        let message = "every user sends the start request once: it has no weight";
        return Err(src.error(&weight.span(), "load.start.weight", message));
    }
    let mut start = request(src, r, &[], "load.start")?;
    for (name, pointer) in r.capture.as_ref().map(|c| c.get_ref()).into_iter().flatten() {
        let span = r.capture.as_ref().map_or(written.span(), Spanned::span);
        let named = !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !named || ["user", "request", "uuid"].contains(&name.as_str()) || !pointer.starts_with('/') {
            let message = format!(
                "{name} = {pointer:?}: a name of letters, digits and _ (not user, request or uuid) and the JSON \
                 pointer to its value in the answer: token = \"/token\""
            );
            return Err(src.error(&span, "load.start.capture", message));
        }
        start.captures.push(Capture {
            name: name.clone(),
            pointer: pointer.clone(),
        });
    }
    Ok(start)
}

/// One request; `field` names its table in errors, and `captured` are the start's values its
/// templates may use.
fn request(
    src: &Source<'_>,
    r: &RequestFile,
    captured: &[String],
    field: &str,
) -> Result<ScriptedRequest, DefinitionError> {
    let at = |name: &str| format!("{field}.{name}");
    let group: Group = (r.group.get_ref().parse())
        .map_err(|e: crate::vocabulary::Unknown| src.error(&r.group.span(), &at("group"), e.to_string()))?;
    let method: Method =
        (r.method.get_ref().parse()).map_err(|e: String| src.error(&r.method.span(), &at("method"), e))?;
    let template = |text: &Spanned<String>, name: &str| {
        Template::parse(text.get_ref(), captured).map_err(|e| src.error(&text.span(), &at(name), e))
    };
    if !r.path.get_ref().starts_with('/') {
        let message = "a path on the entry, starting with / (the host is the target's entry)";
        return Err(src.error(&r.path.span(), &at("path"), message));
    }
    let headers = (r.headers.iter())
        .map(|(name, value)| Ok((name.clone(), template(value, "headers")?)))
        .collect::<Result<_, DefinitionError>>()?;
    let weight = match &r.weight {
        Some(w) => src.in_range(w, &at("weight"), 1..=1000)?,
        None => 1,
    };
    let statuses = |list: &[u16]| list.iter().all(|s| (100..=599).contains(s));
    if r.ok.get_ref().is_empty() || !statuses(r.ok.get_ref()) || !statuses(&r.expected) {
        let message = "ok (and expected) list HTTP statuses, 100 to 599; ok needs at least one";
        return Err(src.error(&r.ok.span(), &at("ok"), message));
    }
    Ok(ScriptedRequest {
        name: (r.name.clone())
            .unwrap_or_else(|| format!("{} {}", r.method.get_ref().to_uppercase(), r.path.get_ref())),
        group,
        method,
        path: template(&r.path, "path")?,
        headers,
        body: r.body.as_ref().map(|b| template(b, "body")).transpose()?,
        weight,
        ok: r.ok.get_ref().clone(),
        expected: r.expected.clone(),
        expected_contains: r.expected_contains.clone(),
        acknowledges: (r.acknowledges.as_ref())
            .map(|a| acknowledges(src, a, &at("acknowledges")))
            .transpose()?,
        captures: Vec::new(),
    })
}

fn acknowledges(
    src: &Source<'_>,
    written: &Spanned<AcknowledgesFile>,
    field: &str,
) -> Result<Acknowledgement, DefinitionError> {
    let a = written.get_ref();
    if !a.id.starts_with('/') || !(100..=599).contains(&a.status) {
        let message =
            "an HTTP status and the JSON pointer to the id in its body: { status = 201, id = \"/code\" }";
        return Err(src.error(&written.span(), field, message));
    }
    Ok(Acknowledgement {
        status: a.status,
        id: a.id.clone(),
    })
}

/// `[acknowledged]`, which a request that acknowledges needs, and only then: the SQL that finds the
/// acknowledged ids (`$1`, a `text[]`) in the target's database, or the GET that finds one
/// (`{{id}}` in its path).
fn acknowledged(
    src: &Source<'_>,
    file: &TargetExperimentFile,
    script: &Script,
    target: &Target,
) -> Result<Option<Lookup>, DefinitionError> {
    let acknowledging = (script.requests.iter().chain(&script.start)).any(|r| r.acknowledges.is_some());
    let written = match &file.acknowledged {
        None if acknowledging => {
            return Err(src.error(
                &file.load.requests.span(),
                "acknowledged",
                "a request acknowledges: add [acknowledged] with the database and the SQL that answers which \
                 of the ids in $1 (a text[]) it holds, or http = { path = \"/orders/{{id}}\" }",
            ));
        }
        None => return Ok(None),
        Some(written) if !acknowledging => {
            return Err(src.error(
                &written.span(),
                "acknowledged",
                "no request acknowledges anything: give one `acknowledges = { status = 201, id = \"/id\" }`",
            ));
        }
        Some(written) => written,
    };
    let a = written.get_ref();
    match (&a.database, &a.sql, &a.http) {
        (Some(database), Some(sql), None) if sql.contains("$1") => Ok(Some(Lookup::Sql(SqlLookup {
            database: self::database(src, database, target)?,
            sql: sql.clone(),
        }))),
        (Some(_), Some(_), None) => Err(src.error(
            &written.span(),
            "acknowledged.sql",
            "the query takes the acknowledged ids as $1 (a text[]): ... WHERE code = ANY($1)",
        )),
        (None, None, Some(http)) => Ok(Some(Lookup::Http(http_lookup(src, http)?))),
        _ => Err(src.error(
            &written.span(),
            "acknowledged",
            "either database and sql, or http = { path = \"/orders/{{id}}\", found = [200], missing = [404] }",
        )),
    }
}

/// The GET per acknowledged id: `{{id}}` in its path, a status for found and one for missing.
fn http_lookup(src: &Source<'_>, written: &Spanned<HttpLookupFile>) -> Result<HttpLookup, DefinitionError> {
    let h = written.get_ref();
    let id = ["id".to_owned()];
    let template = |text: &Spanned<String>, field: &str| {
        Template::parse(text.get_ref(), &id).map_err(|e| src.error(&text.span(), field, e))
    };
    if !h.path.get_ref().contains("{{id}}") || !h.path.get_ref().starts_with('/') {
        let message = "a path on the entry with the id in it: /orders/{{id}}";
        return Err(src.error(&h.path.span(), "acknowledged.http.path", message));
    }
    let found = statuses(src, h.found.as_ref(), &[200], "acknowledged.http.found")?;
    let missing = statuses(src, h.missing.as_ref(), &[404], "acknowledged.http.missing")?;
    if let Some(both) = found.iter().find(|s| missing.contains(s)) {
        let message = format!("{both} cannot mean both found and missing");
        return Err(src.error(&written.span(), "acknowledged.http", message));
    }
    Ok(HttpLookup {
        path: template(&h.path, "acknowledged.http.path")?,
        headers: (h.headers.iter())
            .map(|(name, value)| Ok((name.clone(), template(value, "acknowledged.http.headers")?)))
            .collect::<Result<_, DefinitionError>>()?,
        found,
        missing,
    })
}

/// A list of HTTP statuses, `default` when not written; none empty, each 100 to 599.
fn statuses(
    src: &Source<'_>,
    written: Option<&Spanned<Vec<u16>>>,
    default: &[u16],
    field: &str,
) -> Result<Vec<u16>, DefinitionError> {
    let Some(written) = written else {
        return Ok(default.to_vec());
    };
    let list = written.get_ref();
    if list.is_empty() || !list.iter().all(|s| (100..=599).contains(s)) {
        return Err(src.error(&written.span(), field, "HTTP statuses, 100 to 599, at least one"));
    }
    Ok(list.clone())
}

/// A fault on the target: a kill, stop or pause of one of its services (`target` is its Compose
/// name; `count` replicas, 1 by default), or a network fault on one of its links (`from-to`).
fn target_fault(
    src: &Source<'_>,
    fault: &Spanned<FaultFile>,
    target: &Target,
) -> Result<Vec<Fault>, DefinitionError> {
    let span = fault.span();
    let on_service = |action, service: &str, count: &Option<u32>| {
        let Some(found) = target.service(service) else {
            let message = format!(
                "no service {service:?} in {}; services: {}",
                target.file.display(),
                service_names(target)
            );
            return Err(src.error(&span, "phases.faults.target", message));
        };
        let replicas = count.unwrap_or(1);
        if replicas == 0 || replicas > found.replicas {
            let message = format!(
                "must be 1 to {}, the replicas of {service} (got {replicas})",
                found.replicas
            );
            return Err(src.error(&span, "phases.faults.count", message));
        }
        Ok(vec![Fault::OnService {
            action,
            service: service.to_owned(),
            replicas,
        }])
    };
    match fault.get_ref() {
        FaultFile::Kill { target, count } => on_service(ContainerAction::Kill, target, count),
        FaultFile::Stop { target, count } => on_service(ContainerAction::Stop, target, count),
        FaultFile::Pause { target, count } => on_service(ContainerAction::Pause, target, count),
        FaultFile::RollingRestart => {
            let entry = &target.entry;
            let replicas = target.service(&entry.service).map_or(1, |s| s.replicas);
            if entry.balancer.is_none() || replicas < 2 {
                let message = format!(
                    "a rolling restart needs the entry's replicas behind the balancer: at least 2 \
                     (`deploy.replicas` of {}: {replicas}) and `balancer: true` in x-fortress.entry{}",
                    entry.service,
                    if entry.balancer.is_none() {
                        " (it is not set)"
                    } else {
                        ""
                    }
                );
                return Err(src.error(&span, "phases.faults.kind", message));
            }
            Ok(vec![Fault::RollingRestartOf(entry.service.clone())])
        }
        written => match network_parts(written) {
            Some((link, fault, fraction)) => {
                on_link(src, &span, target, link, scoped(src, &span, fault, fraction)?)
            }
            None => Err(src.error(
                &span,
                "phases.faults.kind",
                "this fault needs the reference service (its modes, its database or its cache); on a \
                 target: kill, stop, pause, rolling_restart, latency, bandwidth, blackhole, reset, down",
            )),
        },
    }
}

fn on_link(
    src: &Source<'_>,
    span: &Range<usize>,
    target: &Target,
    link: &str,
    fault: crate::faults::proxy::ScopedFault,
) -> Result<Vec<Fault>, DefinitionError> {
    let known: Vec<String> = (target.links.iter())
        .map(|l| format!("{}-{}", l.from, l.to))
        .collect();
    let found = (target.links.iter()).find(|l| format!("{}-{}", l.from, l.to) == link);
    if found.is_none() {
        let message = format!(
            "no link {link:?} in the target's x-fortress.links; links: {}",
            if known.is_empty() {
                "none".into()
            } else {
                known.join(", ")
            }
        );
        return Err(src.error(span, "phases.faults.link", message));
    }
    if fault.kind().is_http() && !found.is_some_and(|l| l.http) {
        let message = format!(
            "the {link} link carries raw TCP: an HTTP fault needs `http: true` on it in x-fortress.links \
             (for a link that carries HTTP/1.1)"
        );
        return Err(src.error(span, "phases.faults.kind", message));
    }
    Ok(vec![Fault::OnLink {
        link: link.to_owned(),
        fault,
    }])
}

fn service_names(target: &Target) -> String {
    let names: Vec<&str> = target.services.iter().map(|s| s.name.as_str()).collect();
    names.join(", ")
}

/// What each variant sets up differently: its environment (the file's shared `[environment]` with
/// the variant's own on top), its images, and its Compose file with its overrides merged.
struct VariantSetup {
    environment: BTreeMap<Variant, Overrides>,
    images: BTreeMap<Variant, BTreeMap<String, String>>,
    targets: BTreeMap<Variant, Target>,
}

/// The variants (vulnerable first), and each one's environment and images.
fn variants(
    src: &Source<'_>,
    file: &TargetExperimentFile,
    target: &Target,
) -> Result<(Vec<VariantPlan>, VariantSetup), DefinitionError> {
    let shared = match &file.environment {
        Some(written) => overrides(src, written, "environment", target)?,
        None => Overrides::new(),
    };
    let span = file.variants.span();
    let (mut variants, mut environment, mut images) = (Vec::new(), BTreeMap::new(), BTreeMap::new());
    let mut targets = BTreeMap::new();
    for (name, variant) in file.variants.get_ref() {
        let parsed: Variant = (name.parse())
            .map_err(|e: crate::vocabulary::Unknown| src.error(&span, "variants", e.to_string()))?;
        let mut merged = shared.clone();
        if let Some(own) = &variant.environment {
            for (service, vars) in overrides(src, own, "variants.environment", target)? {
                merged.entry(service).or_default().extend(vars);
            }
        }
        environment.insert(parsed, merged);
        if let Some(written) = &variant.images {
            images.insert(parsed, variant_images(src, written, target)?);
        }
        if let Some(overrides) = &variant.compose {
            targets.insert(parsed, merged_target(src, file, Some(overrides))?);
        }
        variants.push(VariantPlan {
            variant: parsed,
            modes: Default::default(),
            balancer: None,
            without: Vec::new(),
        });
    }
    if variants.is_empty() {
        return Err(src.error(&span, "variants", "define vulnerable, defended or both"));
    }
    variants.sort_by_key(|v| v.variant);
    Ok((
        variants,
        VariantSetup {
            environment,
            images,
            targets,
        },
    ))
}

/// A variant's `images`: each service one of the target's, each image named.
fn variant_images(
    src: &Source<'_>,
    written: &Spanned<BTreeMap<String, String>>,
    target: &Target,
) -> Result<BTreeMap<String, String>, DefinitionError> {
    for (service, image) in written.get_ref() {
        if target.service(service).is_none() {
            let message = format!(
                "no service {service:?} in the target; services: {}",
                service_names(target)
            );
            return Err(src.error(&written.span(), "variants.images", message));
        }
        if image.trim().is_empty() || image.contains(char::is_whitespace) {
            let message = format!("{service}: an image present in the local Docker, as repository:tag");
            return Err(src.error(&written.span(), "variants.images", message));
        }
    }
    Ok(written.get_ref().clone())
}

/// Overrides whose every service is one of the target's.
fn overrides(
    src: &Source<'_>,
    written: &Spanned<Overrides>,
    field: &str,
    target: &Target,
) -> Result<Overrides, DefinitionError> {
    if let Some(unknown) = written.get_ref().keys().find(|s| target.service(s).is_none()) {
        let message = format!(
            "no service {unknown:?} in the target; services: {}",
            service_names(target)
        );
        return Err(src.error(&written.span(), field, message));
    }
    Ok(written.get_ref().clone())
}

/// Each `[figures.<metric>]`: an end-of-run figure (units_sold, oversold_units...) on a database of
/// the target.
fn figures(
    src: &Source<'_>,
    written: &BTreeMap<String, Spanned<SqlFigureFile>>,
    target: &Target,
) -> Result<Vec<SqlFigure>, DefinitionError> {
    let mut figures = Vec::new();
    for (name, figure) in written {
        let span = figure.span();
        let metric: Metric = (name.parse())
            .map_err(|e: crate::vocabulary::Unknown| src.error(&span, "figures", e.to_string()))?;
        let owner = metric.owner();
        if !(owner.producer == Producer::Judge && owner.cadence == Cadence::PerRun) {
            let message = format!(
                "{metric} is not an end-of-run figure; [figures] takes units_sold, oversold_units, lost_acknowledged_orders and the other figures of phase = \"run\""
            );
            return Err(src.error(&span, "figures", message));
        }
        figures.push(SqlFigure {
            metric,
            database: database(src, &figure.get_ref().database, target)?,
            sql: figure.get_ref().sql.clone(),
        });
    }
    Ok(figures)
}

fn invariant(
    src: &Source<'_>,
    written: &Spanned<InvariantFile>,
    target: &Target,
    shape: &Shape,
) -> Result<TargetInvariant, DefinitionError> {
    let i = written.get_ref();
    let counted_by = match &i.counted_by {
        Some(named) => {
            let metric: Metric = (named.get_ref().parse()).map_err(|e: crate::vocabulary::Unknown| {
                src.error(&named.span(), "invariants.counted_by", e.to_string())
            })?;
            if !shape.figures.contains(&metric) {
                let message = format!("{metric} needs a [figures.{metric}] query to count the violations");
                return Err(src.error(&named.span(), "invariants.counted_by", message));
            }
            Some(metric)
        }
        None => None,
    };
    let check = match (&i.database, &i.sql, &i.http) {
        (Some(database), Some(sql), None) if !sql.trim().is_empty() => InvariantCheck::Sql {
            database: self::database(src, database, target)?,
            sql: sql.clone(),
        },
        (None, None, Some(http)) => InvariantCheck::Http(http_check(src, http)?),
        _ => {
            let message = "an invariant is database and sql (its rows are the violations), or http = { path = \
                           \"/healthz\", status = [200] }";
            return Err(src.error(&written.span(), "invariants", message));
        }
    };
    if i.name.trim().is_empty() {
        return Err(src.error(&written.span(), "invariants.name", "name what it holds"));
    }
    Ok(TargetInvariant {
        name: i.name.clone(),
        check,
        counted_by,
    })
}

/// A request to the entry after the run, and the statuses (200 unless written) it must answer.
fn http_check(src: &Source<'_>, written: &Spanned<HttpCheckFile>) -> Result<HttpCheck, DefinitionError> {
    let h = written.get_ref();
    let template = |text: &Spanned<String>, field: &str| {
        Template::parse(text.get_ref(), &[]).map_err(|e| src.error(&text.span(), field, e))
    };
    if !h.path.get_ref().starts_with('/') {
        let message = "a path on the entry, starting with /";
        return Err(src.error(&h.path.span(), "invariants.http.path", message));
    }
    let method = match &h.method {
        Some(m) => {
            (m.get_ref().parse()).map_err(|e: String| src.error(&m.span(), "invariants.http.method", e))?
        }
        None => Method::Get,
    };
    Ok(HttpCheck {
        method,
        path: template(&h.path, "invariants.http.path")?,
        headers: (h.headers.iter())
            .map(|(name, value)| Ok((name.clone(), template(value, "invariants.http.headers")?)))
            .collect::<Result<_, DefinitionError>>()?,
        status: statuses(src, h.status.as_ref(), &[200], "invariants.http.status")?,
        contains: h.contains.clone(),
    })
}

fn database(src: &Source<'_>, named: &Spanned<String>, target: &Target) -> Result<String, DefinitionError> {
    let name = named.get_ref();
    if target.databases.iter().any(|d| &d.name == name) {
        return Ok(name.clone());
    }
    let known: Vec<&str> = target.databases.iter().map(|d| d.name.as_str()).collect();
    let message = format!(
        "no database {name:?} in the target's x-fortress.databases; databases: {}",
        if known.is_empty() {
            "none".into()
        } else {
            known.join(", ")
        }
    );
    Err(src.error(&named.span(), "database", message))
}
