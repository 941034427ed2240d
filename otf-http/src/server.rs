//! The HTTP(S) server: accept loop (with a connection cap and backoff on
//! accept errors), per-connection hyper service under deadlines, requests
//! admitted before their bounded bodies are read, graceful shutdown. `serve` takes a bound listener and any
//! shutdown future, so tests bind port 0 first.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder;
use otf_core::store::Store;
use tokio::net::TcpListener;
use tokio_rustls::rustls;
use tokio_rustls::TlsAcceptor;

use crate::app::App;
use crate::conn_guard;
use crate::errors::ApiError;
use crate::request::Req;
use crate::response::{self, Resp};

/// TLS settings from PEM files.
pub fn tls_acceptor(cert_file: &Path, key_file: &Path) -> Result<TlsAcceptor, String> {
    let read = |p: &Path| std::fs::read(p).map_err(|e| format!("cannot read {}: {e}", p.display()));
    let certs = rustls_pemfile::certs(&mut read(cert_file)?.as_slice())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| {
            format!(
                "{} holds no usable PEM certificate: {e}",
                cert_file.display()
            )
        })?;
    if certs.is_empty() {
        return Err(format!("{} holds no PEM certificate", cert_file.display()));
    }
    let key = rustls_pemfile::private_key(&mut read(key_file)?.as_slice())
        .map_err(|e| {
            format!(
                "{} holds no usable PEM private key: {e}",
                key_file.display()
            )
        })?
        .ok_or_else(|| format!("{} holds no PEM private key", key_file.display()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| format!("the certificate and key do not fit together: {e}"))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// Admit the request (route, caller) before reading any of its body, then
/// read the body within its route's bound and the body timeout, and hand
/// the request to the app.
async fn answer<S: Store>(app: &App<S>, req: Request<Incoming>, peer: SocketAddr) -> Resp {
    let (parts, body) = req.into_parts();
    let head = Req::new(
        parts.method,
        parts.uri.path(),
        parts.uri.query(),
        parts.headers,
        bytes::Bytes::new(),
        peer.ip(),
    );
    // Admission and the answer are boxed, each allocated only while it
    // runs: a connection whose request waits (a long-poll, for most of an
    // agent's life) then keeps what the waiting step holds, not the largest
    // state of every step (this future was 12.7 KB unboxed; 10,000 agents
    // hold one each).
    let (head, limit) = match Box::pin(app.admit(head)).await {
        Ok(admitted) => admitted,
        Err(refused) => return refused,
    };
    let timeout = app.limits.body_read_timeout;
    let read = tokio::time::timeout(timeout, Limited::new(body, limit).collect()).await;
    let body = match read {
        Ok(Ok(b)) => b.to_bytes(),
        Ok(Err(e)) => {
            let too_big = e
                .downcast_ref::<http_body_util::LengthLimitError>()
                .is_some();
            let err = if too_big {
                ApiError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    format!("the request body is larger than {limit} bytes"),
                )
            } else {
                ApiError::bad_request(format!("the request body could not be read: {e}"))
            };
            return response::error(&err);
        }
        Err(_) => {
            return response::error(&ApiError::new(
                StatusCode::REQUEST_TIMEOUT,
                format!(
                    "the request body did not arrive within {} s",
                    timeout.as_secs_f64()
                ),
            ))
        }
    };
    Box::pin(app.handle(head.with_body(body))).await
}

/// Accept errors (such as running out of descriptors) back off instead of
/// spinning, and are logged once per burst.
struct AcceptBackoff {
    errors: u64,
    wait: Duration,
}

impl AcceptBackoff {
    const FIRST: Duration = Duration::from_millis(5);
    const MAX: Duration = Duration::from_secs(1);

    fn new() -> Self {
        AcceptBackoff {
            errors: 0,
            wait: Self::FIRST,
        }
    }

    async fn failed(&mut self, e: &std::io::Error) {
        if self.errors == 0 {
            tracing::warn!(error = %e, "accepting connections fails; backing off until it works again");
        }
        self.errors += 1;
        tokio::time::sleep(self.wait).await;
        self.wait = (self.wait * 2).min(Self::MAX);
    }

    fn succeeded(&mut self) {
        if self.errors > 0 {
            tracing::info!(errors = self.errors, "accepting connections works again");
        }
        *self = AcceptBackoff::new();
    }
}

