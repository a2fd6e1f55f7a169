//! Parsing an experiment file and checking every field, each mistake located by line and field. Each
//! part of the file has its own check, in the order the file is written.

use std::ops::{Range, RangeInclusive};

use reference_service::modes::{Modes, ModesPatch};
use reference_service::seed::SeedPlan;
use toml::Spanned;

use super::{
    Arrangement, DefinitionError, PhasePlan, Plan, PredictionPlan, Profile, RUN_PHASE, Requirement, Revision,
    VariantPlan,
};
use crate::env::Balancing;
use crate::experiment::abort::{self, AbortCondition};
use crate::experiment::claim::{Claim, Comparison};
use crate::experiment::schema::{
    AbortFile, FaultFile, File, LoadFile, PhaseFile, PredictionFile, ProfilesFile, RequirementFile,
    RevisionFile, Topology, VariantFile,
};
use crate::faults::Fault;
use crate::faults::proxy::{NetworkFault, ScopedFault};
use crate::vocabulary::{Cadence, Link, Metric, Needs, Role, Scenario, Start, Variant};

mod capacity;
mod target;

/// The text of a file, for locating its mistakes.
struct Source<'a> {
    file: &'a str,
    text: &'a str,
}

impl Source<'_> {
    fn line(&self, span: &Range<usize>) -> usize {
        self.text[..span.start.min(self.text.len())].matches('\n').count() + 1
    }

    fn error(&self, span: &Range<usize>, field: &str, message: impl Into<String>) -> DefinitionError {
        DefinitionError {
            file: self.file.into(),
            line: self.line(span),
            field: field.into(),
            message: message.into(),
        }
    }

    /// The key written at the start of the line a parse error points to (toml's own messages name the
    /// expected type, not always the key).
    fn key_at(&self, span: &Range<usize>) -> String {
        let start = self.text[..span.start.min(self.text.len())]
            .rfind('\n')
            .map_or(0, |i| i + 1);
        let line = self.text[start..].lines().next().unwrap_or("");
        line.split_once('=')
            .map_or_else(|| line.trim().to_owned(), |(key, _)| key.trim().to_owned())
    }

    /// A file toml could not read, located at its key.
    fn toml_error(&self, e: &toml::de::Error) -> DefinitionError {
        let span = e.span().unwrap_or(0..0);
        DefinitionError {
            file: self.file.into(),
            line: self.line(&span),
            field: self.key_at(&span),
            message: e.message().trim().to_owned(),
        }
    }

    fn in_range(
        &self,
        value: &Spanned<u32>,
        field: &str,
        range: RangeInclusive<u32>,
    ) -> Result<u32, DefinitionError> {
        let got = *value.get_ref();
        if range.contains(&got) {
            return Ok(got);
        }
        let message = format!("must be {} to {} (got {got})", range.start(), range.end());
        Err(self.error(&value.span(), field, message))
    }
}

/// A variant's balancer: there is one when `topology.balancer` asks for it, or by default with more
/// than one replica; `sticky` (the variant's, else the topology's) needs one.
fn balancer(
    src: &Source,
    topology: &Topology,
    replicas: u32,
    variant: &VariantFile,
) -> Result<Option<Balancing>, DefinitionError> {
    let wanted = topology.balancer.unwrap_or(replicas > 1);
    let (sticky, field) = match &variant.sticky {
        Some(sticky) => (Some(sticky), "variants.sticky"),
        None => (topology.sticky.as_ref(), "topology.sticky"),
    };
    match sticky {
        Some(sticky) if *sticky.get_ref() && !wanted => Err(src.error(
            &sticky.span(),
            field,
            "sticky balancing needs the balancer: set topology.balancer = true or replicas above 1",
        )),
        sticky => Ok(wanted.then(|| Balancing {
            sticky: sticky.is_some_and(|s| *s.get_ref()),
        })),
    }
}

