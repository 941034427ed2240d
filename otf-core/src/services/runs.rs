//! Configuration versions and runs: create, the workspace run queue, confirm,
//! discard, cancel, force-cancel.

use super::{allow, found, Core, Error};
use crate::artifacts::{ConfigStatus, ConfigurationVersion};
use crate::auth::{authorize_organization, Access, Subject};
use crate::events::Event;
use crate::ids::{ConfigVersionId, JobId, RunId, WorkspaceId};
use crate::job::{Job, JobEvent, JobPhase, JobStatus, Signal};
use crate::run::{Run, RunEvent, RunOptions};
use crate::store::{ConfigRepo, JobRepo, LogRepo, RunRepo, Store, WorkspaceRepo};
use crate::workspace::{ExecutionMode, Workspace, WorkspaceLock};

pub use crate::run::{LOG_END, LOG_START};

/// A boxed future borrowing the transaction, for actions run inside one.
type BoxFut<'a, T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send + 'a>>;

/// A new configuration version.
#[derive(Debug, Clone, Copy, Default)]
pub struct ConfigSpec {
    pub speculative: bool,
    /// Start a run as soon as the configuration is uploaded.
    pub auto_queue_runs: bool,
}

/// A new run. Without a configuration version, the workspace's newest
/// uploaded one is used.
#[derive(Debug, Clone)]
pub struct RunSpec {
    pub workspace: WorkspaceId,
    pub configuration_version: Option<ConfigVersionId>,
    pub options: RunOptions,
}

impl<S: Store> Core<S> {
    pub async fn create_configuration_version(
        &self,
        subject: &Subject,
        workspace: &WorkspaceId,
        spec: ConfigSpec,
    ) -> Result<ConfigurationVersion, Error> {
        let ws = self.get_workspace(subject, workspace).await?;
        allow(
            authorize_organization(subject, &ws.organization, Access::Write),
            "workspace",
            &ws.id,
        )?;
        let cv = ConfigurationVersion {
            id: ConfigVersionId::generate(self.rng.as_ref()),
            workspace: ws.id,
            organization: ws.organization,
            status: ConfigStatus::Pending,
            speculative: spec.speculative,
            auto_queue_runs: spec.auto_queue_runs,
            error: None,
            created_at: self.now(),
        };
        let mut tx = self.begin().await?;
        tx.insert_config_version(&cv).await?;
        self.commit(tx, vec![]).await?;
        Ok(cv)
    }

    pub async fn get_configuration_version(
        &self,
        subject: &Subject,
        id: &ConfigVersionId,
    ) -> Result<ConfigurationVersion, Error> {
        self.configuration_version_for(subject, id, Access::Read)
            .await
    }

    /// The configuration version `id` if `subject` may have `access` to it:
    /// outside its organization a read is "not found", a write forbidden.
    async fn configuration_version_for(
        &self,
        subject: &Subject,
        id: &ConfigVersionId,
        access: Access,
    ) -> Result<ConfigurationVersion, Error> {
        let mut tx = self.read().await?;
        let cv = found(
            tx.get_config_version(id).await?,
            "configuration version",
            id,
        )?;
        allow(
            authorize_organization(subject, &cv.organization, access),
            "configuration version",
            id,
        )?;
        Ok(cv)
    }

    /// Store the configuration tarball; the version becomes `uploaded` (and a
    /// run is queued if it asked for one). A bad archive is refused and
    /// changes nothing.
    pub async fn upload_configuration(
        &self,
        subject: &Subject,
        id: &ConfigVersionId,
        tarball: &[u8],
    ) -> Result<ConfigurationVersion, Error> {
        let cv = self
            .configuration_version_for(subject, id, Access::Write)
            .await?;
        self.store_configuration(subject, cv.id, tarball).await
    }

    /// The same for a caller holding a capability for this configuration
    /// version: an upload URL that otfd signed and handed to someone allowed
    /// to upload (clients PUT it without a token).
    pub async fn upload_configuration_by_capability(
        &self,
        id: &ConfigVersionId,
        tarball: &[u8],
    ) -> Result<ConfigurationVersion, Error> {
        self.store_configuration(&Subject::SiteAdmin, id.clone(), tarball)
            .await
    }

