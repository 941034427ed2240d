//! Jobs: allocation (by the dispatcher), start and finish (by runners), the
//! job-scoped data a job token may reach, and what happens to the jobs of
//! lost agents.

use super::runs::active_job;
use super::{allow, found, Core, Error};
use crate::artifacts::{ArtifactKind, StateVersion, Variable};
use crate::auth::{authorize_job, JobAction, Subject};
use crate::events::Event;
use crate::ids::{AgentId, JobId, RunId, StateVersionId};
use crate::job::{lost_job_action, Job, JobEvent, JobPhase, JobStatus, LossCause, LostJobAction};
use crate::run::{ResourceCounts, Run, RunEvent, RunStatus};
use crate::secret::IssuedSecret;
use crate::store::{
    ArtifactRepo, ConfigRepo, JobRepo, LogRepo, RunRepo, StateRepo, Store, Tx, VariableRepo,
    WorkspaceRepo,
};
use crate::workspace::Workspace;

/// A started job and the token for its attempt (shown once).
#[derive(Debug)]
pub struct StartedJob {
    pub job: Job,
    pub run: Run,
    pub workspace: Workspace,
    pub token: IssuedSecret,
}

/// How a runner reports the end of a job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobOutcome {
    /// Success. `has_changes` matters for plans only.
    Finished {
        counts: ResourceCounts,
        has_changes: bool,
    },
    Errored {
        message: String,
    },
    /// Terraform stopped after a cancel signal (or the agent shut down).
    Canceled,
}

impl JobOutcome {
    /// `finished`, `errored` or `canceled`: the agent protocol's spelling.
    pub fn name(&self) -> &'static str {
        match self {
            JobOutcome::Finished { .. } => "finished",
            JobOutcome::Errored { .. } => "errored",
            JobOutcome::Canceled => "canceled",
        }
    }
}

/// The job a subject's token belongs to.
fn job_of(subject: &Subject) -> Result<(&JobId, u32), Error> {
    match subject {
        Subject::Job { job, attempt, .. } => Ok((job, *attempt)),
        _ => Err(Error::Forbidden("this needs the job token of the job")),
    }
}

/// The subject's job, read and checked in `tx` (the transaction that then
/// reads or writes for it): the job token's attempt is the job's current
/// one and still runs (a late apply's, that it still may deliver its
/// state), and it may do `action`.
async fn authorized_job<T: crate::store::Tx>(
    tx: &mut T,
    subject: &Subject,
    action: JobAction,
) -> Result<Job, Error> {
    let (job_id, attempt) = job_of(subject)?;
    let job = found(tx.get_job(job_id).await?, "job", job_id)?;
    allow(
        authorize_job(subject, &job.run, &job.workspace, action),
        "job",
        job_id,
    )?;
    let live = match subject {
        Subject::Job { late: true, .. } => {
            job.status == JobStatus::Errored && job.token_hash.is_some()
        }
        _ => job.status == JobStatus::Running,
    };
    if job.attempt != attempt || !live {
        return Err(Error::Unauthorized);
    }
    Ok(job)
}

/// A job read before its workspace was locked, as it is now: read again
/// where other transactions may have changed it meanwhile
/// ([`crate::store::Tx::serialized`]).
async fn locked_again<T: crate::store::Tx>(tx: &mut T, peek: Job) -> Result<Job, Error> {
    if tx.serialized() {
        return Ok(peek);
    }
    found(tx.get_job(&peek.id).await?, "job", &peek.id)
}

/// [`authorized_job`] with the job's run and workspace.
async fn job_context_in<T: crate::store::Tx>(
    tx: &mut T,
    subject: &Subject,
    action: JobAction,
) -> Result<(Job, Run, Workspace), Error> {
    let job = authorized_job(tx, subject, action).await?;
    let run = found(tx.get_run(&job.run).await?, "run", &job.run)?;
    let ws = found(
        tx.get_workspace(&job.workspace).await?,
        "workspace",
        &job.workspace,
    )?;
    Ok((job, run, ws))
}

