//! Configuration versions, state versions, variables and logs: the data runs
//! consume and produce.

use crate::clock::Timestamp;
use crate::enums::wire_enum;
use crate::ids::{
    ConfigVersionId, OrganizationName, RunId, StateVersionId, VariableId, WorkspaceId,
};
use crate::job::JobPhase;

wire_enum!(
    /// Status of a configuration version.
    ConfigStatus, "configuration version status" {
        Pending => "pending",
        Uploaded => "uploaded",
        Errored => "errored",
    }
);

/// An uploaded (or awaited) configuration tarball.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigurationVersion {
    pub id: ConfigVersionId,
    pub workspace: WorkspaceId,
    pub organization: OrganizationName,
    pub status: ConfigStatus,
    pub speculative: bool,
    pub auto_queue_runs: bool,
    pub error: Option<String>,
    pub created_at: Timestamp,
}

/// A stored terraform state (its bytes live beside it in the store).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateVersion {
    pub id: StateVersionId,
    pub workspace: WorkspaceId,
    pub organization: OrganizationName,
    pub serial: i64,
    pub lineage: String,
    /// Hex MD5 of the state bytes.
    pub md5: String,
    pub size: u64,
    pub run: Option<RunId>,
    pub created_at: Timestamp,
}

wire_enum!(
    /// Where a variable goes: a terraform input or the process environment.
    VariableCategory, "variable category" {
        Terraform => "terraform",
        Env => "env",
    }
);

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Variable {
    pub id: VariableId,
    pub workspace: WorkspaceId,
    pub key: String,
    pub value: String,
    pub description: String,
    pub category: VariableCategory,
    pub hcl: bool,
    /// Write-only: never returned by the API, never logged.
    pub sensitive: bool,
}

/// A slice of a phase's log, at byte `offset` of that log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogChunk {
    pub run: RunId,
    pub phase: JobPhase,
    pub offset: u64,
    pub data: Vec<u8>,
}

wire_enum!(
    /// Files a plan produces that the apply phase needs again.
    ArtifactKind, "run artifact" {
        Plan => "plan",
        JsonPlan => "json-plan",
        LockFile => "lock-file",
    }
);

/// Why the late state of a given-up apply must not become the workspace's
/// current state.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LateStateRefusal {
    #[error("the late state of a given-up apply has lineage {late}, the workspace's current state {current}; it was not recorded")]
    OtherLineage { late: String, current: String },
    #[error("the late state of a given-up apply (serial {late}) is not newer than the workspace's current state (serial {current}); it was not recorded")]
    NotNewer { late: i64, current: i64 },
}

/// Whether the late state (`serial`, `lineage`) of a given-up apply may
/// follow the workspace's current state `newest`: only in the same lineage
/// and newer (a compare-and-swap, so it never replaces what a later apply
/// wrote).
pub fn late_state_refusal(
    newest: &StateVersion,
    serial: i64,
    lineage: &str,
) -> Option<LateStateRefusal> {
    if newest.lineage != lineage {
        return Some(LateStateRefusal::OtherLineage {
            late: lineage.to_string(),
            current: newest.lineage.clone(),
        });
    }
    if serial <= newest.serial {
        return Some(LateStateRefusal::NotNewer {
            late: serial,
            current: newest.serial,
        });
    }
    None
}

/// Hex MD5 of bytes, as TFE reports state versions.
pub fn md5_hex(bytes: &[u8]) -> String {
    use md5::{Digest, Md5};
    hex::encode(Md5::digest(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::enums::assert_round_trip;

    #[test]
    fn wire_names() {
        assert_round_trip(ConfigStatus::ALL);
        assert_round_trip(VariableCategory::ALL);
        assert_round_trip(ArtifactKind::ALL);
    }

    #[test]
    fn md5() {
        assert_eq!(md5_hex(b""), "d41d8cd98f00b204e9800998ecf8427e");
    }

    #[test]
    fn a_late_state_is_taken_only_when_newer_in_the_same_lineage() {
        let newest = StateVersion {
            id: "sv-000000000000000a".parse().unwrap(),
            workspace: "ws-000000000000000a".parse().unwrap(),
            organization: "acme".parse().unwrap(),
            serial: 5,
            lineage: "L".into(),
            md5: String::new(),
            size: 0,
            run: None,
            created_at: Timestamp(0),
        };
        assert_eq!(late_state_refusal(&newest, 6, "L"), None);
        let older = late_state_refusal(&newest, 5, "L").unwrap();
        assert_eq!(
            older,
            LateStateRefusal::NotNewer {
                late: 5,
                current: 5
            }
        );
        assert!(older.to_string().contains("not newer"), "{older}");
        assert!(late_state_refusal(&newest, 4, "L").is_some());
        let other = late_state_refusal(&newest, 9, "M").unwrap();
        assert!(other.to_string().contains("lineage M"), "{other}");
    }
}
