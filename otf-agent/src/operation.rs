//! The operation a runner performs for one job, plan or apply, with the real
//! Terraform CLI (ARCHITECTURE.md, `otf-agent`): a fresh work directory, the configuration
//! unpacked safely, variables, the backend neutralised so state is local, the
//! current state, `init`, then `plan` (+ `show -json`, uploads, counts) or
//! `apply` of the saved plan (+ the new state, also after a failed apply).

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio::sync::watch;

use crate::logs::LogSink;
use crate::process::{self, Exit, Step, Stop};
use otf_core::artifacts::ArtifactKind;
use otf_core::run::ResourceCounts;
use otf_core::services::JobOutcome;

use crate::protocol::{StateUpload, VariableSpec};
use crate::sandbox::Sandbox;
use crate::transport::{Started, Transport, TransportError};
use crate::warm::{self, ApplyInputs, WarmPlan};
use crate::workdir::write_private;

/// Makes any `backend`/`cloud` block local, so state stays in the work dir.
const BACKEND_OVERRIDE: &str = "terraform {\n  backend \"local\" {}\n}\n";
const OVERRIDE_FILE: &str = "zz_otf_backend_override.tf";
const TFVARS_FILE: &str = "zz_otf.auto.tfvars";

/// Everything one job needs.
pub struct JobRun<'a> {
    pub transport: Arc<dyn Transport>,
    pub start: &'a Started,
    pub engine: &'a Path,
    /// A fresh private directory for this job (removed by the caller).
    pub dir: &'a Path,
    /// How terraform is confined.
    pub sandbox: &'a Sandbox,
    /// The environment inherited from the runner ([`crate::job_env`]).
    pub env: &'a [(OsString, OsString)],
    /// Where the new state waits until otfd has it.
    pub spool: &'a crate::acked::Spool,
    /// How long writes that matter are retried.
    pub patience: crate::acked::Patience,
    /// The runner's name, for messages.
    pub runner: &'a str,
    pub log: &'a LogSink,
    pub stop: watch::Receiver<Stop>,
    /// The operator's hooks around plan and apply.
    pub hooks: &'a crate::hooks::Hooks,
    /// The runner's shared provider plugin cache.
    pub plugins: Option<&'a crate::plugin_cache::PluginCache>,
    /// In: for an apply, the run's plan kept on this runner (its directory
    /// is already `dir`). Out: for a plan that may be applied, what it
    /// depended on, to keep its directory for the apply.
    pub warm: Option<WarmPlan>,
}

/// Why a job failed before or between terraform commands.
#[derive(Debug)]
enum Failure {
    Transport(TransportError),
    Setup(String),
    Exit(Exit),
}

impl From<TransportError> for Failure {
    fn from(e: TransportError) -> Self {
        Failure::Transport(e)
    }
}

fn finished(counts: (u32, u32, u32), has_changes: bool) -> JobOutcome {
    JobOutcome::Finished {
        counts: ResourceCounts {
            additions: counts.0,
            changes: counts.1,
            destructions: counts.2,
        },
        has_changes,
    }
}

fn outcome_of(f: Failure) -> JobOutcome {
    let message = match f {
        Failure::Exit(Exit::Stopped(_)) => return JobOutcome::Canceled,
        Failure::Exit(Exit::Failed(m)) | Failure::Setup(m) => m,
        Failure::Exit(Exit::Success) => "unexpected success".into(),
        Failure::Transport(e) => format!("talking to the server failed: {e}"),
    };
    JobOutcome::Errored { message }
}

/// An HCL string literal: JSON escaping plus HCL's template escapes.
fn hcl_string(s: &str) -> String {
    serde_json::to_string(s)
        .unwrap_or_default()
        .replace("${", "$${")
        .replace("%{", "%%{")
}

