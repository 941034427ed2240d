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
            let protocol = match s.get_ref().1.alpn_protocol() {
                Some(b"h2") => Some(Protocol::Http2),
                Some(_) => Some(Protocol::Http1),
                None => None,
            };
            let shared = conn_guard::Shared::new(protocol != Some(Protocol::Http2));
            let io = conn_guard::GuardedIo::new(s, shared.clone());
            (
                Box::pin(connection(app, io, protocol, peer, shared.clone(), watcher)) as Served,
                shared,
            )
        }
        None => {
            let shared = conn_guard::Shared::new(true);
            let guarded = shared.clone();
            let served = async move {
                // Under the header deadline, as the request's head is.
                let protocol = sniff(&stream).await;
                let io = conn_guard::GuardedIo::new(stream, guarded.clone());
                connection(app, io, protocol, peer, guarded, watcher).await
            };
            (Box::pin(served) as Served, shared)
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

/// The HTTP version a connection speaks, when known before hyper reads it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Protocol {
    Http1,
    Http2,
}

/// The version of a plain connection from its first bytes, left unread:
/// HTTP/2 with prior knowledge starts with its preface ("PRI * HTTP/2.0"),
/// which no HTTP/1 request does. None when the first bytes do not tell yet
/// (hyper then reads the preface itself) or the peer left.
///
/// Telling it here, not in hyper-util's detection, spares each connection a
/// read buffer of twice the size (16 KB): detection hands hyper its first
/// bytes apart, and the buffer then grows to hold the rest.
async fn sniff(stream: &tokio::net::TcpStream) -> Option<Protocol> {
    const PREFACE: &[u8] = b"PRI ";
    let mut first = [0u8; 4];
    let n = stream.peek(&mut first).await.ok()?;
    let seen = &first[..n];
    if n == 0 || (n < PREFACE.len() && PREFACE.starts_with(seen)) {
        return None;
    }
    Some(if seen == PREFACE {
        Protocol::Http2
    } else {
        Protocol::Http1
    })
}

/// A connection being served, whatever its transport.
type Served = std::pin::Pin<
    Box<dyn Future<Output = Result<(), Box<dyn std::error::Error + Send + Sync>>> + Send>,
>;

/// Serve one connection's requests, each marked in flight while answered.
fn connection<S: Store, T>(
    app: Arc<App<S>>,
    io: T,
    protocol: Option<Protocol>,
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
    let mut builder = match protocol {
        Some(Protocol::Http1) => Builder::new(TokioExecutor::new()).http1_only(),
        Some(Protocol::Http2) => Builder::new(TokioExecutor::new()).http2_only(),
        None => Builder::new(TokioExecutor::new()),
    };
    // No read while a request is answered: hyper would otherwise reserve a
    // second read buffer (8 KB) per connection to watch for the peer's EOF,
    // as the first is still shared with the request's head, and every
    // long-polling agent would hold both (HTTP/1; HTTP/2 is unaffected). A peer that leaves mid-request is
    // noticed when its answer is written (a long-poll ends within
    // `long_poll`) or by the idle timeout.
    builder.http1().half_close(true);
    let conn = builder
        .serve_connection(TokioIo::new(io), service)
        .into_owned();
    watcher.watch(conn)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    /// What `sniff` tells of a connection whose peer sent `first` (and
    /// then closed its side when `close`).
    async fn sniffed(first: &[u8], close: bool) -> Option<Protocol> {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mut client = tokio::net::TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (server, _) = listener.accept().await.unwrap();
        client.write_all(first).await.unwrap();
        if close {
            client.shutdown().await.unwrap();
        }
        // Wait until all of it arrived, so the peek sees it whole.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        let mut buf = vec![0u8; first.len().max(1)];
        while server.peek(&mut buf).await.unwrap() < first.len() {
            assert!(
                tokio::time::Instant::now() < deadline,
                "bytes never arrived"
            );
            tokio::task::yield_now().await;
        }
        let protocol = sniff(&server).await;
        // Nothing was consumed.
        let mut rest = vec![0u8; first.len()];
        assert_eq!(server.peek(&mut rest).await.unwrap(), first.len());
        assert_eq!(rest, first);
        protocol
    }

    #[tokio::test]
    async fn a_plain_connection_is_told_from_its_first_bytes() {
        let get = b"GET /api/v2/ping HTTP/1.1\r\nhost: x\r\n\r\n";
        assert_eq!(sniffed(get, false).await, Some(Protocol::Http1));
        let preface = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
        assert_eq!(sniffed(preface, false).await, Some(Protocol::Http2));
        // A method that merely starts like the preface is HTTP/1.
        assert_eq!(sniffed(b"PRX", false).await, Some(Protocol::Http1));
        // Too little to tell: hyper's own detection reads on.
        assert_eq!(sniffed(b"PR", false).await, None);
        // The peer left without a byte.
        assert_eq!(sniffed(b"", true).await, None);
    }
}
