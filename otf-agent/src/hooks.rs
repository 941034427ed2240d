//! Hooks: the operator's executables run around terraform, as HCP agents
//! run them. `terraform-pre-plan`, `terraform-post-plan`,
//! `terraform-pre-apply` and `terraform-post-apply` in the runner's hooks
//! directory run in the job's configuration directory at those points,
//! with the job's environment (not sandboxed: they are the operator's code,
//! not the configuration's) plus `TFC_AGENT_ENV`, a file where a hook may
//! append `KEY=value` lines for the job's later commands. Their output goes
//! to the run's log between a header and a footer naming the hook; a
//! non-zero exit or running past the hook timeout fails the phase.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::sync::watch;

use crate::logs::LogSink;
use crate::process::{self, Exit, Step, Stop};
use crate::sandbox::Sandbox;

/// Where hooks come from and how long each may run.
#[derive(Debug, Clone)]
pub struct Hooks {
    /// None: no hooks.
    pub dir: Option<PathBuf>,
    pub timeout: Duration,
}

impl Default for Hooks {
    fn default() -> Self {
        Hooks {
            dir: None,
            timeout: Duration::from_secs(60),
        }
    }
}

/// The points hooks run at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HookPoint {
    PrePlan,
    PostPlan,
    PreApply,
    PostApply,
}

impl HookPoint {
    pub fn file_name(self) -> &'static str {
        match self {
            HookPoint::PrePlan => "terraform-pre-plan",
            HookPoint::PostPlan => "terraform-post-plan",
            HookPoint::PreApply => "terraform-pre-apply",
            HookPoint::PostApply => "terraform-post-apply",
        }
    }
}

/// The variables a hook's `TFC_AGENT_ENV` file sets: `KEY=value` lines
/// (blank lines and `#` comments skipped); the lines that are not, for
/// the log. `OTF_*` keys are the runner's own and never reach terraform,
/// so they are refused here too.
pub fn parse_env_file(text: &str) -> (Vec<(String, String)>, Vec<String>) {
    let mut vars = Vec::new();
    let mut bad = Vec::new();
    for line in text.lines() {
        let line = line.trim_end_matches('\r');
        if line.trim().is_empty() || line.trim_start().starts_with('#') {
            continue;
        }
        match line.split_once('=') {
            Some((k, v))
                if !k.is_empty()
                    && k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                    && !k.starts_with(|c: char| c.is_ascii_digit())
                    && !k.starts_with("OTF_") =>
            {
                vars.push((k.to_string(), v.to_string()));
            }
            _ => bad.push(line.to_string()),
        }
    }
    (vars, bad)
}

fn set(env: &mut Vec<(OsString, OsString)>, key: &str, value: &str) {
    env.retain(|(k, _)| k != key);
    env.push((key.into(), value.into()));
}

impl Hooks {
    /// Run the hook of `point`, if there is one, in `cwd`; variables it
    /// wrote to `TFC_AGENT_ENV` are added to `env`. Err: the message that
    /// fails the phase (naming the hook).
    #[allow(clippy::too_many_arguments)]
    pub async fn run(
        &self,
        point: HookPoint,
        cwd: &Path,
        job_dir: &Path,
        env: &mut Vec<(OsString, OsString)>,
        log: &LogSink,
        stop: &watch::Receiver<Stop>,
    ) -> Result<(), String> {
        let Some(dir) = &self.dir else {
            return Ok(());
        };
        let name = point.file_name();
        let program = dir.join(name);
        if !program.is_file() {
            return Ok(());
        }
        let env_file = job_dir.join("tfc-agent-env");
        crate::workdir::write_private(&env_file, b"")
            .map_err(|e| format!("cannot prepare TFC_AGENT_ENV for hook {name}: {e}"))?;
        let mut hook_env = env.clone();
        set(&mut hook_env, "TFC_AGENT_ENV", &env_file.to_string_lossy());
        log.line(&format!("[otf] running hook {name}")).await;
        // The hook's own stop: the job's, and a kill at the timeout.
        let (tx, mut rx) = watch::channel(*stop.borrow());
        let timed_out = {
            let (tx, mut job_stop, limit) = (tx, stop.clone(), self.timeout);
            tokio::spawn(async move {
                let timer = tokio::time::sleep(limit);
                tokio::pin!(timer);
                loop {
                    tokio::select! {
                        _ = &mut timer => {
                            let _ = tx.send(Stop::Kill);
                            // Keep the sender until the hook is gone.
                            std::future::pending::<()>().await;
                        }
                        changed = job_stop.changed() => {
                            if changed.is_err() {
                                std::future::pending::<()>().await;
                            }
                            let s = *job_stop.borrow();
                            let _ = tx.send(s);
                        }
                    }
                }
            })
        };
        let unconfined = Sandbox::off();
        let step = Step {
            program: &program,
            args: Vec::new(),
            cwd,
            env: &hook_env,
            sandbox: &unconfined,
            job_dir,
            log: Some(log),
            capture: false,
        };
        let started = tokio::time::Instant::now();
        let (exit, _) = process::run(step, &mut rx).await;
        timed_out.abort();
        let ran_out = started.elapsed() >= self.timeout;
        let result = match exit {
            Exit::Success => Ok(()),
            Exit::Stopped(Stop::Kill) if ran_out && *stop.borrow() == Stop::Run => Err(format!(
                "hook {name} did not finish within {} (--hook-timeout)",
                otf_core::duration::human(self.timeout)
            )),
            Exit::Stopped(_) => Err(format!("hook {name} was stopped: the job was canceled")),
            Exit::Failed(why) => Err(format!("hook {name} failed: {why}")),
        };
        match &result {
            Ok(()) => log.line(&format!("[otf] hook {name} finished")).await,
            Err(e) => log.line(&format!("[otf] {e}")).await,
        }
        if result.is_ok() {
            let text = std::fs::read_to_string(&env_file).unwrap_or_default();
            let (vars, bad) = parse_env_file(&text);
            for line in bad {
                log.line(&format!(
                    "[otf] hook {name}: ignoring a TFC_AGENT_ENV line that is not KEY=value (or sets an OTF_ variable): {line:?}"
                ))
                .await;
            }
            for (k, v) in vars {
                set(env, &k, &v);
            }
        }
        let _ = std::fs::remove_file(&env_file);
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_file_lines() {
        let (vars, bad) =
            parse_env_file("A=1\n\n# note\nB_2=x=y\nnot a var\n3X=1\n=v\r\nC=\nOTF_TOKEN=x\n");
        assert_eq!(
            vars,
            vec![
                ("A".to_string(), "1".to_string()),
                ("B_2".to_string(), "x=y".to_string()),
                ("C".to_string(), String::new()),
            ]
        );
        assert_eq!(bad, vec!["not a var", "3X=1", "=v", "OTF_TOKEN=x"]);
    }

    #[test]
    fn hook_names() {
        assert_eq!(HookPoint::PrePlan.file_name(), "terraform-pre-plan");
        assert_eq!(HookPoint::PostApply.file_name(), "terraform-post-apply");
    }
}