/// What a connection beyond `--max-connections` gets before it is closed.
const BUSY: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/vnd.api+json\r\nretry-after: 1\r\nconnection: close\r\ncontent-length: 95\r\n\r\n{\"errors\":[{\"status\":\"503\",\"title\":\"Service Unavailable\",\"detail\":\"too many connections\"}]}";

/// Serve until `shutdown` resolves, then let open requests finish (up to
/// `grace`). Each connection is bounded by the app's limits: a TLS
/// handshake timeout, header, body and idle timeouts (see `conn_guard`),
/// and at most `max_connections` at once.
pub async fn serve<S: Store>(
    listener: TcpListener,
    app: Arc<App<S>>,
    tls: Option<TlsAcceptor>,
    shutdown: impl Future<Output = ()>,
    grace: Duration,
) {
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let limits = app.limits;
    let slots = Arc::new(tokio::sync::Semaphore::new(limits.max_connections.max(1)));
    let mut backoff = AcceptBackoff::new();
    let mut refused: u64 = 0;
    tokio::pin!(shutdown);
    loop {
        let (mut stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => {
                    backoff.succeeded();
                    a
                }
                Err(e) => {
                    backoff.failed(&e).await;
                    continue;
                }
            },
            _ = &mut shutdown => break,
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            if refused.is_power_of_two() {
                tracing::warn!(
                    refused,
                    max = limits.max_connections,
                    "too many connections; refusing new ones"
                );
            }
            refused += 1;
            let plain = tls.is_none();
            tokio::spawn(async move {
                if plain {
                    use tokio::io::AsyncWriteExt;
                    let _ =
                        tokio::time::timeout(Duration::from_secs(1), stream.write_all(BUSY)).await;
                }
            });
            continue;
        };
        refused = 0;
        let (app, tls, watcher) = (app.clone(), tls.clone(), graceful.watcher());
        tokio::spawn(async move {
            let _slot = slot;
            serve_connection(app, stream, peer, tls, watcher).await;
        });
    }
    if tokio::time::timeout(grace, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::info!("closing connections still open after the grace period");
    }
}

/// One accepted connection, until it ends or outlives its header or idle
/// timeout: the TLS handshake (bounded), then its requests.
async fn serve_connection<S: Store>(
    app: Arc<App<S>>,
    stream: tokio::net::TcpStream,
    peer: std::net::SocketAddr,
    tls: Option<TlsAcceptor>,
    watcher: hyper_util::server::graceful::Watcher,
) {
    let limits = app.limits;
    let (result, shared) = match tls {
        Some(acceptor) => {
            let handshake =
                tokio::time::timeout(limits.tls_handshake_timeout, acceptor.accept(stream)).await;
            let s = match handshake {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => {
                    tracing::debug!(%peer, error = %e, "TLS handshake failed");
                    return;
                }
                Err(_) => {
                    tracing::debug!(%peer, "TLS handshake timed out");
                    return;
                }
            };
            let h2 = s.get_ref().1.alpn_protocol() == Some(b"h2");
            let shared = conn_guard::Shared::new(!h2);
            let io = conn_guard::GuardedIo::new(s, shared.clone());
            (
                Box::pin(connection(app, io, peer, shared.clone(), watcher)) as Served,
                shared,
            )
        }
        None => {
            let shared = conn_guard::Shared::new(true);
            let io = conn_guard::GuardedIo::new(stream, shared.clone());
            (
                Box::pin(connection(app, io, peer, shared.clone(), watcher)) as Served,
                shared,
            )
        }
    };
    tokio::select! {
        r = result => if let Err(e) = r {
            tracing::debug!(%peer, error = %e, "connection ended with an error");
        },
        _ = conn_guard::expired(shared, limits.header_read_timeout, limits.idle_timeout) => {
            tracing::debug!(%peer, "closing a connection past its header or idle timeout");
        }
    }
}

/// A connection being served, whatever its transport.
type Served = std::pin::Pin<
    Box<dyn Future<Output = Result<(), Box<dyn std::error::Error + Send + Sync>>> + Send>,
>;

/// Serve one connection's requests, each marked in flight while answered.
fn connection<S: Store, T>(
    app: Arc<App<S>>,
    io: T,
    peer: SocketAddr,
    shared: Arc<conn_guard::Shared>,
    watcher: hyper_util::server::graceful::Watcher,
) -> impl Future<Output = Result<(), Box<dyn std::error::Error + Send + Sync>>>
where
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let service = service_fn(move |req| {
        let app = app.clone();
        let in_flight = conn_guard::InFlight::begin(&shared);
        async move {
            let resp = answer(&app, req, peer).await;
            drop(in_flight);
            Ok::<_, Infallible>(resp)
        }
    });
    let builder = Builder::new(TokioExecutor::new());
    let conn = builder
        .serve_connection(TokioIo::new(io), service)
        .into_owned();
    watcher.watch(conn)
}
