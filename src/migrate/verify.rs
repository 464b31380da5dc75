//! The written config checked by authgate's own loader before it is
//! printed, so what `migrate` prints `check` accepts: keys this build does
//! not have yet are dropped and reported, files that exist only where
//! authgate will run are warnings, anything else fails the run.

use serde_yaml::{Mapping, Value as Yaml};

use super::Report;

/// Serializes the config and checks it with authgate's own loader (no
/// network; unset `${VAR}`s stand in as a valid 32-byte value). Keys this
/// build does not know yet are dropped and reported — unless dropping one
/// would widen access (a policy); files that exist only where authgate will
/// run are warnings; any other problem fails the run.
pub fn finish(mut config: Mapping, r: &mut Report) -> Option<String> {
    let placeholder = |name: &str| {
        Some(std::env::var(name).unwrap_or_else(|_| "0123456789abcdef0123456789abcdef".into()))
    };
    for _ in 0..4 {
        let text = match serde_yaml::to_string(&Yaml::Mapping(config.clone())) {
            Ok(t) => t,
            Err(err) => {
                r.refuse("(output)", &format!("cannot render the config: {err}"));
                return None;
            }
        };
        let problems = match crate::config::load_str_with_env(&text, &placeholder) {
            Ok(_) => return Some(text),
            Err(e) => e.0,
        };
        let mut retry = false;
        let mut fatal = false;
        for p in &problems {
            let top = p
                .key
                .split(['.', '['])
                .next()
                .unwrap_or_default()
                .to_string();
            if p.message == "unknown key" {
                if top == "policies" {
                    r.restriction(
                        "--allowed-role",
                        "this authgate build has no policies section to express roles",
                    );
                    return None;
                }
                let removed = match p.key.rsplit_once('.') {
                    Some((parent, leaf)) => remove_path(&mut config, parent, leaf),
                    None => config.remove(p.key.as_str()).is_some(),
                };
                if removed {
                    r.not_carried(&p.key, "this authgate build has no such key yet");
                    retry = true;
                    continue;
                }
            }
            if p.message.contains("not supported by this build yet") {
                let (parent, leaf) = p.key.rsplit_once('.').unwrap_or(("", p.key.as_str()));
                if remove_path(&mut config, parent, leaf) {
                    r.not_carried(&p.key, &p.message);
                    retry = true;
                    continue;
                }
            }
            if p.message.contains("cannot read") || p.message.contains("is not a file") {
                r.warn(
                    &p.key,
                    &format!(
                        "{} (authgate check will pass where that file exists)",
                        p.message
                    ),
                );
                continue;
            }
            r.refuse(
                &p.key,
                &format!("authgate check refuses the result: {}", p.message),
            );
            fatal = true;
        }
        if fatal {
            return None;
        }
        if !retry {
            return serde_yaml::to_string(&Yaml::Mapping(config)).ok();
        }
    }
    None
}

fn remove_path(config: &mut Mapping, parent: &str, leaf: &str) -> bool {
    let mut node = config;
    for part in parent.split('.') {
        match node.get_mut(part).and_then(Yaml::as_mapping_mut) {
            Some(next) => node = next,
            None => return false,
        }
    }
    node.remove(leaf).is_some()
}
