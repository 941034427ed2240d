//! The rules for configuration tarballs (gzip'd tar): which entries are
//! acceptable, so that unpacking can never write outside its directory, and
//! the limits that keep checking and unpacking bounded in time and memory.
//!
//! Pure: it reads bytes in memory and writes nothing. One walker, [`walk`],
//! enforces every rule and hands checked entries to a visitor one at a time;
//! the upload path validates with [`check_tarball`] (a walk that keeps
//! nothing) and the runner unpacks with a visitor that writes as it goes, so
//! what was accepted on upload is exactly what is unpacked.

use std::io::Read;
use std::path::{Component, Path, PathBuf};

pub mod config_dir;
mod tree;
mod walker;

#[cfg(test)]
mod tests;

pub use tree::LinkProblem;
pub use walker::walk;

/// Limits on a configuration archive. Every limit is checked before the
/// bytes it governs are read or kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TarballLimits {
    /// Total bytes of all files once unpacked (hard links count again, as
    /// they are unpacked as copies).
    pub max_unpacked: u64,
    /// Entries of the archive, and separately the files, directories and
    /// links the archive creates, counting directories its paths imply.
    pub max_entries: usize,
    /// Bytes of an entry's path or link target.
    pub max_path_len: usize,
    /// Bytes of one component of a path.
    pub max_component_len: usize,
    /// Bytes of one extended header (GNU long name or link, PAX record set):
    /// these are read whole, so they are capped before being read.
    pub max_extended_header: u64,
    /// Bytes of names and link targets remembered while checking (the
    /// checker's memory of the tree the archive builds).
    pub max_tree_bytes: u64,
}

impl Default for TarballLimits {
    fn default() -> Self {
        Self {
            max_unpacked: 512 * 1024 * 1024,
            max_entries: 100_000,
            max_path_len: 4096,
            max_component_len: 255,
            max_extended_header: 64 * 1024,
            max_tree_bytes: 32 * 1024 * 1024,
        }
    }
}

/// What each entry may add to the decompressed stream on top of its file's
/// contents: its header, padding and usual extended headers. Generous for
/// real archives (a plain entry takes 512 to 1023 bytes).
const STREAM_ALLOWANCE_PER_ENTRY: u64 = 4096;

impl TarballLimits {
    /// The most bytes the gzip stream may decompress to: the contents plus a
    /// per-entry allowance for headers. Checked on the bytes actually
    /// decompressed, so no archive makes the walker inflate more.
    pub fn max_stream(&self) -> u64 {
        self.max_unpacked
            .saturating_add((self.max_entries as u64).saturating_mul(STREAM_ALLOWANCE_PER_ENTRY))
            .saturating_add(1024 * 1024)
    }
}

/// Why an archive is refused. Messages name the entry and the rule, for the
/// user who uploaded it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TarballError {
    #[error("the configuration is not a gzip-compressed tar archive; create it with `tar -czf config.tar.gz -C <dir> .`")]
    NotGzip,
    #[error("the configuration archive is corrupt: {0}")]
    Corrupt(String),
    #[error("the configuration archive's entry {path:?} has an unsafe path: absolute paths and `..` components are not allowed")]
    UnsafePath { path: String },
    #[error("the configuration archive's entry {path:?} has a {what} longer than {max} bytes")]
    NameTooLong {
        path: String,
        what: &'static str,
        max: usize,
    },
    #[error("the configuration archive's entry {path:?} is a {what} of {size} bytes; the limit is {max} bytes")]
    ExtendedHeaderTooLarge {
        path: String,
        what: &'static str,
        size: u64,
        max: u64,
    },
    #[error("the configuration archive's entry {path:?} has a PAX size record of {pax} bytes but a header size of {header} bytes; the two must agree")]
    PaxSizeMismatch { path: String, pax: u64, header: u64 },
    #[error("the configuration archive's entry {path:?} lies under {link:?}, which an earlier entry made a symbolic link; entries may not be placed through links")]
    ThroughLink { path: String, link: String },
    #[error("the configuration archive's entry {path:?} lies under {file:?}, which an earlier entry made a file")]
    ThroughFile { path: String, file: String },
    #[error("the configuration archive's entry {path:?} would replace an earlier {existing} with a {new}; only a file may replace a file, and a directory may be listed again")]
    Replaces {
        path: String,
        existing: &'static str,
        new: &'static str,
    },
    #[error(
        "the configuration archive's symbolic link {path:?} -> {target:?} is refused: {problem}"
    )]
    BadSymlink {
        path: String,
        target: String,
        problem: LinkProblem,
    },
    #[error("the configuration archive's hard link {path:?} -> {target:?} is refused: {problem}; a hard link must name an earlier regular file of the archive, reached without passing through links")]
    BadHardLink {
        path: String,
        target: String,
        problem: &'static str,
    },
    #[error("the configuration archive's entry {path:?} is a {kind}; only files, directories and links are allowed")]
    UnsupportedEntry { path: String, kind: String },
    #[error("the configuration unpacks to more than {max} bytes (at entry {path:?})")]
    TooLarge { path: String, max: u64 },
    #[error("the configuration archive decompresses to more than {max} bytes")]
    StreamTooLarge { max: u64 },
    #[error("the configuration archive has more than {max} entries (at entry {path:?}; directories implied by paths count too)")]
    TooManyEntries { path: String, max: usize },
    #[error("the configuration archive's names and link targets add up to more than {max} bytes (at entry {path:?})")]
    TreeTooLarge { path: String, max: u64 },
}