impl<S: Store> Core<S> {
    /// Allocate jobs to agents in one transaction: the scheduler's decisions
    /// of one burst of events, one commit for all. Each job still
    /// unallocated is allocated to its agent; a job another transaction
    /// moved meanwhile is returned as it is, one that is gone as None. The
    /// workspaces are locked in id order (no lock-order deadlock with
    /// another burst).
    pub async fn allocate_jobs(
        &self,
        allocations: &[(JobId, AgentId)],
    ) -> Result<Vec<Option<Job>>, Error> {
        if allocations.is_empty() {
            return Ok(Vec::new());
        }
        let mut tx = self.begin().await?;
        let mut peeked = Vec::with_capacity(allocations.len());
        for (job, _) in allocations {
            peeked.push(tx.get_job(job).await?);
        }
        if !tx.serialized() {
            // Lock, then read again what may have moved before the locks.
            let mut workspaces: Vec<_> = peeked
                .iter()
                .flatten()
                .map(|j| j.workspace.clone())
                .collect();
            workspaces.sort();
            workspaces.dedup();
            for ws in &workspaces {
                tx.lock_workspace(ws).await?;
            }
            for (slot, (job, _)) in peeked.iter_mut().zip(allocations) {
                *slot = tx.get_job(job).await?;
            }
        }
        let now = self.now();
        let mut jobs = Vec::with_capacity(allocations.len());
        let mut events = Vec::new();
        for (peeked, (_, agent)) in peeked.into_iter().zip(allocations) {
            let Some(mut j) = peeked else {
                jobs.push(None);
                continue;
            };
            if j.status == JobStatus::Unallocated {
                j.apply(JobEvent::Allocate(agent.clone()), now)?;
                tx.update_job(&j).await?;
                events.push(Event::Job(j.clone()));
            }
            jobs.push(Some(j));
        }
        self.commit(tx, events).await?;
        Ok(jobs)
    }

    /// The agent starts a job allocated to it and receives the job token of
    /// this attempt.
    pub async fn start_job(
        &self,
        subject: &Subject,
        agent: &AgentId,
        job: &JobId,
    ) -> Result<StartedJob, Error> {
        let agent_id = agent;
        let job_id = job;
        let now = self.now();
        let mut tx = self.begin().await?;
        let agent = self.agent_for_start(&mut tx, subject, agent_id).await?;
        let peek = found(tx.get_job(job_id).await?, "job", job_id)?;
        let ws = found(
            tx.lock_workspace(&peek.workspace).await?,
            "workspace",
            &peek.workspace,
        )?;
        let mut job = locked_again(&mut tx, peek).await?;
        if job.agent.as_ref() != Some(agent_id) {
            return Err(Error::NotFound {
                kind: "job",
                id: job_id.to_string(),
            });
        }
        job.apply(JobEvent::Start, now)?;
        let mut events = Vec::new();
        // A single-execution agent takes nothing more than this run: it is
        // drained from its first start on (the run's apply still reaches it
        // through its affinity).
        if agent.single && !agent.drained {
            use crate::store::AgentRepo;
            if let Some(mut agent) = tx.lock_agent(agent_id).await? {
                if !agent.drained {
                    agent.drained = true;
                    tx.update_agent(&agent).await?;
                    events.push(Event::Agent(agent));
                }
            }
        }
        let token = IssuedSecret::generate(job.id.as_str(), self.rng.as_ref());
        job.token_hash = Some(token.hash());
        let mut run = found(tx.get_run(&job.run).await?, "run", &job.run)?;
        let before = run.clone();
        let event = match job.phase {
            JobPhase::Plan => RunEvent::PlanStarted,
            JobPhase::Apply => RunEvent::ApplyStarted,
        };
        run.apply_event(event, now, self.config.force_cancel_cool_off)?;
        events.extend([Event::Job(job.clone()), Event::Run(run.clone())]);
        // A phase log starts with STX: the first attempt's start writes it
        // (nothing writes a phase's log before), a retried plan continues
        // the same log (and writes it only if no attempt did).
        if job.attempt <= 1 || tx.read_log(&run.id, job.phase, 0, 1).await?.is_empty() {
            let chunk = tx
                .append_log(&run.id, job.phase, &[super::runs::LOG_START])
                .await?;
            events.push(Event::Log {
                run: run.id.clone(),
                phase: job.phase,
                end: chunk.offset + 1,
            });
        }
        tx.update_job(&job).await?;
        self.save_run_after(&mut tx, &before, &run, &mut events)
            .await?;
        self.commit(tx, events).await?;
        Ok(StartedJob {
            job,
            run,
            workspace: ws,
            token,
        })
    }

