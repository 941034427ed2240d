//! A corpus of hostile archives, each built by hand byte for byte (so that no
//! builder's own checks stop it), each refused for the right reason; and
//! normal archives, which still pass.

use std::io::Write;

use super::*;

const KIB: u64 = 1024;
const MIB: u64 = 1024 * 1024;

/// A tar archive written header by header.
#[derive(Default)]
struct Raw(Vec<u8>);

fn header(name: &[u8], kind: u8, size: u64, link: &[u8], mode: u32) -> [u8; 512] {
    let mut h = tar::Header::new_gnu();
    h.as_old_mut().name[..name.len()].copy_from_slice(name);
    h.as_old_mut().linkname[..link.len()].copy_from_slice(link);
    h.set_size(size);
    h.set_mode(mode);
    h.set_entry_type(tar::EntryType::new(kind));
    h.set_cksum();
    *h.as_bytes()
}

/// One PAX record, `<len> <key>=<value>\n`, its length counting itself.
fn record(key: &str, value: &[u8]) -> Vec<u8> {
    let body = key.len() + value.len() + 3;
    let mut len = body + 1;
    while len.to_string().len() + body != len {
        len = len.to_string().len() + body;
    }
    let mut r = format!("{len} {key}=").into_bytes();
    r.extend_from_slice(value);
    r.push(b'\n');
    r
}

impl Raw {
    /// A header declaring `size` bytes, followed by `data` (which may be
    /// shorter: the archive then lies or is cut short) and padding.
    fn put(&mut self, name: &str, kind: u8, size: u64, link: &str, data: &[u8]) -> &mut Self {
        self.0
            .extend_from_slice(&header(name.as_bytes(), kind, size, link.as_bytes(), 0o644));
        self.0.extend_from_slice(data);
        self.0.resize(self.0.len().div_ceil(512) * 512, 0);
        self
    }
    fn file(&mut self, name: &str, data: &[u8]) -> &mut Self {
        self.put(name, b'0', data.len() as u64, "", data)
    }
    fn exe(&mut self, name: &str, data: &[u8]) -> &mut Self {
        self.0.extend_from_slice(&header(
            name.as_bytes(),
            b'0',
            data.len() as u64,
            b"",
            0o755,
        ));
        self.0.extend_from_slice(data);
        self.0.resize(self.0.len().div_ceil(512) * 512, 0);
        self
    }
    fn dir(&mut self, name: &str) -> &mut Self {
        self.put(name, b'5', 0, "", b"")
    }
    fn symlink(&mut self, name: &str, target: &str) -> &mut Self {
        self.put(name, b'2', 0, target, b"")
    }
    fn hard(&mut self, name: &str, target: &str) -> &mut Self {
        self.put(name, b'1', 0, target, b"")
    }
    fn pax(&mut self, records: &[(&str, &[u8])]) -> &mut Self {
        let data: Vec<u8> = records.iter().flat_map(|(k, v)| record(k, v)).collect();
        self.put("PaxHeaders/x", b'x', data.len() as u64, "", &data)
    }
    fn global(&mut self, records: &[(&str, &[u8])]) -> &mut Self {
        let data: Vec<u8> = records.iter().flat_map(|(k, v)| record(k, v)).collect();
        self.put("PaxHeaders/g", b'g', data.len() as u64, "", &data)
    }
    fn long_name(&mut self, name: &str) -> &mut Self {
        let mut data = name.as_bytes().to_vec();
        data.push(0);
        self.put("././@LongLink", b'L', data.len() as u64, "", &data)
    }
    fn gz(&self) -> Vec<u8> {
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        enc.write_all(&self.0).unwrap();
        enc.write_all(&[0; 1024]).unwrap();
        enc.finish().unwrap()
    }
}

fn check(raw: &mut Raw) -> Result<(), TarballError> {
    check_tarball(&raw.gz(), TarballLimits::default())
}

