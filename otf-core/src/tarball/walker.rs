//! The streaming walk: tar's raw mode, with GNU long names and links and
//! PAX records applied here, so that every size is checked before the bytes
//! it describes are read, and the tar reader never applies a record this
//! module has not seen.

use std::cell::Cell;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use tar::EntryType;

use super::tree::Tree;
use super::{safe_relative_path, shown, Item, TarballError, TarballLimits, WalkError};

/// Walk a gzip'd tar archive, checking every rule of this module, and hand
/// each checked entry to `visit`, in archive order. Memory stays bounded
/// whatever the archive: file contents stream through `visit` (and are
/// discarded when it does not read them), extended headers are capped before
/// they are read, and the tree remembered for the link rules is capped by
/// [`TarballLimits::max_entries`] and [`TarballLimits::max_tree_bytes`].
///
/// Entries up to the first refusal have been visited when the walk fails:
/// a visitor that writes must write into a fresh, private directory.
pub fn walk<E>(
    bytes: &[u8],
    limits: TarballLimits,
    mut visit: impl FnMut(Item<'_>) -> Result<(), E>,
) -> Result<(), WalkError<E>> {
    if bytes.len() < 2 || bytes[0] != 0x1f || bytes[1] != 0x8b {
        return Err(TarballError::NotGzip.into());
    }
    let read = Cell::new(0);
    let stream = Stream {
        read: &read,
        max: limits.max_stream(),
    };
    // Several gzip members make one stream, as gzip(1) and Go (which writes
    // Terraform's own uploads) read them.
    let mut archive = tar::Archive::new(Counting {
        inner: flate2::read::MultiGzDecoder::new(bytes),
        read: &read,
        max: stream.max,
    });
    let entries = archive
        .entries()
        .map_err(|e| stream.error(e, "at its start"))?
        .raw(true);
    let mut walker = Walker {
        limits,
        tree: Tree::new(&limits),
        pending: Pending::default(),
        members: 0,
        unpacked: 0,
        last: None,
    };
    for entry in entries {
        let mut entry = entry.map_err(|e| stream.error(e, &walker.after()))?;
        walker.entry(&mut entry, &stream, &mut visit)?;
    }
    if walker.pending.is_some() {
        return Err(TarballError::Corrupt(format!(
            "it ends with extended headers that describe no entry ({})",
            walker.after()
        ))
        .into());
    }
    Ok(())
}

/// Counts the bytes decompressed and fails once there are more than `max`.
struct Counting<'c, R> {
    inner: R,
    read: &'c Cell<u64>,
    max: u64,
}

impl<R: Read> Read for Counting<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        // Never ask for more than one byte past the cap.
        let room = self.max.saturating_sub(self.read.get()).saturating_add(1);
        let want = buf.len().min(usize::try_from(room).unwrap_or(usize::MAX));
        let n = self.inner.read(&mut buf[..want])?;
        self.read.set(self.read.get().saturating_add(n as u64));
        if self.read.get() > self.max {
            return Err(io::Error::other("the decompressed archive is too large"));
        }
        Ok(n)
    }
}

/// Turns read errors into refusals: the stream cap, or corruption.
struct Stream<'c> {
    read: &'c Cell<u64>,
    max: u64,
}

impl Stream<'_> {
    fn error(&self, e: impl std::fmt::Display, at: &str) -> TarballError {
        if self.read.get() > self.max {
            TarballError::StreamTooLarge { max: self.max }
        } else {
            TarballError::Corrupt(format!("{e} ({at})"))
        }
    }

    /// Refuse `size` more bytes if they cannot fit in the stream cap.
    fn room_for(&self, size: u64) -> Result<(), TarballError> {
        if size > self.max.saturating_sub(self.read.get()) {
            return Err(TarballError::StreamTooLarge { max: self.max });
        }
        Ok(())
    }
}

/// A file's contents as the visitor reads them: exactly the declared size,
/// an early end being an error, and any archive error remembered so that
/// the walk reports it as the archive's fault, not the visitor's.
struct Contents<'e, R> {
    entry: &'e mut R,
    left: u64,
    failed: Option<String>,
}