    async fn agent_for_start(
        &self,
        tx: &mut S::Tx,
        subject: &Subject,
        id: &AgentId,
    ) -> Result<crate::agent::Agent, Error> {
        use crate::store::AgentRepo;
        let agent = found(tx.get_agent(id).await?, "agent", id)?;
        allow(
            crate::auth::authorize_agent(subject, agent.pool.as_ref(), agent.token.as_ref()),
            "agent",
            id,
        )?;
        if agent.status.is_final() {
            return Err(Error::AgentGone {
                agent: id.to_string(),
                status: agent.status,
            });
        }
        Ok(agent)
    }

    /// The runner reports the end of its job (with the job token). The run
    /// moves on: planned (and applied at once when auto-apply), applied,
    /// errored or canceled; a run that ended frees its workspace.
    pub async fn finish_job(&self, subject: &Subject, outcome: JobOutcome) -> Result<Run, Error> {
        let (job_id, attempt) = job_of(subject)?;
        let Subject::Job { workspace, .. } = subject else {
            return Err(Error::Unauthorized);
        };
        let now = self.now();
        let cool_off = self.config.force_cancel_cool_off;
        let mut tx = self.begin().await?;
        // The token names the job's workspace (a job never moves): lock it,
        // then read the job as it is under the lock.
        let mut ws = found(tx.lock_workspace(workspace).await?, "workspace", workspace)?;
        let mut job = found(tx.get_job(job_id).await?, "job", job_id)?;
        if job.workspace != ws.id || job.attempt != attempt || job.status != JobStatus::Running {
            // The attempt is over or superseded: its token is dead.
            return Err(Error::Unauthorized);
        }
        let mut run = found(tx.get_run(&job.run).await?, "run", &job.run)?;
        let before = run.clone();
        let mut events = Vec::new();
        match outcome {
            JobOutcome::Finished {
                counts,
                has_changes,
            } => {
                job.apply(JobEvent::Finish, now)?;
                match job.phase {
                    JobPhase::Plan => {
                        run.apply_event(
                            RunEvent::PlanFinished {
                                counts,
                                has_changes,
                            },
                            now,
                            cool_off,
                        )?;
                        if run.status == RunStatus::Planned && run.auto_apply {
                            run.apply_event(RunEvent::Confirm, now, cool_off)?;
                            let planner = job.agent.clone();
                            self.queue_apply_after(&mut tx, &ws, &mut run, planner, &mut events)
                                .await?;
                        }
                    }
                    JobPhase::Apply => {
                        run.apply_event(RunEvent::ApplyFinished { counts }, now, cool_off)?
                    }
                }
            }
            JobOutcome::Errored { message } => {
                job.error = Some(message.clone());
                job.apply(JobEvent::Error, now)?;
                run.apply_event(RunEvent::Error { message }, now, cool_off)?;
            }
            JobOutcome::Canceled => {
                job.apply(JobEvent::Cancel, now)?;
                if run.cancel_requested_at.is_none() {
                    run.apply_event(RunEvent::Cancel, now, cool_off)?;
                }
                run.apply_event(RunEvent::CancelCompleted, now, cool_off)?;
            }
        }
        if job.log_dropped > 0 {
            // The log's last line says how much of it was dropped.
            let notice =
                crate::log_limit::dropped_notice(self.config.max_log_bytes, job.log_dropped);
            let chunk = tx.append_log(&run.id, job.phase, notice.as_bytes()).await?;
            events.push(Event::Log {
                run: run.id.clone(),
                phase: job.phase,
                end: chunk.offset + notice.len() as u64,
            });
        }
        tx.update_job(&job).await?;
        // The job ran: its start opened its phase's log. A plan ends before
        // any apply of the run can start: the apply's log is not open.
        let known: &[_] = match job.phase {
            JobPhase::Plan => &[(JobPhase::Plan, true), (JobPhase::Apply, false)],
            JobPhase::Apply => &[(JobPhase::Apply, true)],
        };
        self.save_run_logged(&mut tx, &before, &run, known, &mut events)
            .await?;
        events.insert(0, Event::Job(job));
        events.push(Event::Run(run.clone()));
        if run.status.is_final() {
            self.release_workspace(&mut tx, &mut ws, &run, &mut events)
                .await?;
        }
        self.commit(tx, events).await?;
        Ok(run)
    }

