//! One request to otfd and its answer, whatever carries them: the
//! [`Exchange`] trait, and [`HttpExchange`], the HTTP one (reqwest).

use std::time::Duration;

use async_trait::async_trait;

use otf_client::base_url;

use super::{ClientError, Result};

/// The methods the TUI uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verb {
    Get,
    Post,
    Patch,
    Put,
    Delete,
}

impl Verb {
    pub fn as_str(self) -> &'static str {
        match self {
            Verb::Get => "GET",
            Verb::Post => "POST",
            Verb::Patch => "PATCH",
            Verb::Put => "PUT",
            Verb::Delete => "DELETE",
        }
    }
}

/// A request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outgoing {
    pub verb: Verb,
    /// A path with its query (`/api/v2/...`), or an absolute URL otfd handed
    /// out (a capability: upload and log URLs).
    pub target: String,
    /// Whether the caller's credentials go with it (not to capabilities).
    pub bearer: bool,
    pub content_type: Option<&'static str>,
    pub body: Vec<u8>,
}

/// An answer: its status and whole body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Incoming {
    pub status: u16,
    pub body: Vec<u8>,
}

/// Carries requests to otfd.
#[async_trait]
pub trait Exchange: Send + Sync {
    /// Send `req`; an error only when no answer came (an answer with an
    /// error status is an [`Incoming`]).
    async fn exchange(&self, req: Outgoing) -> Result<Incoming>;
}

/// Requests over HTTP(S) with a bearer token.
pub struct HttpExchange {
    base: String,
    token: String,
    http: reqwest::Client,
}

impl HttpExchange {
    /// To `address` (a URL or `host[:port]`) with `token`; `ca_cert` is a
    /// PEM certificate to trust besides the system's.
    pub fn new(address: &str, token: &str, ca_cert: Option<&[u8]>) -> Result<Self> {
        let http = otf_client::http_client(
            concat!("otf-tui/", env!("CARGO_PKG_VERSION")),
            Duration::from_secs(60),
            ca_cert,
        )
        .map_err(|e| match e {
            otf_client::SetupError::CaCert(_) | otf_client::SetupError::NoCaCert => {
                ClientError::Decode(e.to_string())
            }
            otf_client::SetupError::Build(_) => ClientError::Unreachable {
                address: address.to_string(),
                reason: e.to_string(),
            },
        })?;
        Ok(Self {
            base: base_url(address),
            token: token.to_string(),
            http,
        })
    }

    /// `http(s)://host:port`.
    pub fn base(&self) -> &str {
        &self.base
    }
}

#[async_trait]
impl Exchange for HttpExchange {
    async fn exchange(&self, req: Outgoing) -> Result<Incoming> {
        let url = if req.target.starts_with('/') {
            format!("{}{}", self.base, req.target)
        } else {
            req.target
        };
        let method = match req.verb {
            Verb::Get => reqwest::Method::GET,
            Verb::Post => reqwest::Method::POST,
            Verb::Patch => reqwest::Method::PATCH,
            Verb::Put => reqwest::Method::PUT,
            Verb::Delete => reqwest::Method::DELETE,
        };
        let mut builder = self.http.request(method, url);
        if req.bearer {
            builder = builder.bearer_auth(&self.token);
        }
        if let Some(t) = req.content_type {
            builder = builder.header("content-type", t);
        }
        if !req.body.is_empty() {
            builder = builder.body(req.body);
        }
        let unreachable = |e: reqwest::Error| ClientError::Unreachable {
            address: self.base.clone(),
            // reqwest's own message repeats the URL; its causes say why.
            reason: std::error::Error::source(&e)
                .map_or_else(|| e.to_string(), otf_client::error_chain),
        };
        let resp = builder.send().await.map_err(unreachable)?;
        let status = resp.status().as_u16();
        let body = resp.bytes().await.map_err(unreachable)?.to_vec();
        Ok(Incoming { status, body })
    }
}
