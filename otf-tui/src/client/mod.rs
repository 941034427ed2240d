//! The TUI's only way to otfd: the public TFE API v2, behind the [`Api`]
//! trait so that the runtime can be driven by a fake in tests. [`Client`] is
//! the real client; it speaks the API's JSON over an [`Exchange`]: HTTP
//! ([`HttpExchange`]: reqwest, rustls with the system's roots, `--ca-cert`)
//! for `otf-tui`, or otfd's own handlers, in process, for its SSH sessions.

mod exchange;
mod wire;

use std::sync::Arc;

use async_trait::async_trait;
use reqwest::StatusCode;
use serde_json::{json, Value};

pub use exchange::{Exchange, HttpExchange, Incoming, Outgoing, Verb};

use crate::model::{
    Agent, ExecutionModeKind, Job, NewToken, Organization, Phase, Pool, PoolQueue, Run, Token,
    Workspace,
};

/// Why a request to otfd failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot reach otfd at {address}: {reason}")]
    Unreachable { address: String, reason: String },
    #[error("otfd refused the token (401): {0}")]
    Unauthorized(String),
    /// otfd answered with a JSON:API error; `detail` is for the user.
    #[error("{detail}")]
    Refused { status: u16, detail: String },
    #[error("unexpected answer from otfd: {0}")]
    Decode(String),
}

/// Run actions of the TFE API.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunAction {
    Apply,
    Discard,
    Cancel,
    ForceCancel,
}

impl RunAction {
    pub fn path(self) -> &'static str {
        match self {
            RunAction::Apply => "apply",
            RunAction::Discard => "discard",
            RunAction::Cancel => "cancel",
            RunAction::ForceCancel => "force-cancel",
        }
    }
}

/// Which phase of a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PhaseKind {
    Plan,
    Apply,
}

pub type Result<T> = std::result::Result<T, ClientError>;

/// Everything the TUI asks of otfd.
#[async_trait]
pub trait Api: Send + Sync {
    async fn organizations(&self) -> Result<Vec<Organization>>;
    async fn create_organization(&self, name: &str) -> Result<Organization>;
    async fn workspaces(&self, org: &str) -> Result<Vec<Workspace>>;
    async fn create_workspace(&self, org: &str, name: &str) -> Result<Workspace>;
    /// Set the execution mode (and the pool, for `agent`).
    async fn set_execution_mode(
        &self,
        workspace: &str,
        mode: ExecutionModeKind,
        pool: Option<&str>,
    ) -> Result<Workspace>;
    async fn pools(&self, org: &str) -> Result<Vec<Pool>>;
    async fn create_pool(&self, org: &str, name: &str) -> Result<Pool>;
    async fn pool(&self, id: &str) -> Result<Pool>;
    /// Replace the pool's scope, its whole allow list and its exclusions.
    async fn set_grants(
        &self,
        pool: &str,
        organization_scoped: bool,
        allowed: &[String],
        excluded: &[String],
    ) -> Result<Pool>;
    /// The pool's queue numbers (`/api/v2/agent-pools/{id}/queue`).
    async fn pool_queue(&self, id: &str) -> Result<PoolQueue>;
    /// Set a workspace's agent selector, `k=v,k2=v2` (empty: none).
    async fn set_agent_selector(&self, workspace: &str, selector: &str) -> Result<Workspace>;
    async fn delete_pool(&self, id: &str) -> Result<()>;
    /// Drain (or undrain) every agent of a pool.
    async fn drain_pool(&self, id: &str, drained: bool) -> Result<Pool>;
    /// Drain (or undrain) one agent.
    async fn drain_agent(&self, id: &str, drained: bool) -> Result<Agent>;
    async fn agents(&self, pool: &str) -> Result<Vec<Agent>>;
    async fn tokens(&self, pool: &str) -> Result<Vec<Token>>;
    async fn create_token(&self, pool: &str, description: &str) -> Result<NewToken>;
    async fn delete_token(&self, id: &str) -> Result<()>;
    async fn runs(&self, workspace: &str) -> Result<Vec<Run>>;
    async fn run(&self, id: &str) -> Result<Run>;
    async fn phase(&self, kind: PhaseKind, id: &str) -> Result<Phase>;
    /// Log bytes of a phase from `offset` on.
    async fn log(&self, url: &str, offset: usize) -> Result<Vec<u8>>;
    async fn run_action(&self, run: &str, action: RunAction) -> Result<()>;
    /// Upload `tarball` as a new configuration version and start a run of it.
    async fn start_run(&self, workspace: &str, tarball: Vec<u8>, message: &str) -> Result<Run>;
    async fn jobs(&self, org: &str) -> Result<Vec<Job>>;
}

