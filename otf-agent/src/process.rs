//! Running one terraform command: confined by the runner's sandbox, with
//! exactly the job's environment, its output streamed to the job log,
//! interrupted gracefully (SIGINT) on cancel and killed (SIGKILL) on
//! force-cancel.

use std::ffi::OsString;
use std::path::Path;
use std::process::Stdio;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::sync::watch;

use crate::logs::LogSink;
use crate::sandbox::Sandbox;

/// What the runner was told to do with the job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    Run,
    /// Interrupt terraform gracefully.
    Cancel,
    /// Kill terraform at once.
    Kill,
}

/// How a command ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Exit {
    Success,
    Failed(String),
    /// Stopped because of a cancel or force-cancel.
    Stopped(Stop),
}

/// A command to run.
pub struct Step<'a> {
    pub program: &'a Path,
    pub args: Vec<String>,
    pub cwd: &'a Path,
    /// The whole environment of the command.
    pub env: &'a [(OsString, OsString)],
    pub sandbox: &'a Sandbox,
    /// The job's directory: the only place the command may write.
    pub job_dir: &'a Path,
    /// Stream output to the log.
    pub log: Option<&'a LogSink>,
    /// Keep stdout and return it.
    pub capture: bool,
}

async fn pump(mut from: impl AsyncRead + Unpin, log: Option<LogSink>, keep: bool) -> Vec<u8> {
    let mut kept = Vec::new();
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        match from.read(&mut buf).await {
            Ok(0) | Err(_) => return kept,
            Ok(n) => {
                if let Some(l) = &log {
                    l.write(&buf[..n]).await;
                }
                if keep {
                    kept.extend_from_slice(&buf[..n]);
                }
            }
        }
    }
}

/// Signal the command's whole process group (terraform, its provider
/// plugins, and provisioner commands).
fn signal(pid: Option<u32>, sig: nix::sys::signal::Signal) {
    if let Some(pid) = pid.and_then(|p| i32::try_from(p).ok()) {
        let _ = nix::sys::signal::killpg(nix::unistd::Pid::from_raw(pid), sig);
    }
}

/// The command for people: `terraform plan`, or a hook's file name.
fn what(step: &Step<'_>) -> String {
    match step.args.first() {
        Some(sub) => format!("terraform {sub}"),
        None => step
            .program
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| step.program.display().to_string()),
    }
}

/// Run `step` to its end; returns how it ended and its stdout.
pub async fn run(step: Step<'_>, stop: &mut watch::Receiver<Stop>) -> (Exit, Vec<u8>) {
    if *stop.borrow() != Stop::Run {
        return (Exit::Stopped(*stop.borrow()), Vec::new());
    }
    let (mut cmd, input) = step
        .sandbox
        .command(step.program, &step.args, step.job_dir, step.env);
    cmd.current_dir(step.cwd)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    // Its own process group, so that signals reach everything it started.
    #[cfg(unix)]
    cmd.process_group(0);
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => {
            return (
                Exit::Failed(format!("cannot run {}: {e}", step.program.display())),
                Vec::new(),
            )
        }
    };
    let pid = child.id();
    // The launcher reads the command's environment from its stdin.
    if let (Some(input), Some(mut stdin)) = (input, child.stdin.take()) {
        if let Err(e) = stdin.write_all(&input).await {
            let _ = child.start_kill();
            let _ = child.wait().await;
            return (
                Exit::Failed(format!("cannot start the sandboxed command: {e}")),
                Vec::new(),
            );
        }
        drop(stdin);
    }
    let capture = step.capture;
    let out = tokio::spawn(pump(
        child.stdout.take().expect("piped"),
        step.log.cloned(),
        capture,
    ));
    let err = tokio::spawn(pump(
        child.stderr.take().expect("piped"),
        step.log.cloned(),
        false,
    ));
    let mut stopped = None;
    let status = loop {
        tokio::select! {
            s = child.wait() => break s,
            changed = stop.changed() => {
                if changed.is_err() {
                    continue;
                }
                match *stop.borrow() {
                    Stop::Cancel if stopped.is_none() => {
                        stopped = Some(Stop::Cancel);
                        signal(pid, nix::sys::signal::Signal::SIGINT);
                    }
                    Stop::Kill => {
                        stopped = Some(Stop::Kill);
                        signal(pid, nix::sys::signal::Signal::SIGKILL);
                        let _ = child.start_kill();
                    }
                    _ => {}
                }
            }
        }
    };
    let stdout = out.await.unwrap_or_default();
    let _ = err.await;
    let exit = match (status, stopped) {
        // Terraform may finish its work despite an interrupt.
        (Ok(s), Some(Stop::Cancel)) if s.success() => Exit::Success,
        (_, Some(s)) => Exit::Stopped(s),
        (Ok(s), None) if s.success() => Exit::Success,
        (Ok(s), None) => Exit::Failed(format!("{} exited with {s}", what(&step))),
        (Err(e), None) => Exit::Failed(format!("waiting for {} failed: {e}", what(&step))),
    };
    (exit, stdout)
}
