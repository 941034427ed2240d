//! The application: the core plus what HTTP adds (base URL, URL signing,
//! limits, metrics), and the dispatcher from routes to handlers.

use std::time::{Duration, Instant};

use hyper::header::HeaderValue;
use hyper::{Method, StatusCode};
use otf_core::auth::Subject;
use otf_core::store::Store;
use otf_core::Core;

use crate::errors::ApiError;
use crate::metrics::Metrics;
use crate::request::Req;
use crate::response::{self, Resp};
use crate::router::{self, Route};
use crate::signing::Signer;
use crate::{agent_api, api};

/// Request limits.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Largest JSON body.
    pub max_json_body: usize,
    /// Largest upload (configuration tarball, state, plan files).
    pub max_upload: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_json_body: 10 * 1024 * 1024,
            max_upload: 100 * 1024 * 1024,
        }
    }
}

pub struct App<S: Store> {
    pub core: Core<S>,
    /// `https://host[:port]`: the prefix of every absolute URL handed out.
    pub base_url: String,
    pub signer: Signer,
    pub limits: Limits,
    /// How long long-polls of the agent protocol wait before answering empty.
    pub long_poll: Duration,
    /// How long capability URLs stay valid.
    pub url_ttl: Duration,
    pub metrics: std::sync::Arc<Metrics>,
}

impl<S: Store> App<S> {
    /// The caller, from its bearer token; 401 without a valid one.
    pub async fn subject(&self, req: &Req) -> Result<Subject, ApiError> {
        let token = req.bearer().ok_or_else(|| {
            ApiError::new(
                StatusCode::UNAUTHORIZED,
                "this request needs a token: send `Authorization: Bearer <token>`",
            )
        })?;
        Ok(self.core.authenticate(token).await?)
    }

    /// An absolute, signed URL for `path`.
    pub fn signed_url(&self, path: &str) -> String {
        let expiry = self.core.now().millis() / 1000 + self.url_ttl.as_secs() as i64;
        format!("{}{}", self.base_url, self.signer.sign(path, expiry))
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base_url)
    }

    /// Answer one request. Never fails: errors become JSON:API documents.
    pub async fn handle(&self, req: Req) -> Resp {
        let started = Instant::now();
        let api = req.path.starts_with("/api/v2");
        let (route, result) = self.route(req).await;
        let mut resp = match result {
            Ok(r) => r,
            Err(e) => response::error(&e),
        };
        if api {
            resp.headers_mut()
                .insert("TFP-API-Version", HeaderValue::from_static("2.5"));
            resp.headers_mut()
                .insert("X-TFE-Version", HeaderValue::from_static("v202311-1"));
        }
        self.metrics
            .observe_request(route, resp.status(), started.elapsed());
        resp
    }

    async fn route(&self, req: Req) -> (Option<Route>, Result<Resp, ApiError>) {
        if req.path.starts_with(crate::signing::PREFIX) {
            let now = self.core.now().millis() / 1000;
            let Some(inner) = self.signer.verify(&req.path, now).map(str::to_string) else {
                return (
                    None,
                    Err(ApiError::not_found("this link is invalid or has expired")),
                );
            };
            let Some((route, params)) = router::find_signed(&inner) else {
                return (None, Err(ApiError::not_found("no such endpoint")));
            };
            let req = req.with_params(params);
            return (Some(route), api::capability(self, route, &req).await);
        }
        let Some((route, params)) = router::find(&req.path) else {
            return (
                None,
                Err(ApiError::not_found(format!("no endpoint at {}", req.path))),
            );
        };
        let req = req.with_params(params);
        let result = self.dispatch(route, &req).await;
        (Some(route), result)
    }

    async fn dispatch(&self, route: Route, req: &Req) -> Result<Resp, ApiError> {
        use Route::*;
        let m = &req.method;
        match route {
            Discovery | Ping | Healthz | Metrics if *m == Method::GET => {
                api::meta::handle(self, route, req).await
            }
            AgentRegister | AgentStatus | AgentJobs | AgentJobStart | AgentJobSignal
            | JobConfig | JobVariables | JobState | JobArtifact | JobLogs | JobFinish => {
                agent_api::handle(self, route, req).await
            }
            Discovery | Ping | Healthz | Metrics => Err(method_not_allowed(m)),
            _ => {
                let subject = self.subject(req).await?;
                api::handle(self, route, req, &subject).await
            }
        }
    }
}

pub fn method_not_allowed(m: &Method) -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        format!("{m} is not allowed here"),
    )
}
