//! What a stored terraform state file says to API readers: its format
//! version, the terraform version that wrote it, and its outputs, with the
//! rule that sensitive values are hidden where TFE hides them.
//!
//! A state file is whatever the client uploaded; nothing here fails on a
//! malformed one (it reads as a state without outputs).

use std::fmt;
use std::str::FromStr;

use serde_json::Value;

use crate::ids::{InvalidId, StateVersionId};

/// The state format version TFE reports when a file does not say.
pub const DEFAULT_FORMAT_VERSION: i64 = 4;

/// The identifier of one output of one state version: `wsout-` + the state
/// version's suffix + `-` + the output's position (outputs sorted by name).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct StateOutputId {
    pub state_version: StateVersionId,
    pub index: usize,
}

impl StateOutputId {
    pub const PREFIX: &'static str = "wsout";
}

impl fmt::Display for StateOutputId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let suffix = &self.state_version.as_str()[StateVersionId::PREFIX.len() + 1..];
        write!(f, "{}-{suffix}-{}", Self::PREFIX, self.index)
    }
}

impl FromStr for StateOutputId {
    type Err = InvalidId;
    fn from_str(s: &str) -> Result<Self, InvalidId> {
        let err = || InvalidId {
            kind: "state version output",
            prefix: Self::PREFIX,
            value: s.to_string(),
        };
        let rest = s
            .strip_prefix(Self::PREFIX)
            .and_then(|r| r.strip_prefix('-'))
            .ok_or_else(err)?;
        let (sv, index) = rest.rsplit_once('-').ok_or_else(err)?;
        Ok(Self {
            state_version: format!("{}-{sv}", StateVersionId::PREFIX)
                .parse()
                .map_err(|_| err())?,
            index: index.parse().map_err(|_| err())?,
        })
    }
}

/// One output of a state file.
#[derive(Debug, Clone, PartialEq)]
pub struct StateOutput {
    pub id: StateOutputId,
    pub name: String,
    /// None when hidden: a sensitive output read where values are redacted.
    pub value: Option<Value>,
    /// Terraform's type of the value (`"string"`, `["list","string"]`, …).
    pub ty: Value,
    pub sensitive: bool,
}

/// Whether sensitive output values are shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Redaction {
    /// Sensitive values are hidden (a workspace's current outputs).
    HideSensitive,
    /// Every value is shown (a state version's outputs, read with access to
    /// the state itself).
    ShowAll,
}

/// The parts of a state file the API reports.
#[derive(Debug, Clone, PartialEq)]
pub struct StateSummary {
    /// The state format version (`version`).
    pub format_version: i64,
    /// `terraform_version`; empty when absent.
    pub terraform_version: String,
    /// Sorted by name.
    pub outputs: Vec<StateOutput>,
}

/// Read a state file of state version `sv`.
pub fn summarize(sv: &StateVersionId, state: &[u8], redaction: Redaction) -> StateSummary {
    let parsed: Value = serde_json::from_slice(state).unwrap_or(Value::Null);
    let mut outputs: Vec<(String, &Value)> = parsed
        .get("outputs")
        .and_then(Value::as_object)
        .map(|o| o.iter().map(|(k, v)| (k.clone(), v)).collect())
        .unwrap_or_default();
    outputs.sort_by(|a, b| a.0.cmp(&b.0));
    let outputs = outputs
        .into_iter()
        .enumerate()
        .map(|(index, (name, v))| {
            let sensitive = v.get("sensitive").and_then(Value::as_bool).unwrap_or(false);
            let hidden = sensitive && redaction == Redaction::HideSensitive;
            StateOutput {
                id: StateOutputId {
                    state_version: sv.clone(),
                    index,
                },
                name,
                value: (!hidden).then(|| v.get("value").cloned().unwrap_or(Value::Null)),
                ty: v.get("type").cloned().unwrap_or(Value::Null),
                sensitive,
            }
        })
        .collect();
    StateSummary {
        format_version: parsed
            .get("version")
            .and_then(Value::as_i64)
            .unwrap_or(DEFAULT_FORMAT_VERSION),
        terraform_version: parsed
            .get("terraform_version")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string(),
        outputs,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sv() -> StateVersionId {
        "sv-abcdefghijklmnop".parse().unwrap()
    }

    const STATE: &str = r#"{"version":4,"terraform_version":"1.0.3","outputs":{
        "b":{"value":"secret","type":"string","sensitive":true},
        "a":{"value":[1,2],"type":["list","number"]}}}"#;

    #[test]
    fn outputs_sorted_with_ids_and_redaction() {
        let s = summarize(&sv(), STATE.as_bytes(), Redaction::HideSensitive);
        assert_eq!(s.format_version, 4);
        assert_eq!(s.terraform_version, "1.0.3");
        let names: Vec<_> = s.outputs.iter().map(|o| o.name.as_str()).collect();
        assert_eq!(names, ["a", "b"]);
        assert_eq!(s.outputs[0].value, Some(serde_json::json!([1, 2])));
        assert!(!s.outputs[0].sensitive);
        assert_eq!(s.outputs[1].value, None);
        assert!(s.outputs[1].sensitive);
        let shown = summarize(&sv(), STATE.as_bytes(), Redaction::ShowAll);
        assert_eq!(shown.outputs[1].value, Some(serde_json::json!("secret")));
        assert_eq!(s.outputs[1].id.to_string(), "wsout-abcdefghijklmnop-1");
    }

    #[test]
    fn malformed_state_reads_as_no_outputs() {
        let s = summarize(&sv(), b"not json", Redaction::ShowAll);
        assert_eq!(s.format_version, DEFAULT_FORMAT_VERSION);
        assert!(s.outputs.is_empty());
    }

    #[test]
    fn output_ids_round_trip_and_reject_others() {
        let id = StateOutputId {
            state_version: sv(),
            index: 12,
        };
        assert_eq!(id.to_string().parse::<StateOutputId>(), Ok(id));
        for bad in [
            "wsout-",
            "wsout-abc",
            "wsout-abcdefghijklmnop-x",
            "sv-abcdefghijklmnop-1",
            "wsout-short-1",
        ] {
            assert!(bad.parse::<StateOutputId>().is_err(), "{bad}");
        }
    }
}