/// The server URL for an address (`otf_client::base_url`: `host[:port]`
/// is HTTPS except on loopback, as for otf-agent).
pub use otf_client::base_url;

fn drain_action(drained: bool) -> &'static str {
    if drained {
        "drain"
    } else {
        "undrain"
    }
}

/// The real client: the TFE API's JSON over any [`Exchange`] (HTTP with
/// [`HttpExchange`], or otfd's own handlers for its SSH sessions).
#[derive(Clone)]
pub struct Client {
    base: String,
    exchange: Arc<dyn Exchange>,
}

impl Client {
    /// A client of otfd over HTTP at `address` with `token`; `ca_cert` is a
    /// PEM certificate to trust besides the system's.
    pub fn http(address: &str, token: &str, ca_cert: Option<&[u8]>) -> Result<Self> {
        let exchange = HttpExchange::new(address, token, ca_cert)?;
        Ok(Self::new(exchange.base().to_string(), Arc::new(exchange)))
    }

    /// A client over `exchange`; `base` is what the title shows.
    pub fn new(base: String, exchange: Arc<dyn Exchange>) -> Self {
        Self { base, exchange }
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    /// The API path of `path` (`/organizations` is `/api/v2/organizations`);
    /// absolute URLs (capabilities otfd handed out) stay as they are.
    fn target(path: &str) -> String {
        if path.starts_with("http://") || path.starts_with("https://") || path.starts_with("/api/")
        {
            path.to_string()
        } else {
            format!("/api/v2{path}")
        }
    }

    fn req(&self, verb: Verb, path: &str) -> Outgoing {
        Outgoing {
            verb,
            target: Self::target(path),
            bearer: true,
            content_type: Some("application/vnd.api+json"),
            body: Vec::new(),
        }
    }

    async fn send(&self, req: Outgoing) -> Result<Vec<u8>> {
        let Incoming { status, body } = self.exchange.exchange(req).await?;
        if (200..300).contains(&status) {
            return Ok(body);
        }
        let text = String::from_utf8_lossy(&body);
        let detail = wire::error_detail(&text).unwrap_or_else(|| {
            let reason = StatusCode::from_u16(status)
                .ok()
                .and_then(|s| s.canonical_reason())
                .unwrap_or("error");
            format!("{status} {reason}")
        });
        Err(if status == 401 {
            ClientError::Unauthorized(detail)
        } else {
            ClientError::Refused { status, detail }
        })
    }

    async fn doc(&self, req: Outgoing) -> Result<Value> {
        let body = self.send(req).await?;
        serde_json::from_slice(&body).map_err(|e| ClientError::Decode(e.to_string()))
    }

    async fn get(&self, path: &str) -> Result<Value> {
        Ok(wire::data(self.doc(self.req(Verb::Get, path)).await?))
    }

    async fn write(&self, verb: Verb, path: &str, body: Value) -> Result<Value> {
        let mut req = self.req(verb, path);
        req.body = body.to_string().into_bytes();
        Ok(wire::data(self.doc(req).await?))
    }

    /// Every item of a paginated list (pages of 100).
    async fn list(&self, path: &str) -> Result<Vec<Value>> {
        let mut out = Vec::new();
        let sep = if path.contains('?') { '&' } else { '?' };
        for page in 1..=100 {
            let doc = self
                .doc(self.req(
                    Verb::Get,
                    &format!("{path}{sep}page%5Bsize%5D=100&page%5Bnumber%5D={page}"),
                ))
                .await?;
            let next = wire::next_page(&doc);
            if let Value::Array(items) = wire::data(doc) {
                out.extend(items);
            }
            if next.is_none() {
                break;
            }
        }
        Ok(out)
    }

    async fn delete(&self, path: &str) -> Result<()> {
        self.send(self.req(Verb::Delete, path)).await.map(drop)
    }
}

fn each<T>(items: Vec<Value>, f: impl Fn(&Value) -> Result<T>) -> Result<Vec<T>> {
    items.iter().map(f).collect()
}

#[async_trait]
impl Api for Client {
    async fn organizations(&self) -> Result<Vec<Organization>> {
        each(self.list("/organizations").await?, wire::organization)
    }