/// Parses and validates an experiment file. `file` names it in errors.
pub fn parse(file: &str, text: &str, profile: Profile) -> Result<Plan, DefinitionError> {
    if target::is_target_file(text) {
        return target::parse(file, text, profile);
    }
    let src = Source { file, text };
    let parsed: File = toml::from_str(text).map_err(|e| src.toml_error(&e))?;
    // In the order the file is written, so the first mistake reported is the first in the file.
    let name = name(&src, &parsed.name)?;
    let replicas = src.in_range(&parsed.topology.replicas, "topology.replicas", 1..=8)?;
    let pool_size = src.in_range(&parsed.topology.pool_size, "topology.pool_size", 1..=200)?;
    let users = src.in_range(&parsed.load.users, "load.users", 1..=2000)?;
    let seed = seed(&src, parsed.seed.as_ref())?;
    let (rate, mix) = load(&src, &parsed.load)?;
    let phases = phases(&src, &parsed, profile)?;
    let variants = variants(&src, &parsed, replicas)?;
    let lab = LabShape {
        target: None,
        mail: parsed.topology.mail,
        payments: parsed.topology.payments,
        mix: &mix,
        phases: &phases,
        variants: &variants,
    };
    let predictions = predictions(&src, &parsed.predictions, &lab)?;
    let aborts = parsed
        .abort
        .iter()
        .map(|a| abort(&src, a, &lab))
        .collect::<Result<Vec<_>, _>>()?;
    let arrangement = arrangement(&src, parsed.topology.variants.as_ref(), !aborts.is_empty())?;
    let factor = length_factor(&src, profile, parsed.profiles.as_ref())?;
    let capacity = (parsed.capacity.as_ref())
        .map(|c| capacity::plan(&src, c, &lab, rate, factor))
        .transpose()?;
    Ok(Plan {
        name,
        story: parsed.story.trim().to_owned(),
        source: file.to_owned(),
        profile,
        replicas,
        pool_size,
        mail: parsed.topology.mail,
        payments: parsed.topology.payments,
        arrangement,
        seed,
        rate,
        users,
        mix,
        start: parsed.load.start.unwrap_or(Start::Staggered),
        phases,
        variants,
        predictions,
        aborts,
        capacity,
        target: None,
    })
}

/// Side by side unless the file says otherwise, or has stop conditions: a stop ends the whole run,
/// and the variants after it do not start, which only running them in turn can honour.
fn arrangement(
    src: &Source<'_>,
    written: Option<&Spanned<Arrangement>>,
    aborts: bool,
) -> Result<Arrangement, DefinitionError> {
    match written {
        Some(w) if aborts && *w.get_ref() == Arrangement::SideBySide => Err(src.error(
            &w.span(),
            "topology.variants",
            "side_by_side cannot honour [[abort]]: a stop condition ends the whole run and the variants \
             after it do not start; use \"in_turn\" or leave the field out",
        )),
        Some(w) => Ok(*w.get_ref()),
        None if aborts => Ok(Arrangement::InTurn),
        None => Ok(Arrangement::SideBySide),
    }
}

fn name(src: &Source<'_>, name: &Spanned<String>) -> Result<String, DefinitionError> {
    let text = name.get_ref();
    let allowed = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-';
    if text.is_empty() || !text.chars().all(allowed) {
        return Err(src.error(&name.span(), "name", "use lower-case letters, digits and dashes"));
    }
    Ok(text.clone())
}

fn seed(src: &Source<'_>, table: Option<&Spanned<toml::Table>>) -> Result<SeedPlan, DefinitionError> {
    let Some(table) = table else {
        return Ok(SeedPlan::default());
    };
    let plan: SeedPlan = table
        .get_ref()
        .clone()
        .try_into()
        .map_err(|e: toml::de::Error| src.error(&table.span(), "seed", e.message().trim()))?;
    plan.validate()
        .map_err(|e| src.error(&table.span(), "seed", e.to_string()))?;
    Ok(plan)
}

/// The offered rate and the mix of scenarios.
fn load(src: &Source<'_>, load: &LoadFile) -> Result<(f64, Vec<(Scenario, u32)>), DefinitionError> {
    let rate = rate(src, &load.rate)?;
    let mix_error = |message: String| src.error(&load.mix.span(), "load.mix", message);
    let mut mix = Vec::new();
    for (key, weight) in load.mix.get_ref() {
        let scenario: Scenario = key
            .parse()
            .map_err(|e: crate::vocabulary::Unknown| mix_error(e.to_string()))?;
        mix.push((scenario, *weight));
    }
    if mix.iter().map(|(_, w)| w).sum::<u32>() == 0 {
        return Err(mix_error("at least one scenario needs a weight above 0".into()));
    }
    Ok((rate, mix))
}