    async fn store_configuration(
        &self,
        queue_as: &Subject,
        id: ConfigVersionId,
        tarball: &[u8],
    ) -> Result<ConfigurationVersion, Error> {
        if tarball.len() > self.config.max_upload_bytes {
            return Err(Error::Invalid {
                field: "configuration",
                reason: format!(
                    "the archive is {} bytes; the limit is {} bytes",
                    tarball.len(),
                    self.config.max_upload_bytes
                ),
            });
        }
        crate::tarball::check_tarball(tarball, self.config.tarball_limits)?;
        let mut tx = self.begin().await?;
        let mut cv = found(
            tx.get_config_version(&id).await?,
            "configuration version",
            &id,
        )?;
        if cv.status != ConfigStatus::Pending {
            return Err(Error::Invalid {
                field: "configuration",
                reason: format!(
                    "configuration version {id} is already {}; create a new one",
                    cv.status
                ),
            });
        }
        tx.put_config_tarball(&id, tarball).await?;
        cv.status = ConfigStatus::Uploaded;
        tx.update_config_version(&cv).await?;
        self.commit(tx, vec![]).await?;
        if cv.auto_queue_runs {
            self.create_run(
                queue_as,
                RunSpec {
                    workspace: cv.workspace.clone(),
                    configuration_version: Some(cv.id.clone()),
                    options: RunOptions {
                        refresh: true,
                        plan_only: cv.speculative,
                        ..RunOptions::default()
                    },
                },
            )
            .await?;
        }
        Ok(cv)
    }

    /// Create a run. A speculative run starts planning at once; any other run
    /// waits in the workspace's queue until it is the workspace's active run.
    pub async fn create_run(&self, subject: &Subject, spec: RunSpec) -> Result<Run, Error> {
        let ws_id = spec.workspace.clone();
        let mut tx = self.begin().await?;
        let mut ws = found(tx.lock_workspace(&ws_id).await?, "workspace", &ws_id)?;
        allow(
            authorize_organization(subject, &ws.organization, Access::Write),
            "workspace",
            &ws_id,
        )?;
        if ws.execution_mode == ExecutionMode::Local {
            return Err(Error::LocalExecution { workspace: ws.name });
        }
        let cv = match &spec.configuration_version {
            Some(id) => {
                let cv = found(
                    tx.get_config_version(id).await?,
                    "configuration version",
                    id,
                )?;
                if cv.workspace != ws.id {
                    return Err(Error::NotFound {
                        kind: "configuration version",
                        id: id.to_string(),
                    });
                }
                cv
            }
            None => tx
                .latest_config_version(&ws.id)
                .await?
                .ok_or_else(|| Error::Invalid {
                    field: "configuration-version",
                    reason: format!(
                        "workspace {} has no uploaded configuration; upload one first",
                        ws.name
                    ),
                })?,
        };
        // A speculative configuration only ever plans.
        let mut spec = spec;
        spec.options.plan_only |= cv.speculative;
        if cv.status != ConfigStatus::Uploaded {
            return Err(Error::ConfigNotReady {
                id: cv.id.to_string(),
                status: cv.status,
            });
        }
        // Creation times strictly increase within a workspace: they order its
        // queue, also for runs created within the same millisecond.
        let mut created_at = self.now();
        if let Some(newest) = tx.newest_run_created_at(&ws.id).await? {
            created_at = created_at.max(crate::clock::Timestamp(newest.0 + 1));
        }
        let mut run = Run::new(
            RunId::generate(self.rng.as_ref()),
            &ws,
            cv.id,
            spec.options,
            created_at,
        );
        let mut events = Vec::new();
        // A run that starts at once (speculative, or first in the queue of
        // a free workspace) is written once, in its started state.
        let starts_now = run.is_speculative()
            || (ws.lock.is_none() && tx.next_pending_run(&ws.id).await?.is_none());
        if starts_now {
            let job = self.queue_phase_job(&ws, &mut run, JobPhase::Plan, None)?;
            tx.insert_run(&run).await?;
            if let Some(job) = job {
                tx.insert_job(&job).await?;
                events.push(Event::Job(job));
            }
            events.push(Event::Run(run.clone()));
            if !run.is_speculative() {
                become_current(&mut ws, &run);
                events.push(Event::Workspace(ws.id.clone()));
                tx.update_workspace_runs(&ws).await?;
            }
        } else {
            tx.insert_run(&run).await?;
            events.push(Event::Run(run.clone()));
            self.start_next_run(&mut tx, &mut ws, &mut events).await?;
            tx.update_workspace_runs(&ws).await?;
            // The run may have started: its current state is its last event.
            if let Some(now) = events.iter().rev().find_map(|e| match e {
                Event::Run(r) if r.id == run.id => Some(r),
                _ => None,
            }) {
                run = now.clone();
            }
        }
        self.commit(tx, events).await?;
        Ok(run)
    }

