//! The route table's machinery: paths to [`Endpoint`]s, each carrying its
//! handler per method, how much body it may be sent and whether it needs a
//! caller. The table itself is `routes.rs`; this module knows no handler and
//! no application type (handlers take any context `C`).

use std::future::Future;
use std::pin::Pin;

use hyper::Method;
use otf_core::auth::Subject;

use crate::errors::ApiError;
use crate::request::Req;
use crate::response::Resp;

/// What a handler answers, later.
pub type Reply<'a> = Pin<Box<dyn Future<Output = Result<Resp, ApiError>> + Send + 'a>>;

/// How one method of a route is served.
pub enum Serve<C> {
    /// Needs a caller: the subject of a valid bearer token (or one otfd
    /// authenticated itself, such as an SSH session's key).
    Caller(for<'a> fn(&'a C, &'a Req, &'a Subject) -> Reply<'a>),
    /// Answers anyone (discovery, health), or is authorized by its signed
    /// URL (capability routes).
    Open(for<'a> fn(&'a C, &'a Req) -> Reply<'a>),
}

impl<C> Clone for Serve<C> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<C> Copy for Serve<C> {}

/// How much body a route may be sent (the server reads no more, and reads
/// it only after the caller is admitted).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodySize {
    /// Routes anyone may call: a small bound.
    Public,
    /// JSON:API documents.
    Json,
    /// Uploads: configuration tarballs, state, plan and lock files, logs.
    Upload,
}

/// One path and what it serves.
pub struct Endpoint<C> {
    /// The route's name in metrics (`otf_http_requests_total{route=…}`).
    pub name: &'static str,
    pub path: &'static str,
    pub body: BodySize,
    methods: Vec<(Method, Serve<C>)>,
}

impl<C> Endpoint<C> {
    /// A route of JSON documents (a caller's or, with open handlers, a
    /// public one: see [`Endpoint::public`]).
    pub fn new(name: &'static str, path: &'static str) -> Self {
        Endpoint {
            name,
            path,
            body: BodySize::Json,
            methods: Vec::new(),
        }
    }

    /// This route takes uploads.
    pub fn upload(mut self) -> Self {
        self.body = BodySize::Upload;
        self
    }

    /// This route answers anyone: a small body bound.
    pub fn public(mut self) -> Self {
        self.body = BodySize::Public;
        self
    }

    pub fn on(mut self, method: Method, serve: Serve<C>) -> Self {
        self.methods.push((method, serve));
        self
    }

    pub fn get(self, serve: Serve<C>) -> Self {
        self.on(Method::GET, serve)
    }

    pub fn post(self, serve: Serve<C>) -> Self {
        self.on(Method::POST, serve)
    }

    pub fn put(self, serve: Serve<C>) -> Self {
        self.on(Method::PUT, serve)
    }

    pub fn patch(self, serve: Serve<C>) -> Self {
        self.on(Method::PATCH, serve)
    }

    pub fn delete(self, serve: Serve<C>) -> Self {
        self.on(Method::DELETE, serve)
    }

    /// Whether the route answers without a caller (every method of a route
    /// is served alike; [`Routes::new`] checks).
    pub fn is_open(&self) -> bool {
        self.methods
            .first()
            .is_some_and(|(_, s)| matches!(s, Serve::Open(_)))
    }

    /// The handler of `method`, if the route has one.
    pub fn serve(&self, method: &Method) -> Option<Serve<C>> {
        self.methods
            .iter()
            .find(|(m, _)| m == method)
            .map(|(_, s)| *s)
    }
}

/// Every endpoint, found by path.
pub struct Routes<C> {
    endpoints: Vec<Endpoint<C>>,
    plain: matchit::Router<usize>,
    signed: matchit::Router<usize>,
}

/// A path's endpoint (an index into [`Routes`]) and its parameters.
pub type Found = (usize, Vec<(String, String)>);

impl<C> Routes<C> {
    /// The routes of `plain` paths and of the inner paths of signed URLs.
    ///
    /// # Panics
    ///
    /// On a table that is wrong as written (conflicting paths, a route
    /// without methods, or one mixing open and caller handlers): the table
    /// is static, and the router tests build it.
    pub fn new(plain: Vec<Endpoint<C>>, signed: Vec<Endpoint<C>>) -> Self {
        let mut routes = Routes {
            endpoints: Vec::new(),
            plain: matchit::Router::new(),
            signed: matchit::Router::new(),
        };
        for (endpoint, is_signed) in plain
            .into_iter()
            .map(|e| (e, false))
            .chain(signed.into_iter().map(|e| (e, true)))
        {
            let open = endpoint.is_open();
            assert!(
                !endpoint.methods.is_empty()
                    && endpoint
                        .methods
                        .iter()
                        .all(|(_, s)| matches!(s, Serve::Open(_)) == open),
                "route {} must have methods, all open or all for callers",
                endpoint.path
            );
            assert!(
                !is_signed || open,
                "signed route {} is authorized by its URL",
                endpoint.path
            );
            let index = routes.endpoints.len();
            let router = if is_signed {
                &mut routes.signed
            } else {
                &mut routes.plain
            };
            if let Err(e) = router.insert(endpoint.path, index) {
                panic!("route {} conflicts: {e}", endpoint.path);
            }
            routes.endpoints.push(endpoint);
        }
        routes
    }

    /// The endpoint at `index` (from [`Routes::find`]).
    pub fn endpoint(&self, index: usize) -> &Endpoint<C> {
        &self.endpoints[index]
    }

    /// The route of `path` and its parameters.
    pub fn find(&self, path: &str) -> Option<Found> {
        lookup(&self.plain, path)
    }

    /// The route of a verified capability path.
    pub fn find_signed(&self, path: &str) -> Option<Found> {
        lookup(&self.signed, path)
    }

    pub fn iter(&self) -> impl Iterator<Item = &Endpoint<C>> {
        self.endpoints.iter()
    }
}

fn lookup(router: &matchit::Router<usize>, path: &str) -> Option<Found> {
    let path = if path.len() > 1 {
        path.trim_end_matches('/')
    } else {
        path
    };
    let m = router.at(path).ok()?;
    let params = m
        .params
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    Some((*m.value, params))
}