/// The offered rate, requests per second.
fn rate(src: &Source<'_>, rate: &Spanned<f64>) -> Result<f64, DefinitionError> {
    let got = *rate.get_ref();
    if !(got > 0.0 && got <= 10_000.0) {
        let message = format!("requests per second, above 0 and at most 10000 (got {got})");
        return Err(src.error(&rate.span(), "load.rate", message));
    }
    Ok(got)
}

/// How much shorter than written the phases run in `profile`.
fn length_factor(
    src: &Source<'_>,
    profile: Profile,
    profiles: Option<&ProfilesFile>,
) -> Result<f64, DefinitionError> {
    let Some(profiles) = profiles.filter(|_| profile == Profile::Quick) else {
        return Ok(if profile == Profile::Quick { 0.5 } else { 1.0 });
    };
    let quick = *profiles.quick.get_ref();
    if !(quick > 0.0 && quick <= 1.0) {
        let message = format!("a fraction of the standard durations, above 0 and at most 1 (got {quick})");
        return Err(src.error(&profiles.quick.span(), "profiles.quick", message));
    }
    Ok(quick)
}

fn phases(src: &Source<'_>, file: &File, profile: Profile) -> Result<Vec<PhasePlan>, DefinitionError> {
    let factor = length_factor(src, profile, file.profiles.as_ref())?;
    let topology = &file.topology;
    let reference_faults = |fault: &Spanned<FaultFile>| {
        let planned = to_faults(src, fault, topology)?;
        if !topology.mail && planned.iter().any(|f| acts_on(f, Role::Mail)) {
            let message = "the mail server is only in labs with topology.mail = true";
            return Err(src.error(&fault.span(), "phases.faults", message));
        }
        if !topology.payments && planned.iter().any(|f| acts_on(f, Role::Provider)) {
            let message = "the payment provider is only in labs with topology.payments = true";
            return Err(src.error(&fault.span(), "phases.faults", message));
        }
        Ok(planned)
    };
    phase_list(src, &file.phases, profile, factor, &reference_faults)
}

/// What one entry of a phase's `faults` stands for, in the lab the file is for.
type FaultsOf<'a> = dyn Fn(&Spanned<FaultFile>) -> Result<Vec<Fault>, DefinitionError> + 'a;

/// The phases, each with its faults as `faults_of` reads them: names unique, at most 30 minutes.
fn phase_list(
    src: &Source<'_>,
    written: &Spanned<Vec<PhaseFile>>,
    profile: Profile,
    factor: f64,
    faults_of: &FaultsOf<'_>,
) -> Result<Vec<PhasePlan>, DefinitionError> {
    let mut phases: Vec<PhasePlan> = Vec::new();
    for phase in written.get_ref() {
        let planned = self::phase(src, phase, profile, factor, faults_of)?;
        if planned.name == RUN_PHASE || phases.iter().any(|p| p.name == planned.name) {
            let message = format!(
                "phase names must be unique and not {RUN_PHASE:?} (got {:?})",
                planned.name
            );
            return Err(src.error(&phase.name.span(), "phases.name", message));
        }
        phases.push(planned);
    }
    let span = written.span();
    if phases.is_empty() {
        return Err(src.error(&span, "phases", "an experiment needs at least one phase"));
    }
    let total: f64 = written.get_ref().iter().map(|p| *p.seconds.get_ref()).sum();
    if total > 1800.0 {
        return Err(src.error(
            &span,
            "phases",
            format!("the phases add up to {total} s; at most 1800 s"),
        ));
    }
    Ok(phases)
}