    pub async fn get_run(&self, subject: &Subject, id: &RunId) -> Result<Run, Error> {
        let mut tx = self.read().await?;
        let run = found(tx.get_run(id).await?, "run", id)?;
        allow(
            authorize_organization(subject, &run.organization, Access::Read),
            "run",
            id,
        )?;
        Ok(run)
    }

    /// Runs of a workspace, newest first, with the total.
    pub async fn list_runs(
        &self,
        subject: &Subject,
        workspace: &WorkspaceId,
        offset: u64,
        limit: u64,
    ) -> Result<(Vec<Run>, u64), Error> {
        let ws = self.get_workspace(subject, workspace).await?;
        let mut tx = self.read().await?;
        Ok(tx.list_runs(&ws.id, offset, limit).await?)
    }

    /// The jobs of a run, oldest attempt first.
    pub async fn run_jobs(&self, subject: &Subject, run: &RunId) -> Result<Vec<Job>, Error> {
        let run = self.get_run(subject, run).await?;
        let mut tx = self.read().await?;
        Ok(tx.list_jobs_of_run(&run.id).await?)
    }

    /// A file the plan produced (plan, JSON plan, lock file), if any.
    pub async fn run_artifact(
        &self,
        subject: &Subject,
        run: &RunId,
        kind: crate::artifacts::ArtifactKind,
    ) -> Result<Option<Vec<u8>>, Error> {
        use crate::store::ArtifactRepo;
        let run = self.get_run(subject, run).await?;
        let mut tx = self.read().await?;
        Ok(tx.get_artifact(&run.id, kind).await?)
    }

    /// Up to `limit` bytes of a phase's log from `offset`.
    pub async fn read_log(
        &self,
        subject: &Subject,
        run: &RunId,
        phase: JobPhase,
        offset: u64,
        limit: u64,
    ) -> Result<Vec<u8>, Error> {
        let run = self.get_run(subject, run).await?;
        let mut tx = self.read().await?;
        Ok(tx.read_log(&run.id, phase, offset, limit).await?)
    }

    /// A phase log for a caller holding a capability for it: a log-read URL
    /// otfd signed for someone allowed to read the run (the CLI reads logs
    /// without a token).
    pub async fn read_log_by_capability(
        &self,
        run: &RunId,
        phase: JobPhase,
        offset: u64,
        limit: u64,
    ) -> Result<Vec<u8>, Error> {
        let mut tx = self.read().await?;
        found(tx.get_run(run).await?, "run", run)?;
        Ok(tx.read_log(run, phase, offset, limit).await?)
    }

    /// Apply a planned run (TFE's `actions/apply`).
    pub async fn confirm_run(&self, subject: &Subject, id: &RunId) -> Result<Run, Error> {
        self.run_action(subject, id, |core, tx, ws, run, events| {
            Box::pin(async move {
                run.apply_event(
                    RunEvent::Confirm,
                    core.now(),
                    core.config.force_cancel_cool_off,
                )?;
                core.queue_apply(tx, ws, run, events).await
            })
        })
        .await
    }

