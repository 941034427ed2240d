//! The virtual tree: what the archive has created so far, and the rules that
//! keep every entry and every symbolic link inside the root.
//!
//! # Why no link can ever lead outside the root
//!
//! The rules, checked entry by entry against the tree built so far:
//!
//! 1. An entry's parent path is walked from the root through directories
//!    only: a parent that is a link (or a file) is refused. So every entry is
//!    created at its own path, inside the root, never through a link.
//! 2. Nothing existing changes kind: a directory stays a directory (with the
//!    same parent), a link stays a link with the same target (a link may not
//!    be replaced, nor replace anything), a file stays a file. Only names
//!    that do not exist yet get new entries. So the tree only ever grows.
//! 3. A link's target is resolved as the kernel would, from the link's
//!    directory, following earlier links (at most [`MAX_LINK_HOPS`] in one
//!    resolution, as Linux). Absolute targets, and `..` at the root, are
//!    refused. `..` is applied only to a position that is an existing real
//!    directory: once resolution reaches a name that is missing (or a file,
//!    under which nothing can ever exist), it is *dead*, and a `..` anywhere
//!    after that point, in the target or in any link being expanded around
//!    it, is refused.
//!
//! Now take any later state of the tree and the kernel resolving a link `L`
//! accepted earlier. Every step the checker took before the first dead point
//! went through existing directories, `..` onto existing directories, and
//! expansions of existing links that themselves ended at existing
//! directories; by (2) none of these has changed, so the kernel takes the
//! same steps and stays where the checker stayed: inside the root. After the
//! first dead point only plain names follow (by 3). A plain name either
//! descends into a directory (inside the root), stops (missing, or a file),
//! or expands a link `M` created later; `M` was accepted by the same rules,
//! so its expansion, and then the plain names after it, stay inside by the
//! same argument applied to a resolution with fewer expansions left (the
//! kernel, like the checker, performs finitely many). By induction on the
//! number of expansions no resolution of any link leaves the root; with (1),
//! no entry is created outside it, and any path of plain names from the root
//! (the working directory, files the runner writes) stays inside it too.

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::path::{Component, Path, PathBuf};

use super::{shown, TarballError, TarballLimits};

/// Links followed in one resolution, as Linux's `MAXSYMLINKS`.
pub const MAX_LINK_HOPS: u32 = 40;
/// Path components walked in one link's resolution, expansions included:
/// real links take a handful, and the cap keeps hostile chains cheap.
pub const MAX_STEPS_PER_LINK: u32 = 4096;
/// Path components walked resolving all the links of one archive.
pub const MAX_STEPS_PER_ARCHIVE: u64 = 1 << 24;

/// Why a symbolic link's target is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LinkProblem {
    #[error("the target is empty")]
    Empty,
    #[error("absolute targets are not allowed")]
    Absolute,
    #[error("it leads above the top directory of the configuration")]
    AboveRoot,
    #[error("`..` is applied to {name:?}, which is not an existing directory at this point of the archive, so a later entry could make it a link that leads anywhere")]
    ParentOfMissing { name: String },
    #[error("resolving it follows more than {MAX_LINK_HOPS} links")]
    TooManyHops,
    #[error("resolving it walks more than {MAX_STEPS_PER_LINK} path components")]
    TooManySteps,
    #[error("the archive's links take more than {MAX_STEPS_PER_ARCHIVE} path components to resolve in all")]
    TooMuchWork,
}

const ROOT: usize = 0;

enum Kind {
    Dir(BTreeMap<Box<OsStr>, usize>),
    File { size: u64 },
    Symlink(Box<Path>),
}

impl Kind {
    fn name(&self) -> &'static str {
        match self {
            Kind::Dir(_) => "directory",
            Kind::File { .. } => "file",
            Kind::Symlink(_) => "symbolic link",
        }
    }
}

struct Node {
    parent: usize,
    kind: Kind,
}

/// Where a resolution stands: at an existing real directory, or dead (see
/// the module documentation), remembering the name that made it so.
enum Pos {
    Dir(usize),
    Dead(Box<OsStr>),
}

/// The tree the archive has built so far: an arena of nodes, the root first.
pub struct Tree {
    nodes: Vec<Node>,
    bytes: u64,
    steps: u64,
    max_nodes: usize,
    max_bytes: u64,
}

