//! Identifiers: `<prefix>-<16 alphanumerics>` newtypes, parsed once at the edge.

use std::fmt;
use std::str::FromStr;

use crate::random::Random;

/// Length of the random part of every identifier.
pub const ID_SUFFIX_LEN: usize = 16;

const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";

/// A string that does not parse as the identifier that was expected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{value:?} is not a valid {kind} id: expected `{prefix}-` followed by {ID_SUFFIX_LEN} letters or digits")]
pub struct InvalidId {
    pub kind: &'static str,
    pub prefix: &'static str,
    pub value: String,
}

fn random_suffix(rng: &dyn Random) -> String {
    let mut bytes = [0u8; ID_SUFFIX_LEN];
    rng.fill(&mut bytes);
    // 62 * 4 = 248: rejection-free mapping would bias; the bias of `% 62` on a
    // byte is below 2%, irrelevant for identifiers that are not secrets.
    bytes
        .iter()
        .map(|b| ALPHABET[(*b as usize) % ALPHABET.len()] as char)
        .collect()
}

fn parse_prefixed(
    kind: &'static str,
    prefix: &'static str,
    value: &str,
) -> Result<String, InvalidId> {
    let err = || InvalidId {
        kind,
        prefix,
        value: value.to_string(),
    };
    let rest = value
        .strip_prefix(prefix)
        .and_then(|r| r.strip_prefix('-'))
        .ok_or_else(err)?;
    if rest.len() == ID_SUFFIX_LEN && rest.bytes().all(|b| b.is_ascii_alphanumeric()) {
        Ok(value.to_string())
    } else {
        Err(err())
    }
}

macro_rules! prefixed_id {
    ($(#[$doc:meta])* $name:ident, $prefix:literal, $kind:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(String);

        impl $name {
            pub const PREFIX: &'static str = $prefix;
            pub const KIND: &'static str = $kind;

            /// A fresh identifier drawn from `rng`.
            pub fn generate(rng: &dyn Random) -> Self {
                Self(format!("{}-{}", $prefix, random_suffix(rng)))
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl FromStr for $name {
            type Err = InvalidId;
            fn from_str(s: &str) -> Result<Self, InvalidId> {
                parse_prefixed($kind, $prefix, s).map(Self)
            }
        }
    };
}

prefixed_id!(/// A workspace.
    WorkspaceId, "ws", "workspace");
prefixed_id!(/// An agent pool.
    PoolId, "apool", "agent pool");
prefixed_id!(/// An agent token.
    AgentTokenId, "at", "agent token");
prefixed_id!(/// An agent (runner).
    AgentId, "agent", "agent");
prefixed_id!(/// A job: one phase of one run.
    JobId, "job", "job");
prefixed_id!(/// A run.
    RunId, "run", "run");
prefixed_id!(/// A configuration version.
    ConfigVersionId, "cv", "configuration version");
prefixed_id!(/// A state version.
    StateVersionId, "sv", "state version");
prefixed_id!(/// A workspace variable.
    VariableId, "var", "variable");
prefixed_id!(/// An organization token.
    OrgTokenId, "ot", "organization token");

/// Phase identifiers are derived from the run id (`plan-`/`apply-` + the run's
/// suffix), so that `GET plans/:id` is a run lookup.
pub fn plan_id(run: &RunId) -> String {
    format!("plan-{}", &run.as_str()[RunId::PREFIX.len() + 1..])
}

/// See [`plan_id`].
pub fn apply_id(run: &RunId) -> String {
    format!("apply-{}", &run.as_str()[RunId::PREFIX.len() + 1..])
}

/// The run a `plan-...` or `apply-...` identifier belongs to.
pub fn run_of_phase_id(phase_id: &str) -> Option<RunId> {
    let suffix = phase_id
        .strip_prefix("plan-")
        .or_else(|| phase_id.strip_prefix("apply-"))?;
    format!("run-{suffix}").parse().ok()
}

/// An organization is identified by its name: letters, digits, `-` and `_`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct OrganizationName(String);

/// A name (of an organization, workspace or pool) that is not acceptable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{value:?} is not a valid {kind} name: use 1 to {max} letters, digits, `-` or `_`")]
pub struct InvalidName {
    pub kind: &'static str,
    pub value: String,
    pub max: usize,
}

/// Names of organizations, workspaces and pools share one rule.
pub fn validate_name(kind: &'static str, value: &str) -> Result<(), InvalidName> {
    const MAX: usize = 90;
    let ok = !value.is_empty()
        && value.len() <= MAX
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(InvalidName {
            kind,
            value: value.to_string(),
            max: MAX,
        })
    }
}

impl OrganizationName {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for OrganizationName {
    type Err = InvalidName;
    fn from_str(s: &str) -> Result<Self, InvalidName> {
        validate_name("organization", s).map(|_| Self(s.to_string()))
    }
}

impl fmt::Display for OrganizationName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::random::SeededRandom;

    #[test]
    fn generated_ids_parse_back() {
        let rng = SeededRandom::new(7);
        for _ in 0..100 {
            let id = JobId::generate(&rng);
            assert_eq!(id.as_str().len(), 4 + ID_SUFFIX_LEN);
            assert_eq!(id.as_str().parse::<JobId>(), Ok(id.clone()));
        }
    }

    #[test]
    fn wrong_prefix_or_length_is_refused_with_a_readable_message() {
        let err = "ws-abc".parse::<RunId>().unwrap_err();
        assert_eq!(
            err.to_string(),
            "\"ws-abc\" is not a valid run id: expected `run-` followed by 16 letters or digits"
        );
        assert!("run-0123456789abcdeF".parse::<RunId>().is_ok());
        assert!("run-0123456789abcde!".parse::<RunId>().is_err());
        assert!("run-0123456789abcdef0".parse::<RunId>().is_err());
    }

    #[test]
    fn phase_ids_round_trip_to_their_run() {
        let run: RunId = "run-0123456789abcdef".parse().unwrap();
        assert_eq!(plan_id(&run), "plan-0123456789abcdef");
        assert_eq!(apply_id(&run), "apply-0123456789abcdef");
        assert_eq!(run_of_phase_id(&plan_id(&run)), Some(run.clone()));
        assert_eq!(run_of_phase_id(&apply_id(&run)), Some(run));
        assert_eq!(run_of_phase_id("ws-0123456789abcdef"), None);
    }

    #[test]
    fn names() {
        assert!("acme_1-x".parse::<OrganizationName>().is_ok());
        assert!("".parse::<OrganizationName>().is_err());
        assert!("a b".parse::<OrganizationName>().is_err());
        assert!("ä".parse::<OrganizationName>().is_err());
    }
}
