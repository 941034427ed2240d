//! A request as handlers see it: method, path, query, headers, the whole body
//! (bounded), path parameters and the peer address.

use std::net::IpAddr;

use bytes::Bytes;
use hyper::{HeaderMap, Method};

use otf_core::auth::Subject;

use crate::errors::ApiError;
use crate::jsonapi::{Body, Page};

pub struct Req {
    pub method: Method,
    pub path: String,
    query: Vec<(String, String)>,
    pub headers: HeaderMap,
    pub body: Bytes,
    params: Vec<(String, String)>,
    pub peer: IpAddr,
    /// The caller, authenticated from the bearer token before the body was
    /// read (see `App::admit`).
    pub subject: Option<Subject>,
    /// The endpoint `App::admit` found (an index into the route table).
    pub routed: Option<usize>,
}

impl Req {
    pub fn new(
        method: Method,
        path: &str,
        raw_query: Option<&str>,
        headers: HeaderMap,
        body: Bytes,
        peer: IpAddr,
    ) -> Self {
        let query = raw_query
            .map(|q| form_urlencoded::parse(q.as_bytes()).into_owned().collect())
            .unwrap_or_default();
        Req {
            method,
            path: path.to_string(),
            query,
            headers,
            body,
            params: Vec::new(),
            peer,
            subject: None,
            routed: None,
        }
    }

    pub fn with_body(mut self, body: Bytes) -> Self {
        self.body = body;
        self
    }

    pub fn with_params(mut self, params: Vec<(String, String)>) -> Self {
        self.params = params;
        self
    }

    pub fn query(&self, key: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// A path parameter (always present when the route matched).
    pub fn param(&self, key: &str) -> &str {
        self.params
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
            .unwrap_or("")
    }

    /// The `{org}` path parameter: an organization name that does not
    /// parse names no organization (404), as the core would say.
    pub fn org(&self) -> Result<otf_core::ids::OrganizationName, ApiError> {
        Ok(otf_core::services::parse_org(self.param("org"))?)
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The bearer token, if the request carries one.
    pub fn bearer(&self) -> Option<&str> {
        let h = self.header("authorization")?;
        let (scheme, token) = h.split_once(' ')?;
        scheme
            .eq_ignore_ascii_case("bearer")
            .then(|| token.trim())
            .filter(|t| !t.is_empty())
    }

    /// Whether `include` names `what` (a comma-separated list; may be empty).
    pub fn includes(&self, what: &str) -> bool {
        self.query("include")
            .is_some_and(|i| i.split(',').any(|p| p.trim() == what))
    }

    /// The page of a list the query asks for.
    pub fn page(&self) -> Result<Page, ApiError> {
        Page::from_query(|k| self.query(k))
    }

    pub fn json(&self) -> Result<Body, ApiError> {
        Body::parse(&self.body)
    }
}
