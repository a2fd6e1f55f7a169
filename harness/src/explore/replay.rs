//! A schedule explore found, written out as an ordinary experiment file: the source experiment's
//! topology, seed and load, its phases (before, the faults, after; a staggered schedule's first
//! fault alone in a phase of its own before the faults), the explored variant alone,
//! and a prediction of each violation it saw. `fortress experiment <file>` replays it, and the gate
//! can keep it. The text is parsed back before it is written, so a file explore writes always loads.

use toml::{Table, Value};

use super::schedule::Schedule;
use crate::experiment::definition::{self, DefinitionError, Profile, VariantPlan};
use crate::faults::Fault;
use crate::vocabulary::{Metric, Variant};

#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    #[error("the source experiment {file} is not TOML")]
    Source {
        file: String,
        #[source]
        source: toml::de::Error,
    },
    #[error("{0} cannot be written into an experiment file")]
    Unwritable(String),
    #[error("could not write {path}")]
    Write {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("could not write the experiment as TOML")]
    Serialize(#[from] toml::ser::Error),
    #[error("the written experiment does not load (a bug in explore)")]
    Invalid(#[from] DefinitionError),
}

/// What a replay file is made of.
pub struct Replay<'a> {
    /// The source experiment, as its file names it, and its text.
    pub source: (&'a str, &'a str),
    pub name: String,
    pub story: String,
    pub variant: &'a VariantPlan,
    pub schedule: &'a Schedule,
    /// How long the trial's load ran, in seconds.
    pub trial_seconds: f64,
    pub seed: u64,
    /// The violations predicted: the metric that counts each (above 0), and why.
    pub predictions: Vec<(Metric, String)>,
}

impl Replay<'_> {
    /// The experiment file's text, checked to load.
    pub fn text(&self) -> Result<String, ReplayError> {
        let (file, source) = self.source;
        let source: Table = source.parse().map_err(|source| ReplayError::Source {
            file: file.to_owned(),
            source,
        })?;
        let mut out = Table::new();
        out.insert("name".into(), self.name.clone().into());
        out.insert("story".into(), self.story.clone().into());
        for kept in ["topology", "seed", "load"] {
            if let Some(value) = source.get(kept) {
                out.insert(kept.into(), value.clone());
            }
        }
        if let Some(Value::Table(seed)) = out.get_mut("seed") {
            seed.insert("seed".into(), Value::Integer(self.seed as i64));
        }
        // The window is what breaks it: the quick profile runs it as written.
        out.insert("profiles".into(), table([("quick", 1.0.into())]).into());
        out.insert("phases".into(), self.phases()?.into());
        let modes = Value::try_from(self.variant.modes)?;
        let variant = table([("modes", modes)]);
        let variants = table([(self.variant_name().to_string().as_str(), variant.into())]);
        out.insert("variants".into(), variants.into());
        out.insert("predictions".into(), self.predictions().into());
        let text = toml::to_string(&out)?;
        definition::parse(&format!("{}.toml", self.name), &text, Profile::Standard)?;
        Ok(text)
    }

    /// The explored variant, named for what it is: one with a defence switched off is vulnerable.
    fn variant_name(&self) -> Variant {
        match self.variant.without.is_empty() {
            true => self.variant.variant,
            false => Variant::Vulnerable,
        }
    }

    /// Before, the faults, after; a staggered schedule's first fault alone in a `lead` phase before
    /// the fault phase, where it is injected again beside the one that joins it.
    fn phases(&self) -> Result<Vec<Value>, ReplayError> {
        let tables = |faults: &[Fault]| faults.iter().map(fault_table).collect::<Result<Vec<Value>, _>>();
        let schedule = self.schedule;
        let after = self.trial_seconds - schedule.at_s - schedule.seconds;
        let mut phases = vec![phase("before", schedule.at_s, Vec::new())];
        let (first, _) = schedule.waves();
        if first.len() < schedule.faults.len() {
            phases.push(phase("lead", schedule.lead_s, tables(first)?));
        }
        let fault_seconds = schedule.seconds - schedule.lead_s;
        phases.push(phase("fault", fault_seconds, tables(&schedule.faults)?));
        if after >= 1.0 {
            phases.push(phase("after", after, Vec::new()));
        }
        Ok(phases)
    }

    fn predictions(&self) -> Vec<Value> {
        (self.predictions.iter())
            .map(|(metric, why)| {
                table([
                    ("variant", self.variant_name().to_string().into()),
                    ("metric", metric.to_string().into()),
                    ("phase", "run".into()),
                    ("compare", ">".into()),
                    ("threshold", 0.0.into()),
                    ("why", why.clone().into()),
                ])
                .into()
            })
            .collect()
    }
}

fn table<const N: usize>(entries: [(&str, Value); N]) -> Table {
    entries.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()
}

fn phase(name: &str, seconds: f64, faults: Vec<Value>) -> Value {
    let mut phase = table([("name", name.into()), ("seconds", seconds.into())]);
    if !faults.is_empty() {
        phase.insert("faults".into(), faults.into());
    }
    phase.into()
}

