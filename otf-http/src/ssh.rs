//! otfd's SSH sessions reach the API in process: the TUI's client speaks
//! the same JSON:API to [`App::handle`] as `otf-tui` does over HTTP, as the
//! session key's [`Subject`] (settled by otfd, never from a header), so
//! every request goes through the same routes, limits, handlers and
//! authorization as one from the network.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::{HeaderMap, Method};
use otf_core::auth::Subject;
use otf_core::store::Store;
use otf_tui::client::{Api, Client, ClientError, Exchange, Incoming, Outgoing};

use crate::app::App;
use crate::request::Req;

/// The API of each SSH session.
pub struct Sessions<S: Store> {
    pub app: Arc<App<S>>,
}

impl<S: Store> otf_ssh::SessionApi for Sessions<S> {
    fn api(&self, subject: Subject, peer: Option<SocketAddr>) -> Arc<dyn Api> {
        let exchange = InProcess {
            app: self.app.clone(),
            subject,
            peer: peer.map_or(IpAddr::V4(Ipv4Addr::LOCALHOST), |p| p.ip()),
        };
        Arc::new(Client::new(self.app.base_url.clone(), Arc::new(exchange)))
    }
}

/// Requests of one session, answered by the app itself.
struct InProcess<S: Store> {
    app: Arc<App<S>>,
    subject: Subject,
    peer: IpAddr,
}

fn refused(detail: String) -> ClientError {
    ClientError::Refused {
        status: 400,
        detail,
    }
}

#[async_trait]
impl<S: Store> Exchange for InProcess<S> {
    async fn exchange(&self, req: Outgoing) -> Result<Incoming, ClientError> {
        // Capability URLs are otfd's own, absolute.
        let target = match req.target.strip_prefix(&self.app.base_url) {
            Some(rest) => rest,
            None if req.target.starts_with('/') => req.target.as_str(),
            None => return Err(refused(format!("{} is not an otfd URL", req.target))),
        };
        let (path, query) = match target.split_once('?') {
            Some((p, q)) => (p, Some(q)),
            None => (target, None),
        };
        let method =
            Method::from_bytes(req.verb.as_str().as_bytes()).map_err(|e| refused(e.to_string()))?;
        let mut headers = HeaderMap::new();
        if let Some(t) = req.content_type {
            headers.insert(CONTENT_TYPE, HeaderValue::from_static(t));
        }
        let mut head = Req::new(method, path, query, headers, Bytes::new(), self.peer);
        if req.bearer {
            head.subject = Some(self.subject.clone());
        }
        let resp = match self.app.admit(head).await {
            Ok((head, limit)) if req.body.len() <= limit => {
                self.app.handle(head.with_body(Bytes::from(req.body))).await
            }
            Ok((_, limit)) => {
                return Err(refused(format!(
                    "the request body is larger than {limit} bytes"
                )))
            }
            Err(refused) => refused,
        };
        let status = resp.status().as_u16();
        let body = match resp.into_body().collect().await {
            Ok(b) => b.to_bytes().to_vec(),
            Err(never) => match never {},
        };
        Ok(Incoming { status, body })
    }
}
