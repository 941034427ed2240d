//! otfd's SSH host key: an ed25519 key in OpenSSH's format, generated on
//! first start into the data dir (mode 0600, written whole or not at all),
//! or brought with `--ssh-host-key FILE`. A key file others may read is
//! refused, as sshd refuses it.

use std::io::Write;
use std::path::{Path, PathBuf};

use russh::keys::ssh_key::private::Ed25519Keypair;
use russh::keys::ssh_key::LineEnding;
use russh::keys::{HashAlg, PrivateKey};

/// The host key and its fingerprint (`SHA256:...`).
#[derive(Clone)]
pub struct HostKey {
    pub key: PrivateKey,
    pub fingerprint: String,
}

impl std::fmt::Debug for HostKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HostKey")
            .field("fingerprint", &self.fingerprint)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum HostKeyError {
    #[error("cannot read the SSH host key {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the SSH host key {path} is not an OpenSSH private key: {reason}")]
    Parse { path: PathBuf, reason: String },
    #[error(
        "the SSH host key {path} may be read by others (mode {mode:04o}); \
         make it private with `chmod 600 {path}`"
    )]
    Exposed { path: PathBuf, mode: u32 },
    #[error("cannot write a new SSH host key to {path}: {source}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot generate an SSH host key: {0}")]
    Random(String),
}

fn of(key: PrivateKey) -> HostKey {
    let fingerprint = key.public_key().fingerprint(HashAlg::Sha256).to_string();
    HostKey { key, fingerprint }
}

/// Read the key at `path`, which must exist and be private.
pub fn load(path: &Path) -> Result<HostKey, HostKeyError> {
    use std::os::unix::fs::PermissionsExt;
    let read = |source| HostKeyError::Read {
        path: path.to_path_buf(),
        source,
    };
    let meta = std::fs::metadata(path).map_err(read)?;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(HostKeyError::Exposed {
            path: path.to_path_buf(),
            mode,
        });
    }
    let text = std::fs::read_to_string(path).map_err(read)?;
    let key = PrivateKey::from_openssh(text.trim()).map_err(|e| HostKeyError::Parse {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })?;
    if key.is_encrypted() {
        return Err(HostKeyError::Parse {
            path: path.to_path_buf(),
            reason: "it is encrypted; otfd needs it without a passphrase".into(),
        });
    }
    Ok(of(key))
}

/// Read the key at `path`, generating it first when there is none.
pub fn load_or_create(path: &Path) -> Result<HostKey, HostKeyError> {
    if path.exists() {
        return load(path);
    }
    let mut seed = [0u8; 32];
    getrandom::getrandom(&mut seed).map_err(|e| HostKeyError::Random(e.to_string()))?;
    let key = PrivateKey::from(Ed25519Keypair::from_seed(&seed));
    seed.fill(0);
    let text = key
        .to_openssh(LineEnding::LF)
        .map_err(|e| HostKeyError::Random(e.to_string()))?;
    let write = |source| HostKeyError::Write {
        path: path.to_path_buf(),
        source,
    };
    // Written beside, then renamed: a crash leaves no half a key.
    let tmp = path.with_extension("new");
    let _ = std::fs::remove_file(&tmp);
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
    let mut f = opts.open(&tmp).map_err(write)?;
    f.write_all(text.as_bytes()).map_err(write)?;
    f.sync_all().map_err(write)?;
    drop(f);
    std::fs::rename(&tmp, path).map_err(write)?;
    tracing::info!(path = %path.display(), "ssh: generated a new host key");
    Ok(of(key))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn a_key_is_generated_once_private_and_kept() {
        let dir = tempfile::tempdir().expect("a dir");
        let path = dir.path().join("ssh_host_ed25519_key");
        let first = load_or_create(&path).expect("generated");
        let mode = std::fs::metadata(&path)
            .expect("written")
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o600);
        let again = load_or_create(&path).expect("read back");
        assert_eq!(first.fingerprint, again.fingerprint);
        assert!(first.fingerprint.starts_with("SHA256:"));
        assert!(!format!("{first:?}").contains("PRIVATE"));
    }

    #[test]
    fn an_exposed_or_broken_key_is_refused() {
        let dir = tempfile::tempdir().expect("a dir");
        let path = dir.path().join("key");
        load_or_create(&path).expect("generated");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        let err = load(&path).expect_err("exposed");
        assert!(err.to_string().contains("chmod 600"), "{err}");
        std::fs::write(&path, "not a key").expect("write");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        let err = load(&path).expect_err("broken");
        assert!(
            err.to_string().contains("not an OpenSSH private key"),
            "{err}"
        );
        let err = load(&dir.path().join("absent")).expect_err("absent");
        assert!(err.to_string().contains("cannot read"), "{err}");
    }
}
