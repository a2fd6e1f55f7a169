//! Load as data: the requests a user's experiment file describes (`[[load.requests]]`), for a
//! backend Fortress did not write. Each request has a weight (its share of the users), a method, a
//! path, headers and a body whose `{{...}}` variables are filled in per request, and the statuses
//! that count as its answer (`ok`) or as a normal refusal (`expected`, a sold-out). Each is filed
//! under one of Fortress's request groups, so the checkout story's figures (`checkout_p95`,
//! `http_5xx_rate`...) read the same for any backend.
//!
//! The variables: `{{user}}` (the virtual user's number, from 1), `{{request}}` (a number unique in
//! the run), `{{uuid}}` (a fresh UUID v4), and the values each user captured from the answer to its
//! start request (`[load.start]`, a login: `capture = { token = "/token" }` makes `{{token}}`). A
//! template is checked when the file is read: an unknown variable is refused there, not sent.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};

use super::sample::{Group, RequestOutcome};

/// One templated piece of a request: literal text and variables, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    parts: Vec<Part>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Text(String),
    User,
    Request,
    Uuid,
    Captured(String),
}

/// The values one user captured from its start request's answer, by name.
pub type Captured = BTreeMap<String, String>;

/// The variables that are always there.
const BUILT_IN: [&str; 3] = ["user", "request", "uuid"];

/// What a template's variables are for one request.
#[derive(Debug, Clone, Copy)]
pub struct Values<'a> {
    pub user: usize,
    pub request: u64,
    pub captured: &'a Captured,
}

impl Template {
    /// Reads `text`, whose variables are the built-in ones and `captured` (the names the start
    /// request captures); an unknown or unclosed `{{...}}` is an error saying which variables exist.
    pub fn parse(text: &str, captured: &[String]) -> Result<Self, String> {
        let mut parts = Vec::new();
        let mut rest = text;
        while let Some(open) = rest.find("{{") {
            if open > 0 {
                parts.push(Part::Text(rest[..open].to_owned()));
            }
            let after = &rest[open + 2..];
            let close = after
                .find("}}")
                .ok_or_else(|| format!("`{{{{` at byte {open} is never closed with `}}}}`"))?;
            parts.push(match after[..close].trim() {
                "user" => Part::User,
                "request" => Part::Request,
                "uuid" => Part::Uuid,
                name if captured.iter().any(|c| c == name) => Part::Captured(name.to_owned()),
                other => {
                    let known: Vec<String> = (BUILT_IN.iter().map(|b| b.to_string()))
                        .chain(captured.iter().cloned())
                        .map(|name| format!("{{{{{name}}}}}"))
                        .collect();
                    return Err(format!(
                        "unknown variable {{{{{other}}}}}: the variables are {} (a value from an answer \
                         is captured by [load.start])",
                        known.join(", ")
                    ));
                }
            });
            rest = &after[close + 2..];
        }
        if !rest.is_empty() {
            parts.push(Part::Text(rest.to_owned()));
        }
        Ok(Self { parts })
    }

    /// The text with its variables filled in. A captured value the user lacks is empty (a user
    /// sends nothing but its start request until that has captured every value).
    pub fn render(&self, values: &Values<'_>) -> String {
        let mut text = String::new();
        for part in &self.parts {
            match part {
                Part::Text(t) => text.push_str(t),
                Part::User => text.push_str(&values.user.to_string()),
                Part::Request => text.push_str(&values.request.to_string()),
                Part::Uuid => text.push_str(&uuid::Uuid::new_v4().to_string()),
                Part::Captured(name) => text.push_str(values.captured.get(name).map_or("", String::as_str)),
            }
        }
        text
    }
}

/// A request method a scripted request may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Get,
    Post,
    Put,
    Patch,
    Delete,
}

impl std::fmt::Display for Method {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Get => "GET",
            Self::Post => "POST",
            Self::Put => "PUT",
            Self::Patch => "PATCH",
            Self::Delete => "DELETE",
        })
    }
}

impl std::str::FromStr for Method {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s.to_ascii_uppercase().as_str() {
            "GET" => Self::Get,
            "POST" => Self::Post,
            "PUT" => Self::Put,
            "PATCH" => Self::Patch,
            "DELETE" => Self::Delete,
            _ => return Err(format!("unknown method {s:?}: GET, POST, PUT, PATCH or DELETE")),
        })
    }
}

