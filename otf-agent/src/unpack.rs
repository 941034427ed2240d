//! Unpacking a configuration tarball into the job's directory.
//!
//! The core's walker ([`otf_core::tarball::walk`]) enforces every rule (safe
//! paths, no entry placed through a link, links that cannot lead outside,
//! size limits) and hands over one checked entry at a time; this writes each
//! as it comes, never holding the archive's files in memory. On disk it
//! trusts nothing it can check cheaply: every path is walked from the job
//! directory component by component with `symlink_metadata`, never through a
//! link, and files are opened with `O_NOFOLLOW`. The directory is private to
//! the job and nothing else writes into it while unpacking, so checking a
//! component and then using it leaves no window for anyone to exploit.

use std::fs::{self, DirBuilder, File, OpenOptions, Permissions};
use std::io;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

use nix::fcntl::OFlag;
use otf_core::tarball::{walk, Item, TarballLimits};

/// Unpack `tarball` under `dir` (created, private, if needed): directories
/// 0700, files 0600 (0700 when executable), symbolic links as given, hard
/// links as copies of the earlier file. On failure, entries before the one
/// refused have been written inside `dir`, and nothing anywhere else.
pub fn unpack(tarball: &[u8], dir: &Path) -> Result<(), String> {
    DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    match fs::symlink_metadata(dir) {
        Ok(m) if m.file_type().is_dir() => {}
        Ok(_) => return Err(format!("{} is not a directory", dir.display())),
        Err(e) => return Err(format!("cannot read {}: {e}", dir.display())),
    }
    let root = Root { dir };
    walk(tarball, TarballLimits::default(), |item| root.write(item)).map_err(|e| e.to_string())
}

/// `O_NOFOLLOW`: opening a symbolic link fails rather than following it.
fn no_follow() -> i32 {
    OFlag::O_NOFOLLOW.bits()
}

/// The job directory being unpacked into.
struct Root<'a> {
    dir: &'a Path,
}