impl<R: Read> Read for Contents<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.left == 0 || buf.is_empty() {
            return Ok(0);
        }
        let want = buf
            .len()
            .min(usize::try_from(self.left).unwrap_or(usize::MAX));
        match self.entry.read(&mut buf[..want]) {
            Ok(0) => {
                let msg = "the archive ends inside this file";
                self.failed = Some(msg.to_string());
                Err(io::Error::new(io::ErrorKind::UnexpectedEof, msg))
            }
            Ok(n) => {
                self.left -= n as u64;
                Ok(n)
            }
            Err(e) => {
                self.failed = Some(e.to_string());
                Err(e)
            }
        }
    }
}

/// The PAX records of a local ('x') or global ('g') extended header that
/// this module applies or refuses; the others (times, owners, xattrs) are
/// ignored, as unpacking does not use them.
#[derive(Default)]
struct Pax {
    path: Option<Vec<u8>>,
    linkpath: Option<Vec<u8>>,
    size: Option<u64>,
    sparse: bool,
}

/// Extended headers read so far for the next entry.
#[derive(Default)]
struct Pending {
    long_name: Option<Vec<u8>>,
    long_link: Option<Vec<u8>>,
    pax: Option<Pax>,
}

impl Pending {
    fn is_some(&self) -> bool {
        self.long_name.is_some() || self.long_link.is_some() || self.pax.is_some()
    }
}

/// Parse PAX records, `<len> <key>=<value>\n`, honouring each length.
fn parse_pax(data: &[u8], name: &str) -> Result<Pax, TarballError> {
    let malformed =
        || TarballError::Corrupt(format!("the PAX extended header {name:?} is malformed"));
    let mut pax = Pax::default();
    let mut rest = data;
    while !rest.is_empty() && rest.iter().any(|b| *b != 0) {
        let space = rest.iter().position(|b| *b == b' ').ok_or_else(malformed)?;
        let len: usize = std::str::from_utf8(&rest[..space])
            .ok()
            .and_then(|s| s.parse().ok())
            .ok_or_else(malformed)?;
        if len <= space + 1 || len > rest.len() {
            return Err(malformed());
        }
        let record = rest[space + 1..len]
            .strip_suffix(b"\n")
            .ok_or_else(malformed)?;
        let eq = record
            .iter()
            .position(|b| *b == b'=')
            .ok_or_else(malformed)?;
        let (key, value) = (&record[..eq], &record[eq + 1..]);
        // An empty value unsets the record (POSIX), leaving the header's.
        let value = (!value.is_empty()).then(|| value.to_vec());
        match key {
            b"path" => pax.path = value,
            b"linkpath" => pax.linkpath = value,
            b"size" => {
                pax.size = match value {
                    None => None,
                    Some(v) => Some(
                        std::str::from_utf8(&v)
                            .ok()
                            .and_then(|s| s.parse().ok())
                            .ok_or_else(malformed)?,
                    ),
                }
            }
            k if k.starts_with(b"GNU.sparse.") => pax.sparse = true,
            _ => {}
        }
        rest = &rest[len..];
    }
    Ok(pax)
}

/// What an extended header is, for messages; `None` for other entries.
fn extension(kind: EntryType) -> Option<&'static str> {
    match kind {
        EntryType::GNULongName => Some("GNU long name"),
        EntryType::GNULongLink => Some("GNU long link name"),
        EntryType::XHeader => Some("PAX extended header"),
        EntryType::XGlobalHeader => Some("PAX global header"),
        _ => None,
    }
}

/// The kinds of entry that are unpacked.
enum Class {
    File,
    Dir,
    Symlink,
    HardLink,
}

fn classify(kind: EntryType) -> Result<Class, String> {
    Ok(match kind {
        EntryType::Regular | EntryType::Continuous => Class::File,
        EntryType::Directory => Class::Dir,
        EntryType::Symlink => Class::Symlink,
        EntryType::Link => Class::HardLink,
        EntryType::Char => return Err("character device".into()),
        EntryType::Block => return Err("block device".into()),
        EntryType::Fifo => return Err("fifo".into()),
        EntryType::GNUSparse => return Err("sparse file".into()),
        other => {
            return Err(format!(
                "entry of unknown type {:?}",
                char::from(other.as_byte())
            ))
        }
    })
}

