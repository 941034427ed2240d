//! The runner's life: register, ping, long-poll for jobs, run up to
//! `concurrency` of them at once, re-register when the server no longer knows
//! it, stop on shutdown signals. One loop selects over a closed set of
//! events; every spawned task is owned and awaited.

use std::collections::HashMap;
use std::ffi::OsString;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;

use crate::engine::EngineConfig;
use crate::logs::LogSink;
use crate::operation::JobRun;
use crate::process::Stop;
use otf_core::agent::ReportedStatus;
use otf_core::ids::{AgentId, JobId};
use otf_core::job::Signal;
use otf_core::run::RunStatus;
use otf_core::services::{JobOutcome, PingAnswer};

use crate::protocol::{JobSummary, RegisterRequest};
use crate::sandbox::Sandbox;
use crate::transport::{TResult, Transport, TransportError};

/// How a runner is set up.
#[derive(Debug, Clone)]
pub struct RunnerConfig {
    pub name: String,
    pub concurrency: u32,
    pub engine: EngineConfig,
    /// Where job directories are made (and removed); a private directory
    /// (see [`crate::workdir::prepare`]).
    pub work_dir: PathBuf,
    /// True for the server runner inside otfd (only for the log line).
    pub server: bool,
    /// How terraform is confined.
    pub sandbox: Sandbox,
    /// The environment every job starts from ([`crate::job_env::inherited`]).
    pub env: Vec<(OsString, OsString)>,
    /// Where states wait until otfd has them (outside job directories).
    pub spool_dir: PathBuf,
    /// How long writes that matter are retried.
    pub patience: crate::acked::Patience,
    /// This runner's own bounds on a phase (otfd enforces its own too).
    pub timeouts: PhaseTimeouts,
    /// The operator's hooks around plan and apply.
    pub hooks: crate::hooks::Hooks,
    /// Exit (reporting `exited`) once drained and idle.
    pub exit_when_drained: bool,
    /// Single execution (`--single`): one run, waiting this long for its
    /// first job and then for the run's apply; then exit.
    pub single: Option<Duration>,
    /// Labels it registers with.
    pub labels: otf_core::labels::Labels,
}

/// A runner's own plan and apply timeouts: past one, the job is interrupted
/// (SIGINT), and killed if it still runs [`KILL_AFTER`] later.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PhaseTimeouts {
    pub plan: Option<Duration>,
    pub apply: Option<Duration>,
}

/// How long an interrupted job that ran past this runner's timeout gets
/// before it is killed.
pub const KILL_AFTER: Duration = Duration::from_secs(10);

/// Why a runner stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error("the agent token was refused: {0}; check the token (it may be wrong or revoked)")]
    TokenRefused(String),
    #[error("the agent token was revoked; this agent stops (create a new token for the pool to run agents again)")]
    Revoked,
    #[error("cannot reach otfd: {0}")]
    Unreachable(String),
    #[error("otfd refused to register this agent: {0}")]
    Refused(String),
}

/// How a job ended, as the runner's loop needs to know.
struct JobEnd {
    phase: String,
    /// The run's status after the job's end; None when the end was not
    /// acknowledged (or the job never started).
    run_status: Option<RunStatus>,
}

/// Why the loop woke up.
enum Event {
    Polled(TResult<Vec<JobSummary>>),
    JobDone(JobEnd),
    Ping,
    /// SIGINT/SIGTERM (or the embedding program's shutdown).
    Signal,
}

struct Running {
    /// Stops of running jobs, by job id.
    jobs: HashMap<String, watch::Sender<Stop>>,
}

