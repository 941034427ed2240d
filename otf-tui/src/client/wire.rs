//! JSON:API documents to the TUI's model: the one place where the wire
//! spelling of otfd's answers is known.

use serde_json::Value;

use super::{ClientError, Result};
use crate::model::{
    Agent, ExecutionModeKind, Job, NewToken, Organization, Phase, Pool, PoolQueue, Run, Token,
    Workspace,
};
use crate::time::parse_rfc3339;

/// The `detail` (or `title`) of the first error of an error document.
pub use otf_client::error_detail;

/// The primary data of a document.
pub fn data(mut doc: Value) -> Value {
    doc.get_mut("data").map(Value::take).unwrap_or(Value::Null)
}

pub fn next_page(doc: &Value) -> Option<u64> {
    doc.pointer("/meta/pagination/next-page")
        .and_then(Value::as_u64)
}

fn bad(what: &str) -> ClientError {
    ClientError::Decode(format!("missing or malformed {what}"))
}

pub fn id(r: &Value) -> Result<String> {
    r.get("id")
        .and_then(Value::as_str)
        .map(str::to_string)
        .ok_or_else(|| bad("id"))
}

fn attr<'a>(r: &'a Value, key: &str) -> Option<&'a Value> {
    r.get("attributes")
        .and_then(|a| a.get(key))
        .filter(|v| !v.is_null())
}

pub fn str_attr(r: &Value, key: &str) -> Option<String> {
    attr(r, key).and_then(Value::as_str).map(str::to_string)
}

fn req_str(r: &Value, key: &str) -> Result<String> {
    str_attr(r, key).ok_or_else(|| bad(key))
}

fn bool_attr(r: &Value, key: &str) -> bool {
    attr(r, key).and_then(Value::as_bool).unwrap_or(false)
}

fn u64_attr(r: &Value, key: &str) -> u64 {
    attr(r, key).and_then(Value::as_u64).unwrap_or(0)
}

fn time_attr(r: &Value, key: &str) -> Option<i64> {
    str_attr(r, key).and_then(|s| parse_rfc3339(&s))
}

fn parsed<T: std::str::FromStr>(r: &Value, key: &str) -> Result<T> {
    req_str(r, key)?.parse().map_err(|_| bad(key))
}

/// Ids of a to-many relationship.
fn rel_ids(r: &Value, name: &str) -> Vec<String> {
    r.pointer(&format!("/relationships/{name}/data"))
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|x| x.get("id").and_then(Value::as_str).map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// Id of a to-one relationship.
fn rel_id(r: &Value, name: &str) -> Option<String> {
    r.pointer(&format!("/relationships/{name}/data/id"))
        .and_then(Value::as_str)
        .map(str::to_string)
}

pub fn organization(r: &Value) -> Result<Organization> {
    Ok(Organization {
        name: str_attr(r, "name").map_or_else(|| id(r), Ok)?,
    })
}

pub fn workspace(r: &Value) -> Result<Workspace> {
    Ok(Workspace {
        id: id(r)?,
        name: req_str(r, "name")?,
        execution_mode: parsed::<ExecutionModeKind>(r, "execution-mode")?,
        pool: str_attr(r, "agent-pool-id").or_else(|| rel_id(r, "agent-pool")),
        agent_selector: labels_attr(r, "agent-selector"),
    })
}

pub fn pool(r: &Value) -> Result<Pool> {
    Ok(Pool {
        id: id(r)?,
        name: req_str(r, "name")?,
        organization_scoped: bool_attr(r, "organization-scoped"),
        assigned: rel_ids(r, "workspaces"),
        allowed: rel_ids(r, "allowed-workspaces"),
        excluded: rel_ids(r, "excluded-workspaces"),
        agent_count: u64_attr(r, "agent-count"),
        drained: bool_attr(r, "drained"),
    })
}

pub fn agent(r: &Value) -> Result<Agent> {
    Ok(Agent {
        id: id(r)?,
        name: str_attr(r, "name").unwrap_or_default(),
        status: parsed(r, "status")?,
        ip_address: str_attr(r, "ip-address").unwrap_or_default(),
        last_ping_at: time_attr(r, "last-ping-at"),
        version: str_attr(r, "version").unwrap_or_default(),
        max_jobs: u64_attr(r, "max-jobs"),
        current_jobs: u64_attr(r, "current-jobs"),
        drained: bool_attr(r, "drained"),
        labels: labels_attr(r, "labels"),
    })
}

/// A labels object (`{"region": "eu"}`) as `region=eu`, keys sorted.
fn labels_attr(r: &Value, key: &str) -> String {
    let pairs = attr(r, key)
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string())))
                .collect::<Vec<_>>()
        })
        .unwrap_or_default();
    otf_core::labels::Labels::from_pairs(pairs)
        .map(|l| l.to_string())
        .unwrap_or_default()
}