fn display(path: &Path) -> String {
    shown(path.as_os_str().as_encoded_bytes())
}

impl Tree {
    pub fn new(limits: &TarballLimits) -> Self {
        Tree {
            nodes: vec![Node {
                parent: ROOT,
                kind: Kind::Dir(BTreeMap::new()),
            }],
            bytes: 0,
            steps: 0,
            max_nodes: limits.max_entries,
            max_bytes: limits.max_tree_bytes,
        }
    }

    fn child(&self, dir: usize, name: &OsStr) -> Option<usize> {
        match &self.nodes[dir].kind {
            Kind::Dir(children) => children.get(name).copied(),
            _ => None,
        }
    }

    /// Add a node under `dir`, which must be a directory, counting it and
    /// its remembered bytes against the limits.
    fn add(
        &mut self,
        path: &Path,
        dir: usize,
        name: &OsStr,
        kind: Kind,
    ) -> Result<usize, TarballError> {
        if self.nodes.len() > self.max_nodes {
            return Err(TarballError::TooManyEntries {
                path: display(path),
                max: self.max_nodes,
            });
        }
        let extra = match &kind {
            Kind::Symlink(target) => target.as_os_str().len() as u64,
            _ => 0,
        };
        self.bytes = self.bytes.saturating_add(name.len() as u64 + extra);
        if self.bytes > self.max_bytes {
            return Err(TarballError::TreeTooLarge {
                path: display(path),
                max: self.max_bytes,
            });
        }
        let id = self.nodes.len();
        self.nodes.push(Node { parent: dir, kind });
        if let Kind::Dir(children) = &mut self.nodes[dir].kind {
            children.insert(name.into(), id);
        }
        Ok(id)
    }

