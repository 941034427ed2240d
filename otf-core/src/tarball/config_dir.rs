//! Which files of a directory make up a configuration, as a client packs
//! it for upload: every regular file except those under `.terraform` (the
//! working directory's plugins and modules) and `.git`, at most
//! [`MAX_PACKED_BYTES`] in all, with at least one `*.tf` or `*.tf.json`.

use std::path::{Path, PathBuf};

/// Directories never packed.
pub const SKIPPED_DIRS: [&str; 2] = [".terraform", ".git"];

/// Most bytes of files packed from one directory.
pub const MAX_PACKED_BYTES: u64 = 100 * 1024 * 1024;

/// Why a directory could not be packed.
#[derive(Debug, thiserror::Error)]
pub enum PackDirError {
    #[error("cannot read {what}: {source}")]
    Read {
        /// `directory PATH`, or a file's path relative to the root.
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("the configuration is over {} MiB", MAX_PACKED_BYTES >> 20)]
    TooLarge,
    #[error("{dir} holds no terraform configuration (*.tf)")]
    NoConfiguration { dir: String },
}

/// Whether a relative path (with `/`) is a terraform configuration file.
pub fn is_terraform_file(path: &str) -> bool {
    path.ends_with(".tf") || path.ends_with(".tf.json")
}

/// The regular files under `root` that make up the configuration, by
/// relative path with `/`, in a stable order.
pub fn read_config_dir(root: &Path) -> Result<Vec<(String, Vec<u8>)>, PackDirError> {
    let read = |what: String| move |source| PackDirError::Read { what, source };
    let mut out = Vec::new();
    let mut total = 0u64;
    let mut stack = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        let dir = root.join(&rel);
        let entries =
            std::fs::read_dir(&dir).map_err(read(format!("directory {}", dir.display())))?;
        let mut entries: Vec<_> = entries.filter_map(Result::ok).collect();
        entries.sort_by_key(|e| e.file_name());
        for entry in entries {
            let name = entry.file_name();
            let rel = rel.join(&name);
            let kind = entry.file_type().map_err(read(rel.display().to_string()))?;
            if kind.is_dir() {
                if !SKIPPED_DIRS.iter().any(|s| name == *s) {
                    stack.push(rel);
                }
            } else if kind.is_file() {
                let data = std::fs::read(entry.path()).map_err(read(rel.display().to_string()))?;
                total += data.len() as u64;
                if total > MAX_PACKED_BYTES {
                    return Err(PackDirError::TooLarge);
                }
                let path = rel
                    .components()
                    .map(|c| c.as_os_str().to_string_lossy())
                    .collect::<Vec<_>>()
                    .join("/");
                out.push((path, data));
            }
        }
    }
    Ok(out)
}

/// Pack the configuration under `root` as a gzip'd tar archive; `shown`
/// names the directory in errors as the user wrote it.
pub fn pack_dir(root: &Path, shown: &str) -> Result<Vec<u8>, PackDirError> {
    let files = read_config_dir(root)?;
    if !files.iter().any(|(p, _)| is_terraform_file(p)) {
        return Err(PackDirError::NoConfiguration {
            dir: shown.to_string(),
        });
    }
    Ok(super::pack(
        files.iter().map(|(p, d)| (p.as_str(), d.as_slice())),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packs_the_configuration_without_terraform_and_git_dirs() {
        let root = std::env::temp_dir().join(format!("otf-config-dir-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        for (path, data) in [
            ("main.tf", "resource {}"),
            ("modules/m/m.tf", "x"),
            (".terraform/providers/p", "binary"),
            (".git/HEAD", "ref"),
        ] {
            let p = root.join(path);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, data).unwrap();
        }
        let files: Vec<String> = read_config_dir(&root)
            .unwrap()
            .into_iter()
            .map(|(p, _)| p)
            .collect();
        assert_eq!(files, ["main.tf", "modules/m/m.tf"]);
        assert!(pack_dir(&root, "cfg").is_ok());
        std::fs::remove_file(root.join("main.tf")).unwrap();
        std::fs::remove_dir_all(root.join("modules")).unwrap();
        let err = pack_dir(&root, "cfg").unwrap_err();
        assert_eq!(
            err.to_string(),
            "cfg holds no terraform configuration (*.tf)"
        );
        let missing = pack_dir(&root.join("nope"), "nope").unwrap_err();
        assert!(
            missing.to_string().starts_with("cannot read directory "),
            "{missing}"
        );
        std::fs::remove_dir_all(&root).unwrap();
    }
}