impl Root<'_> {
    fn write(&self, item: Item<'_>) -> Result<(), String> {
        match item {
            Item::Dir { path } => self.dirs(path, path).map(drop),
            Item::File {
                path,
                executable,
                contents,
                ..
            } => {
                let mut file = self.create_file(path, if executable { 0o700 } else { 0o600 })?;
                io::copy(contents, &mut file)
                    .map_err(|e| refused(path, format!("cannot write it: {e}")))?;
                Ok(())
            }
            Item::Symlink { path, target } => {
                let dest = self.new_name(path)?;
                std::os::unix::fs::symlink(target, &dest)
                    .map_err(|e| refused(path, format!("cannot create the link: {e}")))
            }
            Item::HardLink { path, target } => {
                let mut source = self.existing_file(target, path)?;
                let executable = source
                    .metadata()
                    .map_err(|e| refused(path, format!("cannot read {}: {e}", target.display())))?
                    .mode()
                    & 0o100
                    != 0;
                let mut copy = self.create_file(path, if executable { 0o700 } else { 0o600 })?;
                io::copy(&mut source, &mut copy).map_err(|e| {
                    refused(
                        path,
                        format!("cannot copy {} into it: {e}", target.display()),
                    )
                })?;
                Ok(())
            }
        }
    }

    /// Walk `rel` from the job directory through real directories only,
    /// creating missing ones (0700); give the full path.
    fn dirs(&self, rel: &Path, entry: &Path) -> Result<PathBuf, String> {
        let mut at = self.dir.to_path_buf();
        for c in rel.components() {
            let Component::Normal(name) = c else {
                return Err(refused(entry, "its path is not a plain relative path"));
            };
            at.push(name);
            let shown = at
                .strip_prefix(self.dir)
                .unwrap_or(&at)
                .display()
                .to_string();
            match fs::symlink_metadata(&at) {
                Ok(m) if m.file_type().is_dir() => {}
                Ok(m) if m.file_type().is_symlink() => {
                    return Err(refused(
                        entry,
                        format!("{shown:?} is a symbolic link on disk, and nothing is written through links"),
                    ))
                }
                Ok(_) => return Err(refused(entry, format!("{shown:?} is not a directory on disk"))),
                Err(e) if e.kind() == io::ErrorKind::NotFound => DirBuilder::new()
                    .mode(0o700)
                    .create(&at)
                    .map_err(|e| refused(entry, format!("cannot create {shown:?}: {e}")))?,
                Err(e) => return Err(refused(entry, format!("cannot read {shown:?}: {e}"))),
            }
        }
        Ok(at)
    }

    /// The full path for a new entry at `path`: its parent walked (and
    /// created) safely, the name itself not existing yet.
    fn new_name(&self, path: &Path) -> Result<PathBuf, String> {
        let dest = self.place(path)?;
        match fs::symlink_metadata(&dest) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(dest),
            Ok(_) => Err(refused(path, "something already exists there on disk")),
            Err(e) => Err(refused(path, format!("cannot read it: {e}"))),
        }
    }

    fn place(&self, path: &Path) -> Result<PathBuf, String> {
        let name = path
            .file_name()
            .ok_or_else(|| refused(path, "its path has no name"))?;
        let parent = path.parent().unwrap_or(Path::new(""));
        Ok(self.dirs(parent, path)?.join(name))
    }

    /// Open a regular file at `path` for writing, with `mode` whatever the
    /// umask: a new one, or an existing regular file (with no other links)
    /// truncated. Never follows a link.
    fn create_file(&self, path: &Path, mode: u32) -> Result<File, String> {
        let dest = self.place(path)?;
        let cannot = |e: io::Error| refused(path, format!("cannot create it: {e}"));
        let file = match fs::symlink_metadata(&dest) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(mode)
                .custom_flags(no_follow())
                .open(&dest)
                .map_err(cannot)?,
            Ok(m) if m.file_type().is_file() => {
                let file = OpenOptions::new()
                    .write(true)
                    .custom_flags(no_follow())
                    .open(&dest)
                    .map_err(cannot)?;
                let m = file.metadata().map_err(cannot)?;
                if !m.file_type().is_file() || m.nlink() != 1 {
                    return Err(refused(
                        path,
                        "an earlier file there has other links on disk",
                    ));
                }
                file.set_len(0).map_err(cannot)?;
                file
            }
            Ok(_) => {
                return Err(refused(
                    path,
                    "something other than a file exists there on disk",
                ))
            }
            Err(e) => return Err(refused(path, format!("cannot read it: {e}"))),
        };
        file.set_permissions(Permissions::from_mode(mode))
            .map_err(cannot)?;
        Ok(file)
    }

    /// Open the regular file at `target` (a hard link's source) for
    /// reading, reached through real directories only.
    fn existing_file(&self, target: &Path, entry: &Path) -> Result<File, String> {
        let mut at = self.dir.to_path_buf();
        let names: Vec<_> = target.components().collect();
        for (i, c) in names.iter().enumerate() {
            let Component::Normal(name) = c else {
                return Err(refused(entry, "its target is not a plain relative path"));
            };
            at.push(name);
            let m = fs::symlink_metadata(&at)
                .map_err(|e| refused(entry, format!("cannot read {}: {e}", target.display())))?;
            let last = i + 1 == names.len();
            let fits = if last {
                m.file_type().is_file()
            } else {
                m.file_type().is_dir()
            };
            if !fits {
                return Err(refused(
                    entry,
                    format!(
                        "{} is not a regular file reached through directories on disk",
                        target.display()
                    ),
                ));
            }
        }
        let file = OpenOptions::new()
            .read(true)
            .custom_flags(no_follow())
            .open(&at)
            .map_err(|e| refused(entry, format!("cannot open {}: {e}", target.display())))?;
        Ok(file)
    }
}

