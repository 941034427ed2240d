//! One job on a runner: start it, watch for the server's signals and this
//! runner's own stops and timeout, run its phase, report its end.

use std::sync::Arc;
use std::time::{Duration, Instant};

use otf_core::ids::AgentId;
use otf_core::job::{JobPhase, Signal};
use otf_core::run::RunStatus;
use otf_core::services::JobOutcome;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::logs::LogSink;
use crate::operation::JobRun;
use crate::process::Stop;
use crate::runtime::{RunnerConfig, KILL_AFTER};
use crate::transport::{JobOffer, Started, Transport, TransportError};
use crate::warm::WarmPlan;

/// How a job ended, as the runner's loop needs to know.
pub(crate) struct JobEnd {
    pub phase: JobPhase,
    /// The run's status after the job's end; None when the end was not
    /// acknowledged (or the job never started).
    pub run_status: Option<RunStatus>,
}

/// Ask a running job to stop (SIGINT to terraform), unless it is already
/// being stopped.
pub(crate) fn interrupt(stop: &watch::Sender<Stop>) {
    let _ = stop.send_if_modified(|s| {
        let change = *s == Stop::Run;
        if change {
            *s = Stop::Cancel;
        }
        change
    });
}

/// Start a job, run it with a watcher for server signals, report the end.
pub(crate) async fn execute_job(
    transport: Arc<dyn Transport>,
    cfg: RunnerConfig,
    agent: AgentId,
    job: JobOffer,
    local: watch::Receiver<Stop>,
) -> JobEnd {
    let start = match transport.start_job(&agent, &job.id).await {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(job.id = %job.id, error = %e, "could not start the job");
            return JobEnd {
                phase: job.phase,
                run_status: None,
            };
        }
    };
    tracing::info!(job.id = %job.id, run.id = %start.run.id, phase = %start.job.phase, attempt = start.job.attempt, "job started");
    let (stop_tx, stop_rx) = watch::channel(Stop::Run);
    let stop_tx = Arc::new(stop_tx);
    let watcher = watch_signals(transport.clone(), agent, &job, stop_tx.clone());
    let forwarder = forward_stops(local, stop_tx.clone());
    let dir = cfg
        .work_dir
        .join(format!("{}-{}", job.id, start.job.attempt));
    let (log, uploader) = LogSink::start(transport.clone(), start.token.clone());
    log.line(&format!(
        "[otf] {} of run {} on {} {} (attempt {})",
        start.job.phase,
        start.run.id,
        if cfg.server {
            "the server runner"
        } else {
            "agent"
        },
        cfg.name,
        start.job.attempt
    ))
    .await;
    let timer = phase_timer(&cfg, start.job.phase, stop_tx.clone(), log.clone());
    let (finish, warm) = run_phase(&transport, &cfg, &start, &dir, &log, stop_rx).await;
    if let Some(t) = timer {
        // Awaited, so its log handle is gone before the log is closed.
        t.abort();
        let _ = t.await;
    }
    if let JobOutcome::Errored { message } = &finish {
        log.line(&format!("Error: {message}")).await;
    }
    uploader.close(log).await;
    let reported =
        crate::acked::until_acknowledged("reporting the job's end", &cfg.patience, || {
            transport.finish(&start.token, &finish)
        })
        .await;
    if let Err(e) = &reported {
        tracing::warn!(job.id = %job.id, error = %e, "the server did not accept the job's end");
    }
    tracing::info!(job.id = %job.id, outcome = %finish.name(), "job finished");
    watcher.abort();
    forwarder.abort();
    // A plan whose run goes on keeps its directory for the apply (on this
    // runner); every other job's directory goes.
    let keep = match (warm, &reported) {
        (Some(w), Ok(status)) if !status.is_final() => cfg.warm.keep(&start.run.id, w),
        _ => false,
    };
    if !keep {
        let _ = tokio::fs::remove_dir_all(&dir).await;
    }
    JobEnd {
        phase: start.job.phase,
        run_status: reported.ok(),
    }
}