fn phase(
    src: &Source<'_>,
    phase: &PhaseFile,
    profile: Profile,
    factor: f64,
    faults_of: &FaultsOf<'_>,
) -> Result<PhasePlan, DefinitionError> {
    let seconds = *phase.seconds.get_ref();
    if !(seconds > 0.0 && seconds <= 600.0) {
        let message = format!("above 0 and at most 600 (got {seconds})");
        return Err(src.error(&phase.seconds.span(), "phases.seconds", message));
    }
    let mut faults = Vec::new();
    for fault in &phase.faults {
        faults.extend(faults_of(fault)?);
    }
    let seconds = match profile {
        Profile::Standard => seconds,
        Profile::Quick => (seconds * factor).round().max(1.0).min(seconds),
    };
    Ok(PhasePlan {
        name: phase.name.get_ref().clone(),
        seconds,
        faults,
    })
}

/// The variants, vulnerable first.
fn variants(src: &Source<'_>, file: &File, replicas: u32) -> Result<Vec<VariantPlan>, DefinitionError> {
    let span = file.variants.span();
    let mut variants = Vec::new();
    for (name, variant) in file.variants.get_ref() {
        let parsed: Variant = name
            .parse()
            .map_err(|e: crate::vocabulary::Unknown| src.error(&span, "variants", e.to_string()))?;
        let modes = checked_modes(src, &variant.modes, "variants.modes")?;
        variants.push(VariantPlan {
            variant: parsed,
            modes,
            balancer: balancer(src, &file.topology, replicas, variant)?,
            without: Vec::new(),
        });
    }
    if variants.is_empty() {
        return Err(src.error(&span, "variants", "define vulnerable, defended or both"));
    }
    variants.sort_by_key(|v| v.variant);
    Ok(variants)
}

/// What a plan's lab and load will have: enough to tell, before any lab starts, whether a metric can
/// be produced for a prediction or a stop condition (its owner: `Metric::owner`).
struct LabShape<'a> {
    /// On a user's target: the figures it can have instead of the reference lab's.
    target: Option<&'a target::Shape>,
    mail: bool,
    payments: bool,
    mix: &'a [(Scenario, u32)],
    phases: &'a [PhasePlan],
    variants: &'a [VariantPlan],
}

impl LabShape<'_> {
    /// Why `metric` cannot be produced for `variants` (all of them when `None`), if it cannot.
    fn lacks(&self, metric: Metric, variant: Option<Variant>) -> Option<String> {
        if let Some(target) = self.target {
            return target.lacks(metric);
        }
        let in_mix = |scenario: Scenario| self.mix.iter().any(|&(s, w)| s == scenario && w > 0);
        let has = match metric.owner().needs {
            Needs::Nothing => true,
            Needs::Mail => self.mail,
            Needs::Payments => self.payments,
            Needs::Scenario(scenario) => in_mix(scenario),
            Needs::LoggedIn => self.mix.iter().any(|&(s, w)| s.logs_in() && w > 0),
            Needs::Balancer => self
                .variants
                .iter()
                .filter(|v| variant.is_none_or(|only| v.variant == only))
                .all(|v| v.balancer.is_some()),
        };
        (!has).then(|| {
            format!(
                "{metric} needs {}, which this lab does not have",
                metric.owner().needs
            )
        })
    }

    /// Why `metric` has no figure in `phase`, if it has none: a figure of the whole run asked of a
    /// phase, or a recovery time asked of a phase that follows no fault.
    fn not_in(&self, metric: Metric, phase: &str) -> Option<String> {
        match metric.owner().cadence {
            Cadence::PerSecond | Cadence::PerPhase => None,
            Cadence::PerRun if phase == RUN_PHASE => None,
            Cadence::PerRun => Some(format!(
                "{metric} is a figure of the whole run: use phase = {RUN_PHASE:?}"
            )),
            Cadence::AfterFault => {
                let after_fault: Vec<&str> = (self.phases.windows(2))
                    .filter(|w| !w[0].faults.is_empty())
                    .map(|w| w[1].name.as_str())
                    .collect();
                (!after_fault.contains(&phase)).then(|| {
                    format!(
                        "{metric} is measured in a phase that follows a phase with faults; {phase:?} does not (such phases here: {})",
                        if after_fault.is_empty() { "none".to_owned() } else { after_fault.join(", ") }
                    )
                })
            }
        }
    }
}