/// One request of the script.
#[derive(Debug, Clone, PartialEq)]
pub struct ScriptedRequest {
    /// How goose's report names it (`POST /orders`).
    pub name: String,
    pub group: Group,
    pub method: Method,
    pub path: Template,
    pub headers: Vec<(String, Template)>,
    pub body: Option<Template>,
    /// Its share of the users, against the other requests' weights.
    pub weight: u32,
    /// The statuses that are the answer the request was made for.
    pub ok: Vec<u16>,
    /// The statuses that are a normal refusal (sold out), when the body contains `expected_contains`
    /// (if given).
    pub expected: Vec<u16>,
    pub expected_contains: Option<String>,
    /// Which answers acknowledge something the target must keep (an order), and where its id is.
    pub acknowledges: Option<Acknowledgement>,
    /// The start request's values to keep for the user's later requests: a name and the JSON
    /// pointer to it in an `ok` answer.
    pub captures: Vec<Capture>,
}

/// `token = "/token"`: the value at the pointer of an ok answer, kept as `{{token}}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Capture {
    pub name: String,
    pub pointer: String,
}

/// The string or number at `pointer` in a JSON `body`, as text.
fn scalar_at(body: &[u8], pointer: &str) -> Option<String> {
    let value: serde_json::Value = serde_json::from_slice(body).ok()?;
    match value.pointer(pointer)? {
        serde_json::Value::String(text) => Some(text.clone()),
        serde_json::Value::Number(number) => Some(number.to_string()),
        _ => None,
    }
}

/// An answer that acknowledges: its status, and the JSON pointer to the id in its body (`/code`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Acknowledgement {
    pub status: u16,
    pub id: String,
}

impl Acknowledgement {
    /// The id this answer acknowledged, if it is an acknowledgement: a string or a number at the
    /// pointer of a JSON body with the status.
    pub fn id_in(&self, status: u16, body: &[u8]) -> Option<String> {
        if status != self.status {
            return None;
        }
        scalar_at(body, &self.id)
    }
}

impl ScriptedRequest {
    /// Ok, expected, or an error: any other status, an expected one without its text, or an ok one
    /// without a value it captures.
    pub fn classify(&self, status: u16, body: &[u8]) -> RequestOutcome {
        if self.ok.contains(&status) {
            return match self.captured_from(body) {
                Some(_) => RequestOutcome::Ok,
                None => RequestOutcome::Error,
            };
        }
        let text_there = |needle: &str| String::from_utf8_lossy(body).contains(needle);
        if self.expected.contains(&status) && self.expected_contains.as_deref().is_none_or(text_there) {
            return RequestOutcome::Expected;
        }
        RequestOutcome::Error
    }

    /// Every value this request captures, from an answer's `body`; `None` if one is missing.
    pub fn captured_from(&self, body: &[u8]) -> Option<Captured> {
        (self.captures.iter())
            .map(|c| Some((c.name.clone(), scalar_at(body, &c.pointer)?)))
            .collect()
    }
}

/// Every request of a load, the start request each user sends first, and the run-wide count behind
/// `{{request}}`.
#[derive(Debug, Default)]
pub struct Script {
    /// What each user sends once before its first request (a login), and again after a failure.
    pub start: Option<ScriptedRequest>,
    pub requests: Vec<ScriptedRequest>,
    sent: AtomicU64,
}

impl Script {
    pub fn new(start: Option<ScriptedRequest>, requests: Vec<ScriptedRequest>) -> Self {
        Self {
            start,
            requests,
            sent: AtomicU64::new(0),
        }
    }

    /// The variables of the next request of `user` (goose's 0-based index), with what it captured.
    pub fn next_values<'a>(&self, user: usize, captured: &'a Captured) -> Values<'a> {
        Values {
            user: user + 1,
            request: self.sent.fetch_add(1, Ordering::Relaxed) + 1,
            captured,
        }
    }
}

impl Clone for Script {
    fn clone(&self) -> Self {
        Self::new(self.start.clone(), self.requests.clone())
    }
}

