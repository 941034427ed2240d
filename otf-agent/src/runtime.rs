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
use tokio::task::{JoinHandle, JoinSet};

use crate::engine::EngineConfig;
use crate::job::{execute_job, JobEnd};
use crate::process::Stop;
use otf_core::agent::ReportedStatus;
use otf_core::ids::{JobId, RunId};
use otf_core::job::JobPhase;
use otf_core::run::RunStatus;
use otf_core::services::PingAnswer;

use crate::protocol::RegisterRequest;
use crate::sandbox::Sandbox;
use crate::transport::{JobOffer, Registration, TResult, Transport, TransportError};

/// Jobs a runner runs at once unless told.
pub const DEFAULT_CONCURRENCY: u32 = 5;

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
    /// Plans' directories kept for their applies ([`crate::warm`]).
    pub warm: Arc<crate::warm::WarmPlans>,
    /// The provider plugin cache its jobs share ([`crate::plugin_cache`]);
    /// None when the operator set `TF_PLUGIN_CACHE_DIR` (theirs is used).
    pub plugins: Option<crate::plugin_cache::PluginCache>,
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

/// Why the loop woke up.
enum Event {
    Polled(TResult<Vec<JobOffer>>),
    JobDone(JobId, JobEnd),
    Ping,
    /// SIGINT/SIGTERM (or the embedding program's shutdown).
    Signal,
    /// Single execution: no job came within its wait.
    SingleWaitOver,
}

/// What an event decided: go on, or stop with this result.
type Decision = Option<Result<(), AgentError>>;

const MAX_BACKOFF: Duration = Duration::from_secs(30);
const FIRST_BACKOFF: Duration = Duration::from_millis(500);

/// The runner's state between events.
struct Runner {
    transport: Arc<dyn Transport>,
    cfg: RunnerConfig,
    reg: Registration,
    tasks: JoinSet<()>,
    /// Stops of running jobs.
    jobs: HashMap<JobId, watch::Sender<Stop>>,
    done: mpsc::UnboundedSender<(JobId, JobEnd)>,
    /// The long-poll in flight.
    poll: Option<JoinHandle<TResult<Vec<JobOffer>>>>,
    poll_after: Instant,
    backoff: Duration,
    /// Single execution: the run it serves, and until when it waits for a
    /// job (its first, then the run's apply).
    single_run: Option<RunId>,
    single_until: Option<Instant>,
    shutting_down: bool,
    canceling: bool,
    announced_wait: bool,
}

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
    let reg = register(&*transport, &cfg).await.map_err(|e| match e {
        TransportError::Unauthorized(m) => AgentError::TokenRefused(m),
        TransportError::Unavailable(m) => AgentError::Unreachable(m),
        other => AgentError::Refused(other.to_string()),
    })?;
    let (done, mut done_rx) = mpsc::unbounded_channel();
    let mut ping = tokio::time::interval(reg.ping_interval.max(Duration::from_millis(100)));
    ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut r = Runner {
        single_until: cfg.single.map(|wait| Instant::now() + wait),
        transport,
        cfg,
        reg,
        tasks: JoinSet::new(),
        jobs: HashMap::new(),
        done,
        poll: None,
        poll_after: Instant::now(),
        backoff: FIRST_BACKOFF,
        single_run: None,
        shutting_down: false,
        canceling: false,
        announced_wait: false,
    };
    let mut signals_open = true;
    let result = loop {
        r.start_poll();
        let retry_in = r.poll_after.saturating_duration_since(Instant::now());
        let single_wait = r.single_until.filter(|_| r.jobs.is_empty());
        let polling = r.poll.is_some();
        let poll = &mut r.poll;
        let event = tokio::select! {
            p = async { poll.as_mut().expect("guarded").await }, if polling => {
                *poll = None;
                Event::Polled(p.unwrap_or_else(|e| Err(TransportError::Unavailable(e.to_string()))))
            }
            Some((id, end)) = done_rx.recv() => Event::JobDone(id, end),
            _ = tokio::time::sleep_until(single_wait.unwrap_or_else(Instant::now).into()),
                if single_wait.is_some() => Event::SingleWaitOver,
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
            _ = tokio::time::sleep(retry_in), if !polling && !retry_in.is_zero() => continue,
        };
        let decided = match event {
            Event::Polled(Ok(jobs)) => r.take(jobs).await,
            Event::Polled(Err(e)) => r.poll_failed(e).await,
            Event::JobDone(id, end) => r.job_done(id, end).await,
            Event::Ping => r.ping().await,
            Event::Signal => r.signal(),
            Event::SingleWaitOver => {
                tracing::info!("single execution: no job within --single-wait; exiting");
                Some(Ok(()))
            }
        };
        if let Some(result) = decided {
            break result;
        }
    };
    r.finish(result).await
}