/// A path from archive bytes. NUL cannot be part of a path on disk.
fn to_path(bytes: &[u8], what: &str, entry: &str) -> Result<PathBuf, TarballError> {
    if bytes.contains(&0) {
        return Err(TarballError::Corrupt(format!(
            "the entry {entry:?} has a NUL byte in its {what}"
        )));
    }
    #[cfg(unix)]
    {
        use std::os::unix::ffi::OsStrExt;
        Ok(PathBuf::from(std::ffi::OsStr::from_bytes(bytes)))
    }
    #[cfg(not(unix))]
    {
        std::str::from_utf8(bytes).map(PathBuf::from).map_err(|_| {
            TarballError::Corrupt(format!(
                "the entry {entry:?} has a {what} that is not UTF-8"
            ))
        })
    }
}

struct Walker {
    limits: TarballLimits,
    tree: Tree,
    pending: Pending,
    members: usize,
    unpacked: u64,
    last: Option<String>,
}

impl Walker {
    /// Where in the archive a read failed, for messages.
    fn after(&self) -> String {
        match &self.last {
            Some(p) => format!("after the entry {p:?}"),
            None => "at its first entry".to_string(),
        }
    }

    fn count(&mut self, name: &str) -> Result<(), TarballError> {
        self.members += 1;
        if self.members > self.limits.max_entries {
            return Err(TarballError::TooManyEntries {
                path: name.to_string(),
                max: self.limits.max_entries,
            });
        }
        Ok(())
    }

    /// Count `size` more unpacked bytes, refusing them past the limit.
    fn charge(&mut self, name: &str, size: u64) -> Result<(), TarballError> {
        if size > self.limits.max_unpacked.saturating_sub(self.unpacked) {
            return Err(TarballError::TooLarge {
                path: name.to_string(),
                max: self.limits.max_unpacked,
            });
        }
        self.unpacked += size;
        Ok(())
    }

    fn check_length(
        &self,
        bytes: &[u8],
        name: &str,
        what: &'static str,
    ) -> Result<(), TarballError> {
        let too_long = |what, max| TarballError::NameTooLong {
            path: name.to_string(),
            what,
            max,
        };
        if bytes.len() > self.limits.max_path_len {
            return Err(too_long(what, self.limits.max_path_len));
        }
        if bytes
            .split(|b| *b == b'/')
            .any(|c| c.len() > self.limits.max_component_len)
        {
            return Err(too_long(
                if what == "path" {
                    "path component"
                } else {
                    "link target component"
                },
                self.limits.max_component_len,
            ));
        }
        Ok(())
    }