    /// What happens to a job whose runner is lost ([`LossCause`]).
    /// `agent_label` names the agent for people.
    pub async fn handle_lost_job(
        &self,
        job: &JobId,
        agent: &AgentId,
        agent_label: &str,
        cause: LossCause,
    ) -> Result<(), Error> {
        let now = self.now();
        let cool_off = self.config.force_cancel_cool_off;
        let mut tx = self.begin().await?;
        let Some((mut ws, mut job)) = lock_job(&mut tx, job).await? else {
            return Ok(());
        };
        if job.agent.as_ref() != Some(agent) {
            return Ok(());
        }
        let mut events = Vec::new();
        let mut run = found(tx.get_run(&job.run).await?, "run", &job.run)?;
        let cancel_requested = run.cancel_requested_at.is_some();
        match lost_job_action(&job, agent_label, cause, cancel_requested) {
            LostJobAction::Nothing => return Ok(()),
            LostJobAction::Reallocate => {
                job.apply(JobEvent::Reallocate, now)?;
                job.follow_selector(&ws);
                tx.update_job(&job).await?;
                events.push(Event::Job(job));
            }
            LostJobAction::RetryPlan {
                next_attempt,
                message,
            } => {
                job.error = Some(message.clone());
                job.apply(JobEvent::Error, now)?;
                let mut retry =
                    self.new_job(&ws, &run, JobPhase::Plan, next_attempt, job.queued_at);
                retry.pool = job.pool.clone();
                retry.follow_selector(&ws);
                run.apply_event(RunEvent::PlanRequeued, now, cool_off)?;
                tx.update_job(&job).await?;
                tx.insert_job(&retry).await?;
                events.push(
                    self.log_notice(&mut tx, &run, JobPhase::Plan, &message)
                        .await?,
                );
                self.save_run(&mut tx, &run, &mut events).await?;
                events.extend([Event::Job(job), Event::Job(retry), Event::Run(run)]);
            }
            action @ (LostJobAction::Cancel { .. } | LostJobAction::Fail { .. }) => {
                let (canceled, message) = match action {
                    LostJobAction::Cancel { message } => (true, message),
                    LostJobAction::Fail { message } => (false, message),
                    _ => unreachable!("matched above"),
                };
                job.error = Some(message.clone());
                if canceled {
                    job.apply(JobEvent::Cancel, now)?;
                    if run.cancel_requested_at.is_none() {
                        run.apply_event(RunEvent::Cancel, now, cool_off)?;
                    }
                    run.apply_event(RunEvent::CancelCompleted, now, cool_off)?;
                } else {
                    // A given-up apply may still have changed things: its
                    // token stays good for one late state (see
                    // `job_create_state_version`).
                    let kept = job.token_hash.clone();
                    job.apply(JobEvent::Error, now)?;
                    if job.phase == JobPhase::Apply {
                        job.token_hash = kept;
                    }
                    run.apply_event(
                        RunEvent::Error {
                            message: message.clone(),
                        },
                        now,
                        cool_off,
                    )?;
                }
                tx.update_job(&job).await?;
                events.push(self.log_notice(&mut tx, &run, job.phase, &message).await?);
                self.save_run(&mut tx, &run, &mut events).await?;
                events.extend([Event::Job(job), Event::Run(run.clone())]);
                self.release_workspace(&mut tx, &mut ws, &run, &mut events)
                    .await?;
            }
        }
        self.commit(tx, events).await
    }

