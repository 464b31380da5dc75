//! From YAML text to the file DTO: parse the tree, normalise it, and
//! deserialize it while collecting every serde error by its dotted key
//! (failing keys are cut so their defaults apply and the rest still loads).

use serde_path_to_error::Segment;
use serde_yaml::Value;

use super::error::Problem;
use super::file::FileConfig;

/// Parses the YAML and normalises the tree: merge keys applied, `key:` with
/// no value treated as absent (so the default applies), root must be a map.
pub(super) fn parse_tree(yaml: &str) -> Result<Value, Problem> {
    let mut tree: Value =
        serde_yaml::from_str(yaml).map_err(|err| Problem::new("(yaml)", err.to_string()))?;
    tree.apply_merge()
        .map_err(|err| Problem::new("(yaml)", err.to_string()))?;
    match tree {
        Value::Null => Ok(Value::Mapping(Default::default())),
        Value::Mapping(_) => {
            drop_nulls(&mut tree);
            Ok(tree)
        }
        _ => Err(Problem::new(
            "(root)",
            "the configuration must be a YAML mapping of sections",
        )),
    }
}

fn drop_nulls(value: &mut Value) {
    match value {
        Value::Mapping(map) => {
            map.retain(|_, v| !v.is_null());
            map.values_mut().for_each(drop_nulls);
        }
        Value::Sequence(items) => items.iter_mut().for_each(drop_nulls),
        Value::Tagged(tagged) => drop_nulls(&mut tagged.value),
        _ => {}
    }
}

/// Numbers and booleans become strings, map keys included, so a text field
/// accepts `client_id: 12345`; typed fields parse text anyway because
/// `${VAR}` expansion only ever yields strings.
pub(super) fn stringify_scalars(value: &mut Value) {
    match value {
        Value::Bool(b) => *value = Value::String(b.to_string()),
        Value::Number(n) => *value = Value::String(n.to_string()),
        Value::Sequence(items) => items.iter_mut().for_each(stringify_scalars),
        Value::Mapping(map) => {
            let entries = std::mem::take(map);
            for (mut key, mut item) in entries {
                stringify_scalars(&mut key);
                stringify_scalars(&mut item);
                map.insert(key, item);
            }
        }
        Value::Tagged(tagged) => stringify_scalars(&mut tagged.value),
        Value::Null | Value::String(_) => {}
    }
}

/// serde stops at the first error; to report them all, each failing key is
/// recorded, removed from the tree (so its default applies) and the tree is
/// deserialized again. Removed keys are `settled` so validation stays quiet
/// about them.
pub(super) fn deserialize_collecting(
    mut tree: Value,
    problems: &mut Vec<Problem>,
    settled: &mut Vec<String>,
) -> Option<FileConfig> {
    const MAX_ROUNDS: usize = 200;
    for _ in 0..MAX_ROUNDS {
        let err = match serde_path_to_error::deserialize::<_, FileConfig>(&tree) {
            Ok(file) => return Some(file),
            Err(err) => err,
        };
        let segments: Vec<Segment> = err.path().iter().cloned().collect();
        let key = segments_to_key(&segments);
        let message = err.into_inner().to_string();
        let unknown = message.starts_with("unknown field");
        let shown = if unknown {
            "unknown key".to_string()
        } else if key.contains("secret") {
            // serde echoes the offending value; never print a secret.
            "invalid type: expected a string".to_string()
        } else {
            message
        };
        if !is_settled(&key, settled) {
            problems.push(Problem::new(key.clone(), shown));
        }

        // Which key to remove: the failing one, or, inside a list, the whole
        // list (removing one item would shift the indices of the others).
        let cut = match segments.last() {
            Some(Segment::Seq { .. }) if !unknown => {
                let mut parent = segments.clone();
                while matches!(parent.last(), Some(Segment::Seq { .. })) {
                    parent.pop();
                }
                parent
            }
            _ => segments,
        };
        settled.push(segments_to_key(&cut));
        if !remove_at(&mut tree, &cut) {
            return None;
        }
    }
    None
}

fn segments_to_key(segments: &[Segment]) -> String {
    let mut key = String::new();
    for segment in segments {
        match segment {
            Segment::Seq { index } => key.push_str(&format!("[{index}]")),
            Segment::Map { key: name } | Segment::Enum { variant: name } => {
                if !key.is_empty() {
                    key.push('.');
                }
                key.push_str(name);
            }
            Segment::Unknown => key.push_str(if key.is_empty() { "?" } else { ".?" }),
        }
    }
    if key.is_empty() {
        "(root)".to_string()
    } else {
        key
    }
}

/// Removes the map entry that `path` names; false when it cannot (the path
/// ends in a list index or an unknown segment), so the caller gives up.
fn remove_at(tree: &mut Value, path: &[Segment]) -> bool {
    let Some((last, parents)) = path.split_last() else {
        return false;
    };
    let mut node = tree;
    for segment in parents {
        let next = match (segment, node) {
            (Segment::Map { key }, Value::Mapping(map)) => map.get_mut(key.as_str()),
            (Segment::Seq { index }, Value::Sequence(items)) => items.get_mut(*index),
            _ => None,
        };
        match next {
            Some(child) => node = child,
            None => return false,
        }
    }
    match (last, node) {
        (Segment::Map { key }, Value::Mapping(map)) => map.remove(key.as_str()).is_some(),
        _ => false,
    }
}

/// True when `key` is `settled` or lies under it (`a.b` settles `a.b.c`, `a.b[0]`).
pub(super) fn is_settled(key: &str, settled: &[String]) -> bool {
    settled.iter().any(|s| {
        key == s
            || key
                .strip_prefix(s.as_str())
                .is_some_and(|rest| rest.starts_with('.') || rest.starts_with('['))
    })
}
