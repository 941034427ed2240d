//! Private directories and files: a runner's work directory (and otfd's data
//! directory) is 0700 and owned by the user running it, job directories are
//! 0700, and the files a job writes for terraform (variables, state, plan)
//! are 0600. A directory that exists already is checked: a symlink or
//! another user's directory is refused; group or other permission bits on
//! our own are removed.

use std::fs::{DirBuilder, OpenOptions, Permissions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Why a private directory or file cannot be had.
#[derive(Debug, thiserror::Error)]
pub enum PrivateError {
    #[error("cannot create {path}: {source}")]
    Create {
        path: String,
        source: std::io::Error,
    },
    #[error("{path} is a symbolic link; give a real directory of this user's")]
    Link { path: String },
    #[error("{path} is not a directory")]
    NotDir { path: String },
    #[error("{path} belongs to uid {owner}, not to this user (uid {me}); give a directory this user owns, or fix its owner with chown")]
    Owner { path: String, owner: u32, me: u32 },
    #[error("cannot make {path} private (chmod {mode:o}): {source}")]
    Chmod {
        path: String,
        mode: u32,
        source: std::io::Error,
    },
    #[error("cannot write {path}: {source}")]
    Write {
        path: String,
        source: std::io::Error,
    },
}

fn shown(p: &Path) -> String {
    p.display().to_string()
}

/// Make sure `dir` is a private directory of this user's: created 0700
/// (with its missing parents) when absent, refused when it is a link or
/// another user's, its mode narrowed to 0700 when it grants group or
/// other any access.
pub fn prepare(dir: &Path) -> Result<(), PrivateError> {
    match std::fs::symlink_metadata(dir) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .map_err(|source| PrivateError::Create {
                    path: shown(dir),
                    source,
                })?;
            // A umask cannot widen 0700; set it anyway for created parents' sake.
            chmod(dir, 0o700)
        }
        Err(source) => Err(PrivateError::Create {
            path: shown(dir),
            source,
        }),
        Ok(m) if m.file_type().is_symlink() => Err(PrivateError::Link { path: shown(dir) }),
        Ok(m) if !m.is_dir() => Err(PrivateError::NotDir { path: shown(dir) }),
        Ok(m) => {
            let me = nix::unistd::geteuid().as_raw();
            if m.uid() != me {
                return Err(PrivateError::Owner {
                    path: shown(dir),
                    owner: m.uid(),
                    me,
                });
            }
            if m.mode() & 0o077 != 0 {
                chmod(dir, 0o700)?;
            }
            Ok(())
        }
    }
}

fn chmod(path: &Path, mode: u32) -> Result<(), PrivateError> {
    std::fs::set_permissions(path, Permissions::from_mode(mode)).map_err(|source| {
        PrivateError::Chmod {
            path: shown(path),
            mode,
            source,
        }
    })
}

/// Create `dir` 0700 (a job's directory, inside a prepared work dir).
pub fn create_private(dir: &Path) -> std::io::Result<()> {
    DirBuilder::new().recursive(true).mode(0o700).create(dir)
}

/// Narrow an existing file of this user's to 0600 (secrets, databases kept
/// from an earlier start); absent files are fine.
pub fn narrow_file(path: &Path) -> Result<(), PrivateError> {
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.mode() & 0o077 != 0 => chmod(path, 0o600),
        _ => Ok(()),
    }
}

/// Write `data` to `path` as a private file (0600), replacing it.
pub fn write_private(path: &Path, data: &[u8]) -> Result<(), PrivateError> {
    let err = |source| PrivateError::Write {
        path: shown(path),
        source,
    };
    let mut f = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .custom_flags(nix::fcntl::OFlag::O_NOFOLLOW.bits())
        .open(path)
        .map_err(err)?;
    f.write_all(data).map_err(err)?;
    narrow_file(path)
}

/// The default work directory of a pool agent: systemd's
/// `$STATE_DIRECTORY`, else `$XDG_STATE_HOME/otf-agent`, else
/// `$HOME/.local/state/otf-agent`; never a fixed name in a shared temp dir.
pub fn default_work_dir() -> Option<PathBuf> {
    let var = |k: &str| {
        std::env::var_os(k)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    if let Some(state) = std::env::var("STATE_DIRECTORY")
        .ok()
        .filter(|s| !s.is_empty())
    {
        return state.split(':').next().map(PathBuf::from);
    }
    var("XDG_STATE_HOME")
        .filter(|p| p.is_absolute())
        .map(|p| p.join("otf-agent"))
        .or_else(|| var("HOME").map(|h| h.join(".local/state/otf-agent")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(p: &Path) -> u32 {
        std::fs::metadata(p).unwrap().mode() & 0o777
    }

    #[test]
    fn directories_are_made_and_kept_private() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("a/b");
        prepare(&dir).unwrap();
        assert_eq!(mode(&dir), 0o700);
        std::fs::set_permissions(&dir, Permissions::from_mode(0o755)).unwrap();
        prepare(&dir).unwrap();
        assert_eq!(mode(&dir), 0o700, "a too open directory is narrowed");
        let link = tmp.path().join("link");
        std::os::unix::fs::symlink(&dir, &link).unwrap();
        assert!(matches!(prepare(&link), Err(PrivateError::Link { .. })));
        let file = tmp.path().join("f");
        std::fs::write(&file, b"").unwrap();
        assert!(matches!(prepare(&file), Err(PrivateError::NotDir { .. })));
    }

    #[test]
    fn private_files_are_0600() {
        let tmp = tempfile::tempdir().unwrap();
        let f = tmp.path().join("vars");
        std::fs::write(&f, b"old").unwrap();
        std::fs::set_permissions(&f, Permissions::from_mode(0o644)).unwrap();
        write_private(&f, b"new").unwrap();
        assert_eq!(mode(&f), 0o600);
        assert_eq!(std::fs::read(&f).unwrap(), b"new");
        let link = tmp.path().join("l");
        std::os::unix::fs::symlink(&f, &link).unwrap();
        assert!(write_private(&link, b"x").is_err(), "never through a link");
    }
}
