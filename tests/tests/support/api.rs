//! A small HTTP client for the end-to-end tests: JSON:API calls with a
//! bearer token, the agent protocol, and a fixture that builds an
//! organization with a pool, an agent-mode workspace, tokens and a
//! registered agent.

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

/// An answer: status and body (JSON when it parses, else `Null`).
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: StatusCode,
    pub body: Value,
    pub raw: Vec<u8>,
}

impl Answer {
    /// The answer must have `status`; on error statuses it must also be a
    /// JSON:API error document whose `status` is that code as a string.
    #[track_caller]
    pub fn expect(&self, status: u16, what: &str) -> &Self {
        assert_eq!(
            self.status.as_u16(),
            status,
            "{what}: expected {status}, got {} with {}",
            self.status,
            String::from_utf8_lossy(&self.raw)
        );
        if status >= 400 {
            let e = &self.body["errors"][0];
            assert_eq!(
                e["status"],
                Value::String(status.to_string()),
                "{what}: the error document must carry the status as a string: {}",
                self.body
            );
            assert!(
                e["title"].is_string() && e["detail"].is_string(),
                "{what}: error title and detail: {}",
                self.body
            );
        }
        self
    }

    pub fn data(&self) -> &Value {
        &self.body["data"]
    }

    pub fn id(&self) -> String {
        self.body["data"]["id"]
            .as_str()
            .unwrap_or_else(|| panic!("no data.id in {}", self.body))
            .to_string()
    }

    pub fn attr(&self, key: &str) -> &Value {
        &self.body["data"]["attributes"][key]
    }

    pub fn error_detail(&self) -> String {
        self.body["errors"][0]["detail"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    }
}

/// A client of one otfd.
#[derive(Clone)]
pub struct Api {
    pub base: String,
    pub http: reqwest::Client,
}

/// What a request carries as its body.
pub enum Body {
    None,
    Json(Value),
    Raw(Vec<u8>, &'static str),
}

impl Api {
    pub fn new(base: &str) -> Api {
        Api {
            base: base.trim_end_matches('/').to_string(),
            http: reqwest::Client::builder()
                .timeout(std::time::Duration::from_secs(30))
                .build()
                .expect("an HTTP client"),
        }
    }

    /// A request to `path` (relative to the server, or an absolute URL).
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        headers: &[(&str, &str)],
        body: Body,
    ) -> Answer {
        let url = if path.starts_with("http") {
            path.to_string()
        } else {
            format!("{}{path}", self.base)
        };
        let mut req = self.http.request(method, url);
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        req = match body {
            Body::None => req,
            Body::Json(v) => req
                .header("content-type", "application/vnd.api+json")
                .body(v.to_string()),
            Body::Raw(bytes, ct) => req.header("content-type", ct).body(bytes),
        };
        let resp = req.send().await.expect("the request reaches otfd");
        let status = resp.status();
        let raw = resp.bytes().await.expect("a response body").to_vec();
        let body = serde_json::from_slice(&raw).unwrap_or(Value::Null);
        Answer { status, body, raw }
    }

    pub async fn get(&self, token: &str, path: &str) -> Answer {
        self.send(Method::GET, path, Some(token), &[], Body::None)
            .await
    }

    pub async fn post(&self, token: &str, path: &str, body: Value) -> Answer {
        self.send(Method::POST, path, Some(token), &[], Body::Json(body))
            .await
    }

    pub async fn patch(&self, token: &str, path: &str, body: Value) -> Answer {
        self.send(Method::PATCH, path, Some(token), &[], Body::Json(body))
            .await
    }

    pub async fn delete(&self, token: &str, path: &str) -> Answer {
        self.send(Method::DELETE, path, Some(token), &[], Body::None)
            .await
    }