fn predictions(
    src: &Source<'_>,
    predictions: &[PredictionFile],
    lab: &LabShape<'_>,
) -> Result<Vec<PredictionPlan>, DefinitionError> {
    predictions.iter().map(|p| prediction(src, p, lab)).collect()
}

/// The fields a prediction and a requirement both write their claim with, and where the errors go.
struct ClaimFields<'a> {
    /// `predictions` or `predictions.requires`.
    table: &'static str,
    metric: &'a Spanned<String>,
    phase: &'a Spanned<String>,
    over: Option<&'a Spanned<String>>,
    compare: &'a Spanned<Comparison>,
    threshold: &'a Spanned<f64>,
    tolerance: Option<&'a Spanned<f64>>,
}

impl<'a> From<&'a PredictionFile> for ClaimFields<'a> {
    fn from(p: &'a PredictionFile) -> Self {
        Self {
            table: "predictions",
            metric: &p.metric,
            phase: &p.phase,
            over: p.over.as_ref(),
            compare: &p.compare,
            threshold: &p.threshold,
            tolerance: p.tolerance.as_ref(),
        }
    }
}

impl<'a> From<&'a RequirementFile> for ClaimFields<'a> {
    fn from(r: &'a RequirementFile) -> Self {
        Self {
            table: "predictions.requires",
            metric: &r.metric,
            phase: &r.phase,
            over: r.over.as_ref(),
            compare: &r.compare,
            threshold: &r.threshold,
            tolerance: r.tolerance.as_ref(),
        }
    }
}

/// A claim about `variant`, checked against what the lab can produce.
fn claim(
    src: &Source<'_>,
    c: ClaimFields<'_>,
    lab: &LabShape<'_>,
    variant: Variant,
) -> Result<Claim, DefinitionError> {
    let field = |name: &str| format!("{}.{name}", c.table);
    let metric = known_metric(src, c.metric, &field("metric"))?;
    if let Some(why) = lab.lacks(metric, Some(variant)) {
        return Err(src.error(&c.metric.span(), &field("metric"), why));
    }
    let threshold = finite(src, c.threshold, &field("threshold"))?;
    let phase_of = |phase: &Spanned<String>, field: &str| {
        let name = known_phase(src, phase, field, lab.phases)?;
        match lab.not_in(metric, &name) {
            Some(why) => Err(src.error(&phase.span(), field, why)),
            None => Ok(name),
        }
    };
    Ok(Claim {
        metric,
        phase: phase_of(c.phase, &field("phase"))?,
        over: c.over.map(|o| phase_of(o, &field("over"))).transpose()?,
        compare: *c.compare.get_ref(),
        threshold,
        tolerance: tolerance(src, &c, &field("tolerance"))?,
    })
}

fn prediction(
    src: &Source<'_>,
    p: &PredictionFile,
    lab: &LabShape<'_>,
) -> Result<PredictionPlan, DefinitionError> {
    let variant = known_variant(src, &p.variant, "predictions.variant", lab.variants)?;
    let claim = claim(src, p.into(), lab, variant)?;
    let requires = (p.requires.iter())
        .map(|r| {
            Ok(Requirement {
                claim: self::claim(src, r.into(), lab, variant)?,
                why: r.why.clone(),
            })
        })
        .collect::<Result<_, DefinitionError>>()?;
    let revisions = (p.revised.iter())
        .map(|r| revision(src, r))
        .collect::<Result<_, _>>()?;
    Ok(PredictionPlan {
        variant,
        claim,
        why: p.why.clone(),
        requires,
        revisions,
    })
}

/// A model the prediction replaced: every part said, none left empty.
fn revision(src: &Source<'_>, r: &RevisionFile) -> Result<Revision, DefinitionError> {
    revision_in(src, r, "predictions.revised")
}

