//! Which terraform (or tofu) binary runs a job: `--engine-bin` if given;
//! else the workspace's version from the cache directory, checked against
//! the SHA-256 recorded when it was downloaded; else downloaded from
//! `--engine-mirror` (a zip and its SHA256SUMS, checked) into the cache.

use std::collections::HashMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

use sha2::{Digest, Sha256};

/// The release mirror engines are downloaded from unless told.
pub const DEFAULT_MIRROR: &str = "https://releases.hashicorp.com";

/// Where engines come from.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// Use this binary for every job.
    pub bin: Option<PathBuf>,
    /// `<cache>/terraform/<version>/terraform`.
    pub cache_dir: PathBuf,
    /// Base URL of a release mirror laid out like releases.hashicorp.com.
    pub mirror: String,
    /// Longest wait for the mirror's connection.
    pub connect_timeout: std::time::Duration,
    /// Longest time one file of a download may take.
    pub download_timeout: std::time::Duration,
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            bin: None,
            cache_dir: std::env::temp_dir().join("otf-engines"),
            mirror: DEFAULT_MIRROR.into(),
            connect_timeout: std::time::Duration::from_secs(10),
            download_timeout: std::time::Duration::from_secs(600),
        }
    }
}

fn platform() -> &'static str {
    match std::env::consts::ARCH {
        "aarch64" => "linux_arm64",
        _ => "linux_amd64",
    }
}

fn valid_version(v: &str) -> bool {
    !v.is_empty()
        && v.len() <= 32
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-')
}

impl EngineConfig {
    /// The binary for `version`, downloading it if needed.
    pub async fn resolve(&self, version: &str) -> Result<PathBuf, String> {
        if let Some(bin) = &self.bin {
            return Ok(bin.clone());
        }
        if !valid_version(version) || version == "latest" {
            return Err(format!(
                "cannot pick a terraform for version {version:?}: give the agent --engine-bin, or set the workspace to a release version such as 1.0.3"
            ));
        }
        let cached = self
            .cache_dir
            .join("terraform")
            .join(version)
            .join("terraform");
        let check = cached.clone();
        let verified = tokio::task::spawn_blocking(move || verify_cached(&check))
            .await
            .map_err(|e| format!("checking the cached engine failed: {e}"))?;
        match verified {
            Cached::Good => return Ok(cached),
            Cached::Absent => {}
            Cached::Bad(why) => tracing::warn!(
                path = %cached.display(),
                "the cached terraform {version} is not the one downloaded ({why}); downloading it again"
            ),
        }
        self.download(version, &cached).await?;
        Ok(cached)
    }

    async fn download(&self, version: &str, dest: &Path) -> Result<(), String> {
        let base = format!("{}/terraform/{version}", self.mirror.trim_end_matches('/'));
        let zip_name = format!("terraform_{version}_{}.zip", platform());
        let client = reqwest::Client::builder()
            .connect_timeout(self.connect_timeout)
            .timeout(self.download_timeout)
            .build()
            .map_err(|e| format!("cannot set up downloads from {}: {e}", self.mirror))?;
        let (connect, total) = (self.connect_timeout, self.download_timeout);
        let get = |url: String| {
            let client = client.clone();
            async move {
                let failed = |e: reqwest::Error| {
                    if e.is_timeout() {
                        format!("cannot download {url}: no connection within {} (--engine-connect-timeout) or not done within {} (--engine-download-timeout)", otf_core::duration::human(connect), otf_core::duration::human(total))
                    } else {
                        format!("cannot download {url}: {e}")
                    }
                };
                let resp = client.get(&url).send().await.map_err(failed)?;
                if !resp.status().is_success() {
                    return Err(format!("cannot download {url}: HTTP {}", resp.status()));
                }
                resp.bytes().await.map(|b| b.to_vec()).map_err(failed)
            }
        };
        let sums = get(format!("{base}/terraform_{version}_SHA256SUMS")).await?;
        let zip = get(format!("{base}/{zip_name}")).await?;
        let sums = String::from_utf8_lossy(&sums);
        let want = sums
            .lines()
            .find_map(|l| {
                let (sum, name) = l.split_once(char::is_whitespace)?;
                (name.trim().trim_start_matches('*') == zip_name).then(|| sum.to_ascii_lowercase())
            })
            .ok_or_else(|| format!("{zip_name} is not listed in the mirror's SHA256SUMS"))?;
        let got = hex::encode(Sha256::digest(&zip));
        if got != want {
            return Err(format!(
                "{zip_name} from the mirror does not match its SHA256SUMS (got {got}, want {want})"
            ));
        }
        let dest = dest.to_path_buf();
        tokio::task::spawn_blocking(move || install(&extract(&zip)?, &dest))
            .await
            .map_err(|e| format!("installing the engine failed: {e}"))?
    }
}

/// The record of a cached engine's SHA-256, written at download.
fn record_of(binary: &Path) -> PathBuf {
    binary.with_extension("sha256")
}