/// One checked entry, handed to the visitor of [`walk`]. Paths are safe
/// relative paths (see [`safe_relative_path`]); every rule of this module
/// holds for the entry given everything visited before it.
pub enum Item<'a> {
    /// A directory. Parents of any entry may be implied rather than listed:
    /// a visitor creates missing parents as directories.
    Dir { path: &'a Path },
    /// A regular file: exactly `size` bytes are read from `contents`.
    /// Whatever the visitor leaves unread is read through and discarded.
    File {
        path: &'a Path,
        size: u64,
        executable: bool,
        contents: &'a mut dyn Read,
    },
    /// A symbolic link whose `target` (relative to the link's directory)
    /// resolves inside the root whatever entries come later.
    Symlink { path: &'a Path, target: &'a Path },
    /// A hard link to `target`, an earlier regular file (relative to the
    /// root); unpacked as a copy of that file's current contents.
    HardLink { path: &'a Path, target: &'a Path },
}

impl Item<'_> {
    /// The entry's path, relative to the root.
    pub fn path(&self) -> &Path {
        match self {
            Item::Dir { path }
            | Item::File { path, .. }
            | Item::Symlink { path, .. }
            | Item::HardLink { path, .. } => path,
        }
    }
}

/// Why a walk stopped: the archive broke a rule, or the visitor failed.
#[derive(Debug, thiserror::Error)]
pub enum WalkError<E> {
    #[error(transparent)]
    Tarball(#[from] TarballError),
    #[error("{0}")]
    Visit(E),
}

/// Check every entry of a gzip'd tar archive, in bounded memory: file
/// contents are read through and discarded.
pub fn check_tarball(bytes: &[u8], limits: TarballLimits) -> Result<(), TarballError> {
    walk(bytes, limits, |_| Ok::<(), std::convert::Infallible>(())).map_err(|e| match e {
        WalkError::Tarball(e) => e,
        WalkError::Visit(never) => match never {},
    })
}

/// A relative path without `..`, root or prefix components, normalised
/// (`./a/b` becomes `a/b`). Empty paths (the archive root) give `None`.
pub fn safe_relative_path(path: &Path) -> Result<Option<PathBuf>, TarballError> {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::Normal(p) => out.push(p),
            Component::CurDir => {}
            _ => {
                return Err(TarballError::UnsafePath {
                    path: shown(path.as_os_str().as_encoded_bytes()),
                })
            }
        }
    }
    Ok((!out.as_os_str().is_empty()).then_some(out))
}

/// A name for messages: lossy UTF-8, cut short so that a hostile 64 KiB
/// name does not make a 64 KiB error.
pub(crate) fn shown(bytes: &[u8]) -> String {
    const MAX: usize = 200;
    let s = String::from_utf8_lossy(bytes);
    if s.len() <= MAX {
        return s.into_owned();
    }
    let mut end = MAX;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
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