/// A revision of a table's prediction (`table` names it in errors).
fn revision_in(src: &Source<'_>, r: &RevisionFile, table: &str) -> Result<Revision, DefinitionError> {
    let said = |text: &Spanned<String>, field: &str| {
        let trimmed = text.get_ref().trim();
        if trimmed.is_empty() {
            let message =
                "say it: a revision keeps the first model, what refuted it, and why the new one holds";
            return Err(src.error(&text.span(), field, message));
        }
        Ok(trimmed.to_owned())
    };
    Ok(Revision {
        was: said(&r.was, &format!("{table}.was"))?,
        refuted_by: said(&r.refuted_by, &format!("{table}.refuted_by"))?,
        because: said(&r.because, &format!("{table}.because"))?,
    })
}

/// A stop condition: a metric measured every second, held against a threshold for some seconds.
fn abort(src: &Source<'_>, a: &AbortFile, lab: &LabShape<'_>) -> Result<AbortCondition, DefinitionError> {
    let variant = a
        .variant
        .as_ref()
        .map(|v| known_variant(src, v, "abort.variant", lab.variants))
        .transpose()?;
    let metric = known_metric(src, &a.metric, "abort.metric")?;
    if let Some(why) = lab.lacks(metric, variant) {
        return Err(src.error(&a.metric.span(), "abort.metric", why));
    }
    if !abort::watchable(metric) {
        let live: Vec<&str> = Metric::ALL
            .iter()
            .filter(|m| abort::watchable(**m))
            .map(|m| m.name())
            .collect();
        let message = format!(
            "{metric} is not measured every second; a stop condition can watch {}",
            live.join(", ")
        );
        return Err(src.error(&a.metric.span(), "abort.metric", message));
    }
    if *a.compare.get_ref() == Comparison::Within {
        return Err(src.error(&a.compare.span(), "abort.compare", "use <, <=, >, >= or =="));
    }
    let seconds = match &a.seconds {
        Some(seconds) => src.in_range(seconds, "abort.seconds", 1..=3600)?,
        None => 1,
    };
    Ok(AbortCondition {
        variant,
        metric,
        compare: *a.compare.get_ref(),
        threshold: finite(src, &a.threshold, "abort.threshold")?,
        seconds,
    })
}

fn known_variant(
    src: &Source<'_>,
    named: &Spanned<String>,
    field: &str,
    variants: &[VariantPlan],
) -> Result<Variant, DefinitionError> {
    let name = named.get_ref();
    variants
        .iter()
        .map(|v| v.variant)
        .find(|v| v.name() == name)
        .ok_or_else(|| src.error(&named.span(), field, format!("no variant {name:?} in this file")))
}

fn known_metric(src: &Source<'_>, named: &Spanned<String>, field: &str) -> Result<Metric, DefinitionError> {
    named
        .get_ref()
        .parse()
        .map_err(|e: crate::vocabulary::Unknown| src.error(&named.span(), field, e.to_string()))
}

fn finite(src: &Source<'_>, value: &Spanned<f64>, field: &str) -> Result<f64, DefinitionError> {
    let got = *value.get_ref();
    if got.is_finite() {
        return Ok(got);
    }
    Err(src.error(&value.span(), field, "must be a finite number"))
}

fn known_phase(
    src: &Source<'_>,
    phase: &Spanned<String>,
    field: &str,
    phases: &[PhasePlan],
) -> Result<String, DefinitionError> {
    let name = phase.get_ref();
    if name == RUN_PHASE || phases.iter().any(|p| &p.name == name) {
        return Ok(name.clone());
    }
    let names: Vec<&str> = phases.iter().map(|p| p.name.as_str()).collect();
    let message = format!(
        "no phase {name:?}; phases: {}, or {RUN_PHASE:?}",
        names.join(", ")
    );
    Err(src.error(&phase.span(), field, message))
}

/// `within` needs a tolerance, and only `within` takes one.
fn tolerance(src: &Source<'_>, c: &ClaimFields<'_>, field: &str) -> Result<Option<f64>, DefinitionError> {
    checked_tolerance(src, c.compare, c.tolerance, field)
}

