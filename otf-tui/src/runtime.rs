//! The event loop: terminal input, ticks and answers from otfd are reduced to
//! one closed [`Event`] enum, then `update`, then draw. Requests run as owned
//! background tasks; for each view's refresh the newest request wins (an
//! older one still in flight is aborted), and every task is aborted and
//! awaited when the loop ends.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use crossterm::event::{Event as TermEvent, KeyEventKind};
use futures_util::{Stream, StreamExt};
use ratatui::backend::Backend;
use ratatui::Terminal;
use tokio::sync::mpsc;
use tokio::task::{JoinHandle, JoinSet};

use crate::app::{
    update, Action, App, Effect, Failure, Loaded, PoolDetail, QueueView, Request, Res, RunDetail,
};
use crate::client::{Api, ClientError, PhaseKind};
use crate::keys;
use crate::model::PhaseStatus;
use crate::theme::Theme;
use otf_core::tarball::config_dir;

/// How often live views refresh.
pub const TICK: Duration = Duration::from_secs(1);

/// Everything the loop reacts to.
#[derive(Debug)]
pub enum Event {
    Terminal(TermEvent),
    /// The terminal's input ended or failed.
    InputClosed(String),
    Tick,
    Loaded(Box<Loaded>),
}

/// Runs requests in the background.
pub struct Executor {
    api: Arc<dyn Api>,
    tx: mpsc::UnboundedSender<Loaded>,
    /// The refresh in flight per view slot, with what it asked.
    slots: HashMap<&'static str, (Request, JoinHandle<()>)>,
    /// Writes always run to the end (unless the TUI quits).
    writes: JoinSet<()>,
}

impl Executor {
    pub fn new(api: Arc<dyn Api>) -> (Executor, mpsc::UnboundedReceiver<Loaded>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let ex = Executor {
            api,
            tx,
            slots: HashMap::new(),
            writes: JoinSet::new(),
        };
        (ex, rx)
    }

    /// Start `request`. A periodic refresh (`forced: false`) leaves an
    /// identical one in flight alone, so a slow server is not flooded;
    /// anything else replaces it.
    pub fn spawn(&mut self, request: Request, forced: bool) {
        let (api, tx) = (self.api.clone(), self.tx.clone());
        let task = {
            let request = request.clone();
            async move {
                let loaded = perform(api.as_ref(), request).await;
                let _ = tx.send(loaded);
            }
        };
        match request.slot() {
            Some(slot) => {
                if let Some((prev, handle)) = self.slots.get(slot) {
                    if !forced && *prev == request && !handle.is_finished() {
                        return;
                    }
                    handle.abort();
                }
                self.slots.insert(slot, (request, tokio::spawn(task)));
            }
            None => {
                self.writes.spawn(task);
            }
        }
        // Reap finished writes so the set does not grow.
        while self.writes.try_join_next().is_some() {}
    }

    /// Abort and await every task.
    pub async fn shutdown(mut self) {
        for (_, (_, handle)) in self.slots.drain() {
            handle.abort();
            let _ = handle.await;
        }
        self.writes.shutdown().await;
    }
}