    /// Walk `path`'s parents from the root through directories only,
    /// creating missing ones; give the parent directory and the last name.
    fn parent<'p>(&mut self, path: &'p Path) -> Result<(usize, &'p OsStr), TarballError> {
        let mut names = path.components().filter_map(|c| match c {
            Component::Normal(n) => Some(n),
            _ => None,
        });
        let Some(last) = names.next_back() else {
            return Err(TarballError::UnsafePath {
                path: display(path),
            });
        };
        let mut dir = ROOT;
        let mut walked = PathBuf::new();
        for name in names {
            walked.push(name);
            dir = match self.child(dir, name) {
                None => self.add(path, dir, name, Kind::Dir(BTreeMap::new()))?,
                Some(id) => match self.nodes[id].kind {
                    Kind::Dir(_) => id,
                    Kind::Symlink(_) => {
                        return Err(TarballError::ThroughLink {
                            path: display(path),
                            link: display(&walked),
                        })
                    }
                    Kind::File { .. } => {
                        return Err(TarballError::ThroughFile {
                            path: display(path),
                            file: display(&walked),
                        })
                    }
                },
            };
        }
        Ok((dir, last))
    }

    fn replaces(&self, path: &Path, existing: usize, new: &'static str) -> TarballError {
        TarballError::Replaces {
            path: display(path),
            existing: self.nodes[existing].kind.name(),
            new,
        }
    }

    /// A directory at `path`: new, or one that already exists.
    pub fn dir(&mut self, path: &Path) -> Result<(), TarballError> {
        let (dir, name) = self.parent(path)?;
        match self.child(dir, name) {
            None => self
                .add(path, dir, name, Kind::Dir(BTreeMap::new()))
                .map(drop),
            Some(id) if matches!(self.nodes[id].kind, Kind::Dir(_)) => Ok(()),
            Some(id) => Err(self.replaces(path, id, "directory")),
        }
    }

    /// A regular file of `size` bytes at `path`: new, or replacing a file.
    pub fn file(&mut self, path: &Path, size: u64, new: &'static str) -> Result<(), TarballError> {
        let (dir, name) = self.parent(path)?;
        match self.child(dir, name) {
            None => self.add(path, dir, name, Kind::File { size }).map(drop),
            Some(id) => match &mut self.nodes[id].kind {
                Kind::File { size: old } => {
                    *old = size;
                    Ok(())
                }
                _ => Err(self.replaces(path, id, new)),
            },
        }
    }

    /// A symbolic link at `path` (which must not exist) to `target`, whose
    /// resolution must obey the rules of the module documentation.
    pub fn symlink(&mut self, path: &Path, target: &Path) -> Result<(), TarballError> {
        let refuse = |problem| TarballError::BadSymlink {
            path: display(path),
            target: display(target),
            problem,
        };
        let (dir, name) = self.parent(path)?;
        if let Some(id) = self.child(dir, name) {
            return Err(self.replaces(path, id, "symbolic link"));
        }
        if target.as_os_str().is_empty() {
            return Err(refuse(LinkProblem::Empty));
        }
        let (mut hops, mut steps) = (0, 0);
        let resolved = self.resolve(dir, target, &mut hops, &mut steps);
        self.steps = self.steps.saturating_add(u64::from(steps));
        resolved.map_err(refuse)?;
        if self.steps > MAX_STEPS_PER_ARCHIVE {
            return Err(refuse(LinkProblem::TooMuchWork));
        }
        self.add(path, dir, name, Kind::Symlink(target.into()))
            .map(drop)
    }

    /// A hard link at `path` to the earlier regular file `target`; gives the
    /// file's size, since the link is unpacked as a copy.
    pub fn hard_link(&mut self, path: &Path, target: &Path) -> Result<u64, TarballError> {
        let refuse = |problem| TarballError::BadHardLink {
            path: display(path),
            target: display(target),
            problem,
        };
        if path == target {
            return Err(refuse("it names itself"));
        }
        let mut at = ROOT;
        for c in target.components() {
            let Component::Normal(name) = c else {
                return Err(refuse(
                    "its target is not a relative path inside the archive",
                ));
            };
            at = match &self.nodes[at].kind {
                Kind::Dir(_) => self
                    .child(at, name)
                    .ok_or_else(|| refuse("no earlier entry has that path"))?,
                Kind::File { .. } => return Err(refuse("its target lies under a file")),
                Kind::Symlink(_) => return Err(refuse("its target lies under a symbolic link")),
            };
        }
        let size = match self.nodes[at].kind {
            Kind::File { size } => size,
            Kind::Dir(_) => return Err(refuse("its target is a directory")),
            Kind::Symlink(_) => return Err(refuse("its target is a symbolic link")),
        };
        self.file(path, size, "hard link")?;
        Ok(size)
    }

    /// Resolve `target` from the directory `from`, following links, as the
    /// kernel would on the tree as it stands; refuse what could escape.
    fn resolve(
        &self,
        from: usize,
        target: &Path,
        hops: &mut u32,
        steps: &mut u32,
    ) -> Result<Pos, LinkProblem> {
        let mut pos = Pos::Dir(from);
        for c in target.components() {
            *steps += 1;
            if *steps > MAX_STEPS_PER_LINK {
                return Err(LinkProblem::TooManySteps);
            }
            match c {
                Component::RootDir | Component::Prefix(_) => return Err(LinkProblem::Absolute),
                Component::CurDir => {}
                Component::ParentDir => match pos {
                    Pos::Dir(ROOT) => return Err(LinkProblem::AboveRoot),
                    Pos::Dir(id) => pos = Pos::Dir(self.nodes[id].parent),
                    Pos::Dead(name) => {
                        return Err(LinkProblem::ParentOfMissing {
                            name: shown(name.as_encoded_bytes()),
                        })
                    }
                },
                Component::Normal(name) => {
                    // Under a dead position everything stays dead.
                    let Pos::Dir(dir) = pos else { continue };
                    let Some(id) = self.child(dir, name) else {
                        pos = Pos::Dead(name.into());
                        continue;
                    };
                    pos = match &self.nodes[id].kind {
                        Kind::Dir(_) => Pos::Dir(id),
                        Kind::File { .. } => Pos::Dead(name.into()),
                        Kind::Symlink(link) => {
                            *hops += 1;
                            if *hops > MAX_LINK_HOPS {
                                return Err(LinkProblem::TooManyHops);
                            }
                            // The link's own target resolves from the
                            // directory holding the link, as in the kernel.
                            match self.resolve(dir, link, hops, steps)? {
                                Pos::Dir(to) => Pos::Dir(to),
                                Pos::Dead(_) => Pos::Dead(name.into()),
                            }
                        }
                    };
                }
            }
        }
        Ok(pos)
    }
}
