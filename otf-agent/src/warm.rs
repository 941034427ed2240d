//! Warm applies: a plan's initialised work directory, kept by the runner
//! that ran the plan, so that the run's apply, when it lands on the same
//! runner and nothing it depends on changed, skips downloading and
//! unpacking the configuration and `terraform init`.
//!
//! What the plan depended on is remembered here, in this process only (a
//! job cannot forge it): the engine, the configuration version, the
//! workspace's working directory, the variables, and digests of the state
//! it started from, the plan file and the lock file it uploaded. The apply
//! compares them with what otfd hands it; on any difference, a missing
//! directory or a restart of the runner it takes the full path. Every file
//! otfd provides (plan, lock file, variables, state, backend override) is
//! written again from otfd's copy either way.
//!
//! Kept directories live under `<work dir>/warm/<run id>`; at most the
//! runner's `--keep-plans` are kept (the oldest go first), none longer than
//! [`KEEP_FOR`], and all are removed when the runner starts.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use otf_core::ids::{ConfigVersionId, RunId};
use sha2::{Digest, Sha256};

use crate::protocol::VariableSpec;

/// How long a kept plan directory waits for its apply.
pub const KEEP_FOR: Duration = Duration::from_secs(3600);

/// A SHA-256 digest.
pub type Digest32 = [u8; 32];

pub fn digest(bytes: &[u8]) -> Digest32 {
    Sha256::digest(bytes).into()
}

/// What a plan depended on, and where its directory is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WarmPlan {
    /// The kept job directory.
    pub dir: PathBuf,
    /// Where the plan ran: links terraform made (`.terraform/providers`
    /// into the job's plugin cache) name this directory.
    pub origin: PathBuf,
    /// Where terraform ran, relative to `dir`.
    pub cwd: PathBuf,
    pub engine: PathBuf,
    pub configuration_version: Option<ConfigVersionId>,
    pub working_directory: String,
    pub variables: Vec<VariableSpec>,
    /// The state the plan started from (None: no state).
    pub state: Option<Digest32>,
    pub plan: Digest32,
    pub lock_file: Option<Digest32>,
}

/// What the apply found, to compare with the plan's [`WarmPlan`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApplyInputs<'a> {
    pub engine: &'a Path,
    pub configuration_version: Option<&'a ConfigVersionId>,
    pub working_directory: &'a str,
    pub variables: &'a [VariableSpec],
    pub state: Option<&'a [u8]>,
    pub plan: &'a [u8],
    pub lock_file: Option<&'a [u8]>,
}

impl WarmPlan {
    /// Move the kept directory to `to` (the apply's job directory), with
    /// the links terraform made inside it following. On failure the kept directory is removed.
    pub fn move_to(self, to: &Path) -> std::io::Result<WarmPlan> {
        if let Err(e) = std::fs::rename(&self.dir, to) {
            let _ = std::fs::remove_dir_all(&self.dir);
            return Err(e);
        }
        let providers = to.join(&self.cwd).join(".terraform/providers");
        relink(&providers, &self.origin, to, 5);
        Ok(WarmPlan {
            dir: to.to_path_buf(),
            origin: to.to_path_buf(),
            ..self
        })
    }

    /// Why the plan's directory cannot serve this apply; None when it can.
    pub fn mismatch(&self, now: &ApplyInputs<'_>) -> Option<&'static str> {
        if self.engine != now.engine {
            return Some("the engine changed");
        }
        if self.configuration_version.as_ref() != now.configuration_version {
            return Some("the configuration version changed");
        }
        if self.working_directory != now.working_directory {
            return Some("the working directory changed");
        }
        if self.variables != now.variables {
            return Some("the variables changed");
        }
        if self.state != now.state.map(digest) {
            return Some("the state changed");
        }
        if self.plan != digest(now.plan) {
            return Some("the saved plan differs");
        }
        if self.lock_file != now.lock_file.map(digest) {
            return Some("the lock file differs");
        }
        if !self.dir.join(&self.cwd).join(".terraform").is_dir() {
            return Some("the plan's directory is incomplete");
        }
        None
    }
}

/// Re-point links `depth` levels below `dir` whose target lies under
/// `from` to the same place under `to`.
fn relink(dir: &Path, from: &Path, to: &Path, depth: usize) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.filter_map(Result::ok) {
        let path = entry.path();
        let Ok(kind) = entry.file_type() else {
            continue;
        };
        if kind.is_symlink() {
            let Ok(target) = std::fs::read_link(&path) else {
                continue;
            };
            if let Ok(rest) = target.strip_prefix(from) {
                let _ = std::fs::remove_file(&path);
                let _ = std::os::unix::fs::symlink(to.join(rest), &path);
            }
        } else if kind.is_dir() && depth > 1 {
            relink(&path, from, to, depth - 1);
        }
    }
}

