//! The Prometheus text exposition format, as far as Fortress reads it: a sample line
//! (`name{label="value",...} value`) and a series selector (`name{label="value", code=~"5.."}`), the
//! PromQL syntax a user already writes, that picks the lines a counter is summed from.

use std::str::FromStr;

/// One sample line: `name{label="value",...} value`.
#[derive(Debug, PartialEq)]
pub struct Line<'a> {
    pub name: &'a str,
    pub labels: Vec<(&'a str, String)>,
    pub value: f64,
}

impl Line<'_> {
    pub fn label(&self, key: &str) -> Option<&str> {
        self.labels
            .iter()
            .find(|(k, _)| *k == key)
            .map(|(_, v)| v.as_str())
    }
}

/// Every sample line of a `/metrics` body (comments, blank and unreadable lines skipped).
pub fn lines(text: &str) -> Vec<Line<'_>> {
    text.lines().filter_map(parse_line).collect()
}

/// Parses a sample line. Written here because the `prometheus-parse` crate drops every sample whose
/// label values contain a brace, and the reference service's routes do (`/products/{id}`).
pub fn parse_line(line: &str) -> Option<Line<'_>> {
    let line = line.trim();
    if line.is_empty() || line.starts_with('#') {
        return None;
    }
    let name_end = line.find(['{', ' ']).unwrap_or(line.len());
    let name = &line[..name_end];
    let (labels, rest) = match line[name_end..].strip_prefix('{') {
        Some(inner) => label_list(inner)?,
        None => (Vec::new(), &line[name_end..]),
    };
    let value = rest.split_whitespace().next()?.parse().ok()?;
    Some(Line { name, labels, value })
}

/// The labels of `inner` (what follows a `{`) up to its closing `}`, and what follows that.
fn label_list(inner: &str) -> Option<(Vec<(&str, String)>, &str)> {
    let mut labels = Vec::new();
    let mut chars = inner.char_indices();
    let mut key_start = 0;
    loop {
        let (eq, _) = chars.by_ref().find(|(_, c)| *c == '=' || *c == '}')?;
        if inner[eq..].starts_with('}') {
            return Some((labels, &inner[eq + 1..]));
        }
        let key = inner[key_start..eq].trim_matches(|c: char| c == ',' || c.is_whitespace());
        let (_, quote) = chars.next()?;
        if quote != '"' {
            return None;
        }
        labels.push((key, quoted(&mut chars)?));
        key_start = chars.clone().next().map_or(inner.len(), |(i, _)| i);
    }
}

/// The rest of a double-quoted string whose opening quote `chars` has just passed, unescaped.
fn quoted(chars: &mut std::str::CharIndices<'_>) -> Option<String> {
    let mut value = String::new();
    loop {
        match chars.next()? {
            (_, '\\') => match chars.next()?.1 {
                'n' => value.push('\n'),
                other => value.push(other),
            },
            (_, '"') => return Some(value),
            (_, c) => value.push(c),
        }
    }
}

/// How a selector's label matcher compares (PromQL's four).
#[derive(Debug, Clone)]
enum Match {
    Equal(String),
    NotEqual(String),
    /// Anchored at both ends, as in PromQL.
    Regex(regex::Regex),
    NotRegex(regex::Regex),
}

/// A series selector: a metric name and label matchers, the lines whose values a counter sums.
#[derive(Debug, Clone)]
pub struct Selector {
    text: String,
    name: String,
    matchers: Vec<(String, Match)>,
}

impl PartialEq for Selector {
    fn eq(&self, other: &Self) -> bool {
        self.text == other.text
    }
}

impl std::fmt::Display for Selector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text)
    }
}

/// Why a selector could not be read.
#[derive(Debug, thiserror::Error, PartialEq)]
#[error("not a series selector ({0}); write name or name{{label=\"value\", code=~\"5..\"}}")]
pub struct BadSelector(String);

impl FromStr for Selector {
    type Err = BadSelector;

    fn from_str(text: &str) -> Result<Self, BadSelector> {
        let bad = |why: &str| BadSelector(why.to_owned());
        let text = text.trim();
        let name_end = text.find('{').unwrap_or(text.len());
        let name = &text[..name_end];
        let is_name_char = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == ':';
        if name.is_empty()
            || !name.chars().all(is_name_char)
            || name.starts_with(|c: char| c.is_ascii_digit())
        {
            return Err(bad("a metric name of letters, digits, _ and : comes first"));
        }
        let matchers = match text[name_end..].strip_prefix('{') {
            Some(inner) => matchers(inner.strip_suffix('}').ok_or_else(|| bad("no closing }"))?)?,
            None => Vec::new(),
        };
        Ok(Self {
            text: text.to_owned(),
            name: name.to_owned(),
            matchers,
        })
    }
}