/// A fault as an experiment file spells it.
fn fault_table(fault: &Fault) -> Result<Value, ReplayError> {
    let (kind, target) = match fault {
        Fault::Kill(role) => ("kill", role),
        Fault::Stop(role) => ("stop", role),
        Fault::Pause(role) => ("pause", role),
        Fault::Network { link, fault } => {
            let Value::Table(mut spelled) = Value::try_from(&fault.fault)? else {
                return Err(ReplayError::Unwritable(fault.fault.to_string()));
            };
            spelled.insert("link".into(), link.to_string().into());
            if fault.fraction < 1.0 {
                spelled.insert("fraction".into(), fault.fraction.into());
            }
            return Ok(spelled.into());
        }
        Fault::DropIndex(index) => {
            return Ok(table([("kind", "drop_index".into()), ("index", index.clone().into())]).into());
        }
        Fault::ExpireCache => return Ok(table([("kind", "expire_cache".into())]).into()),
        other => return Err(ReplayError::Unwritable(other.to_string())),
    };
    Ok(table([("kind", kind.into()), ("target", target.to_string().into())]).into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::faults::proxy::{NetworkFault, ScopedFault};
    use crate::vocabulary::{Link, Role};

    #[test]
    fn a_found_schedule_becomes_an_experiment_that_loads_with_its_faults_in_the_middle_phase() {
        let (file, source) = crate::experiment::catalog::text("crash-after-ack").unwrap();
        let plan = definition::parse(&file, &source, Profile::Standard).unwrap();
        let variant = (plan.variants.iter())
            .find(|v| v.variant == Variant::Vulnerable)
            .unwrap();
        let schedule = Schedule {
            faults: vec![
                Fault::Kill(Role::Postgres),
                Fault::Network {
                    link: Link::Redis,
                    fault: ScopedFault {
                        fault: NetworkFault::Latency {
                            ms: 500.0,
                            jitter_ms: 0.0,
                        },
                        fraction: 0.5,
                    },
                },
                Fault::DropIndex("orders_user_id_idx".into()),
                Fault::ExpireCache,
            ],
            at_s: 3.0,
            seconds: 2.0,
            lead_s: 0.0,
        };
        let replay = Replay {
            source: (&file, &source),
            name: "found-1".into(),
            story: "Found by explore.".into(),
            variant,
            schedule: &schedule,
            trial_seconds: 10.0,
            seed: 7,
            predictions: vec![(Metric::LostAcknowledgedOrders, "lost at the kill".into())],
        };
        let text = replay.text().unwrap();
        let replayed = definition::parse("found-1.toml", &text, Profile::Quick).unwrap();
        assert_eq!(replayed.seed.seed, 7);
        assert_eq!(replayed.rate, plan.rate);
        let seconds: Vec<f64> = replayed.phases.iter().map(|p| p.seconds).collect();
        assert_eq!(
            seconds,
            [3.0, 2.0, 5.0],
            "the quick profile runs the window as written"
        );
        assert_eq!(replayed.phases[1].faults, schedule.faults);
        assert_eq!(replayed.variants.len(), 1);
        assert_eq!(replayed.variants[0].modes, variant.modes);
        assert_eq!(
            replayed.predictions[0].claim.metric,
            Metric::LostAcknowledgedOrders
        );
    }

    #[test]
    fn a_staggered_schedule_replays_its_slow_fault_alone_then_both() {
        let (file, source) = crate::experiment::catalog::text("crash-after-ack").unwrap();
        let plan = definition::parse(&file, &source, Profile::Standard).unwrap();
        let variant = &plan.variants[0];
        let network = |link, fault| Fault::Network {
            link,
            fault: ScopedFault::from(fault),
        };
        let slow = network(
            Link::Redis,
            NetworkFault::Latency {
                ms: 100.0,
                jitter_ms: 0.0,
            },
        );
        let down = network(Link::Postgres, NetworkFault::Down);
        let schedule = Schedule::new(vec![slow.clone(), down.clone()], 2.0, 2.0);
        assert_eq!(schedule.lead_s, 1.0);
        let replay = Replay {
            source: (&file, &source),
            name: "found-2".into(),
            story: "Found by explore.".into(),
            variant,
            schedule: &schedule,
            trial_seconds: 10.0,
            seed: 7,
            predictions: vec![(Metric::LostAcknowledgedOrders, "lost".into())],
        };
        let replayed = definition::parse("found-2.toml", &replay.text().unwrap(), Profile::Quick).unwrap();
        let phases: Vec<(&str, f64, usize)> = (replayed.phases.iter())
            .map(|p| (p.name.as_str(), p.seconds, p.faults.len()))
            .collect();
        assert_eq!(
            phases,
            [
                ("before", 2.0, 0),
                ("lead", 1.0, 1),
                ("fault", 1.0, 2),
                ("after", 6.0, 0)
            ]
        );
        assert_eq!(replayed.phases[1].faults, [slow]);
        assert_eq!(replayed.phases[2].faults, schedule.faults);
    }
}