    /// Discard a pending or planned run.
    pub async fn discard_run(&self, subject: &Subject, id: &RunId) -> Result<Run, Error> {
        self.run_action(subject, id, |core, _tx, _ws, run, _events| {
            Box::pin(async move {
                run.apply_event(
                    RunEvent::Discard,
                    core.now(),
                    core.config.force_cancel_cool_off,
                )?;
                Ok(())
            })
        })
        .await
    }

    /// Cancel: a queued run stops at once; a running phase is signalled and
    /// the runner interrupts terraform gracefully.
    pub async fn cancel_run(&self, subject: &Subject, id: &RunId) -> Result<Run, Error> {
        self.run_action(subject, id, |core, tx, _ws, run, events| {
            Box::pin(core.cancel_in(tx, run, events))
        })
        .await
    }

    /// The cancel itself, inside the caller's transaction (the run's
    /// workspace locked).
    pub(super) async fn cancel_in(
        &self,
        tx: &mut S::Tx,
        run: &mut Run,
        events: &mut Vec<Event>,
    ) -> Result<(), Error> {
        let now = self.now();
        run.apply_event(RunEvent::Cancel, now, self.config.force_cancel_cool_off)?;
        if let Some(mut job) = active_job(tx, &run.id).await? {
            if run.status.is_final() {
                job.apply(JobEvent::Cancel, now)?;
            } else {
                job.signal(Signal::Cancel);
            }
            tx.update_job(&job).await?;
            events.push(Event::Job(job));
        }
        Ok(())
    }

    /// Force-cancel: the run and its job end at once; the runner kills
    /// terraform.
    pub async fn force_cancel_run(&self, subject: &Subject, id: &RunId) -> Result<Run, Error> {
        self.run_action(subject, id, |core, tx, _ws, run, events| {
            Box::pin(core.force_cancel_in(tx, run, events))
        })
        .await
    }

    /// The force-cancel itself, inside the caller's transaction.
    pub(super) async fn force_cancel_in(
        &self,
        tx: &mut S::Tx,
        run: &mut Run,
        events: &mut Vec<Event>,
    ) -> Result<(), Error> {
        let now = self.now();
        run.apply_event(
            RunEvent::ForceCancel,
            now,
            self.config.force_cancel_cool_off,
        )?;
        if let Some(mut job) = active_job(tx, &run.id).await? {
            job.signal(Signal::ForceCancel);
            job.apply(JobEvent::Cancel, now)?;
            tx.update_job(&job).await?;
            events.push(Event::Job(job));
        }
        Ok(())
    }

