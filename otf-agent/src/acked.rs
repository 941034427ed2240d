//! Writes that matter (an apply's state, the plan's artifacts, the job's
//! end) are acknowledged before the runner lets go of them: while otfd is
//! unreachable or failing (restarting, a partition, a database restart)
//! they are retried with backoff for a long time, not a few seconds; the
//! state waits in a spool outside the job's directory meanwhile, and stays
//! there, with a line saying how to push it, if otfd never takes it.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::transport::{TResult, TransportError};

/// How long and how often acknowledged writes are retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Patience {
    /// The first wait after a failure; doubled up to `max_wait`.
    pub first: Duration,
    pub max_wait: Duration,
    /// Retrying stops after this long (otfd gone for good).
    pub give_up_after: Duration,
}

impl Default for Patience {
    fn default() -> Self {
        Patience {
            first: Duration::from_millis(500),
            max_wait: Duration::from_secs(10),
            give_up_after: Duration::from_secs(3600),
        }
    }
}

/// Run `attempt` until otfd answers it: success, or a refusal (which
/// retrying cannot change). Failures to reach otfd are retried.
pub async fn until_acknowledged<T, F, Fut>(
    what: &str,
    patience: &Patience,
    mut attempt: F,
) -> TResult<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = TResult<T>>,
{
    let started = tokio::time::Instant::now();
    let mut wait = patience.first;
    loop {
        match attempt().await {
            Err(TransportError::Unavailable(e)) if started.elapsed() < patience.give_up_after => {
                tracing::warn!(error = %e, retry_in = ?wait, "{what} failed; retrying until otfd takes it");
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(patience.max_wait);
            }
            other => return other,
        }
    }
}

/// Where states wait until otfd acknowledged them: outside job
/// directories, which are removed when their job ends.
#[derive(Debug, Clone)]
pub struct Spool {
    dir: PathBuf,
}

impl Spool {
    pub fn new(dir: PathBuf) -> Spool {
        Spool { dir }
    }

    /// Keep `state` of a job's attempt (0600); its path.
    pub fn keep(&self, job: &str, attempt: u32, state: &[u8]) -> Result<PathBuf, String> {
        crate::workdir::prepare(&self.dir).map_err(|e| e.to_string())?;
        let path = self.dir.join(format!("{job}-{attempt}.tfstate"));
        crate::workdir::write_private(&path, state).map_err(|e| e.to_string())?;
        Ok(path)
    }

    /// otfd has the state: let the copy go.
    pub fn release(&self, path: &Path) {
        if let Err(e) = std::fs::remove_file(path) {
            tracing::warn!(path = %path.display(), error = %e, "cannot remove a spooled state");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    #[tokio::test(start_paused = true)]
    async fn unreachable_is_retried_and_refusals_are_not() {
        let patience = Patience::default();
        let tries = AtomicU32::new(0);
        let got = until_acknowledged("a write", &patience, || async {
            match tries.fetch_add(1, Ordering::SeqCst) {
                0..=4 => Err(TransportError::Unavailable("down".into())),
                _ => Ok(7),
            }
        })
        .await;
        assert_eq!(got, Ok(7));
        assert_eq!(tries.load(Ordering::SeqCst), 6);
        let refused: TResult<()> = until_acknowledged("a write", &patience, || async {
            Err(TransportError::Unauthorized("dead".into()))
        })
        .await;
        assert!(matches!(refused, Err(TransportError::Unauthorized(_))));
        // Past the patience, the failure is returned.
        let short = Patience {
            give_up_after: Duration::from_secs(5),
            ..Patience::default()
        };
        let gone: TResult<()> = until_acknowledged("a write", &short, || async {
            Err(TransportError::Unavailable("down".into()))
        })
        .await;
        assert!(matches!(gone, Err(TransportError::Unavailable(_))));
    }

    #[test]
    fn the_spool_keeps_private_copies() {
        use std::os::unix::fs::MetadataExt;
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::new(dir.path().join("spool"));
        let path = spool.keep("job-x", 2, b"{}").unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().mode() & 0o777, 0o600);
        assert_eq!(std::fs::read(&path).unwrap(), b"{}");
        spool.release(&path);
        assert!(!path.exists());
    }
}
