//! The part of the Compose specification a target may use, as serde types over `marked_yaml`, so
//! every value keeps the line it came from and an unknown key is refused by name and line
//! (`deny_unknown_fields`), never ignored.
//!
//! Supported per service: `image`, `build` (a context, or `context`, `dockerfile`, `args`),
//! `command` and `entrypoint` (list form), `environment` (map or `KEY=value` list), `ports` (short
//! and long syntax), `expose`, `depends_on` (list or map with `condition`), `healthcheck`,
//! `deploy.replicas`, `scale`, `working_dir`, `user`, and `restart: "no"`. Top level: `services`,
//! `name`, `version` (obsolete in Compose too) and `x-` extension fields; `x-fortress` is read by
//! [`super::section`].

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use marked_yaml::Spanned;
use serde::de::{self, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer};

/// One service as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawService {
    pub image: Option<Spanned<String>>,
    pub build: Option<Spanned<Build>>,
    pub command: Option<Spanned<Words>>,
    pub entrypoint: Option<Spanned<Words>>,
    pub environment: Option<Spanned<Environment>>,
    #[serde(default)]
    pub ports: Vec<Spanned<Port>>,
    #[serde(default)]
    pub expose: Vec<Spanned<Port>>,
    pub depends_on: Option<Spanned<DependsOn>>,
    pub healthcheck: Option<Healthcheck>,
    pub deploy: Option<Deploy>,
    pub scale: Option<Spanned<u32>>,
    pub working_dir: Option<String>,
    pub user: Option<String>,
    pub restart: Option<Spanned<String>>,
}

/// `build:` as a context path, or its long form.
#[derive(Debug, Clone, PartialEq)]
pub struct Build {
    pub context: String,
    pub dockerfile: Option<String>,
    pub args: BTreeMap<String, String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LongBuild {
    context: String,
    dockerfile: Option<String>,
    #[serde(default)]
    args: Environment,
}

impl<'de> Deserialize<'de> for Build {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct BuildVisitor;
        impl<'de> Visitor<'de> for BuildVisitor {
            type Value = Build;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a build context path, or a map with `context`, `dockerfile` and `args`")
            }
            fn visit_str<E: de::Error>(self, context: &str) -> Result<Build, E> {
                Ok(Build {
                    context: context.to_owned(),
                    dockerfile: None,
                    args: BTreeMap::new(),
                })
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Build, A::Error> {
                let long = LongBuild::deserialize(de::value::MapAccessDeserializer::new(map))?;
                Ok(Build {
                    context: long.context,
                    dockerfile: long.dockerfile,
                    args: long.args.0,
                })
            }
        }
        deserializer.deserialize_any(BuildVisitor)
    }
}

/// A command or entrypoint, in list form: Compose splits the string form with shell rules, which
/// Fortress does not reproduce, so it asks for the list.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(transparent)]
pub struct Words(#[serde(deserialize_with = "list_of_words")] pub Vec<String>);

fn list_of_words<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<String>, D::Error> {
    struct WordsVisitor;
    impl<'de> Visitor<'de> for WordsVisitor {
        type Value = Vec<String>;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a list of words")
        }
        fn visit_str<E: de::Error>(self, line: &str) -> Result<Vec<String>, E> {
            Err(E::custom(format!(
                "write {line:?} as a list of words (`[\"{}\", ...]`): the string form is split by shell rules Fortress does not reproduce",
                line.split_whitespace().next().unwrap_or_default()
            )))
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<String>, A::Error> {
            let mut words = Vec::new();
            while let Some(word) = seq.next_element::<String>()? {
                words.push(word);
            }
            Ok(words)
        }
    }
    deserializer.deserialize_any(WordsVisitor)
}

/// `environment:` (or build `args:`) as a map or a `KEY=value` list; every variable has a value.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Environment(pub BTreeMap<String, String>);

impl<'de> Deserialize<'de> for Environment {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct EnvironmentVisitor;
        impl<'de> Visitor<'de> for EnvironmentVisitor {
            type Value = Environment;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a map of variables, or a list of `KEY=value`")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Environment, A::Error> {
                let mut variables = BTreeMap::new();
                while let Some((key, value)) = map.next_entry::<String, String>()? {
                    variables.insert(key, value);
                }
                Ok(Environment(variables))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Environment, A::Error> {
                let mut variables = BTreeMap::new();
                while let Some(entry) = seq.next_element::<String>()? {
                    let Some((key, value)) = entry.split_once('=') else {
                        return Err(de::Error::custom(format!(
                            "{entry:?} has no value: a target's variables are written in the file (`{entry}=...`), not taken from the shell"
                        )));
                    };
                    variables.insert(key.to_owned(), value.to_owned());
                }
                Ok(Environment(variables))
            }
        }
        deserializer.deserialize_any(EnvironmentVisitor)
    }
}