    /// The frame of every user action on a run: lock its workspace, authorize,
    /// act, release the workspace if the run ended, commit.
    async fn run_action<F>(&self, subject: &Subject, id: &RunId, act: F) -> Result<Run, Error>
    where
        F: for<'a> FnOnce(
            &'a Self,
            &'a mut S::Tx,
            &'a mut Workspace,
            &'a mut Run,
            &'a mut Vec<Event>,
        ) -> BoxFut<'a, Result<(), Error>>,
    {
        let mut tx = self.begin().await?;
        let peek = found(tx.get_run(id).await?, "run", id)?;
        allow(
            authorize_organization(subject, &peek.organization, Access::Write),
            "run",
            id,
        )?;
        let mut ws = found(
            tx.lock_workspace(&peek.workspace).await?,
            "workspace",
            &peek.workspace,
        )?;
        let mut run = found(tx.get_run(id).await?, "run", id)?;
        let mut events = Vec::new();
        act(self, &mut tx, &mut ws, &mut run, &mut events).await?;
        self.save_run(&mut tx, &run, &mut events).await?;
        events.push(Event::Run(run.clone()));
        if run.status.is_final() {
            self.release_workspace(&mut tx, &mut ws, &run, &mut events)
                .await?;
        }
        self.commit(tx, events).await?;
        Ok(run)
    }

    /// Save a run. A phase that becomes final here gets its log closed with
    /// ETX in the same transaction (log readers stop on ETX plus a terminal
    /// phase status, so both must appear at once).
    pub(super) async fn save_run(
        &self,
        tx: &mut S::Tx,
        run: &Run,
        events: &mut Vec<Event>,
    ) -> Result<(), Error> {
        let before = found(tx.get_run(&run.id).await?, "run", &run.id)?;
        self.save_run_after(tx, &before, run, events).await
    }

    /// [`Self::save_run`] of a run whose stored state `before` the caller
    /// read in this transaction (no second read).
    pub(super) async fn save_run_after(
        &self,
        tx: &mut S::Tx,
        before: &Run,
        run: &Run,
        events: &mut Vec<Event>,
    ) -> Result<(), Error> {
        self.save_run_logged(tx, before, run, &[], events).await
    }

    /// [`Self::save_run_after`] where the caller knows, for the phases in
    /// `known`, whether their log was opened (a job of the phase started:
    /// its start wrote STX), so only the others are read before a log is
    /// closed.
    pub(super) async fn save_run_logged(
        &self,
        tx: &mut S::Tx,
        before: &Run,
        run: &Run,
        known: &[(JobPhase, bool)],
        events: &mut Vec<Event>,
    ) -> Result<(), Error> {
        tx.update_run(run).await?;
        for (phase, was, now) in [
            (JobPhase::Plan, before.plan.status, run.plan.status),
            (JobPhase::Apply, before.apply.status, run.apply.status),
        ] {
            if !now.is_final() || was.is_final() {
                continue;
            }
            let opened = match known.iter().find(|(p, _)| *p == phase) {
                Some(&(_, opened)) => opened,
                None => !tx.read_log(&run.id, phase, 0, 1).await?.is_empty(),
            };
            if opened {
                let chunk = tx.append_log(&run.id, phase, &[LOG_END]).await?;
                events.push(Event::Log {
                    run: run.id.clone(),
                    phase,
                    end: chunk.offset + 1,
                });
            }
        }
        Ok(())
    }

    /// A new job for a phase of `run`, routed by the workspace's execution
    /// mode at this moment.
    pub(super) fn new_job(
        &self,
        ws: &Workspace,
        run: &Run,
        phase: JobPhase,
        attempt: u32,
        queued_at: crate::clock::Timestamp,
    ) -> Job {
        let mut job = Job {
            id: JobId::generate(self.rng.as_ref()),
            run: run.id.clone(),
            phase,
            status: JobStatus::Unallocated,
            pool: ws.execution_mode.pool().cloned(),
            selector: Default::default(),
            organization: ws.organization.clone(),
            workspace: ws.id.clone(),
            agent: None,
            attempt,
            queued_at,
            signal: None,
            token_hash: None,
            error: None,
            updated_at: queued_at,
            log_dropped: 0,
            affinity: None,
        };
        job.follow_selector(ws);
        job
    }

    /// Move a pending run to plan_queued and create its plan job.
    pub(super) async fn enqueue_plan(
        &self,
        tx: &mut S::Tx,
        ws: &Workspace,
        run: &mut Run,
        events: &mut Vec<Event>,
    ) -> Result<(), Error> {
        self.queue_phase(tx, ws, run, JobPhase::Plan, None, events)
            .await
    }

    /// After a confirm: queue the apply and create its job.
    pub(super) async fn queue_apply(
        &self,
        tx: &mut S::Tx,
        ws: &Workspace,
        run: &mut Run,
        events: &mut Vec<Event>,
    ) -> Result<(), Error> {
        let planner = tx
            .list_jobs_of_run(&run.id)
            .await?
            .into_iter()
            .rev()
            .find(|j| {
                j.phase == JobPhase::Plan
                    && matches!(j.status, JobStatus::Finished | JobStatus::Running)
            })
            .and_then(|j| j.agent);
        self.queue_apply_after(tx, ws, run, planner, events).await
    }

    /// [`Self::queue_apply`] with the agent that ran the run's plan (on
    /// auto-apply: the plan job whose end is being written).
    pub(super) async fn queue_apply_after(
        &self,
        tx: &mut S::Tx,
        ws: &Workspace,
        run: &mut Run,
        planner: Option<crate::ids::AgentId>,
        events: &mut Vec<Event>,
    ) -> Result<(), Error> {
        // A single-execution agent that planned the run keeps its apply.
        let affinity = match planner {
            Some(a) => {
                use crate::store::AgentRepo;
                tx.get_agent(&a)
                    .await?
                    .filter(|agent| agent.single && !agent.status.is_final())
                    .map(|agent| agent.id)
            }
            None => None,
        };
        self.queue_phase(tx, ws, run, JobPhase::Apply, affinity, events)
            .await
    }

    /// Queue a phase of `run` and create its job, routed by the
    /// workspace's execution mode at this moment. A workspace that switched
    /// to local execution cannot run it: the run errors.
    async fn queue_phase(
        &self,
        tx: &mut S::Tx,
        ws: &Workspace,
        run: &mut Run,
        phase: JobPhase,
        affinity: Option<crate::ids::AgentId>,
        events: &mut Vec<Event>,
    ) -> Result<(), Error> {
        if let Some(job) = self.queue_phase_job(ws, run, phase, affinity)? {
            tx.insert_job(&job).await?;
            events.push(Event::Job(job));
        }
        Ok(())
    }

    /// [`Self::queue_phase`] without the writes: `run` moves on, and the
    /// job to insert (after the run) is returned; None when the workspace
    /// runs locally and the run errored instead.
    fn queue_phase_job(
        &self,
        ws: &Workspace,
        run: &mut Run,
        phase: JobPhase,
        affinity: Option<crate::ids::AgentId>,
    ) -> Result<Option<Job>, Error> {
        let event = match phase {
            JobPhase::Plan => RunEvent::Enqueue,
            JobPhase::Apply => RunEvent::ApplyQueued,
        };
        let now = self.now();
        let cool_off = self.config.force_cancel_cool_off;
        run.apply_event(event, now, cool_off)?;
        if ws.execution_mode == ExecutionMode::Local {
            let message = Error::LocalExecution {
                workspace: ws.name.clone(),
            }
            .to_string();
            run.apply_event(RunEvent::Error { message }, now, cool_off)?;
            return Ok(None);
        }
        Ok(Some(Job {
            affinity,
            ..self.new_job(ws, run, phase, 1, now)
        }))
    }

    /// If the workspace is free, make its oldest pending run the active one.
    /// The caller saves `ws`.
    pub(super) async fn start_next_run(
        &self,
        tx: &mut S::Tx,
        ws: &mut Workspace,
        events: &mut Vec<Event>,
    ) -> Result<(), Error> {
        while ws.lock.is_none() {
            let Some(mut run) = tx.next_pending_run(&ws.id).await? else {
                break;
            };
            let before = run.clone();
            self.enqueue_plan(tx, ws, &mut run, events).await?;
            self.save_run_after(tx, &before, &run, events).await?;
            become_current(ws, &run);
            events.push(Event::Run(run));
        }
        events.push(Event::Workspace(ws.id.clone()));
        Ok(())
    }

    /// A run ended: release the workspace if it held it, start the next run,
    /// and save the workspace.
    pub(super) async fn release_workspace(
        &self,
        tx: &mut S::Tx,
        ws: &mut Workspace,
        run: &Run,
        events: &mut Vec<Event>,
    ) -> Result<(), Error> {
        if ws.lock == Some(WorkspaceLock::Run(run.id.clone())) {
            ws.lock = None;
        }
        self.start_next_run(tx, ws, events).await?;
        ws.updated_at = self.now();
        tx.update_workspace_runs(ws).await?;
        Ok(())
    }
}

/// `run` just started: it is the workspace's current run, and holds its
/// lock unless it already ended (errored at once). The caller saves `ws`.
fn become_current(ws: &mut Workspace, run: &Run) {
    ws.current_run = Some(run.id.clone());
    ws.lock = (!run.status.is_final()).then(|| WorkspaceLock::Run(run.id.clone()));
}

/// The newest non-final job of a run.
pub(super) async fn active_job<T: JobRepo + Send>(
    tx: &mut T,
    run: &RunId,
) -> Result<Option<Job>, Error> {
    Ok(tx
        .list_jobs_of_run(run)
        .await?
        .into_iter()
        .rev()
        .find(|j| !j.status.is_final()))
}
