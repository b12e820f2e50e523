//! Prometheus relabelling over a block's external labels plus `__block_id`, for
//! `--selector.relabel-config`: a block whose label set is dropped is not served (sharding with
//! `hashmod` + `keep`). Thanos applies it to the metas of the store gateway, the compactor and the
//! bucket tools alike.

use std::collections::BTreeMap;

use md5::{Digest, Md5};
use regex::Regex;
use serde::Deserialize;

use crate::error::{Error, Result};

/// The label holding the block's ULID during selection.
pub const BLOCK_ID_LABEL: &str = "__block_id";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
enum Action {
    Replace,
    Keep,
    Drop,
    Hashmod,
    Labelmap,
    Labeldrop,
    Labelkeep,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    #[serde(default)]
    source_labels: Vec<String>,
    #[serde(default)]
    separator: Option<String>,
    #[serde(default)]
    regex: Option<String>,
    #[serde(default)]
    modulus: Option<u64>,
    #[serde(default)]
    target_label: Option<String>,
    #[serde(default)]
    replacement: Option<String>,
    #[serde(default)]
    action: Option<Action>,
}

/// One relabel rule.
#[derive(Debug, Clone)]
struct Rule {
    source_labels: Vec<String>,
    separator: String,
    regex: Regex,
    modulus: u64,
    target_label: String,
    replacement: String,
    action: Action,
}

/// A parsed relabel configuration (a list of rules).
#[derive(Debug, Clone, Default)]
pub struct RelabelConfig {
    rules: Vec<Rule>,
}

fn invalid(message: impl Into<String>) -> Error {
    Error::Relabel {
        message: message.into(),
    }
}

impl RelabelConfig {
    /// Parses the YAML list of rules.
    pub fn parse(yaml: &str) -> Result<Self> {
        if yaml.trim().is_empty() {
            return Ok(Self::default());
        }
        let raw: Option<Vec<RawRule>> =
            serde_yaml_ng::from_str(yaml).map_err(|error| invalid(error.to_string()))?;
        let mut rules = Vec::new();
        for rule in raw.unwrap_or_default() {
            let action = rule.action.unwrap_or(Action::Replace);
            let pattern = rule.regex.unwrap_or_else(|| "(.*)".to_owned());
            let regex = Regex::new(&format!("^(?s:{pattern})$"))
                .map_err(|error| invalid(error.to_string()))?;
            let modulus = rule.modulus.unwrap_or(0);
            let target_label = rule.target_label.unwrap_or_default();
            if action == Action::Hashmod && modulus == 0 {
                return Err(invalid("hashmod needs a modulus above 0"));
            }
            if matches!(action, Action::Replace | Action::Hashmod) && target_label.is_empty() {
                return Err(invalid(
                    format!("{action:?} needs target_label").to_lowercase(),
                ));
            }
            rules.push(Rule {
                source_labels: rule.source_labels,
                separator: rule.separator.unwrap_or_else(|| ";".to_owned()),
                regex,
                modulus,
                target_label,
                replacement: rule.replacement.unwrap_or_else(|| "$1".to_owned()),
                action,
            });
        }
        Ok(Self { rules })
    }

    /// Whether there are no rules.
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// Applies the rules; `None` when the label set is dropped.
    pub fn process(
        &self,
        mut labels: BTreeMap<String, String>,
    ) -> Option<BTreeMap<String, String>> {
        for rule in &self.rules {
            let value = rule
                .source_labels
                .iter()
                .map(|name| labels.get(name).map(String::as_str).unwrap_or(""))
                .collect::<Vec<_>>()
                .join(&rule.separator);
            match rule.action {
                Action::Keep if !rule.regex.is_match(&value) => return None,
                Action::Drop if rule.regex.is_match(&value) => return None,
                Action::Keep | Action::Drop => {}
                Action::Hashmod => {
                    let digest = Md5::digest(value.as_bytes());
                    let mut tail = [0u8; 8];
                    tail.copy_from_slice(&digest[8..16]);
                    let modulo = u64::from_be_bytes(tail) % rule.modulus;
                    labels.insert(rule.target_label.clone(), modulo.to_string());
                }
                Action::Replace => {
                    let Some(captures) = rule.regex.captures(&value) else {
                        continue;
                    };
                    let mut target = String::new();
                    captures.expand(&rule.target_label, &mut target);
                    let mut replaced = String::new();
                    captures.expand(&rule.replacement, &mut replaced);
                    if target.is_empty() {
                        continue;
                    }
                    if replaced.is_empty() {
                        labels.remove(&target);
                    } else {
                        labels.insert(target, replaced);
                    }
                }
                Action::Labelmap => {
                    let mapped: Vec<(String, String)> = labels
                        .iter()
                        .filter_map(|(name, value)| {
                            let captures = rule.regex.captures(name)?;
                            let mut target = String::new();
                            captures.expand(&rule.replacement, &mut target);
                            Some((target, value.clone()))
                        })
                        .collect();
                    labels.extend(mapped);
                }
                Action::Labeldrop => labels.retain(|name, _| !rule.regex.is_match(name)),
                Action::Labelkeep => labels.retain(|name, _| rule.regex.is_match(name)),
            }
        }
        Some(labels)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(yaml: &str, labels: &[(&str, &str)], expected: Option<&[(&str, &str)]>) {
        let config = RelabelConfig::parse(yaml).unwrap();
        let input = labels
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        let expected = expected.map(|pairs| {
            pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect()
        });
        assert_eq!(config.process(input), expected, "{yaml}");
    }

    #[test]
    fn keep_drop_hashmod_replace() {
        check(
            "- action: keep\n  source_labels: [cluster]\n  regex: eu.*\n",
            &[("cluster", "eu1")],
            Some(&[("cluster", "eu1")]),
        );
        check(
            "- action: keep\n  source_labels: [cluster]\n  regex: eu.*\n",
            &[("cluster", "us1")],
            None,
        );
        check(
            "- action: drop\n  source_labels: [cluster]\n  regex: us1\n",
            &[("cluster", "us1")],
            None,
        );
        // md5("a") = 0cc175b9c0f1b6a831c399e269772661; last 8 bytes 0x31c399e269772661 % 2 = 1.
        check(
            "- action: hashmod\n  source_labels: [x]\n  target_label: shard\n  modulus: 2\n",
            &[("x", "a")],
            Some(&[("shard", "1"), ("x", "a")]),
        );
        check(
            "- source_labels: [cluster]\n  regex: (.*)1\n  target_label: region\n  replacement: $1\n",
            &[("cluster", "eu1")],
            Some(&[("cluster", "eu1"), ("region", "eu")]),
        );
        assert!(RelabelConfig::parse("- action: keep\n  bogus: 1\n").is_err());
    }
}
