//! Response builders.

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::{Response, StatusCode};

use crate::errors::ApiError;

pub type Resp = Response<Full<Bytes>>;

pub const JSONAPI: &str = "application/vnd.api+json";

fn with_type(status: StatusCode, body: Bytes, content_type: &'static str) -> Resp {
    let mut r = Response::new(Full::new(body));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    r
}

/// A JSON:API document.
pub fn jsonapi(status: StatusCode, doc: serde_json::Value) -> Resp {
    with_type(status, Bytes::from(doc.to_string()), JSONAPI)
}

/// Plain JSON (discovery, the agent protocol).
pub fn json(status: StatusCode, doc: &impl serde::Serialize) -> Resp {
    let body = serde_json::to_vec(doc).unwrap_or_default();
    with_type(status, Bytes::from(body), "application/json")
}

pub fn bytes(status: StatusCode, body: Vec<u8>, content_type: &'static str) -> Resp {
    with_type(status, Bytes::from(body), content_type)
}

pub fn text(status: StatusCode, body: String) -> Resp {
    with_type(status, Bytes::from(body), "text/plain; charset=utf-8")
}

pub fn empty(status: StatusCode) -> Resp {
    let mut r = Response::new(Full::new(Bytes::new()));
    *r.status_mut() = status;
    r
}

pub fn error(e: &ApiError) -> Resp {
    jsonapi(e.status, e.document())
}