/// The plain JSON of `/api/v2/agent-pools/{id}/queue`.
pub fn pool_queue(v: &Value) -> PoolQueue {
    let n = |k: &str| v.get(k).and_then(Value::as_u64).unwrap_or(0);
    PoolQueue {
        queued: n("queued"),
        running: n("running"),
        oldest_queued_seconds: n("oldest_queued_seconds"),
        capacity: n("capacity"),
    }
}

pub fn token(r: &Value) -> Result<Token> {
    Ok(Token {
        id: id(r)?,
        description: str_attr(r, "description").unwrap_or_default(),
        created_at: time_attr(r, "created-at"),
        last_used_at: time_attr(r, "last-used-at"),
    })
}

pub fn new_token(r: &Value) -> Result<NewToken> {
    Ok(NewToken {
        token: token(r)?,
        secret: req_str(r, "token")?,
    })
}

pub fn run(r: &Value) -> Result<Run> {
    let action = |k: &str| {
        r.pointer(&format!("/attributes/actions/{k}"))
            .and_then(Value::as_bool)
            .unwrap_or(false)
    };
    Ok(Run {
        id: id(r)?,
        status: parsed(r, "status")?,
        created_at: time_attr(r, "created-at"),
        message: str_attr(r, "message").unwrap_or_default(),
        is_confirmable: action("is-confirmable"),
        is_discardable: action("is-discardable"),
        is_cancelable: action("is-cancelable"),
        is_force_cancelable: action("is-force-cancelable"),
        error: str_attr(r, "error-message"),
        wait_message: str_attr(r, "wait-message"),
    })
}

pub fn phase(r: &Value) -> Result<Phase> {
    Ok(Phase {
        status: parsed(r, "status")?,
        additions: u64_attr(r, "resource-additions"),
        changes: u64_attr(r, "resource-changes"),
        destructions: u64_attr(r, "resource-destructions"),
        log_url: req_str(r, "log-read-url")?,
    })
}

pub fn job(r: &Value) -> Result<Job> {
    Ok(Job {
        id: id(r)?,
        run: rel_id(r, "run").unwrap_or_default(),
        workspace: rel_id(r, "workspace").unwrap_or_default(),
        pool: rel_id(r, "agent-pool"),
        agent_name: str_attr(r, "agent-name"),
        phase: parsed(r, "phase")?,
        status: parsed(r, "status")?,
        wait_reason: str_attr(r, "wait-reason").and_then(|w| w.parse().ok()),
        wait_message: str_attr(r, "wait-message"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn decodes_a_pool_with_its_grants_and_assignments() {
        let doc = json!({"data": {"type": "agent-pools", "id": "apool-1",
        "attributes": {"name": "p", "organization-scoped": false, "agent-count": 2},
        "relationships": {
            "workspaces": {"data": [{"type": "workspaces", "id": "ws-a"}]},
            "allowed-workspaces": {"data": [{"type": "workspaces", "id": "ws-a"}, {"type": "workspaces", "id": "ws-b"}]},
        }}});
        let p = pool(&data(doc)).unwrap();
        assert_eq!(p.assigned, ["ws-a"]);
        assert_eq!(p.allowed, ["ws-a", "ws-b"]);
        assert!(!p.organization_scoped);
        assert_eq!(p.agent_count, 2);
    }

    #[test]
    fn error_detail_prefers_detail() {
        let text = r#"{"errors":[{"status":"422","title":"invalid","detail":"not granted"}]}"#;
        assert_eq!(error_detail(text).as_deref(), Some("not granted"));
        assert_eq!(error_detail("<html>"), None);
    }

    #[test]
    fn a_bad_status_is_a_decode_error() {
        let r = json!({"id": "agent-1", "attributes": {"status": "dancing"}});
        assert!(matches!(agent(&r), Err(ClientError::Decode(_))));
    }
}