/// What a walk visits, as `kind path [detail]` lines.
fn visited(bytes: &[u8]) -> Result<Vec<String>, TarballError> {
    let mut out = Vec::new();
    walk(bytes, TarballLimits::default(), |item| {
        let line = match item {
            Item::Dir { path } => format!("dir {}", path.display()),
            Item::File {
                path,
                size,
                executable,
                contents,
            } => {
                let mut data = String::new();
                contents.read_to_string(&mut data).unwrap();
                assert_eq!(data.len() as u64, size);
                format!("file {} {data:?} exec={executable}", path.display())
            }
            Item::Symlink { path, target } => {
                format!("symlink {} -> {}", path.display(), target.display())
            }
            Item::HardLink { path, target } => {
                format!("hardlink {} -> {}", path.display(), target.display())
            }
        };
        out.push(line);
        Ok::<_, std::convert::Infallible>(())
    })
    .map_err(|e| match e {
        WalkError::Tarball(e) => e,
        WalkError::Visit(never) => match never {},
    })?;
    Ok(out)
}

#[test]
fn a_normal_configuration_passes() {
    let long = format!("modules/{}/main.tf", "n".repeat(150));
    let bytes = Raw::default()
        .dir("./")
        .file("./main.tf", b"resource \"null_resource\" \"a\" {}\n")
        .dir("modules/")
        .file("modules/x/main.tf", b"")
        .symlink("modules/x/shared.tf", "../../main.tf")
        .symlink("mods", "modules")
        .symlink("modules/x/self", ".")
        .exe("bin/tool", b"#!/bin/sh\n")
        .hard("bin/tool2", "bin/tool")
        .long_name(&long)
        .file("ignored-name", b"long")
        .pax(&[("path", b"pax/name.tf"), ("mtime", b"1700000000.5")])
        .file("ignored-too", b"pax")
        .global(&[("comment", b"git sha")])
        .gz();
    assert_eq!(
        visited(&bytes).unwrap(),
        [
            "file main.tf \"resource \\\"null_resource\\\" \\\"a\\\" {}\\n\" exec=false",
            "dir modules",
            "file modules/x/main.tf \"\" exec=false",
            "symlink modules/x/shared.tf -> ../../main.tf",
            "symlink mods -> modules",
            "symlink modules/x/self -> .",
            "file bin/tool \"#!/bin/sh\\n\" exec=true",
            "hardlink bin/tool2 -> bin/tool",
            &format!("file {long} \"long\" exec=false"),
            "file pax/name.tf \"pax\" exec=false",
        ]
    );
}

#[test]
fn pack_round_trips() {
    let bytes = pack([("main.tf", &b"x"[..]), ("sub/a.tf", &b"yy"[..])]);
    assert_eq!(
        visited(&bytes).unwrap(),
        [
            "file main.tf \"x\" exec=false",
            "file sub/a.tf \"yy\" exec=false"
        ]
    );
}

#[test]
fn absolute_and_parent_paths_are_refused() {
    for path in ["../evil.tf", "/etc/evil", "a/../../b", "a/.."] {
        let err = check(Raw::default().file(path, b"x")).unwrap_err();
        assert!(
            matches!(err, TarballError::UnsafePath { .. }),
            "{path}: {err}"
        );
    }
    let err = check(Raw::default().file("ok", b"").hard("h", "../ok")).unwrap_err();
    assert!(matches!(err, TarballError::BadHardLink { .. }), "{err}");
}

#[test]
fn links_leaving_the_root_are_refused() {
    let problem = |raw: &mut Raw| match check(raw) {
        Err(TarballError::BadSymlink { problem, .. }) => problem,
        other => panic!("{other:?}"),
    };
    assert_eq!(
        problem(Raw::default().symlink("a/l", "../../etc/passwd")),
        LinkProblem::AboveRoot
    );
    assert_eq!(
        problem(Raw::default().symlink("l", "/etc/passwd")),
        LinkProblem::Absolute
    );
    assert_eq!(problem(Raw::default().symlink("l", "")), LinkProblem::Empty);
    // Through a link to the root, `..` still lands above it.
    assert_eq!(
        problem(Raw::default().symlink("x", ".").symlink("up", "x/x/x/..")),
        LinkProblem::AboveRoot
    );
    // A link into a directory, then `..` twice from there.
    assert_eq!(
        problem(
            Raw::default()
                .dir("d/e")
                .symlink("l", "d/e")
                .symlink("m", "l/../../..")
        ),
        LinkProblem::AboveRoot
    );
}