impl Runner {
    /// Long-poll for jobs when there is room for one and none is asked.
    fn start_poll(&mut self) {
        let capacity = (self.jobs.len() as u32) < self.cfg.concurrency;
        if self.poll.is_some() || !capacity || self.shutting_down {
            return;
        }
        if Instant::now() < self.poll_after {
            return;
        }
        if self.jobs.is_empty() && !self.announced_wait {
            tracing::info!("waiting for next job");
            self.announced_wait = true;
        }
        let (t, id) = (self.transport.clone(), self.reg.id.clone());
        self.poll = Some(tokio::spawn(async move { t.await_jobs(&id).await }));
    }

    /// Start the jobs the long-poll handed out, as many as there is room for.
    async fn take(&mut self, jobs: Vec<JobOffer>) -> Decision {
        self.backoff = FIRST_BACKOFF;
        if !jobs.is_empty() && jobs.iter().all(|j| self.jobs.contains_key(&j.id)) {
            // Only jobs being started: ask again in a moment, not at once.
            self.poll_after = Instant::now() + Duration::from_millis(100);
        }
        for job in jobs {
            if self.jobs.len() as u32 >= self.cfg.concurrency || self.shutting_down {
                break;
            }
            // A poll that answers before the start committed lists the job
            // again: it is already being started.
            if self.jobs.contains_key(&job.id) {
                continue;
            }
            // Single execution serves one run only.
            if self.cfg.single.is_some() {
                if self.single_run.as_ref().is_some_and(|r| *r != job.run) {
                    continue;
                }
                self.single_run = Some(job.run.clone());
                self.single_until = None;
            }
            self.spawn(job);
        }
        if !self.jobs.is_empty() {
            let _ = self.report(ReportedStatus::Busy).await;
        }
        None
    }

    fn spawn(&mut self, job: JobOffer) {
        self.announced_wait = false;
        let (stop_tx, stop_rx) = watch::channel(Stop::Run);
        self.jobs.insert(job.id.clone(), stop_tx);
        let (t, c, agent, done) = (
            self.transport.clone(),
            self.cfg.clone(),
            self.reg.id.clone(),
            self.done.clone(),
        );
        self.tasks.spawn(async move {
            let id = job.id.clone();
            let end = execute_job(t, c, agent, job, stop_rx).await;
            let _ = done.send((id, end));
        });
    }

    async fn poll_failed(&mut self, e: TransportError) -> Decision {
        match e {
            TransportError::Unauthorized(_) => return Some(Err(AgentError::Revoked)),
            TransportError::Gone(m) => {
                tracing::warn!(reason = %m, "the server no longer knows this agent; registering again");
                // Interrupt, never kill: an apply still writes its state,
                // which the spool keeps.
                self.stop_all(Stop::Cancel);
                match register(&*self.transport, &self.cfg).await {
                    Ok(r) => self.reg = r,
                    Err(TransportError::Unauthorized(_)) => return Some(Err(AgentError::Revoked)),
                    Err(e) => {
                        tracing::warn!(error = %e, "registering again failed; retrying");
                        self.poll_after = Instant::now() + self.backoff;
                    }
                }
            }
            other => {
                tracing::warn!(error = %other, retry_in = ?self.backoff, "cannot reach otfd; retrying");
                self.poll_after = Instant::now() + self.backoff;
                self.backoff = (self.backoff * 2).min(MAX_BACKOFF);
            }
        }
        None
    }