    fn entry<R: Read, E>(
        &mut self,
        entry: &mut tar::Entry<'_, R>,
        stream: &Stream<'_>,
        visit: &mut impl FnMut(Item<'_>) -> Result<(), E>,
    ) -> Result<(), WalkError<E>> {
        let kind = entry.header().entry_type();
        // In raw mode this is the header's own size field: no PAX record
        // has been applied by the tar reader.
        let size = entry.size();
        let header_path = entry.header().path_bytes().into_owned();
        if let Some(what) = extension(kind) {
            return Ok(self.extension(entry, kind, what, size, &header_path, stream)?);
        }
        self.member(entry, kind, size, header_path, stream, visit)
    }

    /// Read (capped) and remember an extended header for the next entry.
    fn extension<R: Read>(
        &mut self,
        entry: &mut tar::Entry<'_, R>,
        kind: EntryType,
        what: &'static str,
        size: u64,
        header_path: &[u8],
        stream: &Stream<'_>,
    ) -> Result<(), TarballError> {
        let name = shown(header_path);
        if size > self.limits.max_extended_header {
            return Err(TarballError::ExtendedHeaderTooLarge {
                path: name,
                what,
                size,
                max: self.limits.max_extended_header,
            });
        }
        stream.room_for(size)?;
        if kind == EntryType::XGlobalHeader {
            self.count(&name)?;
        }
        let mut data = Vec::with_capacity(usize::try_from(size).unwrap_or(0));
        entry
            .by_ref()
            .take(size)
            .read_to_end(&mut data)
            .map_err(|e| stream.error(e, &format!("in the {what} {name:?}")))?;
        if data.len() as u64 != size {
            return Err(TarballError::Corrupt(format!(
                "it ends inside the {what} {name:?}"
            )));
        }
        let twice = TarballError::Corrupt(format!(
            "two {what}s describe the same entry ({})",
            self.after()
        ));
        match kind {
            EntryType::GNULongName | EntryType::GNULongLink => {
                // GNU tar ends the name with NUL bytes.
                while data.last() == Some(&0) {
                    data.pop();
                }
                let slot = if kind == EntryType::GNULongName {
                    &mut self.pending.long_name
                } else {
                    &mut self.pending.long_link
                };
                if slot.is_some() {
                    return Err(twice);
                }
                *slot = Some(data);
            }
            EntryType::XHeader => {
                if self.pending.pax.is_some() {
                    return Err(twice);
                }
                self.pending.pax = Some(parse_pax(&data, &name)?);
            }
            _ => {
                // Global records are ignored, except those that would change
                // what later entries are: a reader that applied them would
                // see another archive than the one checked.
                let global = parse_pax(&data, &name)?;
                if global.path.is_some()
                    || global.linkpath.is_some()
                    || global.size.is_some()
                    || global.sparse
                {
                    return Err(TarballError::Corrupt(format!(
                        "the PAX global header {name:?} sets a path, link target, size or sparse map for every later entry"
                    )));
                }
            }
        }
        Ok(())
    }

    /// Check one entry (a file, directory, link or refused kind), then
    /// hand it to the visitor.
    fn member<R: Read, E>(
        &mut self,
        entry: &mut tar::Entry<'_, R>,
        kind: EntryType,
        size: u64,
        header_path: Vec<u8>,
        stream: &Stream<'_>,
        visit: &mut impl FnMut(Item<'_>) -> Result<(), E>,
    ) -> Result<(), WalkError<E>> {
        let pending = std::mem::take(&mut self.pending);
        let mut pax = pending.pax.unwrap_or_default();
        let both = |what: &str| {
            TarballError::Corrupt(format!(
                "the entry {:?} has both a GNU long {what} and a PAX {what}",
                shown(&header_path)
            ))
        };
        let raw_path = match (pending.long_name, pax.path.take()) {
            (Some(_), Some(_)) => return Err(both("name").into()),
            (Some(p), None) | (None, Some(p)) => p,
            (None, None) => header_path.clone(),
        };
        let name = shown(&raw_path);
        self.count(&name)?;
        self.last = Some(name.clone());
        if let Some(pax_size) = pax.size {
            if pax_size != size {
                return Err(TarballError::PaxSizeMismatch {
                    path: name,
                    pax: pax_size,
                    header: size,
                }
                .into());
            }
        }
        let class = match classify(kind) {
            Ok(_) if pax.sparse => Err("sparse file".to_string()),
            other => other,
        }
        .map_err(|kind| TarballError::UnsupportedEntry {
            path: name.clone(),
            kind,
        })?;
        self.check_length(&raw_path, &name, "path")?;
        let Some(path) = safe_relative_path(&to_path(&raw_path, "path", &name)?)? else {
            // The archive's root (`.` or an empty name) is the directory
            // being unpacked into; nothing to create.
            return Ok(());
        };
        let raw_link = match (pending.long_link, pax.linkpath.take()) {
            (Some(_), Some(_)) => return Err(both("link name").into()),
            (Some(l), None) | (None, Some(l)) => Some(l),
            (None, None) => entry.header().link_name_bytes().map(|l| l.into_owned()),
        };
        let target = match class {
            Class::Symlink | Class::HardLink => {
                let raw = raw_link.unwrap_or_default();
                self.check_length(&raw, &name, "link target")?;
                to_path(&raw, "link target", &name)?
            }
            Class::File | Class::Dir => PathBuf::new(),
        };
        match class {
            Class::File => self.file(entry, &name, &path, size, stream, visit),
            Class::Dir => {
                // Data after a directory header is skipped by the reader;
                // it still counts against the stream.
                stream.room_for(size)?;
                self.tree.dir(&path)?;
                visit(Item::Dir { path: &path }).map_err(WalkError::Visit)
            }
            Class::Symlink => {
                stream.room_for(size)?;
                self.tree.symlink(&path, &target)?;
                visit(Item::Symlink {
                    path: &path,
                    target: &target,
                })
                .map_err(WalkError::Visit)
            }
            Class::HardLink => {
                stream.room_for(size)?;
                self.hard_link(&name, &path, &target, visit)
            }
        }
    }

    /// A regular file: charged against the limits, handed to the visitor,
    /// and read to its end whatever the visitor left.
    fn file<R: Read, E>(
        &mut self,
        entry: &mut tar::Entry<'_, R>,
        name: &str,
        path: &Path,
        size: u64,
        stream: &Stream<'_>,
        visit: &mut impl FnMut(Item<'_>) -> Result<(), E>,
    ) -> Result<(), WalkError<E>> {
        let executable = entry
            .header()
            .mode()
            .map_err(|e| TarballError::Corrupt(format!("the entry {name:?}: {e}")))?
            & 0o111
            != 0;
        self.charge(name, size)?;
        stream.room_for(size)?;
        self.tree.file(path, size, "file")?;
        let mut contents = Contents {
            entry,
            left: size,
            failed: None,
        };
        let visited = visit(Item::File {
            path,
            size,
            executable,
            contents: &mut contents,
        });
        let in_file = || format!("in the file {name:?}");
        if let Some(failed) = contents.failed.take() {
            return Err(stream.error(failed, &in_file()).into());
        }
        visited.map_err(WalkError::Visit)?;
        // What the visitor left unread is read through, in small buffers,
        // so that a short file is still noticed.
        io::copy(&mut contents, &mut io::sink()).map_err(|e| stream.error(e, &in_file()))?;
        Ok(())
    }

    /// A hard link: its target must be a relative path inside the archive,
    /// to a file already unpacked; the copy counts against the limits.
    fn hard_link<E>(
        &mut self,
        name: &str,
        path: &Path,
        target: &Path,
        visit: &mut impl FnMut(Item<'_>) -> Result<(), E>,
    ) -> Result<(), WalkError<E>> {
        let refuse = |problem| TarballError::BadHardLink {
            path: name.to_string(),
            target: shown(target.as_os_str().as_encoded_bytes()),
            problem,
        };
        let target = match safe_relative_path(target) {
            Ok(Some(t)) => t,
            Ok(None) => return Err(refuse("its target is empty").into()),
            Err(_) => {
                return Err(refuse("its target is not a relative path inside the archive").into())
            }
        };
        let copied = self.tree.hard_link(path, &target)?;
        self.charge(name, copied)?;
        visit(Item::HardLink {
            path,
            target: &target,
        })
        .map_err(WalkError::Visit)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_counting_reader_stops_at_its_cap() {
        let read = Cell::new(0);
        let mut r = Counting {
            inner: io::repeat(0),
            read: &read,
            max: 10_000,
        };
        let err = io::copy(&mut r, &mut io::sink()).unwrap_err();
        assert_eq!(err.to_string(), "the decompressed archive is too large");
        assert_eq!(read.get(), 10_001, "it reads at most one byte past the cap");
    }

    #[test]
    fn pax_records_honour_their_lengths() {
        let pax = parse_pax(b"27 path=a\nb with a newline\n10 size=5\n", "h").unwrap();
        assert_eq!(pax.path.as_deref(), Some(&b"a\nb with a newline"[..]));
        assert_eq!(pax.size, Some(5));
        assert!(parse_pax(b"99 path=a\n", "h").is_err());
        assert!(parse_pax(b"x path=a\n", "h").is_err());
        assert!(parse_pax(b"10 size=x\n", "h").is_err());
    }
}