#[test]
fn a_chain_of_links_cannot_carry_entries_outside() {
    // The classic chain: `x -> .`, then entries placed through `x/x/x`.
    let err = check(
        Raw::default()
            .symlink("x", ".")
            .symlink("x/x/x/up", "../../..")
            .file("x/x/x/up/tmp/f", b"pwned"),
    )
    .unwrap_err();
    assert_eq!(
        err,
        TarballError::ThroughLink {
            path: "x/x/x/up".into(),
            link: "x".into()
        }
    );
    let err = check(
        Raw::default()
            .dir("sub")
            .symlink("l", "sub")
            .file("l/f", b"x"),
    )
    .unwrap_err();
    assert!(matches!(err, TarballError::ThroughLink { .. }), "{err}");
    let err = check(Raw::default().file("f", b"").file("f/g", b"")).unwrap_err();
    assert!(matches!(err, TarballError::ThroughFile { .. }), "{err}");
}

#[test]
fn parent_of_a_missing_component_is_refused() {
    // `b -> x/..` is harmless while `x` is missing, but `x -> .` would then
    // make `b` lead above the root: it is refused at once.
    let err = check(Raw::default().symlink("b", "x/..").symlink("x", ".")).unwrap_err();
    assert_eq!(
        err,
        TarballError::BadSymlink {
            path: "b".into(),
            target: "x/..".into(),
            problem: LinkProblem::ParentOfMissing { name: "x".into() }
        }
    );
    // A file cannot become a directory later, but `..` after it is refused
    // just the same; so is `..` after a link that leads nowhere yet.
    let err = check(Raw::default().file("f", b"").symlink("b", "f/..")).unwrap_err();
    assert!(matches!(err, TarballError::BadSymlink { .. }), "{err}");
    let err = check(
        Raw::default()
            .symlink("m", "missing")
            .symlink("b", "m/../.."),
    )
    .unwrap_err();
    assert!(matches!(err, TarballError::BadSymlink { .. }), "{err}");
    // Descending into what does not exist yet is fine.
    check(Raw::default().symlink("later", "not/yet/there").dir("not")).unwrap();
}