    async fn create_organization(&self, name: &str) -> Result<Organization> {
        let body =
            json!({"data": {"type": "organizations", "attributes": {"name": name, "email": ""}}});
        wire::organization(&self.write(Verb::Post, "/organizations", body).await?)
    }

    async fn workspaces(&self, org: &str) -> Result<Vec<Workspace>> {
        let path = format!("/organizations/{org}/workspaces");
        each(self.list(&path).await?, wire::workspace)
    }

    async fn create_workspace(&self, org: &str, name: &str) -> Result<Workspace> {
        let body = json!({"data": {"type": "workspaces", "attributes": {"name": name}}});
        let path = format!("/organizations/{org}/workspaces");
        wire::workspace(&self.write(Verb::Post, &path, body).await?)
    }

    async fn set_execution_mode(
        &self,
        workspace: &str,
        mode: ExecutionModeKind,
        pool: Option<&str>,
    ) -> Result<Workspace> {
        let mut attrs = json!({"execution-mode": mode.as_str()});
        if let Some(p) = pool {
            attrs["agent-pool-id"] = json!(p);
        }
        let body = json!({"data": {"type": "workspaces", "attributes": attrs}});
        let path = format!("/workspaces/{workspace}");
        wire::workspace(&self.write(Verb::Patch, &path, body).await?)
    }

    async fn pools(&self, org: &str) -> Result<Vec<Pool>> {
        let path = format!("/organizations/{org}/agent-pools");
        each(self.list(&path).await?, wire::pool)
    }

    async fn create_pool(&self, org: &str, name: &str) -> Result<Pool> {
        let body = json!({"data": {"type": "agent-pools", "attributes": {"name": name}}});
        let path = format!("/organizations/{org}/agent-pools");
        wire::pool(&self.write(Verb::Post, &path, body).await?)
    }

    async fn pool(&self, id: &str) -> Result<Pool> {
        wire::pool(&self.get(&format!("/agent-pools/{id}")).await?)
    }

    async fn set_grants(
        &self,
        pool: &str,
        organization_scoped: bool,
        allowed: &[String],
        excluded: &[String],
    ) -> Result<Pool> {
        let ids = |list: &[String]| -> Vec<Value> {
            list.iter()
                .map(|id| json!({"type": "workspaces", "id": id}))
                .collect()
        };
        let body = json!({"data": {
            "type": "agent-pools",
            "attributes": {"organization-scoped": organization_scoped},
            "relationships": {
                "allowed-workspaces": {"data": ids(allowed)},
                "excluded-workspaces": {"data": ids(excluded)},
            },
        }});
        let path = format!("/agent-pools/{pool}");
        wire::pool(&self.write(Verb::Patch, &path, body).await?)
    }

    async fn pool_queue(&self, id: &str) -> Result<PoolQueue> {
        let path = format!("/agent-pools/{id}/queue");
        Ok(wire::pool_queue(
            &self.doc(self.req(Verb::Get, &path)).await?,
        ))
    }

    async fn set_agent_selector(&self, workspace: &str, selector: &str) -> Result<Workspace> {
        let labels: otf_core::labels::Labels = selector
            .parse()
            .map_err(|e: otf_core::labels::LabelError| ClientError::Decode(e.to_string()))?;
        let object: serde_json::Map<String, Value> = labels
            .iter()
            .map(|(k, v)| (k.to_string(), json!(v)))
            .collect();
        let body =
            json!({"data": {"type": "workspaces", "attributes": {"agent-selector": object}}});
        let path = format!("/workspaces/{workspace}");
        wire::workspace(&self.write(Verb::Patch, &path, body).await?)
    }

