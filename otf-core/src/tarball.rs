//! The rules for configuration tarballs (gzip'd tar): which entries are
//! acceptable, so that unpacking can never write outside its directory, and
//! the size limits. Pure: it reads bytes in memory and writes nothing.

use std::io::Read;
use std::path::{Component, Path, PathBuf};

/// Limits on a configuration archive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TarballLimits {
    /// Total bytes of all files once unpacked.
    pub max_unpacked: u64,
    pub max_entries: usize,
}

impl Default for TarballLimits {
    fn default() -> Self {
        Self {
            max_unpacked: 512 * 1024 * 1024,
            max_entries: 100_000,
        }
    }
}

/// Why an archive is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TarballError {
    #[error("the configuration is not a gzip-compressed tar archive; create it with `tar -czf config.tar.gz -C <dir> .`")]
    NotGzip,
    #[error("the configuration archive is corrupt: {0}")]
    Corrupt(String),
    #[error("the configuration archive has an entry with an unsafe path {0:?}: absolute paths and `..` are not allowed")]
    UnsafePath(String),
    #[error("the configuration archive has a link {path:?} pointing outside the configuration ({target:?})")]
    LinkOutside { path: String, target: String },
    #[error("the configuration archive has an entry {0:?} of a type that is not a file, directory or link")]
    UnsupportedEntry(String),
    #[error("the configuration unpacks to more than {max} bytes")]
    TooLarge { max: u64 },
    #[error("the configuration archive has more than {max} entries")]
    TooManyEntries { max: usize },
}

/// What an entry is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EntryKind {
    File {
        contents: Vec<u8>,
        executable: bool,
    },
    Dir,
    /// A symbolic link to a path relative to the link's directory, checked to
    /// stay inside the configuration.
    Symlink {
        target: PathBuf,
    },
}

/// One checked entry: a safe relative path and what to create there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub path: PathBuf,
    pub kind: EntryKind,
}

/// A relative path without `..`, root or prefix components, normalised
/// (`./a/b` becomes `a/b`). Empty paths (the archive root) give `None`.
pub fn safe_relative_path(path: &Path) -> Result<Option<PathBuf>, TarballError> {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::Normal(p) => out.push(p),
            Component::CurDir => {}
            _ => return Err(TarballError::UnsafePath(path.display().to_string())),
        }
    }
    Ok((!out.as_os_str().is_empty()).then_some(out))
}

/// Whether a link at `link` (relative to the root) pointing at `target`
/// stays inside the root.
fn link_stays_inside(link: &Path, target: &Path) -> bool {
    if target.is_absolute() {
        return false;
    }
    let mut depth: i64 = link.components().count() as i64 - 1;
    for c in target.components() {
        match c {
            Component::Normal(_) => depth += 1,
            Component::CurDir => {}
            Component::ParentDir => {
                depth -= 1;
                if depth < 0 {
                    return false;
                }
            }
            _ => return false,
        }
    }
    true
}

/// Read and check every entry of a gzip'd tar archive.
pub fn read_tarball(bytes: &[u8], limits: TarballLimits) -> Result<Vec<Entry>, TarballError> {
    if bytes.len() < 2 || bytes[0] != 0x1f || bytes[1] != 0x8b {
        return Err(TarballError::NotGzip);
    }
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(bytes));
    let corrupt = |e: std::io::Error| TarballError::Corrupt(e.to_string());
    let mut out = Vec::new();
    let mut total: u64 = 0;
    for entry in archive.entries().map_err(corrupt)? {
        let mut entry = entry.map_err(corrupt)?;
        if out.len() >= limits.max_entries {
            return Err(TarballError::TooManyEntries {
                max: limits.max_entries,
            });
        }
        let raw = entry.path().map_err(corrupt)?.into_owned();
        let Some(path) = safe_relative_path(&raw)? else {
            continue;
        };
        let kind = match entry.header().entry_type() {
            tar::EntryType::Regular | tar::EntryType::Continuous | tar::EntryType::GNUSparse => {
                let size = entry.header().size().map_err(corrupt)?;
                total = total.saturating_add(size);
                if total > limits.max_unpacked {
                    return Err(TarballError::TooLarge {
                        max: limits.max_unpacked,
                    });
                }
                let mut contents = Vec::with_capacity(size.min(1 << 20) as usize);
                entry
                    .by_ref()
                    .take(limits.max_unpacked)
                    .read_to_end(&mut contents)
                    .map_err(corrupt)?;
                let mode = entry.header().mode().unwrap_or(0o644);
                EntryKind::File {
                    contents,
                    executable: mode & 0o111 != 0,
                }
            }
            tar::EntryType::Directory => EntryKind::Dir,
            tar::EntryType::Symlink | tar::EntryType::Link => {
                let target = entry
                    .link_name()
                    .map_err(corrupt)?
                    .ok_or_else(|| {
                        TarballError::Corrupt(format!("link {} has no target", raw.display()))
                    })?
                    .into_owned();
                let hard = entry.header().entry_type() == tar::EntryType::Link;
                // Hard link targets are relative to the archive root.
                let inside = if hard {
                    safe_relative_path(&target).ok().flatten().is_some()
                } else {
                    link_stays_inside(&path, &target)
                };
                if !inside {
                    return Err(TarballError::LinkOutside {
                        path: path.display().to_string(),
                        target: target.display().to_string(),
                    });
                }
                if hard {
                    // Unpack hard links as copies of an earlier file.
                    let src = safe_relative_path(&target)?.unwrap_or_default();
                    match out.iter().find(|e: &&Entry| e.path == src) {
                        Some(Entry {
                            kind: k @ EntryKind::File { .. },
                            ..
                        }) => k.clone(),
                        _ => {
                            return Err(TarballError::Corrupt(format!(
                                "hard link {} refers to {} which is not an earlier file",
                                path.display(),
                                src.display()
                            )))
                        }
                    }
                } else {
                    EntryKind::Symlink { target }
                }
            }
            tar::EntryType::XGlobalHeader
            | tar::EntryType::XHeader
            | tar::EntryType::GNULongName
            | tar::EntryType::GNULongLink => continue,
            _ => return Err(TarballError::UnsupportedEntry(path.display().to_string())),
        };
        out.push(Entry { path, kind });
    }
    Ok(out)
}