fn refused(entry: &Path, why: impl std::fmt::Display) -> String {
    format!(
        "cannot unpack the configuration's entry {:?}: {why}",
        entry.display().to_string()
    )
}

#[cfg(test)]
mod tests {
    //! Archives are built by hand here (ustar headers, gzip with stored
    //! deflate blocks), as this crate does not depend on tar or flate2.

    use super::*;
    use otf_core::tarball::check_tarball;
    use proptest::prelude::*;

    fn octal(field: &mut [u8], value: u64) {
        let digits = format!("{value:0w$o}", w = field.len() - 1);
        field[..digits.len()].copy_from_slice(digits.as_bytes());
    }

    fn header(name: &str, kind: u8, size: usize, link: &str, mode: u32) -> [u8; 512] {
        let mut h = [0u8; 512];
        h[..name.len()].copy_from_slice(name.as_bytes());
        octal(&mut h[100..108], u64::from(mode));
        octal(&mut h[108..116], 0);
        octal(&mut h[116..124], 0);
        octal(&mut h[124..136], size as u64);
        octal(&mut h[136..148], 0);
        h[156] = kind;
        h[157..157 + link.len()].copy_from_slice(link.as_bytes());
        h[257..263].copy_from_slice(b"ustar\0");
        h[263..265].copy_from_slice(b"00");
        h[148..156].fill(b' ');
        let sum: u32 = h.iter().map(|b| u32::from(*b)).sum();
        octal(&mut h[148..155], u64::from(sum));
        h
    }

    fn crc32(data: &[u8]) -> u32 {
        let mut c = !0u32;
        for b in data {
            c ^= u32::from(*b);
            for _ in 0..8 {
                c = if c & 1 != 0 {
                    (c >> 1) ^ 0xEDB8_8320
                } else {
                    c >> 1
                };
            }
        }
        !c
    }