impl PartialEq for Script {
    fn eq(&self, other: &Self) -> bool {
        self.start == other.start && self.requests == other.requests
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_template_fills_its_variables_and_refuses_unknown_ones() {
        let t = Template::parse(r#"{"email":"buyer{{request}}-{{ user }}@x.test"}"#, &[]).unwrap();
        let none = Captured::new();
        let values = Values {
            user: 3,
            request: 41,
            captured: &none,
        };
        assert_eq!(t.render(&values), r#"{"email":"buyer41-3@x.test"}"#);
        let id = Template::parse("{{uuid}}", &[]).unwrap().render(&values);
        assert!(uuid::Uuid::parse_str(&id).is_ok(), "{id}");
        assert_eq!(Template::parse("plain", &[]).unwrap().render(&values), "plain");
        let unknown = Template::parse("a {{seat}} b", &["token".into()]).unwrap_err();
        assert!(
            unknown.contains("{{seat}}") && unknown.contains("{{request}}") && unknown.contains("{{token}}"),
            "{unknown}"
        );
        assert!(
            Template::parse("a {{user", &[])
                .unwrap_err()
                .contains("never closed")
        );

        let bearer = Template::parse("Bearer {{token}}", &["token".into()]).unwrap();
        let captured = Captured::from([("token".to_owned(), "t-7".to_owned())]);
        let values = Values {
            captured: &captured,
            ..values
        };
        assert_eq!(bearer.render(&values), "Bearer t-7");
    }

    #[test]
    fn an_answer_is_ok_expected_only_with_its_text_or_an_error() {
        let request = ScriptedRequest {
            name: "POST /orders".into(),
            group: Group::Checkout,
            method: Method::Post,
            path: Template::parse("/orders", &[]).unwrap(),
            headers: vec![],
            body: None,
            weight: 1,
            ok: vec![201],
            expected: vec![400],
            expected_contains: Some("quota".into()),
            acknowledges: None,
            captures: vec![],
        };
        assert_eq!(request.classify(201, b""), RequestOutcome::Ok);
        assert_eq!(
            request.classify(400, br#"{"positions":["not enough quota"]}"#),
            RequestOutcome::Expected
        );
        assert_eq!(
            request.classify(400, br#"{"email":["invalid"]}"#),
            RequestOutcome::Error
        );
        assert_eq!(request.classify(500, b"quota"), RequestOutcome::Error);
    }

    #[test]
    fn an_ok_answer_without_a_value_it_captures_is_an_error() {
        let login = ScriptedRequest {
            name: "POST /login".into(),
            group: Group::Login,
            method: Method::Post,
            path: Template::parse("/login", &[]).unwrap(),
            headers: vec![],
            body: None,
            weight: 1,
            ok: vec![200],
            expected: vec![],
            expected_contains: None,
            acknowledges: None,
            captures: vec![Capture {
                name: "token".into(),
                pointer: "/session/token".into(),
            }],
        };
        let answer = br#"{"session":{"token":"t-1"}}"#;
        assert_eq!(login.classify(200, answer), RequestOutcome::Ok);
        assert_eq!(login.captured_from(answer).unwrap()["token"], "t-1");
        assert_eq!(login.classify(200, br#"{"session":{}}"#), RequestOutcome::Error);
        assert_eq!(login.classify(200, b"<html>"), RequestOutcome::Error);
        assert_eq!(login.classify(401, answer), RequestOutcome::Error);
    }

    #[test]
    fn an_acknowledgement_is_its_status_with_an_id_at_the_pointer() {
        let ack = Acknowledgement {
            status: 201,
            id: "/code".into(),
        };
        assert_eq!(ack.id_in(201, br#"{"code":"AB3XZ"}"#).as_deref(), Some("AB3XZ"));
        let by_number = Acknowledgement {
            status: 201,
            id: "/order/id".into(),
        };
        assert_eq!(
            by_number.id_in(201, br#"{"order":{"id":42}}"#).as_deref(),
            Some("42")
        );
        assert_eq!(ack.id_in(200, br#"{"code":"AB3XZ"}"#), None, "another status");
        assert_eq!(ack.id_in(201, br#"{"id":7}"#), None, "no id at the pointer");
        assert_eq!(ack.id_in(201, b"<html>"), None, "not JSON");
    }
}
