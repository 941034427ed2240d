//! A fault proxy on loopback between a client and a server, for fault
//! tests: it forwards, blackholes (a partition: connections accepted and
//! held silent, nothing forwarded, until healed), cuts every connection (a
//! restart as clients see it), and, in HTTP mode, loses the answer to a
//! chosen request or drops the request itself.
//!
//! HTTP mode relays one request per client connection: it reads the
//! request (head and `content-length` body), forwards it upstream with
//! `connection: close`, relays the answer to its end and closes.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// What the proxy does with traffic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Forward,
    /// Hold every connection silent (a partition).
    Blackhole,
}

/// What a rule does to a matching request (HTTP mode).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Forward it, then close the client's connection without the answer:
    /// the server did it, the client does not know.
    LoseAnswer,
    /// Close the client's connection without forwarding it.
    DropRequest,
}

struct Rule {
    method: String,
    path_contains: String,
    fault: Fault,
    left: usize,
}

#[derive(Default)]
struct Shared {
    rules: Vec<Rule>,
    /// `METHOD path` of every request seen, with the fault applied if any.
    seen: Vec<(String, Option<Fault>)>,
}

pub struct FaultProxy {
    pub addr: SocketAddr,
    mode: watch::Sender<Mode>,
    /// Bumped to close every open connection.
    cut: watch::Sender<u64>,
    shared: Arc<Mutex<Shared>>,
    task: JoinHandle<()>,
}

impl FaultProxy {
    /// Relay bytes to `upstream` (any protocol, e.g. PostgreSQL's).
    pub async fn tcp(upstream: SocketAddr) -> FaultProxy {
        FaultProxy::start(upstream, false).await
    }

    /// Relay HTTP/1.1 requests to `upstream`, one per connection, with
    /// [`FaultProxy::fail`] rules.
    pub async fn http(upstream: SocketAddr) -> FaultProxy {
        FaultProxy::start(upstream, true).await
    }

    async fn start(upstream: SocketAddr, http: bool) -> FaultProxy {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the proxy");
        let addr = listener.local_addr().expect("proxy address");
        let (mode, _) = watch::channel(Mode::Forward);
        let (cut, _) = watch::channel(0u64);
        let shared = Arc::new(Mutex::new(Shared::default()));
        let (m, c, s) = (mode.clone(), cut.clone(), shared.clone());
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let (mode, cut, shared) = (m.subscribe(), c.subscribe(), s.clone());
                tokio::spawn(async move {
                    let relay = async {
                        if http {
                            relay_http(client, upstream, mode.clone(), shared).await
                        } else {
                            relay_tcp(client, upstream, mode.clone()).await
                        }
                    };
                    let mut cut = cut;
                    tokio::select! {
                        _ = relay => {}
                        _ = cut.changed() => {}
                    }
                });
            }
        });
        FaultProxy {
            addr,
            mode,
            cut,
            shared,
            task,
        }
    }

    /// `http://ADDR`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// A partition: from now on nothing passes either way, and connections
    /// (open and new) hang.
    pub fn blackhole(&self) {
        self.mode.send_replace(Mode::Blackhole);
    }

    /// End a partition: held connections are closed (their clients see an
    /// error and retry), new ones are forwarded.
    pub fn heal(&self) {
        self.mode.send_replace(Mode::Forward);
        self.cut.send_modify(|n| *n += 1);
    }

    /// Close every open connection now, as a restarted server would.
    pub fn cut(&self) {
        self.cut.send_modify(|n| *n += 1);
    }

    /// Apply `fault` to the next `times` requests `method` whose path
    /// contains `path_contains` (HTTP mode).
    pub fn fail(&self, method: &str, path_contains: &str, fault: Fault, times: usize) {
        self.shared
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .rules
            .push(Rule {
                method: method.to_string(),
                path_contains: path_contains.to_string(),
                fault,
                left: times,
            });
    }

    /// How many requests `METHOD path` containing `needle` had `fault`
    /// applied (None: passed).
    pub fn count(&self, needle: &str, fault: Option<Fault>) -> usize {
        self.shared
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .seen
            .iter()
            .filter(|(r, f)| r.contains(needle) && *f == fault)
            .count()
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.task.abort();
        self.cut.send_modify(|n| *n += 1);
    }
}

/// Resolves once the proxy is blackholed; then never (the connection is
/// held until healed, which cuts it).
async fn partitioned(mut mode: watch::Receiver<Mode>) {
    let _ = mode.wait_for(|m| *m == Mode::Blackhole).await;
    std::future::pending::<()>().await
}

async fn relay_tcp(mut client: TcpStream, upstream: SocketAddr, mode: watch::Receiver<Mode>) {
    if *mode.borrow() == Mode::Blackhole {
        return partitioned(mode).await;
    }
    let Ok(mut server) = TcpStream::connect(upstream).await else {
        return;
    };
    tokio::select! {
        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
        _ = partitioned(mode) => {}
    }
}

/// Read one request: its head (up to the blank line) and its body.
async fn read_request(client: &mut TcpStream) -> Option<(String, Vec<u8>, Vec<u8>)> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 16 * 1024];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let n = client.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
    let length: usize = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim()
                .eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse().ok())?
        })
        .unwrap_or(0);
    let mut body = buf[head_end..].to_vec();
    while body.len() < length {
        let n = client.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        body.extend_from_slice(&chunk[..n]);
    }
    let request_line = head.lines().next().unwrap_or_default().to_string();
    // Forward with `connection: close`, so the answer ends with the stream.
    let mut forwarded = String::new();
    for (i, line) in head.split("\r\n").enumerate() {
        if line.is_empty() {
            continue;
        }
        if i > 0 && line.to_ascii_lowercase().starts_with("connection:") {
            continue;
        }
        forwarded.push_str(line);
        forwarded.push_str("\r\n");
    }
    forwarded.push_str("connection: close\r\n\r\n");
    Some((request_line, forwarded.into_bytes(), body))
}

async fn relay_http(
    mut client: TcpStream,
    upstream: SocketAddr,
    mode: watch::Receiver<Mode>,
    shared: Arc<Mutex<Shared>>,
) {
    if *mode.borrow() == Mode::Blackhole {
        return partitioned(mode).await;
    }
    let exchange = async {
        let (line, head, body) = read_request(&mut client).await?;
        let mut parts = line.split_whitespace();
        let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
        let fault = {
            let mut s = shared.lock().unwrap_or_else(|p| p.into_inner());
            let fault = s
                .rules
                .iter_mut()
                .find(|r| r.left > 0 && r.method == method && path.contains(&r.path_contains))
                .map(|r| {
                    r.left -= 1;
                    r.fault
                });
            s.seen.push((format!("{method} {path}"), fault));
            fault
        };
        if fault == Some(Fault::DropRequest) {
            return None;
        }
        let mut server = TcpStream::connect(upstream).await.ok()?;
        server.write_all(&head).await.ok()?;
        server.write_all(&body).await.ok()?;
        let mut answer = Vec::new();
        server.read_to_end(&mut answer).await.ok()?;
        if fault == Some(Fault::LoseAnswer) {
            return None;
        }
        client.write_all(&answer).await.ok()?;
        client.shutdown().await.ok()
    };
    tokio::select! {
        _ = exchange => {}
        _ = partitioned(mode) => {}
    }
}