/// Resource counts of a JSON plan (`show -json`), and whether it changes
/// anything (resources or outputs).
pub fn plan_counts(json: &[u8]) -> ((u32, u32, u32), bool) {
    let v: serde_json::Value = serde_json::from_slice(json).unwrap_or_default();
    let (mut add, mut change, mut destroy) = (0, 0, 0);
    for rc in v
        .get("resource_changes")
        .and_then(|r| r.as_array())
        .into_iter()
        .flatten()
    {
        let actions: Vec<&str> = rc
            .pointer("/change/actions")
            .and_then(|a| a.as_array())
            .map(|a| a.iter().filter_map(|x| x.as_str()).collect())
            .unwrap_or_default();
        match actions.as_slice() {
            ["create"] => add += 1,
            ["update"] => change += 1,
            ["delete"] => destroy += 1,
            ["delete", "create"] | ["create", "delete"] => {
                add += 1;
                destroy += 1;
            }
            _ => {}
        }
    }
    let outputs_change = v
        .get("output_changes")
        .and_then(|o| o.as_object())
        .is_some_and(|o| {
            o.values().any(|c| {
                c.pointer("/actions")
                    .and_then(|a| a.as_array())
                    .is_some_and(|a| a.iter().any(|x| x.as_str() != Some("no-op")))
            })
        });
    (
        (add, change, destroy),
        add + change + destroy > 0 || outputs_change,
    )
}

/// Counts from terraform's closing line ("Apply complete! Resources: 1
/// added, 0 changed, 0 destroyed." or "Destroy complete! Resources: 2
/// destroyed.").
pub fn apply_counts(output: &str) -> (u32, u32, u32) {
    let Some(line) = output
        .lines()
        .rev()
        .find(|l| l.contains("complete! Resources:"))
    else {
        return (0, 0, 0);
    };
    let number_before = |word: &str| -> u32 {
        let words: Vec<&str> = line
            .split(|c: char| c.is_whitespace() || c == ',' || c == '.')
            .filter(|w| !w.is_empty())
            .collect();
        words
            .windows(2)
            .find(|w| w[1] == word)
            .and_then(|w| w[0].parse().ok())
            .unwrap_or(0)
    };
    (
        number_before("added"),
        number_before("changed"),
        number_before("destroyed"),
    )
}

/// Serial and lineage of a state file.
pub(crate) fn state_identity(state: &[u8]) -> (i64, String) {
    let v: serde_json::Value = serde_json::from_slice(state).unwrap_or_default();
    (
        v.get("serial").and_then(|s| s.as_i64()).unwrap_or(0),
        v.get("lineage")
            .and_then(|s| s.as_str())
            .unwrap_or("")
            .to_string(),
    )
}