/// What identifies a file's contents cheaply, to hash a cached engine once
/// per process rather than before every job.
type Fingerprint = (u64, u64, i64, i64);

fn fingerprint(m: &std::fs::Metadata) -> Fingerprint {
    (
        m.dev(),
        m.ino(),
        m.size() as i64,
        m.mtime_nsec() + m.mtime() * 1_000_000_000,
    )
}

fn verified() -> &'static Mutex<HashMap<PathBuf, Fingerprint>> {
    static VERIFIED: OnceLock<Mutex<HashMap<PathBuf, Fingerprint>>> = OnceLock::new();
    VERIFIED.get_or_init(Default::default)
}

enum Cached {
    Good,
    Absent,
    Bad(String),
}

/// Whether the cached binary is the one that was downloaded.
fn verify_cached(binary: &Path) -> Cached {
    let Ok(meta) = std::fs::symlink_metadata(binary) else {
        return Cached::Absent;
    };
    if !meta.is_file() {
        return Cached::Bad("not a regular file".into());
    }
    let print = fingerprint(&meta);
    let mut memo = verified().lock().unwrap_or_else(|p| p.into_inner());
    if memo.get(binary) == Some(&print) {
        return Cached::Good;
    }
    let Ok(want) = std::fs::read_to_string(record_of(binary)) else {
        return Cached::Bad("no checksum was recorded".into());
    };
    let got = match std::fs::read(binary) {
        Ok(b) => hex::encode(Sha256::digest(&b)),
        Err(e) => return Cached::Bad(e.to_string()),
    };
    if got != want.trim() {
        return Cached::Bad(format!("SHA-256 {got}, recorded {}", want.trim()));
    }
    memo.insert(binary.to_path_buf(), print);
    Cached::Good
}

/// Install `binary` at `dest` with its checksum record: each download
/// writes its own temp file and renames it, so concurrent downloads of one
/// version never share a file and a half-written binary is never used.
fn install(binary: &[u8], dest: &Path) -> Result<(), String> {
    use std::io::Write;
    use std::os::unix::fs::PermissionsExt;
    let dir = dest.parent().ok_or("the engine cache path has no parent")?;
    crate::workdir::create_private(dir)
        .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let io = |e: std::io::Error| format!("cannot install {}: {e}", dest.display());
    let mut record = tempfile::NamedTempFile::new_in(dir).map_err(io)?;
    record
        .write_all(hex::encode(Sha256::digest(binary)).as_bytes())
        .map_err(io)?;
    let mut tmp = tempfile::NamedTempFile::new_in(dir).map_err(io)?;
    tmp.write_all(binary).map_err(io)?;
    tmp.as_file().sync_all().map_err(io)?;
    std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o755)).map_err(io)?;
    record.persist(record_of(dest)).map_err(|e| io(e.error))?;
    tmp.persist(dest).map_err(|e| io(e.error))?;
    Ok(())
}