    async fn job_done(&mut self, id: JobId, end: JobEnd) -> Decision {
        self.jobs.remove(&id);
        if let Some(wait) = self.cfg.single {
            // After its plan, a single agent waits for the run's apply (kept
            // for it) if the run goes on; else it is done.
            let goes_on = end.phase == JobPhase::Plan
                && matches!(
                    end.run_status,
                    Some(RunStatus::Planned | RunStatus::Confirmed | RunStatus::ApplyQueued)
                );
            if !goes_on || self.shutting_down {
                tracing::info!("single execution: the run is done here; exiting");
                return Some(Ok(()));
            }
            tracing::info!(wait = %otf_core::duration::human(wait), "single execution: waiting for the run's apply");
            self.single_until = Some(Instant::now() + wait);
        }
        if self.jobs.is_empty() {
            let answer = self.report(ReportedStatus::Idle).await;
            if self.shutting_down || self.drained_out(&answer) {
                return Some(Ok(()));
            }
        }
        None
    }

    async fn ping(&mut self) -> Decision {
        let status = if self.jobs.is_empty() {
            ReportedStatus::Idle
        } else {
            ReportedStatus::Busy
        };
        match self.report(status).await {
            answer @ Ok(_) if self.drained_out(&answer) => return Some(Ok(())),
            Ok(_) => {
                // otfd answers again: poll now, not when a backoff grown
                // during its outage runs out.
                if self.poll.is_none() {
                    self.poll_after = Instant::now();
                }
                self.backoff = FIRST_BACKOFF;
            }
            Err(TransportError::Unauthorized(_)) => return Some(Err(AgentError::Revoked)),
            Err(TransportError::Gone(m)) => {
                tracing::warn!(reason = %m, "the server no longer knows this agent; registering again");
                self.stop_all(Stop::Cancel);
                if let Ok(r) = register(&*self.transport, &self.cfg).await {
                    self.reg = r;
                }
            }
            Err(e) => tracing::warn!(error = %e, "status ping failed"),
        }
        None
    }

    /// A shutdown signal: the first stops taking jobs, the second cancels
    /// running ones, the third kills them.
    fn signal(&mut self) -> Decision {
        let jobs = self.jobs.len();
        if self.canceling {
            tracing::warn!(jobs, "third signal: killing running jobs");
            self.stop_all(Stop::Kill);
        } else if self.shutting_down {
            tracing::info!(jobs, "second signal: canceling running jobs");
            self.canceling = true;
            self.stop_all(Stop::Cancel);
        } else {
            self.shutting_down = true;
            if let Some(p) = self.poll.take() {
                p.abort();
            }
            tracing::info!(
                jobs,
                "shutting down: taking no new jobs, letting running ones finish"
            );
        }
        self.jobs.is_empty().then_some(Ok(()))
    }

    /// Wait for every job (killed when the runner stops on an error), then
    /// say the agent exited.
    async fn finish(mut self, result: Result<(), AgentError>) -> Result<(), AgentError> {
        if let Some(p) = self.poll.take() {
            p.abort();
        }
        if result.is_err() {
            self.stop_all(Stop::Kill);
        }
        while self.tasks.join_next().await.is_some() {}
        if !matches!(result, Err(AgentError::Revoked)) {
            let _ = self.report(ReportedStatus::Exited).await;
            tracing::info!(agent.id = %self.reg.id, "agent exited");
        }
        result
    }

    /// A status ping listing the jobs held; jobs otfd answers it considers
    /// ended (say it gave them up while this agent could not reach it) are
    /// interrupted here.
    async fn report(&self, status: ReportedStatus) -> TResult<PingAnswer> {
        let held: Vec<JobId> = self.jobs.keys().cloned().collect();
        let answer = self.transport.status(&self.reg.id, status, &held).await?;
        for job in &answer.cancel {
            if let Some(stop) = self.jobs.get(job) {
                tracing::warn!(job.id = %job, "otfd no longer runs this job here; canceling it");
                crate::job::interrupt(stop);
            }
        }
        Ok(answer)
    }

    /// Whether a runner told to exit when drained is drained and idle now.
    fn drained_out(&self, answer: &TResult<PingAnswer>) -> bool {
        let out = self.cfg.exit_when_drained
            && self.jobs.is_empty()
            && answer.as_ref().is_ok_and(|a| a.drained);
        if out {
            tracing::info!("drained and idle: exiting");
        }
        out
    }

    fn stop_all(&self, stop: Stop) {
        for tx in self.jobs.values() {
            let _ = tx.send(stop);
        }
    }
}

async fn register(transport: &dyn Transport, cfg: &RunnerConfig) -> TResult<Registration> {
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
        agent.pool_id = %reg.pool.as_ref().map_or("", |p| p.as_str()),
        "registered successfully"
    );
    Ok(reg)
}