    /// Gzip with stored (uncompressed) deflate blocks.
    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut out = vec![0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff];
        let chunks: Vec<&[u8]> = if data.is_empty() {
            vec![&[]]
        } else {
            data.chunks(65_535).collect()
        };
        for (i, chunk) in chunks.iter().enumerate() {
            out.push(u8::from(i + 1 == chunks.len()));
            let len = chunk.len() as u16;
            out.extend(len.to_le_bytes());
            out.extend((!len).to_le_bytes());
            out.extend_from_slice(chunk);
        }
        out.extend(crc32(data).to_le_bytes());
        out.extend((data.len() as u32).to_le_bytes());
        out
    }

    #[derive(Debug, Clone)]
    enum Entry {
        Dir(String),
        File(String, bool),
        Symlink(String, String),
        Hard(String, String),
    }

    fn archive(entries: &[Entry]) -> Vec<u8> {
        let mut tar = Vec::new();
        for e in entries {
            let (name, kind, link, mode, data): (&str, u8, &str, u32, &[u8]) = match e {
                Entry::Dir(p) => (p, b'5', "", 0o755, b""),
                Entry::File(p, exe) => (p, b'0', "", if *exe { 0o755 } else { 0o644 }, b"data"),
                Entry::Symlink(p, t) => (p, b'2', t, 0o777, b""),
                Entry::Hard(p, t) => (p, b'1', t, 0o644, b""),
            };
            tar.extend_from_slice(&header(name, kind, data.len(), link, mode));
            tar.extend_from_slice(data);
            tar.resize(tar.len().div_ceil(512) * 512, 0);
        }
        tar.extend_from_slice(&[0; 1024]);
        gzip(&tar)
    }

    fn file(p: &str) -> Entry {
        Entry::File(p.into(), false)
    }
    fn link(p: &str, t: &str) -> Entry {
        Entry::Symlink(p.into(), t.into())
    }

    /// A job directory with an empty sibling that must stay empty.
    struct Sandbox {
        tmp: tempfile::TempDir,
    }

    impl Sandbox {
        fn new() -> Self {
            let tmp = tempfile::tempdir().unwrap();
            fs::create_dir(tmp.path().join("outside")).unwrap();
            Sandbox { tmp }
        }
        fn job(&self) -> PathBuf {
            self.tmp.path().join("job")
        }
        fn mode(&self, rel: &str) -> u32 {
            fs::symlink_metadata(self.job().join(rel)).unwrap().mode() & 0o7777
        }
        /// Nothing but `job` and an empty `outside`; every file inside `job`
        /// really is inside, and every link resolves (if at all) inside.
        fn assert_contained(&self) {
            let mut top: Vec<_> = fs::read_dir(self.tmp.path())
                .unwrap()
                .map(|e| e.unwrap().file_name())
                .collect();
            top.sort();
            assert!(top == ["job", "outside"] || top == ["outside"], "{top:?}");
            assert_eq!(
                fs::read_dir(self.tmp.path().join("outside"))
                    .unwrap()
                    .count(),
                0
            );
            let job = self.job();
            if !job.exists() {
                return;
            }
            let real_job = job.canonicalize().unwrap();
            let mut todo = vec![PathBuf::new()];
            while let Some(rel) = todo.pop() {
                for e in fs::read_dir(job.join(&rel)).unwrap() {
                    let e = e.unwrap();
                    let rel = rel.join(e.file_name());
                    let kind = e.file_type().unwrap();
                    if kind.is_dir() {
                        todo.push(rel);
                    } else if kind.is_file() {
                        assert!(job
                            .join(&rel)
                            .canonicalize()
                            .unwrap()
                            .starts_with(&real_job));
                    } else if kind.is_symlink() {
                        let target = fs::read_link(job.join(&rel)).unwrap();
                        let from: Vec<_> =
                            rel.parent().unwrap().iter().map(|c| c.to_owned()).collect();
                        assert!(
                            !escapes(&job, from, &target, &mut 0),
                            "{} -> {} leads outside",
                            rel.display(),
                            target.display()
                        );
                    } else {
                        panic!("{} is neither file, directory nor link", rel.display());
                    }
                }
            }
        }
    }

    /// Whether the kernel, resolving `target` from the directory `at`
    /// (components under `job`), would step out of `job` (even towards a
    /// name that does not exist, which creating a file through a dangling
    /// link would use). Stops as the kernel does at a missing name, a file
    /// followed by more components, or too many links.
    fn escapes(job: &Path, mut at: Vec<std::ffi::OsString>, target: &Path, hops: &mut u32) -> bool {
        fn walk(
            job: &Path,
            at: &mut Vec<std::ffi::OsString>,
            target: &Path,
            hops: &mut u32,
        ) -> Result<(), bool> {
            let comps: Vec<_> = target.components().collect();
            for (i, c) in comps.iter().enumerate() {
                match c {
                    Component::RootDir | Component::Prefix(_) => return Err(true),
                    Component::CurDir => {}
                    Component::ParentDir => {
                        if at.pop().is_none() {
                            return Err(true);
                        }
                    }
                    Component::Normal(name) => {
                        let here: PathBuf = at.iter().collect::<PathBuf>().join(name);
                        let Ok(m) = fs::symlink_metadata(job.join(&here)) else {
                            return Err(false);
                        };
                        if m.file_type().is_symlink() {
                            *hops += 1;
                            if *hops > 40 {
                                return Err(false);
                            }
                            let next = fs::read_link(job.join(&here)).unwrap();
                            walk(job, at, &next, hops)?;
                        } else if m.file_type().is_dir() {
                            at.push(name.to_os_string());
                        } else if i + 1 < comps.len() {
                            return Err(false);
                        }
                    }
                }
            }
            Ok(())
        }
        walk(job, &mut at, target, hops) == Err(true)
    }

    #[test]
    fn unpacks_files_into_the_directory() {
        let dir = tempfile::tempdir().unwrap();
        let tarball = otf_core::tarball::pack([("main.tf", &b"x"[..]), ("sub/vars.tf", &b"y"[..])]);
        unpack(&tarball, dir.path()).unwrap();
        assert_eq!(fs::read(dir.path().join("sub/vars.tf")).unwrap(), b"y");
        assert!(unpack(b"garbage", dir.path())
            .unwrap_err()
            .contains("not a gzip"));
    }

    #[test]
    fn modes_links_and_copies() {
        let sb = Sandbox::new();
        let bytes = archive(&[
            Entry::Dir("d".into()),
            file("d/main.tf"),
            Entry::File("bin/tool".into(), true),
            Entry::Hard("bin/copy".into(), "bin/tool".into()),
            Entry::Hard("d/plain".into(), "d/main.tf".into()),
            link("modules/x/shared.tf", "../../d/main.tf"),
            link("mods", "modules"),
            file("d/main.tf"),
        ]);
        unpack(&bytes, &sb.job()).unwrap();
        assert_eq!(sb.mode(""), 0o700);
        assert_eq!(sb.mode("d"), 0o700);
        assert_eq!(sb.mode("bin"), 0o700, "implied directories too");
        assert_eq!(sb.mode("d/main.tf"), 0o600);
        assert_eq!(sb.mode("bin/tool"), 0o700);
        assert_eq!(sb.mode("bin/copy"), 0o700);
        assert_eq!(sb.mode("d/plain"), 0o600);
        let job = sb.job();
        assert_eq!(fs::read(job.join("bin/copy")).unwrap(), b"data");
        let ino = |p: &str| fs::metadata(job.join(p)).unwrap().ino();
        assert_ne!(ino("bin/copy"), ino("bin/tool"), "hard links are copies");
        assert_eq!(
            fs::read_link(job.join("mods")).unwrap(),
            Path::new("modules")
        );
        assert_eq!(fs::read(job.join("mods/x/shared.tf")).unwrap(), b"data");
        sb.assert_contained();
    }

    #[test]
    fn hostile_archives_write_nothing_outside() {
        let hostile: Vec<Vec<Entry>> = vec![
            vec![
                link("x", "."),
                link("x/x/x/up", "../../.."),
                file("x/x/x/up/outside/f"),
            ],
            vec![link("up", ".."), file("up/outside/f")],
            vec![link("o", "../outside"), file("o/f")],
            vec![link("b", "x/.."), link("x", "."), file("b/outside/f")],
            vec![file("../outside/f")],
            vec![file("/tmp/otf-unpack-test-absolute")],
            vec![file("a"), Entry::Hard("h".into(), "../outside/x".into())],
            vec![Entry::Dir("d".into()), link("d", ".."), file("d/outside/f")],
            vec![link("l", "/etc"), file("l/f")],
        ];
        for entries in hostile {
            let sb = Sandbox::new();
            let err = unpack(&archive(&entries), &sb.job()).unwrap_err();
            assert!(
                err.contains("the configuration archive"),
                "{entries:?}: {err}"
            );
            sb.assert_contained();
        }
        assert!(!Path::new("/tmp/otf-unpack-test-absolute").exists());
    }

    #[test]
    fn links_on_disk_are_never_written_through() {
        // Defense in depth: links the walker did not create (as if planted
        // in the directory) are refused on disk as parents and as files.
        let sb = Sandbox::new();
        fs::create_dir(sb.job()).unwrap();
        std::os::unix::fs::symlink("../outside", sb.job().join("planted")).unwrap();
        let err = unpack(&archive(&[file("planted/f")]), &sb.job()).unwrap_err();
        assert!(
            err.contains("\"planted\" is a symbolic link on disk"),
            "{err}"
        );
        std::os::unix::fs::symlink("../outside/f", sb.job().join("dangling")).unwrap();
        let err = unpack(&archive(&[file("dangling")]), &sb.job()).unwrap_err();
        assert!(err.contains("other than a file"), "{err}");
        let err = unpack(&archive(&[link("dangling", "x")]), &sb.job()).unwrap_err();
        assert!(err.contains("already exists"), "{err}");
        assert_eq!(
            fs::read_dir(sb.tmp.path().join("outside")).unwrap().count(),
            0
        );
    }

    #[test]
    fn the_escape_oracle_sees_escapes() {
        // The property below is only as good as `escapes`: check it on links
        // planted by hand.
        let sb = Sandbox::new();
        let job = sb.job();
        fs::create_dir_all(job.join("d")).unwrap();
        let plant =
            |name: &str, target: &str| std::os::unix::fs::symlink(target, job.join(name)).unwrap();
        plant("self", ".");
        plant("d/up", "..");
        let escapes_from = |at: &[&str], target: &str| {
            escapes(
                &job,
                at.iter().map(Into::into).collect(),
                Path::new(target),
                &mut 0,
            )
        };
        assert!(escapes_from(&[], "../outside"));
        assert!(
            escapes_from(&[], "../nowhere"),
            "a dangling link that leaves counts"
        );
        assert!(escapes_from(&[], "self/self/.."));
        assert!(escapes_from(&["d"], "up/d/up/.."));
        assert!(escapes_from(&[], "/etc"));
        assert!(!escapes_from(&["d"], "up/d/up"));
        assert!(
            !escapes_from(&[], "missing/../.."),
            "the kernel stops at a missing name"
        );
    }

    fn entry() -> impl Strategy<Value = Entry> {
        // Few names, so that entries meet; paths mostly of plain names (a
        // `..` in a path is refused at once, ending the archive early);
        // short targets rich in `.` and `..`.
        let name = |plain: u32, dot: u32, up: u32| {
            prop_oneof![
                plain * 2 => Just("a"),
                plain => Just("b"),
                plain * 2 => Just("x"),
                dot => Just("."),
                up => Just(".."),
            ]
        };
        let path = prop::collection::vec(name(6, 1, 1), 1..3).prop_map(|v| v.join("/"));
        let target = (
            prop::bool::weighted(0.02),
            prop::collection::vec(name(2, 2, 4), 1..4),
        )
            .prop_map(|(abs, v)| format!("{}{}", if abs { "/" } else { "" }, v.join("/")));
        prop_oneof![
            4 => path.clone().prop_map(Entry::Dir),
            6 => (path.clone(), any::<bool>()).prop_map(|(p, e)| Entry::File(p, e)),
            12 => (path.clone(), target.clone()).prop_map(|(p, t)| Entry::Symlink(p, t)),
            1 => (path.clone(), path).prop_map(|(p, t)| Entry::Hard(p, t)),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// Whatever the archive, and whether unpacking succeeds or not,
        /// nothing is created outside the job directory, and nothing inside
        /// it leads outside.
        #[test]
        fn unpacking_never_escapes(entries in prop::collection::vec(entry(), 1..24)) {
            let sb = Sandbox::new();
            let unpacked = unpack(&archive(&entries), &sb.job());
            sb.assert_contained();
            // The checks on disk are a second line: the walker's rules
            // already refuse everything they would.
            if let Err(e) = unpacked {
                prop_assert!(e.starts_with("the configuration archive"), "{}", e);
            }
            // An attacker keeps only what the rules accept: so does this,
            // dropping each entry that would be refused, so that every
            // generated entry has its chance. What is left must unpack.
            let mut kept = Vec::new();
            for e in entries {
                kept.push(e);
                if check_tarball(&archive(&kept), TarballLimits::default()).is_err() {
                    kept.pop();
                }
            }
            let sb = Sandbox::new();
            prop_assert_eq!(unpack(&archive(&kept), &sb.job()), Ok(()), "{:?}", kept);
            sb.assert_contained();
        }
    }
}