/// The matchers between a selector's braces: `label op "value"`, separated by commas.
fn matchers(mut rest: &str) -> Result<Vec<(String, Match)>, BadSelector> {
    let bad = |why: String| BadSelector(why);
    let mut found = Vec::new();
    loop {
        rest = rest.trim_start().trim_start_matches(',').trim_start();
        if rest.is_empty() {
            return Ok(found);
        }
        let key_end = rest
            .find(['=', '!'])
            .ok_or_else(|| bad(format!("no operator after {rest:?}")))?;
        let key = rest[..key_end].trim();
        let two = ["=~", "!~", "!="]
            .iter()
            .any(|op| rest[key_end..].starts_with(op));
        let op_len = if two { 2 } else { 1 };
        let op = &rest[key_end..key_end + op_len];
        let after_op = rest[key_end + op_len..].trim_start();
        let value_start = rest.len() - after_op.len();
        let mut chars = after_op.char_indices();
        if chars.next().map(|(_, c)| c) != Some('"') {
            return Err(bad(format!("the value of {key} is not in double quotes")));
        }
        let value =
            quoted(&mut chars).ok_or_else(|| bad(format!("the value of {key} has no closing quote")))?;
        rest = &rest[value_start + chars.offset()..];
        found.push((key.to_owned(), matcher(key, op, value)?));
    }
}

fn matcher(key: &str, op: &str, value: String) -> Result<Match, BadSelector> {
    let regex = |value: &str| {
        regex::Regex::new(&format!("^(?:{value})$"))
            .map_err(|e| BadSelector(format!("the pattern of {key}: {e}")))
    };
    Ok(match op {
        "=" => Match::Equal(value),
        "!=" => Match::NotEqual(value),
        "=~" => Match::Regex(regex(&value)?),
        "!~" => Match::NotRegex(regex(&value)?),
        other => return Err(BadSelector(format!("unknown operator {other} after {key}"))),
    })
}

impl Selector {
    /// Whether `line` is one of the selected series. A label the line lacks reads as empty, as in
    /// PromQL.
    pub fn matches(&self, line: &Line<'_>) -> bool {
        line.name == self.name
            && self.matchers.iter().all(|(key, matcher)| {
                let value = line.label(key).unwrap_or("");
                match matcher {
                    Match::Equal(wanted) => value == wanted,
                    Match::NotEqual(unwanted) => value != unwanted,
                    Match::Regex(pattern) => pattern.is_match(value),
                    Match::NotRegex(pattern) => !pattern.is_match(value),
                }
            })
    }

    /// The sum of the selected lines' values: 0 when none is there yet (client libraries create a
    /// labelled series at its first increment).
    pub fn sum(&self, lines: &[Line<'_>]) -> f64 {
        lines.iter().filter(|l| self.matches(l)).map(|l| l.value).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values_may_hold_braces_commas_and_escaped_quotes() {
        let line = parse_line(r#"m{route="/a/{id}",note="x, \"y\"",z="1"} 7"#).unwrap();
        assert_eq!(line.name, "m");
        assert_eq!(line.label("route"), Some("/a/{id}"));
        assert_eq!(line.label("note"), Some(r#"x, "y""#));
        assert_eq!(line.label("z"), Some("1"));
        assert_eq!(line.value, 7.0);
        assert_eq!(parse_line("plain 3.5").unwrap().value, 3.5);
        assert!(parse_line("# HELP m help").is_none());
        assert!(parse_line(r#"broken{a="1"#).is_none());
    }

    #[test]
    fn a_selector_sums_the_lines_its_matchers_pick() {
        let text = "\
http_requests_total{code=\"200\",handler=\"/-/ready\"} 40
http_requests_total{code=\"503\",handler=\"/-/ready\"} 2
http_requests_total{code=\"500\",handler=\"/api/{id}\"} 1
http_requests_total_other 99
";
        let lines = lines(text);
        let sum = |selector: &str| selector.parse::<Selector>().unwrap().sum(&lines);
        assert_eq!(sum("http_requests_total"), 43.0);
        assert_eq!(sum(r#"http_requests_total{handler="/-/ready"}"#), 42.0);
        assert_eq!(sum(r#"http_requests_total{code=~"5.."}"#), 3.0);
        assert_eq!(
            sum(r#"http_requests_total{code!~"5..", handler!="/api/{id}"}"#),
            40.0
        );
        assert_eq!(
            sum(r#"http_requests_total{code=~"5"}"#),
            0.0,
            "anchored, as in PromQL"
        );
        assert_eq!(
            sum(r#"http_requests_total{missing=""}"#),
            43.0,
            "a missing label is empty"
        );
        assert_eq!(sum("nothing_here"), 0.0);
    }

    #[test]
    fn a_bad_selector_says_what_to_write() {
        for bad in [
            "",
            "9lives",
            "m{code=\"5\"",
            "m{code=5}",
            "m{code=~\"(\"}",
            "m{code}",
            "m{c=\"x}",
        ] {
            let error = bad.parse::<Selector>().unwrap_err().to_string();
            assert!(error.starts_with("not a series selector"), "{bad}: {error}");
        }
    }
}