    /// An agent-protocol call as agent `agent`.
    pub async fn agent(
        &self,
        token: &str,
        agent: &str,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> Answer {
        let body = body.map_or(Body::None, |v| {
            Body::Raw(v.to_string().into_bytes(), "application/json")
        });
        self.send(method, path, Some(token), &[("otf-agent-id", agent)], body)
            .await
    }
}

/// A gzipped tarball holding `files`.
pub fn tarball(files: &[(&str, &str)]) -> Vec<u8> {
    otf_core::tarball::pack(files.iter().map(|(p, c)| (*p, c.as_bytes())))
}

/// An organization set up by the site admin: a pool, an agent-mode
/// workspace `ws` assigned to it, a local-mode workspace `ws2` with a state
/// version, an agent token, an organization token and a registered agent.
pub struct OrgFixture {
    pub name: String,
    pub pool: String,
    pub ws: String,
    pub ws2: String,
    pub agent_token_id: String,
    pub agent_token: String,
    pub org_token: String,
    pub agent: String,
}

pub fn state_file(serial: i64, lineage: &str) -> Vec<u8> {
    json!({"version": 4, "terraform_version": "1.0.3", "serial": serial, "lineage": lineage,
           "outputs": {"greeting": {"value": "hi", "type": "string"}}, "resources": []})
    .to_string()
    .into_bytes()
}

pub fn state_version_body(serial: i64, lineage: &str) -> Value {
    use base64::Engine;
    let state = state_file(serial, lineage);
    let md5 = hex::encode(<md5::Md5 as md5::Digest>::digest(&state));
    json!({"data": {"type": "state-versions", "attributes": {
        "serial": serial, "lineage": lineage, "md5": md5,
        "state": base64::engine::general_purpose::STANDARD.encode(&state),
    }}})
}

impl OrgFixture {
    pub async fn create(api: &Api, site: &str, name: &str) -> OrgFixture {
        api.post(
            site,
            "/api/v2/organizations",
            json!({"data": {"type": "organizations", "attributes": {"name": name, "email": "ops@example.test"}}}),
        )
        .await
        .expect(201, "create organization");
        let pool = api
            .post(
                site,
                &format!("/api/v2/organizations/{name}/agent-pools"),
                json!({"data": {"type": "agent-pools", "attributes": {"name": "pool"}}}),
            )
            .await
            .expect(201, "create pool")
            .id();
        let ws = api
            .post(
                site,
                &format!("/api/v2/organizations/{name}/workspaces"),
                json!({"data": {"type": "workspaces", "attributes": {
                    "name": "ws", "execution-mode": "agent", "agent-pool-id": pool}}}),
            )
            .await
            .expect(201, "create agent-mode workspace")
            .id();
        let ws2 = api
            .post(
                site,
                &format!("/api/v2/organizations/{name}/workspaces"),
                json!({"data": {"type": "workspaces", "attributes": {"name": "ws2", "execution-mode": "local"}}}),
            )
            .await
            .expect(201, "create local workspace")
            .id();
        api.post(
            site,
            &format!("/api/v2/workspaces/{ws2}/state-versions"),
            state_version_body(1, "lineage"),
        )
        .await
        .expect(201, "create a state version");
        let token = api
            .post(
                site,
                &format!("/api/v2/agent-pools/{pool}/authentication-tokens"),
                json!({"data": {"type": "authentication-tokens", "attributes": {"description": "agents"}}}),
            )
            .await;
        token.expect(201, "create agent token");
        let org_token = api
            .post(
                site,
                &format!("/api/v2/organizations/{name}/authentication-token"),
                json!({"data": {"type": "authentication-token", "attributes": {}}}),
            )
            .await;
        org_token.expect(201, "create organization token");
        let agent_token = token.attr("token").as_str().expect("secret").to_string();
        let agent = register(api, &agent_token, &format!("{name}-agent")).await;
        OrgFixture {
            name: name.to_string(),
            pool,
            ws,
            ws2,
            agent_token_id: token.id(),
            agent_token,
            org_token: org_token
                .attr("token")
                .as_str()
                .expect("secret")
                .to_string(),
            agent,
        }
    }

    /// Upload a configuration and create a run on `ws`; returns the run id.
    pub async fn run(&self, api: &Api, token: &str) -> String {
        let cv = api
            .post(
                token,
                &format!("/api/v2/workspaces/{}/configuration-versions", self.ws),
                json!({"data": {"type": "configuration-versions", "attributes": {"auto-queue-runs": false}}}),
            )
            .await;
        cv.expect(201, "create configuration version");
        let url = cv
            .attr("upload-url")
            .as_str()
            .expect("upload-url")
            .to_string();
        api.send(
            Method::PUT,
            &url,
            None,
            &[],
            Body::Raw(tarball(&[("main.tf", "\n")]), "application/octet-stream"),
        )
        .await
        .expect(200, "upload configuration");
        api.post(
            token,
            "/api/v2/runs",
            json!({"data": {"type": "runs", "attributes": {}, "relationships": {
                "workspace": {"data": {"type": "workspaces", "id": self.ws}},
                "configuration-version": {"data": {"type": "configuration-versions", "id": cv.id()}},
            }}}),
        )
        .await
        .expect(201, "create run")
        .id()
    }

    /// The agent long-polls for the job of `run` and starts it: (job id,
    /// job token).
    pub async fn start_job(&self, api: &Api, run: &str) -> (String, String) {
        let job = super::eventually(std::time::Duration::from_secs(20), "a job", || async {
            let a = api
                .agent(
                    &self.agent_token,
                    &self.agent,
                    Method::GET,
                    "/api/agent/jobs",
                    None,
                )
                .await;
            a.expect(200, "long-poll");
            a.body["jobs"]
                .as_array()
                .and_then(|jobs| jobs.iter().find(|j| j["run_id"] == run))
                .and_then(|j| j["id"].as_str())
                .map(str::to_string)
        })
        .await;
        let started = api
            .agent(
                &self.agent_token,
                &self.agent,
                Method::POST,
                &format!("/api/agent/jobs/{job}/start"),
                None,
            )
            .await;
        started.expect(200, "start job");
        let token = started.body["token"]
            .as_str()
            .expect("job token")
            .to_string();
        (job, token)
    }
}

/// Register an agent with `token`: the raw answer.
pub async fn register_raw(api: &Api, token: &str) -> Answer {
    let body = json!({"name": "e2e-agent", "version": "e2e", "concurrency": 1});
    api.send(
        Method::POST,
        "/api/agent/register",
        Some(token),
        &[],
        Body::Raw(body.to_string().into_bytes(), "application/json"),
    )
    .await
}

/// Register an agent with `token`; returns its id.
pub async fn register(api: &Api, token: &str, _name: &str) -> String {
    let a = register_raw(api, token).await;
    a.expect(200, "register agent");
    a.body["id"].as_str().expect("agent id").to_string()
}
