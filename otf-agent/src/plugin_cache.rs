//! The provider plugin cache shared by the jobs of one runner.
//!
//! Terraform's own plugin cache (`TF_PLUGIN_CACHE_DIR`) is not safe under
//! concurrent `init`s, and a cache a job can write is a cache any job can
//! poison. So each job gets its own cache directory, inside its job
//! directory, seeded with symbolic links to the packages of the shared
//! cache; terraform links from it (or installs what is missing into it).
//! Right after a successful `init` (before any of the configuration's code
//! runs: `init` runs none), the packages terraform installed move into the
//! shared cache with one `rename` each (atomic: another job sees a whole
//! package or none, and the first to arrive wins), and a link takes their
//! place. Jobs only ever read the shared cache: the sandbox grants it read
//! access only.
//!
//! Packages live as terraform lays them out:
//! `<host>/<namespace>/<type>/<version>/<os>_<arch>/`.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

/// Components of a package's path below the cache's root.
const DEPTH: usize = 5;

/// The shared cache of one runner.
#[derive(Debug, Clone)]
pub struct PluginCache {
    shared: PathBuf,
}

impl PluginCache {
    /// The cache at `shared` (a private directory, created if missing).
    pub fn new(shared: PathBuf) -> std::io::Result<PluginCache> {
        crate::workdir::create_private(&shared)?;
        Ok(PluginCache { shared })
    }

    /// The cache of a runner whose jobs start from `env`, at `shared`; None
    /// when the operator named a cache of their own (`TF_PLUGIN_CACHE_DIR`)
    /// or `shared` cannot be made.
    pub fn for_runner(env: &[(OsString, OsString)], shared: PathBuf) -> Option<PluginCache> {
        if env.iter().any(|(k, _)| k == "TF_PLUGIN_CACHE_DIR") {
            return None;
        }
        match PluginCache::new(shared) {
            Ok(c) => Some(c),
            Err(e) => {
                tracing::warn!(error = %e, "cannot make the shared plugin cache; every init downloads its providers");
                None
            }
        }
    }

    /// Where the shared packages are (the sandbox's read grant).
    pub fn shared(&self) -> &Path {
        &self.shared
    }

    /// Make `job_cache` (inside a job directory) a cache holding a link to
    /// every shared package.
    pub fn seed(&self, job_cache: &Path) -> std::io::Result<()> {
        crate::workdir::create_private(job_cache)?;
        for rel in packages(&self.shared) {
            let link = job_cache.join(&rel);
            if let Some(parent) = link.parent() {
                crate::workdir::create_private(parent)?;
            }
            match std::os::unix::fs::symlink(self.shared.join(&rel), &link) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Move the packages terraform installed into `job_cache` into the
    /// shared cache, each replaced by a link to its shared copy. A package
    /// another job promoted first stays the job's own. Failures only cost
    /// the next jobs a download.
    pub fn promote(&self, job_cache: &Path) {
        for rel in packages(job_cache) {
            let own = job_cache.join(&rel);
            let is_dir = std::fs::symlink_metadata(&own).is_ok_and(|m| m.file_type().is_dir());
            let shared = self.shared.join(&rel);
            if !is_dir || shared.exists() {
                continue;
            }
            let Some(parent) = shared.parent() else {
                continue;
            };
            if crate::workdir::create_private(parent).is_err() {
                continue;
            }
            // rename(2) does not replace a non-empty directory: of two jobs
            // promoting the same package, one wins, the other keeps its own.
            if std::fs::rename(&own, &shared).is_ok() {
                read_only(&shared);
                if std::os::unix::fs::symlink(&shared, &own).is_err() {
                    tracing::warn!(package = %rel.display(), "cannot link a promoted provider package back into its job's cache");
                }
            }
        }
    }
}

/// The package directories (or links) `DEPTH` levels below `root`,
/// relative to it.
fn packages(root: &Path) -> Vec<PathBuf> {
    let mut level = vec![PathBuf::new()];
    for depth in 0..DEPTH {
        let mut next = Vec::new();
        for rel in &level {
            let Ok(entries) = std::fs::read_dir(root.join(rel)) else {
                continue;
            };
            for entry in entries.filter_map(Result::ok) {
                let name = entry.file_name();
                if name.to_string_lossy().starts_with('.') {
                    continue;
                }
                let Ok(kind) = entry.file_type() else {
                    continue;
                };
                // Links only count as packages (a seeded cache), never as
                // directories to walk into.
                if kind.is_dir() || (kind.is_symlink() && depth == DEPTH - 1) {
                    next.push(rel.join(name));
                }
            }
        }
        level = next;
    }
    level.sort();
    level
}

/// Make a promoted package's files read-only (0555); its directory stays
/// removable by the runner. The sandbox is what keeps jobs from writing.
fn read_only(dir: &Path) {
    use std::os::unix::fs::PermissionsExt;
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.filter_map(Result::ok) {
            if entry.file_type().is_ok_and(|k| k.is_file()) {
                let _ =
                    std::fs::set_permissions(entry.path(), std::fs::Permissions::from_mode(0o555));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PKG: &str = "registry.terraform.io/hashicorp/null/2.1.2/linux_amd64";

    fn install(cache: &Path, body: &str) {
        let dir = cache.join(PKG);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("terraform-provider-null"), body).unwrap();
    }

    #[test]
    fn installed_packages_move_to_the_shared_cache_and_seed_the_next_job() {
        let base = tempfile::tempdir().unwrap();
        let cache = PluginCache::new(base.path().join("plugins")).unwrap();
        let job1 = base.path().join("job1/plugins");
        cache.seed(&job1).unwrap();
        assert!(packages(&job1).is_empty());
        install(&job1, "binary");
        cache.promote(&job1);
        let shared = cache.shared().join(PKG);
        assert_eq!(
            std::fs::read_to_string(shared.join("terraform-provider-null")).unwrap(),
            "binary"
        );
        assert!(std::fs::symlink_metadata(job1.join(PKG))
            .unwrap()
            .file_type()
            .is_symlink());
        assert_eq!(
            std::fs::read_to_string(job1.join(PKG).join("terraform-provider-null")).unwrap(),
            "binary"
        );
        // The next job finds it through a link.
        let job2 = base.path().join("job2/plugins");
        cache.seed(&job2).unwrap();
        assert_eq!(packages(&job2), [PathBuf::from(PKG)]);
        assert_eq!(std::fs::read_link(job2.join(PKG)).unwrap(), shared);
        // A second copy of a package already shared stays the job's own.
        let job3 = base.path().join("job3/plugins");
        std::fs::create_dir_all(&job3).unwrap();
        install(&job3, "other");
        cache.promote(&job3);
        assert!(std::fs::symlink_metadata(job3.join(PKG))
            .unwrap()
            .file_type()
            .is_dir());
        assert_eq!(
            std::fs::read_to_string(shared.join("terraform-provider-null")).unwrap(),
            "binary"
        );
        // Seeding twice is harmless; promoting links does nothing.
        cache.seed(&job2).unwrap();
        cache.promote(&job2);
        assert_eq!(std::fs::read_link(job2.join(PKG)).unwrap(), shared);
    }
}