/// The kept plan directories of one runner.
#[derive(Debug)]
pub struct WarmPlans {
    root: PathBuf,
    max: usize,
    kept: Mutex<HashMap<RunId, (WarmPlan, Instant)>>,
}

impl WarmPlans {
    /// Kept directories go under `root`, which is emptied now (what an
    /// earlier process kept is not known to be sound).
    pub fn new(root: PathBuf, max: usize) -> WarmPlans {
        let _ = std::fs::remove_dir_all(&root);
        WarmPlans {
            root,
            max,
            kept: Mutex::new(HashMap::new()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<RunId, (WarmPlan, Instant)>> {
        self.kept.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Keep the plan's directory for the run's apply: it moves under the
    /// warm root. False (and the directory is left where it is, for the
    /// caller to remove) when nothing is kept.
    pub fn keep(&self, run: &RunId, mut plan: WarmPlan) -> bool {
        if self.max == 0 || crate::workdir::create_private(&self.root).is_err() {
            return false;
        }
        let dest = self.root.join(run.as_str());
        let _ = std::fs::remove_dir_all(&dest);
        if std::fs::rename(&plan.dir, &dest).is_err() {
            return false;
        }
        plan.dir = dest;
        let evicted = {
            let mut kept = self.lock();
            let mut evicted: Vec<PathBuf> = Vec::new();
            kept.retain(|_, (p, at)| {
                let fresh = at.elapsed() < KEEP_FOR;
                if !fresh {
                    evicted.push(p.dir.clone());
                }
                fresh
            });
            if let Some((old, _)) = kept.insert(run.clone(), (plan, Instant::now())) {
                evicted.push(old.dir);
            }
            while kept.len() > self.max {
                let oldest = kept
                    .iter()
                    .min_by_key(|(_, (_, at))| *at)
                    .map(|(r, _)| r.clone());
                match oldest.and_then(|r| kept.remove(&r)) {
                    Some((p, _)) => evicted.push(p.dir),
                    None => break,
                }
            }
            evicted
        };
        for dir in evicted
            .iter()
            .filter(|d| **d != self.root.join(run.as_str()))
        {
            let _ = std::fs::remove_dir_all(dir);
        }
        true
    }

    /// The run's kept plan, taken out (its directory is the caller's now);
    /// None when none is kept or it waited too long (then it is removed).
    pub fn take(&self, run: &RunId) -> Option<WarmPlan> {
        let (plan, at) = self.lock().remove(run)?;
        if at.elapsed() >= KEEP_FOR {
            let _ = std::fs::remove_dir_all(&plan.dir);
            return None;
        }
        Some(plan)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(n: u8) -> RunId {
        format!("run-{n:0>16}").parse().unwrap()
    }

    fn plan(dir: PathBuf) -> WarmPlan {
        WarmPlan {
            origin: dir.clone(),
            dir,
            cwd: PathBuf::from("config"),
            engine: PathBuf::from("/bin/terraform"),
            configuration_version: None,
            working_directory: String::new(),
            variables: Vec::new(),
            state: None,
            plan: digest(b"plan"),
            lock_file: Some(digest(b"lock")),
        }
    }

    fn job_dir(root: &Path, name: &str) -> PathBuf {
        let d = root.join(name);
        std::fs::create_dir_all(d.join("config/.terraform")).unwrap();
        d
    }

    #[test]
    fn kept_plans_are_taken_once_and_the_oldest_evicted() {
        let base = tempfile::tempdir().unwrap();
        let warm = WarmPlans::new(base.path().join("warm"), 2);
        for n in 1..=3 {
            let dir = job_dir(base.path(), &format!("job-{n}"));
            assert!(warm.keep(&run(n), plan(dir.clone())));
            assert!(!dir.exists(), "moved under the warm root");
        }
        assert!(warm.take(&run(1)).is_none(), "the oldest was evicted");
        assert!(!base.path().join("warm").join(run(1).as_str()).exists());
        let p = warm.take(&run(3)).expect("kept");
        assert!(p.dir.join("config/.terraform").is_dir());
        assert!(warm.take(&run(3)).is_none(), "taken once");
        // A new runner starts from nothing.
        let again = WarmPlans::new(base.path().join("warm"), 2);
        assert!(again.take(&run(2)).is_none());
        assert!(!base.path().join("warm").exists());
    }

    #[test]
    fn a_moved_directory_keeps_its_provider_links_working() {
        let base = tempfile::tempdir().unwrap();
        let plan_dir = job_dir(base.path(), "plan-job");
        let pkg = "registry.terraform.io/hashicorp/null/2.1.2/linux_amd64";
        let cached = plan_dir.join("plugins").join(pkg);
        std::fs::create_dir_all(&cached).unwrap();
        std::fs::write(cached.join("provider"), "binary").unwrap();
        let link = plan_dir.join("config/.terraform/providers").join(pkg);
        std::fs::create_dir_all(link.parent().unwrap()).unwrap();
        std::os::unix::fs::symlink(&cached, &link).unwrap();
        let outside = base.path().join("shared");
        let other = plan_dir.join("config/.terraform/providers/example.com/x/y/1.0.0/linux_amd64");
        std::fs::create_dir_all(other.parent().unwrap()).unwrap();
        std::os::unix::fs::symlink(&outside, &other).unwrap();
        let apply_dir = base.path().join("apply-job");
        let moved = plan(plan_dir.clone()).move_to(&apply_dir).unwrap();
        assert_eq!(moved.dir, apply_dir);
        let link = apply_dir.join("config/.terraform/providers").join(pkg);
        assert_eq!(
            std::fs::read_link(&link).unwrap(),
            apply_dir.join("plugins").join(pkg)
        );
        assert_eq!(
            std::fs::read_to_string(link.join("provider")).unwrap(),
            "binary"
        );
        let other = apply_dir.join("config/.terraform/providers/example.com/x/y/1.0.0/linux_amd64");
        assert_eq!(
            std::fs::read_link(other).unwrap(),
            outside,
            "links elsewhere stay"
        );
    }

    #[test]
    fn any_difference_means_the_full_path() {
        let base = tempfile::tempdir().unwrap();
        let p = plan(job_dir(base.path(), "job"));
        let engine = PathBuf::from("/bin/terraform");
        let same = ApplyInputs {
            engine: &engine,
            configuration_version: None,
            working_directory: "",
            variables: &[],
            state: None,
            plan: b"plan",
            lock_file: Some(b"lock"),
        };
        assert_eq!(p.mismatch(&same), None);
        let other = PathBuf::from("/bin/tofu");
        let vars = [VariableSpec {
            key: "k".into(),
            value: "v".into(),
            category: "terraform".into(),
            hcl: false,
            sensitive: false,
        }];
        for (changed, why) in [
            (
                ApplyInputs {
                    engine: &other,
                    ..same.clone()
                },
                "the engine changed",
            ),
            (
                ApplyInputs {
                    working_directory: "sub",
                    ..same.clone()
                },
                "the working directory changed",
            ),
            (
                ApplyInputs {
                    variables: &vars,
                    ..same.clone()
                },
                "the variables changed",
            ),
            (
                ApplyInputs {
                    state: Some(b"{}"),
                    ..same.clone()
                },
                "the state changed",
            ),
            (
                ApplyInputs {
                    plan: b"other",
                    ..same.clone()
                },
                "the saved plan differs",
            ),
            (
                ApplyInputs {
                    lock_file: None,
                    ..same.clone()
                },
                "the lock file differs",
            ),
        ] {
            assert_eq!(p.mismatch(&changed), Some(why));
        }
        std::fs::remove_dir_all(p.dir.join("config/.terraform")).unwrap();
        assert_eq!(
            p.mismatch(&same),
            Some("the plan's directory is incomplete")
        );
    }
}