    /// Append a line from otf itself to a phase's log.
    pub(super) async fn log_notice(
        &self,
        tx: &mut S::Tx,
        run: &Run,
        phase: JobPhase,
        message: &str,
    ) -> Result<Event, Error> {
        let line = format!("\n[otf] {message}\n");
        let chunk = tx.append_log(&run.id, phase, line.as_bytes()).await?;
        Ok(Event::Log {
            run: run.id.clone(),
            phase,
            end: chunk.offset + chunk.data.len() as u64,
        })
    }

    /// The run and workspace of the subject's job, if it may do `action`
    /// (checked as every job service checks it, in its own transaction).
    pub async fn job_context(
        &self,
        subject: &Subject,
        action: JobAction,
    ) -> Result<(Job, Run, Workspace), Error> {
        let mut tx = self.read().await?;
        job_context_in(&mut tx, subject, action).await
    }

    /// Append runner output to the job's phase log, within the log limit
    /// ([`crate::log_limit`]): authorized, cut and appended in one
    /// transaction. Gives the log's end.
    pub async fn append_job_log(&self, subject: &Subject, data: &[u8]) -> Result<u64, Error> {
        let mut tx = self.begin().await?;
        let mut job = authorized_job(&mut tx, subject, JobAction::AppendLog).await?;
        let limit = self.config.max_log_bytes;
        let len = tx.append_log(&job.run, job.phase, &[]).await?.offset;
        let admitted = crate::log_limit::admit(len, job.log_dropped, data.len(), limit);
        let mut end = len;
        if admitted.keep > 0 {
            let chunk = tx
                .append_log(&job.run, job.phase, &data[..admitted.keep])
                .await?;
            end = chunk.offset + admitted.keep as u64;
        }
        if admitted.crosses {
            let notice = crate::log_limit::truncated_notice(limit);
            let chunk = tx
                .append_log(&job.run, job.phase, notice.as_bytes())
                .await?;
            end = chunk.offset + notice.len() as u64;
        }
        if admitted.dropped > 0 {
            job.log_dropped = job.log_dropped.saturating_add(admitted.dropped);
            tx.update_job(&job).await?;
        }
        let events = if end > len {
            vec![Event::Log {
                run: job.run.clone(),
                phase: job.phase,
                end,
            }]
        } else {
            Vec::new()
        };
        self.commit(tx, events).await?;
        Ok(end)
    }

    /// The configuration tarball of the job's run.
    pub async fn job_config(&self, subject: &Subject) -> Result<Vec<u8>, Error> {
        let mut tx = self.read().await?;
        let (_, run, _) = job_context_in(&mut tx, subject, JobAction::DownloadConfig).await?;
        let cv = &run.configuration_version;
        found(
            tx.get_config_tarball(cv).await?,
            "configuration version",
            cv,
        )
    }

    /// The workspace's variables, sensitive values included (for the runner).
    pub async fn job_variables(&self, subject: &Subject) -> Result<Vec<Variable>, Error> {
        let mut tx = self.read().await?;
        let (_, _, ws) = job_context_in(&mut tx, subject, JobAction::ReadVariables).await?;
        Ok(tx.list_variables(&ws.id).await?)
    }

    /// The workspace's current state, if any.
    pub async fn job_current_state(
        &self,
        subject: &Subject,
    ) -> Result<Option<(StateVersion, Vec<u8>)>, Error> {
        let mut tx = self.read().await?;
        let (_, _, ws) = job_context_in(&mut tx, subject, JobAction::ReadCurrentState).await?;
        let Some(sv) = tx.current_state_version(&ws.id).await? else {
            return Ok(None);
        };
        let bytes = found(tx.get_state_bytes(&sv.id).await?, "state version", &sv.id)?;
        Ok(Some((sv, bytes)))
    }

