//! A corpus of hostile configuration archives uploaded to a real otfd: each
//! is refused with 422 naming the entry and the rule, nothing is stored
//! (a run cannot be made from it), and otfd's memory stays bounded while it
//! checks them all (its VmHWM, read from /proc). Built by hand, byte by
//! byte, because tar libraries refuse to write most of these.

mod e2e;
mod support;

use std::io::Write;

use e2e::Api;
use serde_json::json;
use support::{Db, Server};

/// One 512-byte ustar header.
fn header(name: &str, kind: u8, size: u64, link: &str) -> [u8; 512] {
    let mut h = [0u8; 512];
    h[..name.len().min(100)].copy_from_slice(&name.as_bytes()[..name.len().min(100)]);
    h[100..108].copy_from_slice(b"0000644\0");
    h[108..116].copy_from_slice(b"0000000\0");
    h[116..124].copy_from_slice(b"0000000\0");
    h[124..136].copy_from_slice(format!("{size:011o}\0").as_bytes());
    h[136..148].copy_from_slice(b"00000000000\0");
    h[156] = kind;
    h[157..157 + link.len().min(100)].copy_from_slice(&link.as_bytes()[..link.len().min(100)]);
    h[257..263].copy_from_slice(b"ustar\0");
    h[263..265].copy_from_slice(b"00");
    h[148..156].copy_from_slice(b"        ");
    let sum: u32 = h.iter().map(|b| u32::from(*b)).sum();
    h[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
    h
}

/// A tar stream written straight into gzip.
struct Tar {
    gz: flate2::write::GzEncoder<Vec<u8>>,
}

impl Tar {
    fn new() -> Tar {
        Tar {
            gz: flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast()),
        }
    }

    fn entry(&mut self, name: &str, kind: u8, data: &[u8]) -> &mut Tar {
        self.raw(name, kind, data.len() as u64, "", data)
    }

    fn link(&mut self, name: &str, target: &str) -> &mut Tar {
        self.raw(name, b'2', 0, target, b"")
    }

    /// An entry whose header says `size` whatever `data` holds.
    fn raw(&mut self, name: &str, kind: u8, size: u64, link: &str, data: &[u8]) -> &mut Tar {
        let _ = self.gz.write_all(&header(name, kind, size, link));
        let _ = self.gz.write_all(data);
        let pad = (512 - data.len() % 512) % 512;
        let _ = self.gz.write_all(&vec![0u8; pad]);
        self
    }

    fn finish(&mut self) -> Vec<u8> {
        let _ = self.gz.write_all(&[0u8; 1024]);
        let gz = std::mem::replace(
            &mut self.gz,
            flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast()),
        );
        gz.finish().expect("gzip into memory")
    }
}