/// The `terraform` (or `tofu`) binary inside a release zip.
fn extract(zip: &[u8]) -> Result<Vec<u8>, String> {
    use std::io::Read;
    let mut archive = zip::ZipArchive::new(std::io::Cursor::new(zip))
        .map_err(|e| format!("the release zip is corrupt: {e}"))?;
    for i in 0..archive.len() {
        let mut f = archive
            .by_index(i)
            .map_err(|e| format!("the release zip is corrupt: {e}"))?;
        if matches!(f.name(), "terraform" | "tofu") {
            let mut out = Vec::new();
            f.read_to_end(&mut out)
                .map_err(|e| format!("the release zip is corrupt: {e}"))?;
            return Ok(out);
        }
    }
    Err("the release zip holds no terraform binary".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn engine_bin_wins_and_bad_versions_are_refused() {
        let cfg = EngineConfig {
            bin: Some("/usr/bin/true".into()),
            ..EngineConfig::default()
        };
        assert_eq!(
            cfg.resolve("latest").await.unwrap(),
            PathBuf::from("/usr/bin/true")
        );
        let cfg = EngineConfig::default();
        assert!(cfg
            .resolve("latest")
            .await
            .unwrap_err()
            .contains("--engine-bin"));
        assert!(cfg.resolve("../x").await.is_err());
    }

    #[tokio::test]
    async fn a_cached_version_is_used_without_download_while_it_matches_its_record() {
        let dir = tempfile::tempdir().unwrap();
        let bin = dir.path().join("terraform/9.9.9/terraform");
        install(b"#!/bin/sh\n", &bin).unwrap();
        let cfg = EngineConfig {
            bin: None,
            cache_dir: dir.path().into(),
            mirror: "http://127.0.0.1:1".into(),
            ..EngineConfig::default()
        };
        assert_eq!(cfg.resolve("9.9.9").await.unwrap(), bin);
        // A binary changed after download is not executed: it is fetched
        // again (and here the mirror is unreachable).
        std::fs::write(&bin, b"#!/bin/sh\necho tampered\n").unwrap();
        let err = cfg.resolve("9.9.9").await.unwrap_err();
        assert!(err.contains("cannot download"), "{err}");
        // A binary without a record is not trusted either.
        let bare = dir.path().join("terraform/9.9.7/terraform");
        std::fs::create_dir_all(bare.parent().unwrap()).unwrap();
        std::fs::write(&bare, b"#!/bin/sh\n").unwrap();
        assert!(cfg.resolve("9.9.7").await.is_err());
        assert!(cfg
            .resolve("9.9.8")
            .await
            .unwrap_err()
            .contains("cannot download"));
    }

    /// A loopback HTTP server answering GETs from a fixed table.
    async fn serve(files: Vec<(String, Vec<u8>)>) -> String {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                let mut buf = vec![0u8; 4096];
                let n = s.read(&mut buf).await.unwrap_or(0);
                let req = String::from_utf8_lossy(&buf[..n]).to_string();
                let path = req.split_whitespace().nth(1).unwrap_or("").to_string();
                let (status, body) = match files.iter().find(|(p, _)| *p == path) {
                    Some((_, b)) => ("200 OK", b.clone()),
                    None => ("404 Not Found", Vec::new()),
                };
                let head = format!(
                    "HTTP/1.1 {status}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                    body.len()
                );
                let _ = s.write_all(head.as_bytes()).await;
                let _ = s.write_all(&body).await;
            }
        });
        format!("http://{addr}")
    }

    fn release_zip() -> Vec<u8> {
        let mut buf = std::io::Cursor::new(Vec::new());
        {
            let mut w = zip::ZipWriter::new(&mut buf);
            w.start_file::<_, ()>("terraform", zip::write::SimpleFileOptions::default())
                .unwrap();
            std::io::Write::write_all(&mut w, b"#!/bin/sh\necho mirrored\n").unwrap();
            w.finish().unwrap();
        }
        buf.into_inner()
    }

    #[tokio::test]
    async fn a_mirror_download_is_checked_and_cached() {
        let zip = release_zip();
        let name = format!("terraform_1.2.3_{}.zip", platform());
        let good = format!("{}  {name}\n", hex::encode(Sha256::digest(&zip)));
        let mirror = serve(vec![
            (format!("/terraform/1.2.3/{name}"), zip.clone()),
            (
                "/terraform/1.2.3/terraform_1.2.3_SHA256SUMS".into(),
                good.into_bytes(),
            ),
            (
                format!("/terraform/6.6.6/{}", name.replace("1.2.3", "6.6.6")),
                zip,
            ),
            (
                "/terraform/6.6.6/terraform_6.6.6_SHA256SUMS".into(),
                format!("{}  {}\n", "0".repeat(64), name.replace("1.2.3", "6.6.6")).into_bytes(),
            ),
        ])
        .await;
        let dir = tempfile::tempdir().unwrap();
        let cfg = EngineConfig {
            bin: None,
            cache_dir: dir.path().into(),
            mirror,
            ..EngineConfig::default()
        };
        let bin = cfg.resolve("1.2.3").await.unwrap();
        assert_eq!(bin, dir.path().join("terraform/1.2.3/terraform"));
        assert_eq!(std::fs::read(&bin).unwrap(), b"#!/bin/sh\necho mirrored\n");
        let err = cfg.resolve("6.6.6").await.unwrap_err();
        assert!(err.contains("does not match its SHA256SUMS"), "{err}");
        assert!(
            !dir.path().join("terraform/6.6.6/terraform").exists(),
            "nothing is installed"
        );
    }

    #[test]
    fn extract_finds_the_binary() {
        let mut buf = std::io::Cursor::new(Vec::new());
        {
            let mut w = zip::ZipWriter::new(&mut buf);
            w.start_file::<_, ()>("terraform", zip::write::SimpleFileOptions::default())
                .unwrap();
            std::io::Write::write_all(&mut w, b"binary").unwrap();
            w.finish().unwrap();
        }
        assert_eq!(extract(buf.get_ref()).unwrap(), b"binary");
        assert!(extract(b"nope").is_err());
    }

    #[tokio::test]
    async fn a_mirror_that_never_answers_times_out_and_says_which_flag() {
        // Accepts connections, never answers.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let hold = tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((c, _)) = listener.accept().await {
                held.push(c);
            }
        });
        let dir = tempfile::tempdir().unwrap();
        let cfg = EngineConfig {
            bin: None,
            cache_dir: dir.path().into(),
            mirror: format!("http://{addr}"),
            connect_timeout: std::time::Duration::from_millis(200),
            download_timeout: std::time::Duration::from_millis(300),
        };
        let started = std::time::Instant::now();
        let err = cfg.resolve("1.2.3").await.unwrap_err();
        assert!(started.elapsed() < std::time::Duration::from_secs(5));
        assert!(err.contains("--engine-download-timeout"), "{err}");
        hold.abort();
    }
}
