//! Unpacking a configuration tarball into a directory, with the core's rules
//! (no absolute paths, no `..`, no links leaving the directory, size limits).

use std::path::Path;

use otf_core::tarball::{read_tarball, EntryKind, TarballLimits};

/// Unpack `tarball` under `dir` (created if needed).
pub fn unpack(tarball: &[u8], dir: &Path) -> Result<(), String> {
    let entries = read_tarball(tarball, TarballLimits::default()).map_err(|e| e.to_string())?;
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    for entry in entries {
        let path = dir.join(&entry.path);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .map_err(|e| format!("cannot create {}: {e}", parent.display()))?;
        }
        match entry.kind {
            EntryKind::Dir => std::fs::create_dir_all(&path)
                .map_err(|e| format!("cannot create {}: {e}", path.display()))?,
            EntryKind::File {
                contents,
                executable,
            } => {
                std::fs::write(&path, contents)
                    .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
                #[cfg(unix)]
                if executable {
                    use std::os::unix::fs::PermissionsExt;
                    let _ = std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755));
                }
            }
            EntryKind::Symlink { target } => {
                #[cfg(unix)]
                std::os::unix::fs::symlink(&target, &path)
                    .map_err(|e| format!("cannot link {}: {e}", path.display()))?;
                #[cfg(not(unix))]
                let _ = target;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unpacks_files_into_the_directory() {
        let dir = tempfile::tempdir().unwrap();
        let tarball = otf_core::tarball::pack([("main.tf", &b"x"[..]), ("sub/vars.tf", &b"y"[..])]);
        unpack(&tarball, dir.path()).unwrap();
        assert_eq!(std::fs::read(dir.path().join("sub/vars.tf")).unwrap(), b"y");
        assert!(unpack(b"garbage", dir.path())
            .unwrap_err()
            .contains("not a gzip"));
    }
}
