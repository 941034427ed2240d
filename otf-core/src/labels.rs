//! Agent labels and workspace agent selectors: small sets of `key=value`
//! pairs. An agent registers labels (`otf-agent --label region=eu`); a
//! workspace may carry a selector, and its jobs go only to agents of its pool
//! whose labels include every pair of the selector.
//!
//! The canonical text form is `k=v,k2=v2` with keys sorted; it is also how
//! the stores keep them. Keys are 1 to 63 characters of letters, digits and
//! `._/-`, starting with a letter or digit; values are up to 63 characters of
//! letters, digits and `._-`. A set holds at most [`MAX_LABELS`] pairs.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

/// Pairs an agent or a selector may carry.
pub const MAX_LABELS: usize = 32;

const MAX_LEN: usize = 63;

/// A label or selector that cannot be used, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LabelError {
    #[error("{0:?} is not a label: write key=value, for example region=eu-west")]
    NotAPair(String),
    #[error("label key {0:?} is invalid: use 1 to 63 letters, digits or ._/-, starting with a letter or digit")]
    BadKey(String),
    #[error("label value {value:?} of {key} is invalid: use up to 63 letters, digits or ._-")]
    BadValue { key: String, value: String },
    #[error("label {key} is given twice with different values ({first} and {second})")]
    Conflict {
        key: String,
        first: String,
        second: String,
    },
    #[error("{0} labels are too many: at most 32")]
    TooMany(usize),
}

/// A set of `key=value` pairs, ordered by key.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Labels(BTreeMap<String, String>);

impl Labels {
    pub fn new() -> Self {
        Self::default()
    }

    /// Validated pairs; a key given twice must repeat the same value.
    pub fn from_pairs<K, V>(pairs: impl IntoIterator<Item = (K, V)>) -> Result<Self, LabelError>
    where
        K: Into<String>,
        V: Into<String>,
    {
        let mut map: BTreeMap<String, String> = BTreeMap::new();
        for (k, v) in pairs {
            let (k, v) = (k.into(), v.into());
            check_key(&k)?;
            check_value(&k, &v)?;
            if let Some(first) = map.get(&k) {
                if first != &v {
                    return Err(LabelError::Conflict {
                        key: k,
                        first: first.clone(),
                        second: v,
                    });
                }
            }
            map.insert(k, v);
        }
        if map.len() > MAX_LABELS {
            return Err(LabelError::TooMany(map.len()));
        }
        Ok(Labels(map))
    }

    /// Parses `key=value` items, as given on a command line.
    pub fn parse_items<'a>(items: impl IntoIterator<Item = &'a str>) -> Result<Self, LabelError> {
        let pairs = items
            .into_iter()
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|s| {
                s.split_once('=')
                    .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
                    .ok_or_else(|| LabelError::NotAPair(s.to_string()))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Self::from_pairs(pairs)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(String::as_str)
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// Whether every pair of `selector` is one of these labels.
    pub fn includes(&self, selector: &Labels) -> bool {
        selector.len() <= self.len() && selector.iter().all(|(k, v)| self.get(k) == Some(v))
    }
}

fn check_key(k: &str) -> Result<(), LabelError> {
    let ok = !k.is_empty()
        && k.len() <= MAX_LEN
        && k.starts_with(|c: char| c.is_ascii_alphanumeric())
        && k.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '/' | '-'));
    if ok {
        Ok(())
    } else {
        Err(LabelError::BadKey(k.to_string()))
    }
}

fn check_value(k: &str, v: &str) -> Result<(), LabelError> {
    let ok = v.len() <= MAX_LEN
        && v.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if ok {
        Ok(())
    } else {
        Err(LabelError::BadValue {
            key: k.to_string(),
            value: v.to_string(),
        })
    }
}

impl fmt::Display for Labels {
    /// `k=v,k2=v2`, keys sorted; empty for no labels.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, (k, v)) in self.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{k}={v}")?;
        }
        Ok(())
    }
}

impl FromStr for Labels {
    type Err = LabelError;

    /// `k=v,k2=v2` (spaces around items are ignored; empty means none).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse_items(s.split(','))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn l(s: &str) -> Labels {
        s.parse().unwrap()
    }

    #[test]
    fn parses_and_prints_canonically() {
        let labels = l(" zone=b , region=eu-west,gpu=");
        assert_eq!(labels.to_string(), "gpu=,region=eu-west,zone=b");
        assert_eq!(l(""), Labels::new());
        assert_eq!(labels.get("region"), Some("eu-west"));
        assert_eq!(l("a=1,a=1"), l("a=1"));
    }

    #[test]
    fn bad_labels_are_refused_with_the_rule() {
        for (input, says) in [
            ("region", "write key=value"),
            ("=eu", "label key \"\""),
            ("-x=1", "starting with a letter"),
            ("a=b c", "letters, digits or ._-"),
            ("a=1,a=2", "given twice"),
            ("k=v,v", "not a label"),
        ] {
            let err = input.parse::<Labels>().unwrap_err().to_string();
            assert!(err.contains(says), "{input}: {err}");
        }
        let many: Vec<String> = (0..33).map(|i| format!("k{i}=v")).collect();
        let err = Labels::parse_items(many.iter().map(String::as_str)).unwrap_err();
        assert_eq!(err, LabelError::TooMany(33));
    }

    #[test]
    fn every_pair_of_the_selector_must_match() {
        let agent = l("region=eu,gpu=true,zone=b");
        assert!(agent.includes(&Labels::new()));
        assert!(agent.includes(&l("region=eu")));
        assert!(agent.includes(&l("gpu=true,region=eu")));
        assert!(!agent.includes(&l("region=us")));
        assert!(!agent.includes(&l("region=eu,disk=ssd")));
        assert!(!Labels::new().includes(&l("region=eu")));
    }

    fn labels() -> impl Strategy<Value = Labels> {
        proptest::collection::btree_map("[a-z][a-z0-9./_-]{0,8}", "[a-z0-9._-]{0,8}", 0..6)
            .prop_map(|m| Labels::from_pairs(m).unwrap())
    }

    proptest! {
        #[test]
        fn text_form_round_trips(labels in labels()) {
            prop_assert_eq!(labels.to_string().parse::<Labels>().unwrap(), labels);
        }

        #[test]
        fn includes_is_subset(a in labels(), b in labels()) {
            let subset = b.iter().all(|(k, v)| a.get(k) == Some(v));
            prop_assert_eq!(a.includes(&b), subset);
        }
    }
}