    async fn delete_pool(&self, id: &str) -> Result<()> {
        self.delete(&format!("/agent-pools/{id}")).await
    }

    async fn drain_pool(&self, id: &str, drained: bool) -> Result<Pool> {
        let path = format!("/agent-pools/{id}/actions/{}", drain_action(drained));
        wire::pool(&self.write(Verb::Post, &path, json!({})).await?)
    }

    async fn drain_agent(&self, id: &str, drained: bool) -> Result<Agent> {
        let path = format!("/agents/{id}/actions/{}", drain_action(drained));
        wire::agent(&self.write(Verb::Post, &path, json!({})).await?)
    }

    async fn agents(&self, pool: &str) -> Result<Vec<Agent>> {
        each(
            self.list(&format!("/agent-pools/{pool}/agents")).await?,
            wire::agent,
        )
    }

    async fn tokens(&self, pool: &str) -> Result<Vec<Token>> {
        let path = format!("/agent-pools/{pool}/authentication-tokens");
        each(self.list(&path).await?, wire::token)
    }

    async fn create_token(&self, pool: &str, description: &str) -> Result<NewToken> {
        let body = json!({"data": {"type": "authentication-tokens", "attributes": {"description": description}}});
        let path = format!("/agent-pools/{pool}/authentication-tokens");
        wire::new_token(&self.write(Verb::Post, &path, body).await?)
    }

    async fn delete_token(&self, id: &str) -> Result<()> {
        self.delete(&format!("/authentication-tokens/{id}")).await
    }

    async fn runs(&self, workspace: &str) -> Result<Vec<Run>> {
        let path = format!("/workspaces/{workspace}/runs");
        each(self.list(&path).await?, wire::run)
    }

    async fn run(&self, id: &str) -> Result<Run> {
        wire::run(&self.get(&format!("/runs/{id}")).await?)
    }

    async fn phase(&self, kind: PhaseKind, id: &str) -> Result<Phase> {
        let path = match kind {
            PhaseKind::Plan => format!("/plans/{id}"),
            PhaseKind::Apply => format!("/applies/{id}"),
        };
        wire::phase(&self.get(&path).await?)
    }

    async fn log(&self, url: &str, offset: usize) -> Result<Vec<u8>> {
        let sep = if url.contains('?') { '&' } else { '?' };
        // A log URL is a capability: no token goes with it.
        let req = Outgoing {
            verb: Verb::Get,
            target: format!("{}{sep}offset={offset}&limit=65536", Self::target(url)),
            bearer: false,
            content_type: None,
            body: Vec::new(),
        };
        self.send(req).await
    }

    async fn run_action(&self, run: &str, action: RunAction) -> Result<()> {
        let path = format!("/runs/{run}/actions/{}", action.path());
        self.send(self.req(Verb::Post, &path)).await.map(drop)
    }

    async fn start_run(&self, workspace: &str, tarball: Vec<u8>, message: &str) -> Result<Run> {
        let body = json!({"data": {"type": "configuration-versions", "attributes": {"auto-queue-runs": false}}});
        let path = format!("/workspaces/{workspace}/configuration-versions");
        let cv = self.write(Verb::Post, &path, body).await?;
        let cv_id = wire::id(&cv)?;
        let upload = wire::str_attr(&cv, "upload-url")
            .ok_or_else(|| ClientError::Decode("no upload-url".into()))?;
        // The upload URL is a capability: no token goes with it.
        let put = Outgoing {
            verb: Verb::Put,
            target: Self::target(&upload),
            bearer: false,
            content_type: Some("application/octet-stream"),
            body: tarball,
        };
        self.send(put).await?;
        let body = json!({"data": {
            "type": "runs",
            "attributes": {"message": message},
            "relationships": {
                "workspace": {"data": {"type": "workspaces", "id": workspace}},
                "configuration-version": {"data": {"type": "configuration-versions", "id": cv_id}},
            },
        }});
        wire::run(&self.write(Verb::Post, "/runs", body).await?)
    }

    async fn jobs(&self, org: &str) -> Result<Vec<Job>> {
        each(
            self.list(&format!("/organizations/{org}/jobs")).await?,
            wire::job,
        )
    }
}
