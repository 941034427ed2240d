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
    // Once whoever could stop the command is gone, only its end is awaited
    // (a closed channel answers at once, forever: it must not spin).
    let mut stoppable = true;
    let status = loop {
        tokio::select! {
            s = child.wait() => break s,
            changed = stop.changed(), if stoppable => {
                if changed.is_err() {
                    stoppable = false;
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

#[cfg(test)]
mod tests {
    use super::*;

    /// CPU time (user and system) of the calling thread, in clock ticks.
    fn thread_cpu_ticks() -> u64 {
        let stat = std::fs::read_to_string("/proc/thread-self/stat").unwrap_or_default();
        // After the command's name: the state is field 3; utime and stime
        // are fields 14 and 15.
        let fields: Vec<&str> = stat
            .rsplit_once(')')
            .map(|(_, rest)| rest.split_whitespace().collect())
            .unwrap_or_default();
        let field = |i: usize| fields.get(i).and_then(|f| f.parse::<u64>().ok());
        field(11).unwrap_or(0) + field(12).unwrap_or(0)
    }

    #[test]
    fn a_command_outliving_its_stop_sender_is_awaited_without_spinning() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime");
        let dir = std::env::temp_dir().join(format!("otf-process-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("a directory");
        let sandbox = Sandbox::off();
        let env: Vec<(OsString, OsString)> = std::env::vars_os().collect();
        let (tx, mut rx) = watch::channel(Stop::Run);
        drop(tx);
        let before = thread_cpu_ticks();
        let (exit, _) = rt.block_on(run(
            Step {
                program: Path::new("sleep"),
                args: vec!["1".into()],
                cwd: &dir,
                env: &env,
                sandbox: &sandbox,
                job_dir: &dir,
                log: None,
                capture: false,
            },
            &mut rx,
        ));
        let used = thread_cpu_ticks() - before;
        let _ = std::fs::remove_dir_all(&dir);
        assert_eq!(exit, Exit::Success);
        // A spinning wait burns the whole second (about 100 ticks).
        assert!(
            used < 30,
            "waiting for a 1 s command used {used} ticks of CPU"
        );
    }
}
