//! The application: the core plus what HTTP adds (base URL, URL signing,
//! limits, metrics, the route table), and the dispatch of a request to its
//! route's handler.

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
use crate::router::{self, Endpoint, Routes, Serve};
use crate::signing::Signer;

/// Request and connection limits (see `server` and `conn_guard`).
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Largest JSON body.
    pub max_json_body: usize,
    /// A request's headers must arrive within this, from its first byte (or
    /// from the connection's start).
    pub header_read_timeout: Duration,
    /// A TLS handshake must finish within this.
    pub tls_handshake_timeout: Duration,
    /// A request's body must arrive within this once its headers did.
    pub body_read_timeout: Duration,
    /// A keep-alive connection with no request for this long is closed;
    /// longer than the agents' long-poll.
    pub idle_timeout: Duration,
    /// Connections served at once; beyond, new ones get a 503 (plain HTTP)
    /// or are closed (HTTPS), and open ones keep working.
    pub max_connections: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_json_body: 10 * 1024 * 1024,
            header_read_timeout: Duration::from_secs(10),
            tls_handshake_timeout: Duration::from_secs(10),
            body_read_timeout: Duration::from_secs(60),
            idle_timeout: Duration::from_secs(120),
            max_connections: 10_000,
        }
    }
}

/// The most body bytes a route without a token may be sent.
const PUBLIC_BODY: usize = 64 * 1024;

fn needs_token() -> ApiError {
    ApiError::new(
        StatusCode::UNAUTHORIZED,
        "this request needs a token: send `Authorization: Bearer <token>`",
    )
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
    /// The bearer token `/metrics` requires (`--metrics-token`); open without.
    pub metrics_token: Option<otf_core::secret::SecretHash>,
    /// Every endpoint (`routes::table`).
    pub routes: Routes<App<S>>,
}

impl<S: Store> App<S> {
    /// The caller, from its bearer token; 401 without a valid one.
    pub async fn subject(&self, req: &Req) -> Result<Subject, ApiError> {
        if let Some(s) = &req.subject {
            return Ok(s.clone());
        }
        let token = req.bearer().ok_or_else(needs_token)?;
        Ok(self.core.authenticate(token).await?)
    }

    /// Decide on a request from its head alone, before any of its body is
    /// read: an unknown route is 404, a bad signed URL 404, a route that
    /// needs a token without a valid one 401 (answered like any other
    /// response: headers, metrics). Gives the request routed, with its
    /// caller settled, and the most body bytes its route may be sent.
    pub async fn admit(&self, mut head: Req) -> Result<(Req, usize), Resp> {
        let started = Instant::now();
        let (index, params) = match self.resolve(&head.path) {
            Ok(r) => r,
            Err(e) => return Err(self.finish(&head.path, None, Err(e), started)),
        };
        let endpoint = self.routes.endpoint(index);
        // Open routes authorize themselves (or by their signed URL); every
        // other one needs a valid token before a byte of its body is read
        // (or a caller otfd authenticated itself: an SSH session's key;
        // requests from the network never carry one).
        if !endpoint.is_open() && head.subject.is_none() {
            let subject = match head.bearer() {
                Some(token) => self.core.authenticate(token).await.map_err(ApiError::from),
                None => Err(needs_token()),
            };
            match subject {
                Ok(s) => head.subject = Some(s),
                Err(e) => {
                    return Err(self.finish(&head.path, Some(endpoint.name), Err(e), started))
                }
            }
        }
        let limit = match endpoint.body {
            router::BodySize::Public => PUBLIC_BODY.min(self.limits.max_json_body),
            router::BodySize::Json => self.limits.max_json_body,
            router::BodySize::Upload => self.core.config().max_upload_bytes,
        };
        head.routed = Some(index);
        Ok((head.with_params(params), limit))
    }

    /// The endpoint of `path`: a signed capability path (checked) or a
    /// plain one, with its parameters.
    fn resolve(&self, path: &str) -> Result<router::Found, ApiError> {
        if path.starts_with(crate::signing::PREFIX) {
            let now = self.core.now().millis() / 1000;
            let inner = self
                .signer
                .verify(path, now)
                .ok_or_else(|| ApiError::not_found("this link is invalid or has expired"))?;
            return self
                .routes
                .find_signed(inner)
                .ok_or_else(|| ApiError::not_found("no such endpoint"));
        }
        self.routes
            .find(path)
            .ok_or_else(|| ApiError::not_found(format!("no endpoint at {path}")))
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
        let path = req.path.clone();
        let (route, result) = self.route(req).await;
        self.finish(&path, route, result, started)
    }

    /// Every answer's last step: errors become documents, API answers get
    /// TFE's version headers, and the request is counted under its route's
    /// name.
    fn finish(
        &self,
        path: &str,
        route: Option<&'static str>,
        result: Result<Resp, ApiError>,
        started: Instant,
    ) -> Resp {
        let mut resp = match result {
            Ok(r) => r,
            Err(e) => response::error(&e),
        };
        if path.starts_with("/api/v2") {
            resp.headers_mut()
                .insert("TFP-API-Version", HeaderValue::from_static("2.5"));
            resp.headers_mut()
                .insert("X-TFE-Version", HeaderValue::from_static("v202311-1"));
        }
        self.metrics
            .observe_request(route, resp.status(), started.elapsed());
        resp
    }

    async fn route(&self, req: Req) -> (Option<&'static str>, Result<Resp, ApiError>) {
        // Admitted requests are routed already; others (embedders, tests)
        // are resolved here.
        let (index, req) = match req.routed {
            Some(index) => (index, req),
            None => match self.resolve(&req.path) {
                Ok((index, params)) => (index, req.with_params(params)),
                Err(e) => return (None, Err(e)),
            },
        };
        let endpoint = self.routes.endpoint(index);
        (Some(endpoint.name), self.dispatch(endpoint, &req).await)
    }

    /// The caller first (401 before 405, as `admit` decides), then the
    /// method's handler.
    async fn dispatch(&self, endpoint: &Endpoint<App<S>>, req: &Req) -> Result<Resp, ApiError> {
        let subject = match endpoint.is_open() {
            true => None,
            // Boxed: the lookup's state is not kept while the handler runs.
            false => Some(Box::pin(self.subject(req)).await?),
        };
        match (endpoint.serve(&req.method), &subject) {
            (Some(Serve::Open(handler)), _) => handler(self, req).await,
            (Some(Serve::Caller(handler)), Some(subject)) => handler(self, req, subject).await,
            _ => Err(method_not_allowed(&req.method)),
        }
    }
}

fn method_not_allowed(m: &Method) -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        format!("{m} is not allowed here"),
    )
}