fn pax(records: &[(&str, &str)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (k, v) in records {
        let body = format!(" {k}={v}\n");
        let mut len = body.len() + 1;
        while format!("{len}{body}").len() != len {
            len += 1;
        }
        out.extend_from_slice(format!("{len}{body}").as_bytes());
    }
    out
}

/// (what, archive, words the refusal must contain)
fn corpus() -> Vec<(&'static str, Vec<u8>, Vec<&'static str>)> {
    vec![
        (
            "symlink chain",
            Tar::new()
                .link("x", ".")
                .link("x/x/x/up", "../../../..")
                .entry("x/x/x/up/tmp/f", b'0', b"pwned")
                .finish(),
            vec!["x/x/x/up", "link"],
        ),
        (
            "link then a file through it",
            Tar::new()
                .entry("sub/", b'5', b"")
                .link("l", "sub")
                .entry("l/main.tf", b'0', b"x")
                .finish(),
            vec!["l/main.tf", "link"],
        ),
        (
            "hard link outside",
            Tar::new()
                .raw("h", b'1', 0, "../../etc/passwd", b"")
                .finish(),
            vec!["h"],
        ),
        (
            "PAX size lie",
            Tar::new()
                .entry("pax", b'x', &pax(&[("size", "629145600")]))
                .entry("big.tf", b'0', b"resource \"null_resource\" \"a\" {}\n")
                .finish(),
            vec!["big.tf", "PAX size"],
        ),
        (
            "GNU long-name bomb",
            Tar::new()
                .raw("././@LongLink", b'L', 1 << 30, "", &[b'a'; 4096])
                .finish(),
            vec!["limit"],
        ),
        (
            "PAX header bomb",
            Tar::new()
                .raw("pax", b'x', 1 << 30, "", &[b'9'; 4096])
                .finish(),
            vec!["limit"],
        ),
        ("a million tiny entries", million(), vec!["entries"]),
        (
            "a file that claims 600 MiB",
            Tar::new()
                .raw("huge.tf", b'0', 600 << 20, "", &[0u8; 4096])
                .finish(),
            vec!["huge.tf", "bytes"],
        ),
        (
            "a gzip bomb of 600 MiB of zeros",
            zeros(),
            vec!["more than"],
        ),
        (
            "absolute path",
            Tar::new().entry("/etc/evil", b'0', b"x").finish(),
            vec!["/etc/evil", "unsafe path"],
        ),
        (
            "dot-dot path",
            Tar::new().entry("a/../../evil", b'0', b"x").finish(),
            vec!["evil", "unsafe path"],
        ),
        (
            "character device",
            Tar::new().entry("dev/tty", b'3', b"").finish(),
            vec!["dev/tty"],
        ),
        (
            "fifo",
            Tar::new().entry("pipe", b'6', b"").finish(),
            vec!["pipe"],
        ),
        (
            "directory replaced by a link",
            Tar::new()
                .entry("d/", b'5', b"")
                .entry("d/main.tf", b'0', b"x")
                .link("d", "..")
                .finish(),
            vec!["\"d\""],
        ),
        (
            "dot-dot onto a missing directory, made a link later",
            Tar::new().link("b", "x/../..").link("x", ".").finish(),
            vec!["\"b\""],
        ),
    ]
}

fn million() -> Vec<u8> {
    let mut t = Tar::new();
    for i in 0..1_000_000 {
        t.entry(&format!("f{i}"), b'0', b"");
    }
    t.finish()
}

fn zeros() -> Vec<u8> {
    let mut t = Tar::new();
    let mib = vec![0u8; 1 << 20];
    for i in 0..600 {
        t.entry(&format!("z{i}"), b'0', &mib);
    }
    t.finish()
}

/// otfd's peak resident memory, in KiB.
fn vm_hwm(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_archives_are_refused_in_bounded_memory() {
    let corpus = tokio::task::spawn_blocking(corpus)
        .await
        .expect("the corpus");
    let server = Server::start(&Db::Sqlite, &["--concurrency", "0"]);
    let api = Api::new(&server);
    api.org("acme").await;
    let ws = api.workspace("acme", "dev", None).await;
    let before = vm_hwm(server.pid());
    for (what, archive, words) in &corpus {
        let (id, status, body) = api.upload(&ws, archive.clone()).await;
        assert_eq!(status, 422, "{what}: {body}");
        let doc: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
        let body = doc["errors"][0]["detail"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        for w in words {
            assert!(
                body.contains(w),
                "{what}: the refusal should say {w:?}: {body}"
            );
        }
        // Nothing was kept: the configuration version is not uploaded.
        let cv = api.data(&format!("/configuration-versions/{id}")).await;
        assert_ne!(cv["attributes"]["status"], json!("uploaded"), "{what}");
    }
    let after = vm_hwm(server.pid());
    eprintln!("otfd VmHWM: {before} KiB before the corpus, {after} KiB after");
    // The old checker held whole archives unpacked in memory (760 MB for one
    // upload); a streaming check needs the upload body and little more.
    assert!(
        after < before + 96 * 1024,
        "otfd's memory grew from {before} KiB to {after} KiB while checking archives"
    );
    // A good archive is still accepted.
    let run = api.run(&ws, e2e::HELLO, false).await;
    assert!(run.starts_with("run-"), "{run}");
}