/// A tolerance where the comparison needs one (`within`), and none where it does not.
fn checked_tolerance(
    src: &Source<'_>,
    compare: &Spanned<Comparison>,
    tolerance: Option<&Spanned<f64>>,
    field: &str,
) -> Result<Option<f64>, DefinitionError> {
    match (tolerance, *compare.get_ref()) {
        (Some(t), Comparison::Within) if *t.get_ref() > 0.0 && *t.get_ref() <= 1.0 => Ok(Some(*t.get_ref())),
        (Some(t), Comparison::Within) => {
            Err(src.error(&t.span(), field, "a fraction above 0 and at most 1 (0.3 = 30%)"))
        }
        (None, Comparison::Within) => Err(src.error(
            &compare.span(),
            field,
            "compare = \"within\" needs a tolerance (0.3 = 30%)",
        )),
        (Some(t), _) => Err(src.error(&t.span(), field, "only compare = \"within\" takes a tolerance")),
        (None, _) => Ok(None),
    }
}

/// Checks a modes table against what the service accepts.
fn checked_modes(
    src: &Source<'_>,
    table: &Spanned<toml::Table>,
    field: &str,
) -> Result<ModesPatch, DefinitionError> {
    let patch: ModesPatch = table
        .get_ref()
        .clone()
        .try_into()
        .map_err(|e: toml::de::Error| src.error(&table.span(), field, e.message().trim()))?;
    patch
        .apply(&mut Modes::default())
        .map_err(|e| src.error(&table.span(), field, e))?;
    Ok(patch)
}

/// The containers a kill, stop or pause takes: its target, or with `count`, the first `count` service
/// replicas (the blast radius in replicas: `count = 2` of 3 leaves one serving).
fn targets(
    src: &Source<'_>,
    span: &Range<usize>,
    target: &str,
    count: Option<u32>,
    replicas: u32,
) -> Result<Vec<Role>, DefinitionError> {
    let role = target
        .parse::<Role>()
        .map_err(|e| src.error(span, "phases.faults.target", e.to_string()))?;
    if let Role::Service(n) = role
        && n > replicas
    {
        let message = format!("there is no {role}: topology.replicas is {replicas}");
        return Err(src.error(span, "phases.faults.target", message));
    }
    match count {
        None => Ok(vec![role]),
        Some(_) if target != "service" => Err(src.error(
            span,
            "phases.faults.count",
            "count takes target = \"service\": that many of the service replicas",
        )),
        Some(count) if count == 0 || count > replicas => Err(src.error(
            span,
            "phases.faults.count",
            format!("must be 1 to {replicas}, the topology's replicas (got {count})"),
        )),
        Some(count) => Ok((1..=count).map(Role::Service).collect()),
    }
}

/// The faults one entry of `faults` stands for: one, or with `count`, one per replica it takes.
fn to_faults(
    src: &Source<'_>,
    fault: &Spanned<FaultFile>,
    topology: &Topology,
) -> Result<Vec<Fault>, DefinitionError> {
    let span = fault.span();
    let replicas = *topology.replicas.get_ref();
    let each = |target: &str, count: &Option<u32>, fault: fn(Role) -> Fault| {
        Ok(targets(src, &span, target, *count, replicas)?
            .into_iter()
            .map(fault)
            .collect())
    };
    let one = |fault: Result<Fault, DefinitionError>| fault.map(|f| vec![f]);
    match fault.get_ref() {
        FaultFile::Kill { target, count } => each(target, count, Fault::Kill),
        FaultFile::Stop { target, count } => each(target, count, Fault::Stop),
        FaultFile::Pause { target, count } => each(target, count, Fault::Pause),
        FaultFile::Modes { modes } => one(checked_modes(
            src,
            &Spanned::new(span.clone(), modes.clone()),
            "phases.faults.modes",
        )
        .map(Fault::Modes)),
        FaultFile::DropIndex { index } => Ok(vec![Fault::DropIndex(index.clone())]),
        FaultFile::ExpireCache => Ok(vec![Fault::ExpireCache]),
        FaultFile::RollingRestart => one(rolling_restart(src, &span, topology)),
        FaultFile::ReplayDeadLetters => Ok(vec![Fault::ReplayDeadLetters]),
        written => match network_parts(written) {
            Some((link, fault, fraction)) => one(network(src, &span, link, fault, fraction)),
            None => unreachable!("every other kind is a network fault"),
        },
    }
}