#[test]
fn a_link_loop_is_refused_when_followed() {
    let err = check(
        Raw::default()
            .symlink("a", "b")
            .symlink("b", "a")
            .symlink("c", "a/x"),
    )
    .unwrap_err();
    assert!(
        matches!(
            err,
            TarballError::BadSymlink {
                problem: LinkProblem::TooManyHops,
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn entries_do_not_replace_other_kinds() {
    let replaces = |raw: &mut Raw| match check(raw) {
        Err(TarballError::Replaces { existing, new, .. }) => (existing, new),
        other => panic!("{other:?}"),
    };
    assert_eq!(
        replaces(Raw::default().dir("d").symlink("d", "..")),
        ("directory", "symbolic link")
    );
    assert_eq!(
        replaces(Raw::default().symlink("l", "x").file("l", b"")),
        ("symbolic link", "file")
    );
    assert_eq!(
        replaces(Raw::default().symlink("l", "x").symlink("l", "y")),
        ("symbolic link", "symbolic link")
    );
    assert_eq!(
        replaces(Raw::default().file("f", b"").symlink("f", "x")),
        ("file", "symbolic link")
    );
    assert_eq!(
        replaces(Raw::default().file("f", b"").dir("f")),
        ("file", "directory")
    );
    assert_eq!(
        replaces(Raw::default().dir("d").file("d", b"")),
        ("directory", "file")
    );
    assert_eq!(
        replaces(Raw::default().dir("d").file("f", b"").hard("d", "f")),
        ("directory", "hard link")
    );
    // A file may replace a file, and a directory be listed again.
    check(
        Raw::default()
            .file("f", b"1")
            .file("f", b"2")
            .dir("d")
            .dir("d/"),
    )
    .unwrap();
}

#[test]
fn hard_links_must_name_an_earlier_file() {
    let problem = |raw: &mut Raw| match check(raw) {
        Err(TarballError::BadHardLink { problem, .. }) => problem,
        other => panic!("{other:?}"),
    };
    assert_eq!(
        problem(Raw::default().hard("h", "/etc/passwd")),
        "its target is not a relative path inside the archive"
    );
    assert_eq!(
        problem(Raw::default().hard("h", "later").file("later", b"")),
        "no earlier entry has that path"
    );
    assert_eq!(
        problem(Raw::default().dir("d").hard("h", "d")),
        "its target is a directory"
    );
    assert_eq!(
        problem(
            Raw::default()
                .file("d/f", b"")
                .symlink("l", "d")
                .hard("h", "l/f")
        ),
        "its target lies under a symbolic link"
    );
    assert_eq!(
        problem(Raw::default().symlink("l", "x").hard("h", "l")),
        "its target is a symbolic link"
    );
    assert_eq!(
        problem(Raw::default().file("f", b"").hard("f", "f")),
        "it names itself"
    );
    assert_eq!(
        problem(Raw::default().file("f", b"").hard("h", "")),
        "its target is empty"
    );
}

#[test]
fn a_pax_size_that_disagrees_with_the_header_is_refused() {
    // A 0.6 MB upload once claimed 600 MiB this way.
    let err = check(
        Raw::default()
            .pax(&[("size", b"629145600")])
            .file("main.tf", b"small"),
    )
    .unwrap_err();
    assert_eq!(
        err,
        TarballError::PaxSizeMismatch {
            path: "main.tf".into(),
            pax: 629_145_600,
            header: 5
        }
    );
    // Agreeing is fine.
    check(
        Raw::default()
            .pax(&[("size", b"5")])
            .file("main.tf", b"small"),
    )
    .unwrap();
}

#[test]
fn huge_extended_headers_are_refused_before_they_are_read() {
    // Headers only, declaring 1 TiB: refused from the size field alone, so
    // nothing is allocated and the missing data is never looked for.
    for kind in [b'L', b'K', b'x', b'g'] {
        let err = check(Raw::default().put("././@LongLink", kind, 1 << 40, "", b"")).unwrap_err();
        assert!(
            matches!(err, TarballError::ExtendedHeaderTooLarge { size, max, .. } if size == 1 << 40 && max == 64 * KIB),
            "{}: {err}",
            char::from(kind)
        );
    }
    // Just over the cap, with the data present.
    let name = "a".repeat(64 * 1024);
    let err = check(Raw::default().long_name(&name).file("x", b"")).unwrap_err();
    assert!(
        matches!(err, TarballError::ExtendedHeaderTooLarge { .. }),
        "{err}"
    );
}

#[test]
fn long_paths_are_refused() {
    let long = format!("{}/x", "d/".repeat(2100));
    let err = check(
        Raw::default()
            .pax(&[("path", long.as_bytes())])
            .file("x", b""),
    )
    .unwrap_err();
    assert!(
        matches!(
            err,
            TarballError::NameTooLong {
                what: "path",
                max: 4096,
                ..
            }
        ),
        "{err}"
    );
    let wide = "w".repeat(256);
    let err = check(Raw::default().long_name(&wide).file("x", b"")).unwrap_err();
    assert!(
        matches!(
            err,
            TarballError::NameTooLong {
                what: "path component",
                ..
            }
        ),
        "{err}"
    );
    let err = check(
        Raw::default()
            .pax(&[("linkpath", long.as_bytes())])
            .symlink("l", ""),
    )
    .unwrap_err();
    assert!(
        matches!(
            err,
            TarballError::NameTooLong {
                what: "link target",
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn a_million_tiny_entries_are_refused_quickly() {
    // Zero-size entries, written straight through a fast encoder.
    let start = std::time::Instant::now();
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    let block = header(b"f", b'0', 0, b"", 0o644);
    let chunk: Vec<u8> = std::iter::repeat_n(block, 2048).flatten().collect();
    for _ in 0..1_000_000 / 2048 + 1 {
        enc.write_all(&chunk).unwrap();
    }
    let bytes = enc.finish().unwrap();
    let built = start.elapsed();
    let err = check_tarball(&bytes, TarballLimits::default()).unwrap_err();
    assert_eq!(
        err,
        TarballError::TooManyEntries {
            path: "f".into(),
            max: 100_000
        }
    );
    let checked = start.elapsed() - built;
    assert!(
        checked.as_secs() < 20,
        "took {checked:?} (building took {built:?})"
    );
}

#[test]
fn gzip_bombs_are_refused() {
    // One entry declaring 1 GiB, its data absent.
    let err = check(Raw::default().put("big", b'0', 1 << 30, "", b"")).unwrap_err();
    assert_eq!(
        err,
        TarballError::TooLarge {
            path: "big".into(),
            max: 512 * MIB
        }
    );
    // 600 MiB of zeros that compress to 0.6 MB: refused on the declared
    // size, before any of it is inflated. Gzip members concatenate into one
    // stream, so one compressed MiB of zeros, repeated, builds it cheaply.
    let member = |data: &[u8]| {
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        enc.write_all(data).unwrap();
        enc.finish().unwrap()
    };
    let mut bytes = member(&header(b"zeros", b'0', 600 * MIB, b"", 0o644));
    let zeros = member(&vec![0u8; MIB as usize]);
    for _ in 0..600 {
        bytes.extend_from_slice(&zeros);
    }
    assert!(bytes.len() < MIB as usize, "{}", bytes.len());
    let start = std::time::Instant::now();
    let err = check_tarball(&bytes, TarballLimits::default()).unwrap_err();
    assert!(matches!(err, TarballError::TooLarge { .. }), "{err}");
    assert!(start.elapsed().as_secs() < 2);
    // Data behind a directory header counts against the stream.
    let small = TarballLimits {
        max_unpacked: MIB,
        max_entries: 10,
        ..TarballLimits::default()
    };
    let err = check_tarball(
        &bytes_of(Raw::default().put("d", b'5', 600 * MIB, "", b"")),
        small,
    )
    .unwrap_err();
    assert_eq!(
        err,
        TarballError::StreamTooLarge {
            max: small.max_stream()
        }
    );
}

fn bytes_of(raw: &mut Raw) -> Vec<u8> {
    raw.gz()
}

#[test]
fn devices_fifos_and_sparse_files_are_refused() {
    for (kind, name) in [
        (b'3', "character device"),
        (b'4', "block device"),
        (b'6', "fifo"),
        (b'S', "sparse file"),
        (b'Z', "entry of unknown type 'Z'"),
    ] {
        let err = check(Raw::default().put("dev/thing", kind, 0, "", b"")).unwrap_err();
        assert_eq!(
            err,
            TarballError::UnsupportedEntry {
                path: "dev/thing".into(),
                kind: name.into()
            }
        );
    }
    let err = check(
        Raw::default()
            .pax(&[("GNU.sparse.major", b"1")])
            .file("s", b""),
    )
    .unwrap_err();
    assert!(
        matches!(err, TarballError::UnsupportedEntry { .. }),
        "{err}"
    );
}

#[test]
fn ambiguous_extended_headers_are_refused() {
    let corrupt = |raw: &mut Raw| matches!(check(raw), Err(TarballError::Corrupt(_)));
    assert!(corrupt(
        Raw::default()
            .long_name("a")
            .pax(&[("path", b"b")])
            .file("c", b"")
    ));
    assert!(corrupt(
        Raw::default().long_name("a").long_name("b").file("c", b"")
    ));
    assert!(corrupt(Raw::default().pax(&[]).pax(&[]).file("c", b"")));
    assert!(corrupt(Raw::default().file("a", b"").long_name("b")));
    assert!(corrupt(
        Raw::default().global(&[("path", b"x")]).file("c", b"")
    ));
    assert!(corrupt(
        Raw::default().pax(&[("path", b"a\0b")]).file("c", b"")
    ));
}

#[test]
fn limits_hold() {
    let raw = || {
        let mut r = Raw::default();
        r.file("a", &[0u8; 600]).file("b", &[0u8; 600]);
        r
    };
    let limits = TarballLimits {
        max_unpacked: 1000,
        max_entries: 10,
        ..TarballLimits::default()
    };
    assert_eq!(
        check_tarball(&raw().gz(), limits),
        Err(TarballError::TooLarge {
            path: "b".into(),
            max: 1000
        })
    );
    // Hard links are unpacked as copies, so they count again.
    let linked = Raw::default().file("a", &[0u8; 600]).hard("b", "a").gz();
    assert!(matches!(
        check_tarball(&linked, limits),
        Err(TarballError::TooLarge { .. })
    ));
    let limits = TarballLimits {
        max_entries: 1,
        ..TarballLimits::default()
    };
    assert!(matches!(
        check_tarball(&raw().gz(), limits),
        Err(TarballError::TooManyEntries { max: 1, .. })
    ));
    // Directories implied by paths count too.
    assert!(matches!(
        check_tarball(
            &Raw::default().file("a/b/c/d", b"").gz(),
            TarballLimits {
                max_entries: 3,
                ..limits
            }
        ),
        Err(TarballError::TooManyEntries { .. })
    ));
    let limits = TarballLimits {
        max_tree_bytes: 100,
        ..TarballLimits::default()
    };
    let err =
        check_tarball(&Raw::default().symlink("l", &"t/".repeat(50)).gz(), limits).unwrap_err();
    assert!(matches!(err, TarballError::TreeTooLarge { .. }), "{err}");
}

#[test]
fn broken_archives_are_refused() {
    assert_eq!(
        check_tarball(b"plain text", TarballLimits::default()),
        Err(TarballError::NotGzip)
    );
    let mut truncated = Raw::default().file("main.tf", &[b'x'; 4096]).gz();
    truncated.truncate(truncated.len() / 2);
    assert!(matches!(
        check_tarball(&truncated, TarballLimits::default()),
        Err(TarballError::Corrupt(_))
    ));
    // The header claims more data than the archive holds.
    let mut raw = Raw::default();
    raw.put("short", b'0', 10 * KIB, "", b"only this");
    let bytes = {
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        enc.write_all(&raw.0).unwrap();
        enc.finish().unwrap()
    };
    assert!(matches!(
        check_tarball(&bytes, TarballLimits::default()),
        Err(TarballError::Corrupt(_))
    ));
}

#[test]
fn messages_name_the_entry_and_the_rule() {
    let err = check(Raw::default().symlink("x", ".").file("x/evil", b"")).unwrap_err();
    assert_eq!(
        err.to_string(),
        "the configuration archive's entry \"x/evil\" lies under \"x\", which an earlier entry made a symbolic link; entries may not be placed through links"
    );
    let err = check(Raw::default().symlink("modules/l", "../../etc")).unwrap_err();
    assert_eq!(
        err.to_string(),
        "the configuration archive's symbolic link \"modules/l\" -> \"../../etc\" is refused: it leads above the top directory of the configuration"
    );
    let err = check(Raw::default().put("p", b'6', 0, "", b"")).unwrap_err();
    assert_eq!(
        err.to_string(),
        "the configuration archive's entry \"p\" is a fifo; only files, directories and links are allowed"
    );
    // A hostile name is cut short in messages.
    let err = check(
        Raw::default()
            .long_name(&format!("../{}", "a".repeat(250)))
            .file("x", b""),
    )
    .unwrap_err();
    assert!(err.to_string().len() < 400, "{err}");
}

#[test]
fn a_visitor_error_stops_the_walk() {
    let bytes = Raw::default().file("a", b"1").file("b", b"2").gz();
    let mut seen = 0;
    let err = walk(&bytes, TarballLimits::default(), |_| {
        seen += 1;
        Err("disk full")
    })
    .unwrap_err();
    assert!(matches!(err, WalkError::Visit("disk full")));
    assert_eq!(seen, 1);
}