/// Pack in-memory files (relative path, contents) as a gzip'd tar archive.
pub fn pack<'a>(files: impl IntoIterator<Item = (&'a str, &'a [u8])>) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    for (path, data) in files {
        let mut header = tar::Header::new_gnu();
        header.set_size(data.len() as u64);
        header.set_mode(0o644);
        header.set_entry_type(tar::EntryType::Regular);
        // Writing into a Vec cannot fail; a path the tar format cannot hold
        // (over 100 bytes without GNU extensions) is skipped by tar itself.
        let _ = builder.append_data(&mut header, path, data);
    }
    let tar = builder.into_inner().unwrap_or_default();
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    let _ = std::io::Write::write_all(&mut enc, &tar);
    enc.finish().unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gz(build: impl FnOnce(&mut tar::Builder<Vec<u8>>)) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        build(&mut b);
        let tar = b.into_inner().unwrap();
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        std::io::Write::write_all(&mut enc, &tar).unwrap();
        enc.finish().unwrap()
    }

    fn file(b: &mut tar::Builder<Vec<u8>>, path: &str, data: &[u8]) {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_entry_type(tar::EntryType::Regular);
        // Bypass the builder's own path checks to build hostile archives.
        let name = path.as_bytes();
        h.as_old_mut().name[..name.len()].copy_from_slice(name);
        h.set_cksum();
        b.append(&h, data).unwrap();
    }

    fn link(b: &mut tar::Builder<Vec<u8>>, path: &str, target: &str) {
        let mut h = tar::Header::new_gnu();
        h.set_size(0);
        h.set_entry_type(tar::EntryType::Symlink);
        h.set_link_name(target).unwrap();
        b.append_data(&mut h, path, std::io::empty()).unwrap();
    }

    #[test]
    fn a_normal_configuration_is_read() {
        let bytes = gz(|b| {
            file(b, "./main.tf", b"resource \"null_resource\" \"a\" {}\n");
            file(b, "modules/x/main.tf", b"");
            link(b, "modules/x/shared.tf", "../../main.tf");
        });
        let entries = read_tarball(&bytes, TarballLimits::default()).unwrap();
        let paths: Vec<_> = entries
            .iter()
            .map(|e| e.path.display().to_string())
            .collect();
        assert_eq!(
            paths,
            ["main.tf", "modules/x/main.tf", "modules/x/shared.tf"]
        );
    }

    #[test]
    fn hostile_archives_are_refused() {
        let up = gz(|b| file(b, "../evil.tf", b"x"));
        assert!(matches!(
            read_tarball(&up, TarballLimits::default()),
            Err(TarballError::UnsafePath(_))
        ));
        let abs = gz(|b| file(b, "/etc/evil", b"x"));
        assert!(matches!(
            read_tarball(&abs, TarballLimits::default()),
            Err(TarballError::UnsafePath(_))
        ));
        let escape = gz(|b| link(b, "a/l", "../../etc/passwd"));
        assert!(matches!(
            read_tarball(&escape, TarballLimits::default()),
            Err(TarballError::LinkOutside { .. })
        ));
        let abs_link = gz(|b| link(b, "l", "/etc/passwd"));
        assert!(matches!(
            read_tarball(&abs_link, TarballLimits::default()),
            Err(TarballError::LinkOutside { .. })
        ));
        assert_eq!(
            read_tarball(b"plain text", TarballLimits::default()),
            Err(TarballError::NotGzip)
        );
        let mut truncated = gz(|b| file(b, "main.tf", &[b'x'; 4096]));
        truncated.truncate(truncated.len() / 2);
        assert!(matches!(
            read_tarball(&truncated, TarballLimits::default()),
            Err(TarballError::Corrupt(_))
        ));
    }

    #[test]
    fn pack_round_trips() {
        let bytes = pack([("main.tf", &b"x"[..]), ("sub/a.tf", &b"yy"[..])]);
        let entries = read_tarball(&bytes, TarballLimits::default()).unwrap();
        assert_eq!(entries.len(), 2);
        assert_eq!(
            entries[1].kind,
            EntryKind::File {
                contents: b"yy".to_vec(),
                executable: false
            }
        );
    }

    #[test]
    fn limits_hold() {
        let big = gz(|b| {
            file(b, "a", &[0u8; 600]);
            file(b, "b", &[0u8; 600]);
        });
        let limits = TarballLimits {
            max_unpacked: 1000,
            max_entries: 10,
        };
        assert_eq!(
            read_tarball(&big, limits),
            Err(TarballError::TooLarge { max: 1000 })
        );
        let limits = TarballLimits {
            max_unpacked: 10_000,
            max_entries: 1,
        };
        assert_eq!(
            read_tarball(&big, limits),
            Err(TarballError::TooManyEntries { max: 1 })
        );
    }
}