/// A network fault on every connection, or on a `fraction` of them, checked.
fn scoped(
    src: &Source<'_>,
    span: &Range<usize>,
    fault: NetworkFault,
    fraction: Option<f64>,
) -> Result<ScopedFault, DefinitionError> {
    let fault = ScopedFault {
        fault,
        fraction: fraction.unwrap_or(1.0),
    };
    fault
        .validate()
        .map_err(|e| src.error(span, "phases.faults", e.to_string()))?;
    Ok(fault)
}

/// A network fault as written: its link, the fault, and the share of connections it takes.
fn network_parts(fault: &FaultFile) -> Option<(&str, NetworkFault, Option<f64>)> {
    let (link, fault, fraction) = match fault {
        FaultFile::Latency {
            link,
            ms,
            jitter_ms,
            fraction,
        } => {
            let latency = NetworkFault::Latency {
                ms: *ms,
                jitter_ms: jitter_ms.unwrap_or(0.0),
            };
            (link, latency, fraction)
        }
        FaultFile::Bandwidth {
            link,
            bytes_per_second,
            fraction,
        } => {
            let bandwidth = NetworkFault::Bandwidth {
                bytes_per_second: *bytes_per_second,
            };
            (link, bandwidth, fraction)
        }
        FaultFile::Blackhole { link, fraction } => (link, NetworkFault::Blackhole, fraction),
        FaultFile::Reset { link, fraction } => (link, NetworkFault::Reset, fraction),
        FaultFile::Down { link, fraction } => (link, NetworkFault::Down, fraction),
        FaultFile::HttpStatus {
            link,
            status,
            fraction,
        } => (link, NetworkFault::HttpStatus { status: *status }, fraction),
        FaultFile::HttpDelay { link, ms, fraction } => (link, NetworkFault::HttpDelay { ms: *ms }, fraction),
        FaultFile::HttpLostReply {
            link,
            status,
            fraction,
        } => (link, NetworkFault::HttpLostReply { status: *status }, fraction),
        _ => return None,
    };
    Some((link.as_str(), fault, *fraction))
}

/// A network fault on a link of the proxy, on every connection or on a `fraction` of them.
/// Whether a fault acts on `role` (a container only some labs have) or on its link.
fn acts_on(fault: &Fault, role: Role) -> bool {
    match fault {
        Fault::Kill(target) | Fault::Stop(target) | Fault::Pause(target) => *target == role,
        Fault::Network { link, .. } => link.role() == role,
        _ => false,
    }
}

/// A rolling restart needs replicas to spare and a balancer that moves clients off the one being
/// restarted: without one, clients would lose the replica they talk to.
fn rolling_restart(
    src: &Source<'_>,
    span: &Range<usize>,
    topology: &Topology,
) -> Result<Fault, DefinitionError> {
    let replicas = *topology.replicas.get_ref();
    if replicas < 2 || topology.balancer == Some(false) {
        let message = format!(
            "a rolling restart needs at least 2 replicas behind the balancer (got {replicas}{})",
            if topology.balancer == Some(false) {
                ", topology.balancer = false"
            } else {
                ""
            }
        );
        return Err(src.error(span, "phases.faults.kind", message));
    }
    Ok(Fault::RollingRestart)
}

fn network(
    src: &Source<'_>,
    span: &Range<usize>,
    link: &str,
    fault: NetworkFault,
    fraction: Option<f64>,
) -> Result<Fault, DefinitionError> {
    let fault = scoped(src, span, fault, fraction)?;
    let link: Link = link
        .parse()
        .map_err(|e: crate::vocabulary::Unknown| src.error(span, "phases.faults.link", e.to_string()))?;
    if fault.kind().is_http() && !link.carries_http() {
        let http: Vec<&str> = (Link::ALL.iter())
            .filter(|l| l.carries_http())
            .map(|l| l.name())
            .collect();
        let message = format!(
            "{} is an HTTP fault; the {link} link carries raw TCP (HTTP links: {})",
            fault.kind(),
            http.join(", ")
        );
        return Err(src.error(span, "phases.faults.link", message));
    }
    Ok(Fault::Network { link, fault })
}