const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// Run until shut down: the first message on `signals` stops taking jobs and
/// lets running ones finish; a second cancels them (SIGINT to terraform); a
/// third kills them. What they produced is still reported.
pub async fn run(
    transport: Arc<dyn Transport>,
    cfg: RunnerConfig,
    mut signals: mpsc::Receiver<()>,
) -> Result<(), AgentError> {
    tracing::info!(version = %env!("CARGO_PKG_VERSION"), "starting agent");
    if cfg.sandbox.confinement.is_confined() {
        tracing::info!(sandbox = %cfg.sandbox.mode, "{}", cfg.sandbox.describe());
    } else {
        tracing::warn!(sandbox = %cfg.sandbox.mode, "{}", cfg.sandbox.describe());
    }
    let mut reg = register(&*transport, &cfg).await.map_err(|e| match e {
        TransportError::Unauthorized(m) => AgentError::TokenRefused(m),
        TransportError::Unavailable(m) => AgentError::Unreachable(m),
        other => AgentError::Refused(other.to_string()),
    })?;
    let mut tasks: JoinSet<()> = JoinSet::new();
    let mut running = Running {
        jobs: HashMap::new(),
    };
    let (done_tx, mut done_rx) = mpsc::unbounded_channel::<(String, JobEnd)>();
    // Single execution: the run it serves, and until when it waits for a
    // job (its first, then the run's apply).
    let mut single_run: Option<String> = None;
    let mut single_until = cfg.single.map(|wait| Instant::now() + wait);
    let mut ping = tokio::time::interval(Duration::from_millis(reg.ping_interval_ms.max(100)));
    ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut poll: Option<tokio::task::JoinHandle<TResult<Vec<JobSummary>>>> = None;
    let mut poll_after = Instant::now();
    let mut backoff = Duration::from_millis(500);
    let mut shutting_down = false;
    let mut canceling = false;
    let mut signals_open = true;
    let mut announced_wait = false;

    let result = loop {
        let capacity = (running.jobs.len() as u32) < cfg.concurrency;
        if poll.is_none() && capacity && !shutting_down && Instant::now() >= poll_after {
            if running.jobs.is_empty() && !announced_wait {
                tracing::info!("waiting for next job");
                announced_wait = true;
            }
            let (t, id) = (transport.clone(), reg.id.clone());
            poll = Some(tokio::spawn(async move { t.await_jobs(&id).await }));
        }
        let retry_in = poll_after.saturating_duration_since(Instant::now());
        let event = tokio::select! {
            p = async { poll.as_mut().expect("guarded").await }, if poll.is_some() => {
                poll = None;
                Event::Polled(p.unwrap_or_else(|e| Err(TransportError::Unavailable(e.to_string()))))
            }
            Some((id, end)) = done_rx.recv() => {
                running.jobs.remove(&id);
                Event::JobDone(end)
            }
            _ = tokio::time::sleep_until(single_until.unwrap_or_else(Instant::now).into()),
                if single_until.is_some() && running.jobs.is_empty() => {
                tracing::info!("single execution: no job within --single-wait; exiting");
                break Ok(());
            }
            _ = ping.tick() => Event::Ping,
            s = signals.recv(), if signals_open => match s {
                Some(()) => Event::Signal,
                // Whoever sent signals is gone: no more will come (and a
                // closed channel must not read as an endless stream of them).
                None => {
                    signals_open = false;
                    continue;
                }
            },
            _ = tokio::time::sleep(retry_in), if poll.is_none() && !retry_in.is_zero() => continue,
        };
        match event {
            Event::Polled(Ok(jobs)) => {
                backoff = Duration::from_millis(500);
                if !jobs.is_empty() && jobs.iter().all(|j| running.jobs.contains_key(&j.id)) {
                    // Only jobs being started: ask again in a moment, not at once.
                    poll_after = Instant::now() + Duration::from_millis(100);
                }
                for job in jobs {
                    if running.jobs.len() as u32 >= cfg.concurrency || shutting_down {
                        break;
                    }
                    // A poll that answers before the start committed lists
                    // the job again: it is already being started.
                    if running.jobs.contains_key(&job.id) {
                        continue;
                    }
                    // Single execution serves one run only.
                    if cfg.single.is_some() {
                        if single_run.as_ref().is_some_and(|r| *r != job.run_id) {
                            continue;
                        }
                        single_run = Some(job.run_id.clone());
                        single_until = None;
                    }
                    announced_wait = false;
                    let (stop_tx, stop_rx) = watch::channel(Stop::Run);
                    running.jobs.insert(job.id.clone(), stop_tx);
                    let (t, c, agent, done) = (
                        transport.clone(),
                        cfg.clone(),
                        reg.id.clone(),
                        done_tx.clone(),
                    );
                    tasks.spawn(async move {
                        let id = job.id.clone();
                        let end = execute_job(t, c, agent, job, stop_rx).await;
                        let _ = done.send((id, end));
                    });
                }
                if !running.jobs.is_empty() {
                    let _ = report(&*transport, &reg.id, &running, ReportedStatus::Busy).await;
                }
            }
            Event::Polled(Err(e)) => match e {
                TransportError::Unauthorized(_) => break Err(AgentError::Revoked),
                TransportError::Gone(m) => {
                    tracing::warn!(reason = %m, "the server no longer knows this agent; registering again");
                    // Interrupt, never kill: an apply still writes its state,
                    // which the spool keeps.
                    stop_all(&running, Stop::Cancel);
                    match register(&*transport, &cfg).await {
                        Ok(r) => reg = r,
                        Err(TransportError::Unauthorized(_)) => break Err(AgentError::Revoked),
                        Err(e) => {
                            tracing::warn!(error = %e, "registering again failed; retrying");
                            poll_after = Instant::now() + backoff;
                        }
                    }
                }
                other => {
                    tracing::warn!(error = %other, retry_in = ?backoff, "cannot reach otfd; retrying");
                    poll_after = Instant::now() + backoff;
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
            },
            Event::JobDone(end) => {
                if let Some(wait) = cfg.single {
                    // After its plan, a single agent waits for the run's
                    // apply (kept for it) if the run goes on; else it is done.
                    let goes_on = end.phase == "plan"
                        && matches!(
                            end.run_status,
                            Some(
                                RunStatus::Planned | RunStatus::Confirmed | RunStatus::ApplyQueued
                            )
                        );
                    if goes_on && !shutting_down {
                        tracing::info!(wait = %otf_core::duration::human(wait), "single execution: waiting for the run's apply");
                        single_until = Some(Instant::now() + wait);
                    } else {
                        tracing::info!("single execution: the run is done here; exiting");
                        break Ok(());
                    }
                }
                if running.jobs.is_empty() {
                    let answer = report(&*transport, &reg.id, &running, ReportedStatus::Idle).await;
                    if shutting_down || drained_out(&cfg, &running, &answer) {
                        break Ok(());
                    }
                }
            }
            Event::Ping => {
                let status = if running.jobs.is_empty() {
                    ReportedStatus::Idle
                } else {
                    ReportedStatus::Busy
                };
                match report(&*transport, &reg.id, &running, status).await {
                    answer @ Ok(_) if drained_out(&cfg, &running, &answer) => break Ok(()),
                    Ok(_) => {
                        // otfd answers again: poll now, not when a backoff
                        // grown during its outage runs out.
                        if poll.is_none() {
                            poll_after = Instant::now();
                        }
                        backoff = Duration::from_millis(500);
                    }
                    Err(TransportError::Unauthorized(_)) => break Err(AgentError::Revoked),
                    Err(TransportError::Gone(m)) => {
                        tracing::warn!(reason = %m, "the server no longer knows this agent; registering again");
                        stop_all(&running, Stop::Cancel);
                        if let Ok(r) = register(&*transport, &cfg).await {
                            reg = r;
                        }
                    }
                    Err(e) => tracing::warn!(error = %e, "status ping failed"),
                }
            }
            Event::Signal => {
                if canceling {
                    tracing::warn!(
                        jobs = running.jobs.len(),
                        "third signal: killing running jobs"
                    );
                    stop_all(&running, Stop::Kill);
                } else if shutting_down {
                    tracing::info!(
                        jobs = running.jobs.len(),
                        "second signal: canceling running jobs"
                    );
                    canceling = true;
                    stop_all(&running, Stop::Cancel);
                } else {
                    shutting_down = true;
                    if let Some(p) = poll.take() {
                        p.abort();
                    }
                    tracing::info!(
                        jobs = running.jobs.len(),
                        "shutting down: taking no new jobs, letting running ones finish"
                    );
                }
                if running.jobs.is_empty() {
                    break Ok(());
                }
            }
        }
    };
    if let Some(p) = poll.take() {
        p.abort();
    }
    if result.is_err() {
        stop_all(&running, Stop::Kill);
    }
    while tasks.join_next().await.is_some() {}
    if !matches!(result, Err(AgentError::Revoked)) {
        let _ = report(&*transport, &reg.id, &running, ReportedStatus::Exited).await;
        tracing::info!(agent.id = %reg.id, "agent exited");
    }
    result
}

/// A status ping listing the jobs held; jobs otfd answers it considers
/// ended (say it gave them up while this agent could not reach it) are
/// interrupted here.
async fn report(
    transport: &dyn Transport,
    agent: &AgentId,
    running: &Running,
    status: ReportedStatus,
) -> TResult<PingAnswer> {
    // The ids came from otfd's own job summaries; one that does not parse
    // is no job of otfd's to report.
    let held: Vec<JobId> = running.jobs.keys().filter_map(|j| j.parse().ok()).collect();
    let answer = transport.status(agent, status, &held).await?;
    for job in &answer.cancel {
        if let Some(stop) = running.jobs.get(job.as_str()) {
            tracing::warn!(job.id = %job, "otfd no longer runs this job here; canceling it");
            let _ = stop.send_if_modified(|s| {
                let change = *s == Stop::Run;
                if change {
                    *s = Stop::Cancel;
                }
                change
            });
        }
    }
    Ok(answer)
}

/// Whether a runner told to exit when drained is drained and idle now.
fn drained_out(cfg: &RunnerConfig, running: &Running, answer: &TResult<PingAnswer>) -> bool {
    let out = cfg.exit_when_drained
        && running.jobs.is_empty()
        && answer.as_ref().is_ok_and(|a| a.drained);
    if out {
        tracing::info!("drained and idle: exiting");
    }
    out
}

fn stop_all(running: &Running, stop: Stop) {
    for tx in running.jobs.values() {
        let _ = tx.send(stop);
    }
}

async fn register(transport: &dyn Transport, cfg: &RunnerConfig) -> TResult<Registered> {
    let reg = transport
        .register(&RegisterRequest {
            name: cfg.name.clone(),
            version: env!("CARGO_PKG_VERSION").into(),
            concurrency: cfg.concurrency,
            protocol: crate::protocol::PROTOCOL,
            single: cfg.single.is_some(),
            labels: cfg
                .labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        })
        .await?;
    tracing::info!(
        agent.id = %reg.id,
        agent.server = cfg.server,
        agent.status = %reg.status,
        agent.ip_address = %reg.ip_address,
        agent.pool_id = %reg.pool_id.as_deref().unwrap_or(""),
        "registered successfully"
    );
    let id = reg.id.parse().map_err(|e: otf_core::ids::InvalidId| {
        TransportError::Refused(format!("otfd registered this agent as {:?}: {e}", reg.id))
    })?;
    Ok(Registered {
        id,
        ping_interval_ms: reg.ping_interval_ms,
    })
}

/// What the runner keeps of its registration.
struct Registered {
    id: AgentId,
    ping_interval_ms: u64,
}

/// Start a job, run it with a watcher for server signals, report the end.
async fn execute_job(
    transport: Arc<dyn Transport>,
    cfg: RunnerConfig,
    agent: AgentId,
    job: JobSummary,
    mut local: watch::Receiver<Stop>,
) -> JobEnd {
    let started = match job.id.parse::<JobId>() {
        Ok(id) => transport.start_job(&agent, &id).await.map(|s| (id, s)),
        Err(e) => Err(TransportError::Refused(e.to_string())),
    };
    let (job_id, start) = match started {
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
    // Server signals (stored with the job, so a reconnect still gets them).
    let watcher = {
        let (t, a, j, tx) = (
            transport.clone(),
            agent.clone(),
            job_id.clone(),
            stop_tx.clone(),
        );
        tokio::spawn(async move {
            loop {
                let asked = Instant::now();
                match t.await_signal(&a, &j).await {
                    Ok(Some(Signal::ForceCancel)) => {
                        let _ = tx.send(Stop::Kill);
                        return;
                    }
                    Ok(Some(_)) => {
                        let _ = tx.send_if_modified(|v| {
                            let change = *v == Stop::Run;
                            if change {
                                *v = Stop::Cancel;
                            }
                            change
                        });
                    }
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
    };
    // Local stops (the agent's second shutdown signal, re-registration).
    let forwarder = {
        let tx = stop_tx.clone();
        tokio::spawn(async move {
            while local.changed().await.is_ok() {
                let s = *local.borrow();
                let _ = tx.send(s);
            }
        })
    };
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
    // This runner's own timeout for the phase.
    let timer = {
        let limit = match start.job.phase.as_str() {
            "apply" => cfg.timeouts.apply,
            _ => cfg.timeouts.plan,
        };
        let (tx, log, phase) = (stop_tx.clone(), log.clone(), start.job.phase.clone());
        limit.map(|limit| {
            tokio::spawn(async move {
                tokio::time::sleep(limit).await;
                log.line(&format!(
                    "[otf] the {phase} ran longer than this runner's timeout of {} (--{phase}-timeout); canceling it",
                    otf_core::duration::human(limit)
                ))
                .await;
                let _ = tx.send_if_modified(|v| {
                    let change = *v == Stop::Run;
                    if change {
                        *v = Stop::Cancel;
                    }
                    change
                });
                tokio::time::sleep(KILL_AFTER).await;
                let _ = tx.send(Stop::Kill);
            })
        })
    };
    // An engine download stops on a cancel too.
    let resolved = {
        let mut stop = stop_rx.clone();
        tokio::select! {
            r = cfg.engine.resolve(&start.run.terraform_version) => Some(r),
            _ = stop.wait_for(|s| *s != Stop::Run) => None,
        }
    };
    let finish = match resolved {
        None => JobOutcome::Canceled,
        Some(Ok(engine)) => {
            let created = crate::workdir::create_private(&dir);
            match created {
                Ok(()) => {
                    JobRun {
                        transport: transport.clone(),
                        start: &start,
                        engine: &engine,
                        dir: &dir,
                        sandbox: &cfg.sandbox,
                        env: &cfg.env,
                        spool: &crate::acked::Spool::new(cfg.spool_dir.clone()),
                        patience: cfg.patience,
                        runner: &cfg.name,
                        log: &log,
                        stop: stop_rx,
                        hooks: &cfg.hooks,
                    }
                    .execute()
                    .await
                }
                Err(e) => errored(format!(
                    "cannot create the work directory {}: {e}",
                    dir.display()
                )),
            }
        }
        Some(Err(e)) => errored(e),
    };
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
    let _ = tokio::fs::remove_dir_all(&dir).await;
    JobEnd {
        phase: start.job.phase.clone(),
        run_status: reported.ok(),
    }
}

fn errored(message: String) -> JobOutcome {
    JobOutcome::Errored { message }
}