/// A port the service listens on, from the short (`"8000"`, `"8080:8000"`,
/// `"127.0.0.1:8080:8000/tcp"`) or long (`target:`) syntax. Only the container's side is kept:
/// Fortress publishes every port on 127.0.0.1 at a free host port, so runs never collide.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Port {
    pub container: u16,
    /// The host port the file asked for, which a run does not use (said in `fortress target`).
    pub host_asked: Option<u16>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LongPort {
    target: u16,
    published: Option<String>,
    host_ip: Option<String>,
    protocol: Option<String>,
}

impl Port {
    fn short(text: &str) -> Result<Self, String> {
        let (mapping, protocol) = text.split_once('/').unwrap_or((text, "tcp"));
        if protocol != "tcp" {
            return Err(format!("{text:?}: only TCP ports are supported"));
        }
        let parts: Vec<&str> = mapping.rsplitn(3, ':').collect();
        let number = |part: &str| {
            part.parse::<u16>().map_err(|_| {
                format!("{text:?}: {part:?} is not a port number (port ranges are not supported)")
            })
        };
        Ok(Self {
            container: number(parts[0])?,
            host_asked: match parts.get(1) {
                Some(host) if !host.is_empty() => Some(number(host)?),
                _ => None,
            },
        })
    }
}

impl<'de> Deserialize<'de> for Port {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct PortVisitor;
        impl<'de> Visitor<'de> for PortVisitor {
            type Value = Port;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a port (`\"8000\"`, `\"8080:8000\"`) or a map with `target`")
            }
            fn visit_str<E: de::Error>(self, text: &str) -> Result<Port, E> {
                Port::short(text).map_err(E::custom)
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Port, A::Error> {
                let long = LongPort::deserialize(de::value::MapAccessDeserializer::new(map))?;
                if let Some(protocol) = long.protocol.filter(|p| p != "tcp") {
                    return Err(de::Error::custom(format!(
                        "{protocol}: only TCP ports are supported"
                    )));
                }
                // Whatever `host_ip` asks, a lab publishes on 127.0.0.1 only.
                let _ = long.host_ip;
                let host_asked =
                    (long.published.map(|p| Port::short(&p)).transpose()).map_err(de::Error::custom)?;
                Ok(Port {
                    container: long.target,
                    host_asked: host_asked.map(|p| p.container),
                })
            }
        }
        deserializer.deserialize_any(PortVisitor)
    }
}

/// When a dependency counts as up for the service that depends on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Condition {
    ServiceStarted,
    ServiceHealthy,
    ServiceCompletedSuccessfully,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LongDependency {
    condition: Condition,
    #[serde(default)]
    restart: bool,
    #[serde(default = "required")]
    required: bool,
}

fn required() -> bool {
    true
}

/// `depends_on:` as a list of names or a map of names to conditions.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DependsOn(pub Vec<(String, Condition)>);

impl<'de> Deserialize<'de> for DependsOn {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct DependsOnVisitor;
        impl<'de> Visitor<'de> for DependsOnVisitor {
            type Value = DependsOn;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a list of services, or a map of services to a `condition`")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<DependsOn, A::Error> {
                let mut on = Vec::new();
                while let Some(name) = seq.next_element::<String>()? {
                    on.push((name, Condition::ServiceStarted));
                }
                Ok(DependsOn(on))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<DependsOn, A::Error> {
                let mut on = Vec::new();
                while let Some((name, long)) = map.next_entry::<String, LongDependency>()? {
                    if !long.required {
                        return Err(de::Error::custom(format!(
                            "{name}: `required: false` is not supported (every dependency of a lab starts)"
                        )));
                    }
                    // `restart: true` restarts the dependent when Compose updates the dependency,
                    // which a lab never does.
                    let _ = long.restart;
                    on.push((name, long.condition));
                }
                Ok(DependsOn(on))
            }
        }
        deserializer.deserialize_any(DependsOnVisitor)
    }
}

/// `healthcheck:` as Compose writes it; durations like `5s`, `500ms`, `1m30s`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Healthcheck {
    pub test: Option<Vec<String>>,
    #[serde(default, deserialize_with = "duration")]
    pub interval: Option<Duration>,
    #[serde(default, deserialize_with = "duration")]
    pub timeout: Option<Duration>,
    pub retries: Option<u32>,
    #[serde(default, deserialize_with = "duration")]
    pub start_period: Option<Duration>,
    #[serde(default)]
    pub disable: bool,
}

fn duration<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<Duration>, D::Error> {
    let text = String::deserialize(deserializer)?;
    humantime::parse_duration(&text).map(Some).map_err(|e| {
        de::Error::custom(format!(
            "{text:?} is not a duration such as 5s, 500ms or 1m30s: {e}"
        ))
    })
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Deploy {
    pub replicas: Option<Spanned<u32>>,
}