/// Run the TUI until the user quits or `input` ends. `input` is the
/// terminal's events (crossterm's `EventStream` for this process's own
/// terminal); `now` reads the wall clock.
pub async fn run<B: Backend>(
    terminal: &mut Terminal<B>,
    mut input: impl Stream<Item = std::io::Result<TermEvent>> + Unpin,
    mut app: App,
    api: Arc<dyn Api>,
    theme: Theme,
    now: impl Fn() -> i64,
    first: Vec<Effect>,
) -> std::io::Result<()> {
    let (mut executor, mut answers) = Executor::new(api);
    let mut ticker = tokio::time::interval(TICK);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    for Effect::Fetch(r) in first {
        executor.spawn(r, true);
    }
    let result = loop {
        if let Err(e) = terminal.draw(|f| crate::view::draw(f, &app, theme)) {
            break Err(e);
        }
        let event = tokio::select! {
            e = input.next() => match e {
                Some(Ok(e)) => Event::Terminal(e),
                Some(Err(e)) => Event::InputClosed(e.to_string()),
                None => Event::InputClosed("the terminal closed".into()),
            },
            _ = ticker.tick() => Event::Tick,
            Some(l) = answers.recv() => Event::Loaded(Box::new(l)),
        };
        let (action, forced) = match event {
            Event::Terminal(TermEvent::Key(k)) if k.kind != KeyEventKind::Release => {
                (keys::action(&app, k), true)
            }
            // Resizes and the rest only need the redraw at the loop's top.
            Event::Terminal(_) => (None, true),
            Event::InputClosed(e) => {
                break Err(std::io::Error::other(format!("terminal input: {e}")));
            }
            Event::Tick => (Some(Action::Tick(now())), false),
            Event::Loaded(l) => (Some(Action::Loaded(l)), true),
        };
        if let Some(action) = action {
            for Effect::Fetch(r) in update(&mut app, action) {
                executor.spawn(r, forced);
            }
        }
        if app.quit {
            break Ok(());
        }
    };
    executor.shutdown().await;
    result
}

fn msg(e: ClientError) -> Failure {
    Failure::of(e)
}

/// `Loaded::$answer { fields.., result }` from awaiting `$call`: one line
/// per request in [`perform`]'s table.
macro_rules! answer {
    ($answer:ident { $($field:ident),* } <- $call:expr) => {{
        let result = $call.await.map_err(msg);
        Loaded::$answer { $($field,)* result }
    }};
}

/// Carry out one request; its answer.
pub async fn perform(api: &dyn Api, request: Request) -> Loaded {
    use Request as R;
    match request {
        R::Organizations => Loaded::Organizations(api.organizations().await.map_err(msg)),
        R::CreateOrganization { name } => {
            Loaded::OrganizationCreated(api.create_organization(&name).await.map_err(msg))
        }
        R::Pools { org } => answer!(Pools { org } <- api.pools(&org)),
        R::CreatePool { org, name } => answer!(PoolCreated { org } <- api.create_pool(&org, &name)),
        R::PoolDetail { org, id } => answer!(PoolDetail { id } <- pool_detail(api, &org, &id)),
        R::SetGrants {
            pool,
            organization_scoped,
            allowed,
            excluded,
        } => {
            answer!(GrantsSaved { pool } <- api.set_grants(&pool, organization_scoped, &allowed, &excluded))
        }
        R::DeletePool { id } => answer!(PoolDeleted { id } <- api.delete_pool(&id)),
        R::DrainAgent { id, drained } => {
            answer!(AgentDrained { drained } <- api.drain_agent(&id, drained))
        }
        R::DrainPool { id, drained } => {
            answer!(PoolDrained { drained } <- api.drain_pool(&id, drained))
        }
        R::Tokens { pool } => answer!(Tokens { pool } <- api.tokens(&pool)),
        R::CreateToken { pool, description } => {
            answer!(TokenCreated { pool } <- api.create_token(&pool, &description))
        }
        R::RevokeToken { pool, id } => answer!(TokenRevoked { pool } <- api.delete_token(&id)),
        R::Workspaces { org } => {
            answer!(Workspaces { org } <- async { tokio::try_join!(api.workspaces(&org), api.pools(&org)) })
        }
        R::CreateWorkspace { org, name } => {
            answer!(WorkspaceCreated { org } <- api.create_workspace(&org, &name))
        }
        R::SetMode {
            workspace,
            mode,
            pool,
        } => {
            answer!(ModeSet { workspace } <- api.set_execution_mode(&workspace, mode, pool.as_deref()))
        }
        R::SetSelector {
            workspace,
            selector,
        } => answer!(SelectorSet { workspace } <- api.set_agent_selector(&workspace, &selector)),
        R::Runs { workspace } => answer!(Runs { workspace } <- api.runs(&workspace)),
        R::StartRun { workspace, dir } => {
            let result = start_run(api, &workspace, &dir).await;
            Loaded::RunStarted { workspace, result }
        }
        R::RunDetail {
            run,
            plan_offset,
            apply_offset,
        } => {
            answer!(RunDetail { run, plan_offset, apply_offset } <- run_detail(api, &run, plan_offset, apply_offset))
        }
        R::RunAction { run, action } => {
            answer!(RunActionDone { run, action } <- api.run_action(&run, action))
        }
        R::Jobs { org } => answer!(Jobs { org } <- queue_view(api, &org)),
    }
}