    /// Store a plan artifact (plan phase only).
    pub async fn upload_artifact(
        &self,
        subject: &Subject,
        kind: ArtifactKind,
        data: &[u8],
    ) -> Result<(), Error> {
        let action = match kind {
            ArtifactKind::Plan => JobAction::UploadPlan,
            ArtifactKind::JsonPlan => JobAction::UploadJsonPlan,
            ArtifactKind::LockFile => JobAction::UploadLockFile,
        };
        if data.len() > self.config.max_upload_bytes {
            return Err(Error::Invalid {
                field: "artifact",
                reason: format!(
                    "the {kind} is {} bytes; the limit is {} bytes",
                    data.len(),
                    self.config.max_upload_bytes
                ),
            });
        }
        let mut tx = self.begin().await?;
        let (_, run, _) = job_context_in(&mut tx, subject, action).await?;
        tx.put_artifact(&run.id, kind, data).await?;
        self.commit(tx, vec![]).await
    }

    /// Read a plan artifact of the job's run.
    pub async fn download_artifact(
        &self,
        subject: &Subject,
        kind: ArtifactKind,
    ) -> Result<Option<Vec<u8>>, Error> {
        let action = match kind {
            ArtifactKind::LockFile => JobAction::DownloadLockFile,
            _ => JobAction::DownloadPlan,
        };
        let mut tx = self.read().await?;
        let (_, run, _) = job_context_in(&mut tx, subject, action).await?;
        Ok(tx.get_artifact(&run.id, kind).await?)
    }

    /// Store the state an apply produced (apply phase only). The job must
    /// still be running this attempt when the write commits, or be an apply
    /// otfd gave up (its runner lost; the subject is `late`): such a late
    /// state is taken once, and only if it is newer than the workspace's
    /// current state in the same lineage (compare-and-swap), so a zombie
    /// never overwrites what a later apply wrote.
    pub async fn job_create_state_version(
        &self,
        subject: &Subject,
        serial: i64,
        lineage: &str,
        state: &[u8],
    ) -> Result<StateVersion, Error> {
        let late = matches!(subject, Subject::Job { late: true, .. });
        let mut tx = self.begin().await?;
        let (job, run, ws) =
            job_context_in(&mut tx, subject, JobAction::CreateStateVersion).await?;
        tx.lock_workspace(&ws.id).await?;
        let mut current = found(tx.get_job(&job.id).await?, "job", &job.id)?;
        let expected = if late {
            JobStatus::Errored
        } else {
            JobStatus::Running
        };
        if current.status != expected
            || current.attempt != job.attempt
            || (late && current.token_hash.is_none())
        {
            return Err(Error::Unauthorized);
        }
        let mut events = Vec::new();
        if late {
            if let Some(newest) = tx.current_state_version(&ws.id).await? {
                if let Some(refusal) =
                    crate::artifacts::late_state_refusal(&newest, serial, lineage)
                {
                    drop(tx);
                    // The run's error says what became of its state.
                    self.note_late_state(&run.id, &format!("{refusal}; the runner keeps it"))
                        .await?;
                    return Err(Error::LateState(refusal));
                }
            }
            // One late state per given-up apply.
            current.token_hash = None;
            tx.update_job(&current).await?;
        }
        let sv = StateVersion {
            id: StateVersionId::generate(self.rng.as_ref()),
            workspace: ws.id,
            organization: ws.organization,
            serial,
            lineage: lineage.to_string(),
            md5: crate::artifacts::md5_hex(state),
            size: state.len() as u64,
            run: Some(run.id.clone()),
            created_at: self.now(),
        };
        tx.insert_state_version(&sv, state).await?;
        if late {
            let mut run = found(tx.get_run(&run.id).await?, "run", &run.id)?;
            run.error = Some(late_note(
                run.error.as_deref(),
                &format!(
                    "the state it produced arrived late and was recorded as state version {} (serial {serial})",
                    sv.id
                ),
            ));
            tx.update_run(&run).await?;
            events.push(Event::Run(run));
        }
        self.commit(tx, events).await?;
        Ok(sv)
    }