/// Server signals (stored with the job, so a reconnect still gets them):
/// a cancel interrupts, a force-cancel kills.
fn watch_signals(
    transport: Arc<dyn Transport>,
    agent: AgentId,
    job: &JobOffer,
    stop: Arc<watch::Sender<Stop>>,
) -> JoinHandle<()> {
    let job = job.id.clone();
    tokio::spawn(async move {
        loop {
            let asked = Instant::now();
            match transport.await_signal(&agent, &job).await {
                Ok(Some(Signal::ForceCancel)) => {
                    let _ = stop.send(Stop::Kill);
                    return;
                }
                Ok(Some(_)) => interrupt(&stop),
                Ok(None) => {}
                Err(TransportError::Unavailable(_)) => {}
                Err(_) => return,
            }
            // Never spin: an answer that came at once waits a moment.
            if asked.elapsed() < Duration::from_millis(500) {
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    })
}

/// Local stops (the agent's second shutdown signal, re-registration).
fn forward_stops(
    mut local: watch::Receiver<Stop>,
    stop: Arc<watch::Sender<Stop>>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        while local.changed().await.is_ok() {
            let s = *local.borrow();
            let _ = stop.send(s);
        }
    })
}

/// This runner's own timeout for the phase: past it the job is
/// interrupted, and killed [`KILL_AFTER`] later.
fn phase_timer(
    cfg: &RunnerConfig,
    phase: JobPhase,
    stop: Arc<watch::Sender<Stop>>,
    log: LogSink,
) -> Option<JoinHandle<()>> {
    let limit = match phase {
        JobPhase::Apply => cfg.timeouts.apply,
        JobPhase::Plan => cfg.timeouts.plan,
    }?;
    Some(tokio::spawn(async move {
        tokio::time::sleep(limit).await;
        log.line(&format!(
            "[otf] the {phase} ran longer than this runner's timeout of {} (--{phase}-timeout); canceling it",
            otf_core::duration::human(limit)
        ))
        .await;
        interrupt(&stop);
        tokio::time::sleep(KILL_AFTER).await;
        let _ = stop.send(Stop::Kill);
    }))
}

/// Resolve the engine (a download stops on a cancel too), make the work
/// directory (an apply's is its plan's when this runner kept it) and run
/// the phase; the outcome, and what a plan's directory is kept on.
async fn run_phase(
    transport: &Arc<dyn Transport>,
    cfg: &RunnerConfig,
    start: &Started,
    dir: &std::path::Path,
    log: &LogSink,
    stop: watch::Receiver<Stop>,
) -> (JobOutcome, Option<WarmPlan>) {
    let resolved = {
        let mut stop = stop.clone();
        tokio::select! {
            r = cfg.engine.resolve(&start.run.terraform_version) => r,
            _ = stop.wait_for(|s| *s != Stop::Run) => return (JobOutcome::Canceled, None),
        }
    };
    let engine = match resolved {
        Ok(engine) => engine,
        Err(message) => return (JobOutcome::Errored { message }, None),
    };
    let warm = match start.job.phase {
        JobPhase::Apply => cfg
            .warm
            .take(&start.run.id)
            .and_then(|w| w.move_to(dir).ok()),
        JobPhase::Plan => None,
    };
    if let Err(e) = crate::workdir::create_private(dir) {
        let message = format!("cannot create the work directory {}: {e}", dir.display());
        return (JobOutcome::Errored { message }, None);
    }
    JobRun {
        transport: transport.clone(),
        start,
        engine: &engine,
        dir,
        sandbox: &cfg.sandbox,
        env: &cfg.env,
        spool: &crate::acked::Spool::new(cfg.spool_dir.clone()),
        patience: cfg.patience,
        runner: &cfg.name,
        log,
        stop,
        hooks: &cfg.hooks,
        plugins: cfg.plugins.as_ref(),
        warm,
    }
    .execute()
    .await
}
