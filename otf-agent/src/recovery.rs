//! The server runner after a crash of otfd: its previous incarnation's
//! agent (whose id otfd keeps in its data dir) is retired so that its jobs
//! are recovered at once, and the states it left behind (in the spool, or
//! a `terraform.tfstate` in a job directory it never cleaned up) are
//! delivered as late states of their given-up applies. A state otfd does
//! not take stays where it is, and the log says how to push it.

use std::path::{Path, PathBuf};

use otf_core::artifacts::LateStateRefusal;
use otf_core::auth::Subject;
use otf_core::ids::{AgentId, JobId};
use otf_core::store::Store;
use otf_core::Core;

/// Where the server runner's identity and leftovers live.
#[derive(Debug, Clone)]
pub struct Recovery {
    /// Holds the id of the agent the server runner registered last.
    pub identity_file: PathBuf,
    pub spool_dir: PathBuf,
    pub work_dir: PathBuf,
}

/// `<job>-<attempt>` (a job directory or a spool file's stem).
fn job_and_attempt(name: &str) -> Option<(JobId, u32)> {
    let (job, attempt) = name.rsplit_once('-')?;
    Some((job.parse().ok()?, attempt.parse().ok()?))
}

impl Recovery {
    /// Before registering: retire the previous incarnation, if any.
    pub async fn retire_previous<S: Store>(&self, core: &Core<S>) {
        let Ok(text) = std::fs::read_to_string(&self.identity_file) else {
            return;
        };
        let Ok(previous) = text.trim().parse::<AgentId>() else {
            tracing::warn!(file = %self.identity_file.display(), "the server runner's identity file is unreadable; ignoring it");
            return;
        };
        match core
            .retire_server_runner(&Subject::ServerRunner, &previous)
            .await
        {
            Ok(()) => {
                tracing::info!(agent.id = %previous, "retired the server runner's previous incarnation; its jobs are recovered")
            }
            Err(e) => {
                tracing::warn!(agent.id = %previous, error = %e, "cannot retire the server runner's previous incarnation")
            }
        }
    }

    /// After registering as `agent`: remember it; on the first
    /// registration of this process also deliver what the previous one
    /// left behind.
    pub async fn registered<S: Store>(&self, core: &Core<S>, agent: &str, first: bool) {
        if let Err(e) = crate::workdir::write_private(&self.identity_file, agent.as_bytes()) {
            tracing::warn!(file = %self.identity_file.display(), error = %e, "cannot record the server runner's identity");
        }
        if !first {
            return;
        }
        for (path, job, attempt) in self.spooled() {
            if self.deliver(core, &path, &job, attempt).await {
                let _ = std::fs::remove_file(&path);
            }
        }
        for (dir, job, attempt) in self.left_job_dirs() {
            let state = dir.join("terraform.tfstate");
            let delivered = !state.exists() || self.deliver(core, &state, &job, attempt).await;
            if delivered {
                let _ = std::fs::remove_dir_all(&dir);
            }
        }
    }

    fn spooled(&self) -> Vec<(PathBuf, JobId, u32)> {
        let Ok(entries) = std::fs::read_dir(&self.spool_dir) else {
            return Vec::new();
        };
        entries
            .flatten()
            .filter_map(|e| {
                let path = e.path();
                let stem = path.file_name()?.to_str()?.strip_suffix(".tfstate")?;
                let (job, attempt) = job_and_attempt(stem)?;
                Some((path, job, attempt))
            })
            .collect()
    }

    fn left_job_dirs(&self) -> Vec<(PathBuf, JobId, u32)> {
        let Ok(entries) = std::fs::read_dir(&self.work_dir) else {
            return Vec::new();
        };
        entries
            .flatten()
            .filter(|e| e.file_type().map(|t| t.is_dir()).unwrap_or(false))
            .filter_map(|e| {
                let path = e.path();
                let (job, attempt) = job_and_attempt(path.file_name()?.to_str()?)?;
                Some((path, job, attempt))
            })
            .collect()
    }

    /// Deliver one left-behind state; true when otfd has it, or it was
    /// refused as not newer than the workspace's (nothing is lost).
    async fn deliver<S: Store>(
        &self,
        core: &Core<S>,
        path: &Path,
        job: &JobId,
        attempt: u32,
    ) -> bool {
        let Ok(state) = std::fs::read(path) else {
            return false;
        };
        let (serial, lineage) = crate::operation::state_identity(&state);
        match core
            .deliver_spooled_state(
                &Subject::ServerRunner,
                job,
                attempt,
                serial,
                &lineage,
                &state,
            )
            .await
        {
            Ok(sv) => {
                tracing::info!(job.id = %job, state_version = %sv.id, "delivered a state the server runner left behind");
                true
            }
            Err(otf_core::Error::LateState(LateStateRefusal::NotNewer { .. })) => {
                tracing::info!(job.id = %job, "a state the server runner left behind is not newer than the workspace's; dropping it");
                true
            }
            Err(e) => {
                tracing::warn!(
                    job.id = %job,
                    state = %path.display(),
                    error = %e,
                    "otfd did not take a state the server runner left behind; it stays at {}: push it with `terraform state push {}`",
                    path.display(),
                    path.display()
                );
                false
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_of_leftovers() {
        let (job, attempt) = job_and_attempt("job-0123456789abcdef-2").unwrap();
        assert_eq!((job.as_str(), attempt), ("job-0123456789abcdef", 2));
        assert!(job_and_attempt("job-0123456789abcdef").is_none());
        assert!(job_and_attempt("junk-x").is_none());
    }
}
