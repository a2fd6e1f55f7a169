//! Compose override files (`docker compose -f compose.yaml -f compose.pr.yaml`), merged the way
//! Compose merges them, for the keys a target may use: mappings merge key by key; `command`,
//! `entrypoint` and a healthcheck's `test` are replaced; other sequences (`ports`, `expose`,
//! `depends_on`, the section's `links`) gain the items they lack; a scalar is replaced. An
//! `environment` or build `args` merges by variable only as a mapping in both files: in the
//! `KEY=value` list form it is refused at the override's line rather than guessed.
//!
//! Every value keeps the file and line it came from, so a mistake in the merged file is named
//! where it was written.

use marked_yaml::{Node, Span};

/// A merge that cannot be done: where, the field, and why.
pub(super) type Refusal = Box<(Span, String, String)>;

/// The keys whose sequence an override replaces rather than extends.
const REPLACED: [&str; 3] = ["command", "entrypoint", "test"];
/// The keys that merge by variable name.
const BY_NAME: [&str; 2] = ["environment", "args"];

/// Merges `over` into `base`; `path` is where they are (`services.web`), for errors.
pub(super) fn merge(base: &mut Node, over: &Node, path: &str) -> Result<(), Refusal> {
    let key = path.rsplit('.').next().unwrap_or("");
    match (base, over) {
        (Node::Mapping(base), Node::Mapping(over)) => {
            for (name, value) in over.iter() {
                let inner = match path.is_empty() {
                    true => name.as_str().to_owned(),
                    false => format!("{path}.{}", name.as_str()),
                };
                match base.get_mut(name.as_str()) {
                    Some(existing) => merge(existing, value, &inner)?,
                    None => {
                        base.insert(name.clone(), value.clone());
                    }
                }
            }
            Ok(())
        }
        (base, over) if BY_NAME.contains(&key) => Err(Box::new((
            *over.span(),
            path.to_owned(),
            format!(
                "{key} is merged by variable only when both files write it as a mapping (KEY: value); \
                 write it so in {}",
                match base.as_sequence() {
                    Some(_) => "the Compose file and this one",
                    None => "this file",
                }
            ),
        ))),
        (Node::Sequence(base), Node::Sequence(over)) if !REPLACED.contains(&key) => {
            for item in over.iter() {
                let present = item.as_scalar().is_some_and(|s| {
                    base.iter()
                        .any(|b| b.as_scalar().is_some_and(|b| b.as_str() == s.as_str()))
                });
                if !present {
                    base.push(item.clone());
                }
            }
            Ok(())
        }
        (base, over) => {
            *base = over.clone();
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn merged(base: &str, over: &str) -> Result<Node, Refusal> {
        let mut base = marked_yaml::parse_yaml(0, base).unwrap();
        let over = marked_yaml::parse_yaml(1, over).unwrap();
        merge(&mut base, &over, "").map(|()| base)
    }

    fn at<'a>(node: &'a Node, path: &str) -> &'a Node {
        path.split('.')
            .fold(node, |n, k| n.as_mapping().unwrap().get_node(k).unwrap())
    }

    #[test]
    fn mappings_merge_lists_extend_commands_and_scalars_are_replaced() {
        let base = "services:\n  web:\n    image: shop/web:1\n    command: [serve, --workers, \"2\"]\n    \
                    ports: [\"8000\"]\n    environment: { A: \"1\", B: \"2\" }\n";
        let over = "services:\n  web:\n    image: shop/web:2\n    command: [serve]\n    ports: [\"8000\", \"9000\"]\n    \
                    environment: { B: \"3\" }\n  cache:\n    image: redis\n";
        let node = merged(base, over).unwrap();
        let scalar = |p: &str| at(&node, p).as_scalar().unwrap().as_str().to_owned();
        assert_eq!(scalar("services.web.image"), "shop/web:2");
        assert_eq!(scalar("services.web.environment.A"), "1");
        assert_eq!(scalar("services.web.environment.B"), "3");
        assert_eq!(scalar("services.cache.image"), "redis");
        assert_eq!(at(&node, "services.web.command").as_sequence().unwrap().len(), 1);
        assert_eq!(at(&node, "services.web.ports").as_sequence().unwrap().len(), 2);
        // The override's values keep their own file (source 1) and line.
        let image = at(&node, "services.web.image").span().start().unwrap();
        assert_eq!((image.source(), image.line()), (1, 3));
    }

    #[test]
    fn an_environment_list_is_refused_at_the_overrides_line() {
        let base = "services:\n  web:\n    environment: [\"A=1\"]\n";
        let over = "services:\n  web:\n    environment: { A: \"2\" }\n";
        let (span, field, message) = *merged(base, over).unwrap_err();
        assert_eq!(field, "services.web.environment");
        assert_eq!(span.start().map(|m| (m.source(), m.line())), Some((1, 3)));
        assert!(message.contains("the Compose file and this one"), "{message}");
    }
}