    /// Add what became of a given-up apply's late state to its run's error.
    async fn note_late_state(&self, run: &crate::ids::RunId, what: &str) -> Result<(), Error> {
        let mut tx = self.begin().await?;
        let peek = found(tx.get_run(run).await?, "run", run)?;
        tx.lock_workspace(&peek.workspace).await?;
        let mut run = found(tx.get_run(run).await?, "run", run)?;
        run.error = Some(late_note(run.error.as_deref(), what));
        tx.update_run(&run).await?;
        self.commit(tx, vec![Event::Run(run)]).await
    }

    /// A previous incarnation of this replica's server runner (`agent`)
    /// is gone for good: otfd crashed or was killed while it held jobs.
    /// Mark it exited and recover its jobs at once, as a lost agent's (a
    /// plan runs again; an apply is given up, its token kept for the late
    /// state).
    pub async fn retire_server_runner(
        &self,
        subject: &Subject,
        agent: &AgentId,
    ) -> Result<(), Error> {
        use crate::agent::{AgentEvent, ReportedStatus};
        use crate::store::AgentRepo;
        if !matches!(subject, Subject::ServerRunner) {
            return Err(Error::Forbidden("only the server runner retires itself"));
        }
        let mut tx = self.begin().await?;
        let Some(mut old) = tx.lock_agent(agent).await? else {
            return Ok(());
        };
        if !old.is_server() {
            return Err(Error::Forbidden("only server runner agents are retired"));
        }
        if !old.status.is_final() {
            old.apply(AgentEvent::Ping(ReportedStatus::Exited), self.now())?;
            tx.update_agent(&old).await?;
        }
        let jobs = tx.list_jobs_of_agent(agent).await?;
        self.commit(tx, vec![Event::Agent(old.clone())]).await?;
        let label = old.label();
        for job in jobs {
            self.handle_lost_job(&job.id, agent, &label, LossCause::AgentLost { gone: true })
                .await?;
        }
        Ok(())
    }

    /// Deliver a state that a previous incarnation of the server runner
    /// kept in its spool for `job` (attempt `attempt`): taken as the late
    /// state of a given-up apply, with the same compare-and-swap.
    pub async fn deliver_spooled_state(
        &self,
        subject: &Subject,
        job: &JobId,
        attempt: u32,
        serial: i64,
        lineage: &str,
        state: &[u8],
    ) -> Result<StateVersion, Error> {
        if !matches!(subject, Subject::ServerRunner) {
            return Err(Error::Forbidden(
                "only the server runner delivers its spool",
            ));
        }
        let j = {
            let mut tx = self.read().await?;
            found(tx.get_job(job).await?, "job", job)?
        };
        if j.pool.is_some() || j.attempt != attempt {
            return Err(Error::NotFound {
                kind: "job",
                id: format!("{job} (attempt {attempt}) of the server runner"),
            });
        }
        let late = Subject::Job {
            job: j.id,
            attempt: j.attempt,
            run: j.run,
            workspace: j.workspace,
            organization: j.organization,
            phase: j.phase,
            late: true,
        };
        self.job_create_state_version(&late, serial, lineage, state)
            .await
    }

    /// The active job of a run (for views).
    pub async fn active_job_of_run(
        &self,
        subject: &Subject,
        run: &RunId,
    ) -> Result<Option<Job>, Error> {
        let run = self.get_run(subject, run).await?;
        let mut tx = self.read().await?;
        active_job(&mut tx, &run.id).await
    }
}

/// A run's error with a note about its late state appended.
fn late_note(error: Option<&str>, what: &str) -> String {
    match error {
        Some(e) if !e.is_empty() => format!("{e}; {what}"),
        _ => what.to_string(),
    }
}

/// A job with its workspace locked (the lock root of its run and jobs), read
/// again under the lock; None if it does not exist.
pub(super) async fn lock_job<T: JobRepo + WorkspaceRepo + Send>(
    tx: &mut T,
    id: &JobId,
) -> Result<Option<(Workspace, Job)>, Error> {
    let Some(peek) = tx.get_job(id).await? else {
        return Ok(None);
    };
    let ws = found(
        tx.lock_workspace(&peek.workspace).await?,
        "workspace",
        &peek.workspace,
    )?;
    Ok(tx.get_job(id).await?.map(|job| (ws, job)))
}