/// A pool with its agents and the organization's workspaces; the queue
/// numbers are extra: the screen shows the pool without them (say, before
/// otfd's first reading).
async fn pool_detail(api: &dyn Api, org: &str, id: &str) -> crate::client::Result<PoolDetail> {
    let (detail, queue) = tokio::join!(
        async { tokio::try_join!(api.pool(id), api.agents(id), api.workspaces(org)) },
        api.pool_queue(id)
    );
    let (pool, agents, workspaces) = detail?;
    Ok(PoolDetail {
        pool,
        agents,
        workspaces,
        queue: queue.ok(),
    })
}

/// The organization's jobs with the workspaces and pools they name.
async fn queue_view(api: &dyn Api, org: &str) -> crate::client::Result<QueueView> {
    let (jobs, workspaces, pools) =
        tokio::try_join!(api.jobs(org), api.workspaces(org), api.pools(org))?;
    Ok(QueueView {
        jobs,
        workspaces,
        pools,
    })
}

async fn run_detail(
    api: &dyn Api,
    id: &str,
    plan_offset: Option<usize>,
    apply_offset: Option<usize>,
) -> Result<RunDetail, ClientError> {
    let run = api.run(id).await?;
    let (plan_id, apply_id) = run
        .phase_ids()
        .ok_or_else(|| ClientError::Decode(format!("{} is not a run id", run.id)))?;
    let (plan, apply) = tokio::try_join!(
        api.phase(PhaseKind::Plan, &plan_id),
        api.phase(PhaseKind::Apply, &apply_id)
    )?;
    let started =
        |p: &crate::model::Phase| !matches!(p.status, PhaseStatus::Pending | PhaseStatus::Queued);
    let read = |p: &crate::model::Phase, offset: Option<usize>| {
        let url = p.log_url.clone();
        let go = started(p);
        async move {
            match offset {
                Some(o) if go => api.log(&url, o).await,
                _ => Ok(Vec::new()),
            }
        }
    };
    let (plan_log, apply_log) =
        tokio::try_join!(read(&plan, plan_offset), read(&apply, apply_offset))?;
    Ok(RunDetail {
        run,
        plan: Some(plan),
        apply: Some(apply),
        plan_log,
        apply_log,
    })
}

/// Pack the directory's configuration (see
/// [`otf_core::tarball::config_dir`]), upload it as a configuration
/// version and start a run.
async fn start_run(api: &dyn Api, workspace: &str, dir: &str) -> Res<crate::model::Run> {
    let root = expand_home(dir);
    let shown = dir.to_string();
    let tarball = tokio::task::spawn_blocking(move || config_dir::pack_dir(&root, &shown))
        .await
        .map_err(|e| Failure::new(format!("reading the directory failed: {e}")))??;
    Ok(api
        .start_run(workspace, tarball, "Queued from otf-tui")
        .await?)
}

fn expand_home(dir: &str) -> PathBuf {
    match (dir.strip_prefix("~/"), std::env::var_os("HOME")) {
        (Some(rest), Some(home)) => Path::new(&home).join(rest),
        _ => PathBuf::from(dir),
    }
}