impl JobRun<'_> {
    fn token(&self) -> &str {
        &self.start.token
    }

    /// Download the configuration and unpack it into `config`, with the
    /// job's private temp dir beside it.
    async fn unpack_config(&self) -> Result<(), Failure> {
        let tarball = self.transport.config(self.token()).await?;
        let root = self.dir.join("config");
        tokio::task::spawn_blocking(move || crate::unpack::unpack(&tarball, &root))
            .await
            .map_err(|e| Failure::Setup(e.to_string()))?
            .map_err(Failure::Setup)
    }

    /// The directory terraform runs in: the workspace's working directory
    /// inside the unpacked configuration.
    fn cwd(&self) -> Result<PathBuf, Failure> {
        let root = self.dir.join("config");
        let wd = &self.start.workspace.working_directory;
        let cwd = match otf_core::tarball::safe_relative_path(Path::new(wd)) {
            Ok(Some(rel)) => root.join(rel),
            Ok(None) => root.clone(),
            Err(_) => {
                return Err(Failure::Setup(format!(
                    "working directory {wd:?} is not a relative path inside the configuration"
                )))
            }
        };
        if !cwd.is_dir() {
            return Err(Failure::Setup(format!(
                "the configuration has no directory {wd:?} (the workspace's working directory)"
            )));
        }
        Ok(cwd)
    }

    /// The run's variables and the workspace's current state, from otfd.
    async fn inputs(&self) -> Result<(Vec<VariableSpec>, Option<Vec<u8>>), Failure> {
        let variables = self.transport.variables(self.token()).await?;
        let state = self.transport.current_state(self.token()).await?;
        Ok((variables, state))
    }

    /// Write the backend override, the variables and the state into `cwd`
    /// (a state file left from before goes when there is no state); the
    /// environment of the job's commands.
    fn write_inputs(
        &self,
        cwd: &Path,
        variables: &[VariableSpec],
        state: Option<&[u8]>,
    ) -> Result<Vec<(OsString, OsString)>, Failure> {
        let tmp = self.dir.join("tmp");
        crate::workdir::create_private(&tmp)
            .map_err(|e| Failure::Setup(format!("cannot create the job's temp dir: {e}")))?;
        let write = |name: &str, data: &[u8]| -> Result<(), Failure> {
            write_private(&cwd.join(name), data).map_err(|e| Failure::Setup(e.to_string()))
        };
        write(OVERRIDE_FILE, BACKEND_OVERRIDE.as_bytes())?;
        let mut env = Vec::new();
        let mut tfvars = String::new();
        for v in variables {
            match v.category.as_str() {
                "env" => env.push((v.key.clone(), v.value.clone())),
                _ if v.hcl => tfvars.push_str(&format!("{} = {}\n", v.key, v.value)),
                _ => tfvars.push_str(&format!("{} = {}\n", v.key, hcl_string(&v.value))),
            }
        }
        if !tfvars.is_empty() {
            write(TFVARS_FILE, tfvars.as_bytes())?;
        } else {
            let _ = std::fs::remove_file(cwd.join(TFVARS_FILE));
        }
        match state {
            Some(s) => write("terraform.tfstate", s)?,
            None => {
                let _ = std::fs::remove_file(cwd.join("terraform.tfstate"));
            }
        }
        // HCP Terraform's run variables, over the workspace's.
        env.extend(crate::job_env::run_variables(self.start));
        Ok(crate::job_env::for_job(self.env, &env, &tmp))
    }

    async fn terraform(
        &mut self,
        cwd: &Path,
        env: &[(OsString, OsString)],
        args: Vec<String>,
        logged: bool,
    ) -> Result<Vec<u8>, Failure> {
        let step = Step {
            program: self.engine,
            args,
            cwd,
            env,
            sandbox: self.sandbox,
            job_dir: self.dir,
            log: logged.then_some(self.log),
            capture: !logged,
        };
        match process::run(step, &mut self.stop).await {
            (Exit::Success, out) => Ok(out),
            (exit, _) => Err(Failure::Exit(exit)),
        }
    }

    /// `terraform init`, with the job's own plugin cache seeded from the
    /// runner's shared one, and what it installed shared afterwards.
    async fn init(&mut self, cwd: &Path, env: &[(OsString, OsString)]) -> Result<(), Failure> {
        let mut env = env.to_vec();
        let job_cache = self.dir.join("plugins");
        let cache = self.plugins.filter(|c| match c.seed(&job_cache) {
            Ok(()) => true,
            Err(e) => {
                tracing::warn!(error = %e, "cannot seed the job's plugin cache; init downloads every provider");
                false
            }
        });
        if cache.is_some() {
            env.retain(|(k, _)| k != "TF_PLUGIN_CACHE_DIR");
            env.push((
                "TF_PLUGIN_CACHE_DIR".into(),
                job_cache.clone().into_os_string(),
            ));
        }
        self.terraform(
            cwd,
            &env,
            vec!["init".into(), "-input=false".into(), "-no-color".into()],
            true,
        )
        .await?;
        if let Some(cache) = cache {
            cache.promote(&job_cache);
        }
        Ok(())
    }

    async fn hook(
        &self,
        point: crate::hooks::HookPoint,
        cwd: &Path,
        env: &mut Vec<(OsString, OsString)>,
    ) -> Result<(), Failure> {
        self.hooks
            .run(point, cwd, self.dir, env, self.log, &self.stop)
            .await
            .map_err(Failure::Setup)
    }

    async fn plan(&mut self) -> Result<JobOutcome, Failure> {
        use crate::hooks::HookPoint;
        self.unpack_config().await?;
        let cwd = self.cwd()?;
        let (variables, state) = self.inputs().await?;
        let mut env = self.write_inputs(&cwd, &variables, state.as_deref())?;
        self.init(&cwd, &env).await?;
        self.hook(HookPoint::PrePlan, &cwd, &mut env).await?;
        let run = &self.start.run;
        let mut args: Vec<String> = vec![
            "plan".into(),
            "-input=false".into(),
            "-no-color".into(),
            "-out=plan.out".into(),
        ];
        if run.is_destroy {
            args.push("-destroy".into());
        }
        if !run.refresh {
            args.push("-refresh=false".into());
        }
        if run.refresh_only {
            args.push("-refresh-only".into());
        }
        args.extend(run.target_addrs.iter().map(|t| format!("-target={t}")));
        args.extend(run.replace_addrs.iter().map(|r| format!("-replace={r}")));
        self.terraform(&cwd, &env, args, true).await?;
        self.hook(HookPoint::PostPlan, &cwd, &mut env).await?;
        let json = self
            .terraform(
                &cwd,
                &env,
                vec!["show".into(), "-json".into(), "plan.out".into()],
                false,
            )
            .await?;
        let plan = std::fs::read(cwd.join("plan.out"))
            .map_err(|e| Failure::Setup(format!("cannot read the plan: {e}")))?;
        let token = self.token().to_string();
        let plan_digest = warm::digest(&plan);
        let mut artifacts = vec![
            (ArtifactKind::Plan, plan),
            (ArtifactKind::JsonPlan, json.clone()),
        ];
        let lock = std::fs::read(cwd.join(".terraform.lock.hcl")).ok();
        if !self.start.run.plan_only {
            self.warm = Some(WarmPlan {
                dir: self.dir.to_path_buf(),
                origin: self.dir.to_path_buf(),
                cwd: cwd.strip_prefix(self.dir).unwrap_or(&cwd).to_path_buf(),
                engine: self.engine.to_path_buf(),
                configuration_version: self.start.run.configuration_version.clone(),
                working_directory: self.start.workspace.working_directory.clone(),
                variables,
                state: state.as_deref().map(warm::digest),
                plan: plan_digest,
                lock_file: lock.as_deref().map(warm::digest),
            });
        }
        if let Some(lock) = lock {
            artifacts.push((ArtifactKind::LockFile, lock));
        }
        for (kind, data) in artifacts {
            let what = format!("uploading the {kind}");
            crate::acked::until_acknowledged(&what, &self.patience, || {
                self.transport.put_artifact(&token, kind, data.clone())
            })
            .await?;
        }
        let (counts, has_changes) = plan_counts(&json);
        Ok(finished(counts, has_changes))
    }

    async fn apply(&mut self) -> Result<JobOutcome, Failure> {
        use crate::hooks::HookPoint;
        let token = self.token().to_string();
        let lock = self
            .transport
            .get_artifact(&token, ArtifactKind::LockFile)
            .await?;
        let plan = self
            .transport
            .get_artifact(&token, ArtifactKind::Plan)
            .await?
            .ok_or_else(|| Failure::Setup("the run has no saved plan to apply".into()))?;
        let (variables, before) = self.inputs().await?;
        let now = ApplyInputs {
            engine: self.engine,
            configuration_version: self.start.run.configuration_version.as_ref(),
            working_directory: &self.start.workspace.working_directory,
            variables: &variables,
            state: before.as_deref(),
            plan: &plan,
            lock_file: lock.as_deref(),
        };
        let warm = match self.warm.take().map(|w| (w.mismatch(&now), w)) {
            Some((None, w)) => Some(w),
            Some((Some(why), _)) => {
                self.log
                    .line(&format!("[otf] the plan ran on this runner, but {why}: its work directory is not reused"))
                    .await;
                None
            }
            None => None,
        };
        if warm.is_none() {
            // A kept directory that cannot serve starts over empty.
            let _ = std::fs::remove_dir_all(self.dir.join("config"));
            self.unpack_config().await?;
        }
        let cwd = self.cwd()?;
        let mut env = self.write_inputs(&cwd, &variables, before.as_deref())?;
        match &lock {
            Some(lock) => write_private(&cwd.join(".terraform.lock.hcl"), lock)
                .map_err(|e| Failure::Setup(e.to_string()))?,
            None => {
                let _ = std::fs::remove_file(cwd.join(".terraform.lock.hcl"));
            }
        }
        write_private(&cwd.join("plan.out"), &plan).map_err(|e| Failure::Setup(e.to_string()))?;
        if warm.is_some() {
            self.log
                .line("[otf] the plan ran on this runner and nothing it depends on changed: its initialised work directory is reused (no init)")
                .await;
        } else {
            self.init(&cwd, &env).await?;
        }
        self.hook(HookPoint::PreApply, &cwd, &mut env).await?;
        // The apply output is both streamed and kept, for its closing counts.
        let step = Step {
            program: self.engine,
            args: vec![
                "apply".into(),
                "-input=false".into(),
                "-no-color".into(),
                "plan.out".into(),
            ],
            cwd: &cwd,
            env: &env,
            sandbox: self.sandbox,
            job_dir: self.dir,
            log: Some(self.log),
            capture: true,
        };
        let (exit, out) = process::run(step, &mut self.stop).await;
        // The state is uploaded whenever it changed, also after a failure;
        // it waits in the spool until otfd has it.
        if let Ok(after) = std::fs::read(cwd.join("terraform.tfstate")) {
            if Some(&after) != before.as_ref() {
                self.save_state(&token, &after).await?;
            }
        }
        match exit {
            Exit::Success => {
                self.hook(HookPoint::PostApply, &cwd, &mut env).await?;
                Ok(finished(apply_counts(&String::from_utf8_lossy(&out)), true))
            }
            other => Err(Failure::Exit(other)),
        }
    }

    /// Hand the new state to otfd, acknowledged; a copy waits in the spool
    /// meanwhile and stays there if otfd never takes it.
    async fn save_state(&self, token: &str, state: &[u8]) -> Result<(), Failure> {
        let (serial, lineage) = state_identity(state);
        let upload = StateUpload {
            serial,
            lineage,
            state: crate::transport::http::b64(state),
        };
        let job = &self.start.job;
        let kept = self.spool.keep(job.id.as_str(), job.attempt, state);
        if let Err(e) = &kept {
            tracing::warn!(error = %e, "cannot spool the new state; uploading it from the job directory only");
        }
        let sent = crate::acked::until_acknowledged("uploading the state", &self.patience, || {
            self.transport.upload_state(token, &upload)
        })
        .await;
        match (sent, kept) {
            (Ok(()), Ok(path)) => {
                self.spool.release(&path);
                Ok(())
            }
            (Ok(()), Err(_)) => Ok(()),
            (Err(e), Ok(path)) => {
                let message = format!(
                    "otfd did not take the new state ({e}); it is kept at {} on {}: push it with `terraform state push {}`",
                    path.display(),
                    self.runner,
                    path.display()
                );
                tracing::error!(job.id = %job.id, state = %path.display(), "{message}");
                Err(Failure::Setup(message))
            }
            (Err(e), Err(why)) => Err(Failure::Setup(format!(
                "otfd did not take the new state ({e}), and it could not be spooled ({why})"
            ))),
        }
    }

    /// Execute the job; the outcome to report, and for a plan that
    /// finished and may be applied, what its directory is kept on.
    pub async fn execute(mut self) -> (JobOutcome, Option<WarmPlan>) {
        let result = match self.start.job.phase {
            otf_core::job::JobPhase::Apply => self.apply().await,
            otf_core::job::JobPhase::Plan => self.plan().await,
        };
        match result {
            Ok(outcome) => (outcome, self.warm.take()),
            Err(f) => (outcome_of(f), None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plan_counts_from_show_json() {
        let json = br#"{"resource_changes":[
            {"change":{"actions":["create"]}},{"change":{"actions":["delete","create"]}},
            {"change":{"actions":["update"]}},{"change":{"actions":["no-op"]}}]}"#;
        assert_eq!(plan_counts(json), ((2, 1, 1), true));
        assert_eq!(
            plan_counts(br#"{"resource_changes":[]}"#),
            ((0, 0, 0), false)
        );
        let outputs = br#"{"output_changes":{"x":{"actions":["create"]}}}"#;
        assert_eq!(plan_counts(outputs), ((0, 0, 0), true));
    }

    #[test]
    fn apply_counts_from_the_closing_line() {
        assert_eq!(
            apply_counts("...\nApply complete! Resources: 1 added, 2 changed, 3 destroyed.\n"),
            (1, 2, 3)
        );
        assert_eq!(
            apply_counts("Destroy complete! Resources: 4 destroyed.\n"),
            (0, 0, 4)
        );
        assert_eq!(apply_counts("Error: boom"), (0, 0, 0));
    }

    #[test]
    fn hcl_strings_escape_templates() {
        assert_eq!(hcl_string("a\"b${c}%{d}\n"), r#""a\"b$${c}%%{d}\n""#);
    }
}
