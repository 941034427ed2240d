//! otfd at the edge, against a real otfd on loopback: connections that send
//! half a header, nothing at all, a slow body, or idle after a request are
//! closed within their timeouts while `/healthz`, the API and an agent keep
//! working; beyond `--max-connections` new connections get a 503 and open
//! ones keep working; a request's token is checked before its body is read;
//! `/metrics` wants `--metrics-token` when one is set. Every loop here is
//! bounded in count and time.

mod e2e;
mod support;

use std::time::{Duration, Instant};

use e2e::{Agent, Api};
use support::{eventually, Db, Server};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn addr(server: &Server) -> String {
    server.url.trim_start_matches("http://").to_string()
}

/// Everything the server sends until it closes the connection, or `None`
/// if it is still open after `within`.
async fn until_closed(mut s: TcpStream, within: Duration) -> Option<String> {
    let mut got = Vec::new();
    let read = tokio::time::timeout(within, async {
        let mut buf = [0u8; 4096];
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    read.ok()
        .map(|_| String::from_utf8_lossy(&got).into_owned())
}

async fn connect(addr: &str) -> TcpStream {
    TcpStream::connect(addr).await.expect("connect to otfd")
}

/// `/healthz` answers, and fast.
async fn healthy(url: &str) -> Duration {
    let started = Instant::now();
    let resp = reqwest::Client::new()
        .get(format!("{url}/healthz"))
        .timeout(Duration::from_secs(5))
        .send()
        .await
        .expect("/healthz answers");
    assert_eq!(resp.status(), 200);
    started.elapsed()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_and_idle_clients_are_closed_while_otfd_keeps_answering() {
    let server = Server::start(
        &Db::Sqlite,
        &[
            "--concurrency",
            "0",
            "--header-read-timeout",
            "1",
            "--body-read-timeout",
            "1",
            "--idle-timeout",
            "3",
        ],
    );
    let api = Api::new(&server);
    api.org("acme").await;
    let pool = api.pool("acme", "pool").await;
    let (_, token) = api.token(&pool).await;
    // A real agent long-polls (2 s) and pings (0.5 s) throughout.
    let agent = Agent::start(&server, &token, "steady", "/bin/false", &[], &[]);
    api.wait_agent(&pool, &agent.id, "idle", Duration::from_secs(10))
        .await;
    let addr = addr(&server);
    let mut half = Vec::new();
    let mut silent = Vec::new();
    let mut slow = Vec::new();
    let mut idle = Vec::new();
    for _ in 0..200 {
        let mut s = connect(&addr).await;
        s.write_all(b"GET /healthz HTTP/1.1\r\nHost: otfd\r\nX-Half: ")
            .await
            .expect("half a header");
        half.push(s);
    }
    for _ in 0..100 {
        silent.push(connect(&addr).await);
    }
    for _ in 0..50 {
        let mut s = connect(&addr).await;
        let head = format!(
            "POST /api/v2/organizations HTTP/1.1\r\nHost: otfd\r\nAuthorization: Bearer {}\r\nContent-Type: application/vnd.api+json\r\nContent-Length: 1000\r\n\r\n{{\"data\":",
            server.site_token
        );
        s.write_all(head.as_bytes()).await.expect("a slow body");
        slow.push(s);
    }
    for _ in 0..50 {
        let mut s = connect(&addr).await;
        s.write_all(b"GET /healthz HTTP/1.1\r\nHost: otfd\r\n\r\n")
            .await
            .expect("a request");
        let mut buf = [0u8; 1024];
        let n = s.read(&mut buf).await.expect("an answer");
        assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
        idle.push(s);
    }
    let opened = Instant::now();
    // While all 400 are open, otfd answers at once.
    for _ in 0..5 {
        let took = healthy(&server.url).await;
        assert!(took < Duration::from_secs(1), "/healthz took {took:?}");
        let (s, _) = api.get("/organizations/acme").await;
        assert_eq!(s, 200);
    }
    // Each kind is closed within its timeout (plus scheduling slack).
    let closers = half
        .into_iter()
        .chain(silent)
        .map(|s| tokio::spawn(until_closed(s, Duration::from_secs(6))));
    for c in closers {
        assert!(
            c.await.expect("reader").is_some(),
            "a header-less connection outlived the header timeout"
        );
    }
    for s in slow {
        let answer = until_closed(s, Duration::from_secs(6)).await;
        let answer = answer.expect("a slow body outlived the body timeout");
        assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    }
    for s in idle {
        assert!(
            until_closed(s, Duration::from_secs(8)).await.is_some(),
            "an idle keep-alive connection outlived the idle timeout"
        );
    }
    eprintln!(
        "400 hostile connections closed {:?} after opening",
        opened.elapsed()
    );
    // The agent was never cut off: it is still idle and answering.
    let took = healthy(&server.url).await;
    assert!(took < Duration::from_secs(1), "/healthz took {took:?}");
    let agents = api.agents(&pool).await;
    assert!(
        agents
            .iter()
            .any(|(id, _, status)| *id == agent.id && status == "idle"),
        "{agents:?}\n{}",
        agent.log()
    );
    assert!(
        !agent.log().contains("cannot reach otfd"),
        "{}",
        agent.log()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn beyond_max_connections_new_ones_get_a_503_and_open_ones_keep_working() {
    let server = Server::start(
        &Db::Sqlite,
        &[
            "--concurrency",
            "0",
            "--max-connections",
            "20",
            "--header-read-timeout",
            "30",
        ],
    );
    let addr = addr(&server);
    // One keep-alive connection that works, and 19 that hold their slot.
    let mut open = connect(&addr).await;
    let ask = b"GET /healthz HTTP/1.1\r\nHost: otfd\r\n\r\n";
    let mut buf = [0u8; 1024];
    open.write_all(ask).await.expect("a request");
    let n = open.read(&mut buf).await.expect("an answer");
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
    let mut holders = Vec::new();
    for _ in 0..19 {
        holders.push(connect(&addr).await);
    }
    let refused = eventually(Duration::from_secs(10), "a refusal", || async {
        let answer = until_closed(connect(&addr).await, Duration::from_secs(2)).await?;
        answer.starts_with("HTTP/1.1 503").then_some(answer)
    })
    .await;
    assert!(refused.contains("too many connections"), "{refused}");
    // The open connection keeps working.
    open.write_all(ask).await.expect("another request");
    let n = open.read(&mut buf).await.expect("an answer");
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
    // Slots come back when connections go.
    drop(holders);
    eventually(Duration::from_secs(10), "a free slot", || async {
        let ok = reqwest::Client::new()
            .get(format!("{}/healthz", server.url))
            .send()
            .await
            .ok()?;
        (ok.status() == 200).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_is_checked_before_the_body_is_read() {
    let server = Server::start(
        &Db::Sqlite,
        &["--concurrency", "0", "--body-read-timeout", "30"],
    );
    let addr = addr(&server);
    // A 50 MB upload announced with a wrong token, and no body sent: the
    // answer is 401 at once, not a wait for the body.
    let mut s = connect(&addr).await;
    s.write_all(b"POST /api/v2/organizations HTTP/1.1\r\nHost: otfd\r\nAuthorization: Bearer ot-nope.0000\r\nContent-Type: application/vnd.api+json\r\nContent-Length: 50000000\r\n\r\n")
        .await
        .expect("a head");
    let started = Instant::now();
    let mut buf = [0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf))
        .await
        .expect("an answer before the body")
        .expect("read");
    let answer = String::from_utf8_lossy(&buf[..n]);
    assert!(answer.starts_with("HTTP/1.1 401"), "{answer}");
    assert!(started.elapsed() < Duration::from_secs(5));
    // No token at all: the same, without reading the body.
    let mut s = connect(&addr).await;
    s.write_all(b"PUT /api/v2/workspaces/ws-aaaaaaaaaaaaaaaa HTTP/1.1\r\nHost: otfd\r\nContent-Length: 50000000\r\n\r\n")
        .await
        .expect("a head");
    let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf))
        .await
        .expect("an answer before the body")
        .expect("read");
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 401"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_want_the_metrics_token_when_one_is_set() {
    let server = Server::start(
        &Db::Sqlite,
        &[
            "--concurrency",
            "0",
            "--metrics-token",
            "scraper-token-0123456789",
        ],
    );
    let http = reqwest::Client::new();
    let url = format!("{}/metrics", server.url);
    let none = http.get(&url).send().await.expect("metrics");
    assert_eq!(none.status(), 401);
    let wrong = http
        .get(&url)
        .bearer_auth("scraper-token-wrong")
        .send()
        .await
        .expect("metrics");
    assert_eq!(wrong.status(), 401);
    let right = http
        .get(&url)
        .bearer_auth("scraper-token-0123456789")
        .send()
        .await
        .expect("metrics");
    assert_eq!(right.status(), 200);
    assert!(right.text().await.unwrap_or_default().contains("otf_"));
    // Without the flag /metrics stays open.
    let open = Server::start(&Db::Sqlite, &["--concurrency", "0"]);
    let resp = http
        .get(format!("{}/metrics", open.url))
        .send()
        .await
        .expect("metrics");
    assert_eq!(resp.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_runaway_log_is_truncated_and_the_run_goes_on() {
    let tf = e2e::terraform();
    let server = Server::start(
        &Db::Sqlite,
        &[
            "--concurrency",
            "1",
            "--engine-bin",
            &tf,
            "--max-log-bytes",
            "50000",
        ],
    );
    let api = Api::new(&server);
    api.org("acme").await;
    let ws = api.workspace("acme", "loud", None).await;
    // About a megabyte of output from the apply.
    let loud = "resource \"null_resource\" \"loud\" {\n  provisioner \"local-exec\" {\n    command = \"seq 1 30000\"\n  }\n}\n";
    let run = api.run(&ws, &[("main.tf", loud)], false).await;
    api.wait_for(&run, "planned", Duration::from_secs(90)).await;
    api.apply(&run).await;
    api.wait_for(&run, "applied", Duration::from_secs(90)).await;
    let log = api.log(&run, "apply").await;
    assert!(
        log.len() < 50_000 + 1_000,
        "the log holds {} bytes",
        log.len()
    );
    assert!(
        log.contains("reached its limit of 50000 bytes"),
        "{}",
        &log[log.len().saturating_sub(2000)..]
    );
    let last = log
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("");
    assert!(
        last.contains("the log was truncated at 50000 bytes")
            && last.contains("bytes of output were dropped"),
        "the last line says how much was dropped: {last}"
    );
    // The plan's log is untouched by the apply's.
    let plan = api.log(&run, "plan").await;
    assert!(plan.contains("Plan: 1 to add"), "{plan}");
}

/// With default flags: 500 connections that send half a header are closed
/// within 30 s, and `/healthz` answers in under a second throughout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_default_flags_half_headers_are_closed_within_30_s() {
    // Only the harness's agent timers differ from the defaults; no
    // connection flag is given.
    let server = Server::start(&Db::Sqlite, &["--concurrency", "0"]);
    let addr = addr(&server);
    let mut half = Vec::new();
    for _ in 0..500 {
        let mut s = connect(&addr).await;
        s.write_all(b"GET /healthz HTTP/1.1\r\nHost: otfd\r\n")
            .await
            .expect("half a header");
        half.push(s);
    }
    let opened = Instant::now();
    let closers: Vec<_> = half
        .into_iter()
        .map(|s| tokio::spawn(until_closed(s, Duration::from_secs(30))))
        .collect();
    // /healthz stays fast while they wait to be closed (asked every 250 ms).
    let mut every = tokio::time::interval(Duration::from_millis(250));
    while closers.iter().any(|c| !c.is_finished()) && opened.elapsed() < Duration::from_secs(31) {
        every.tick().await;
        let took = healthy(&server.url).await;
        assert!(took < Duration::from_secs(1), "/healthz took {took:?}");
    }
    for c in closers {
        assert!(
            c.await.expect("reader").is_some(),
            "a half-header connection was still open after 30 s"
        );
    }
    eprintln!(
        "500 half-header connections closed after {:?}",
        opened.elapsed()
    );
}

/// Over HTTPS, a client that never finishes its TLS handshake is closed
/// after `--tls-handshake-timeout`, while HTTPS requests keep working.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_tls_handshake_is_closed() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()])
        .expect("a certificate");
    let (cert_path, key_path) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    std::fs::write(&cert_path, cert.cert.pem()).expect("write cert");
    std::fs::write(&key_path, cert.key_pair.serialize_pem()).expect("write key");
    let server = Server::start(
        &Db::Sqlite,
        &[
            "--concurrency",
            "0",
            "--cert-file",
            cert_path.to_str().unwrap_or(""),
            "--key-file",
            key_path.to_str().unwrap_or(""),
            "--tls-handshake-timeout",
            "1",
        ],
    );
    let addr = server.url.trim_start_matches("https://").to_string();
    let silent = connect(&addr).await;
    let mut partial = connect(&addr).await;
    // The first bytes of a ClientHello record, and then nothing.
    partial
        .write_all(&[0x16, 0x03, 0x01, 0x02, 0x00, 0x01])
        .await
        .expect("half a hello");
    for s in [silent, partial] {
        assert!(
            until_closed(s, Duration::from_secs(6)).await.is_some(),
            "a stalled TLS handshake outlived --tls-handshake-timeout"
        );
    }
    let pem = std::fs::read(&cert_path).expect("read the certificate");
    let client = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(&pem).expect("a PEM certificate"))
        .build()
        .expect("an HTTPS client");
    let port = addr.rsplit(':').next().unwrap_or("");
    let resp = client
        .get(format!("https://localhost:{port}/healthz"))
        .send()
        .await
        .expect("HTTPS answers");
    assert_eq!(resp.status(), 200);
}
