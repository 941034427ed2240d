//! Properties over random sequences of operations (proptest): whatever users,
//! agents and the clock do, the invariants of the design hold.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use common::World;
use otf_core::agent::ReportedStatus;
use otf_core::auth::Subject;
use otf_core::ids::{AgentId, JobId};
use otf_core::job::JobStatus;
use otf_core::pool::AgentPool;
use otf_core::run::{ResourceCounts, RunOptions};
use otf_core::services::{JobOutcome, PoolUpdate, WorkspaceUpdate};
use otf_core::store::{AgentRepo, JobRepo, PoolRepo, RunRepo, Store, WorkspaceRepo};
use otf_core::workspace::{ExecutionMode, Workspace};
use otf_core::Error;
use proptest::prelude::*;

const ORGS: [&str; 2] = ["acme", "beta"];
const LABELS: [&str; 4] = ["", "region=eu", "region=us", "gpu=true,region=eu"];
const SELECTORS: [&str; 4] = ["", "region=eu", "gpu=true", "region=us"];

#[derive(Debug, Clone)]
enum Op {
    CreateWorkspace(usize),
    CreatePool(usize),
    Grant(usize, usize),
    Revoke(usize, usize),
    SetScoped(usize, bool),
    /// None: back to remote execution.
    Assign(usize, Option<usize>),
    /// None: a server runner. The last field picks labels from `LABELS`.
    Register(Option<usize>, u32, usize),
    /// A workspace's agent selector, from `SELECTORS`.
    Select(usize, usize),
    Ping(usize, bool),
    Exit(usize),
    /// The agent process dies: it never pings or acts again.
    Crash(usize),
    Advance(u64),
    CreateRun(usize, bool),
    Start(usize),
    Finish(usize, u8),
    Cancel(usize),
    ForceCancel(usize),
    Confirm(usize),
    Discard(usize),
    RevokeToken(usize),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        2 => (0..2usize).prop_map(Op::CreateWorkspace),
        1 => (0..2usize).prop_map(Op::CreatePool),
        1 => (0..4usize, 0..6usize).prop_map(|(p, w)| Op::Grant(p, w)),
        1 => (0..4usize, 0..6usize).prop_map(|(p, w)| Op::Revoke(p, w)),
        1 => (0..4usize, any::<bool>()).prop_map(|(p, s)| Op::SetScoped(p, s)),
        2 => (0..6usize, proptest::option::of(0..4usize)).prop_map(|(w, p)| Op::Assign(w, p)),
        2 => (proptest::option::of(0..4usize), 1..4u32, 0..4usize).prop_map(|(p, m, l)| Op::Register(p, m, l)),
        1 => (0..6usize, 0..4usize).prop_map(|(w, s)| Op::Select(w, s)),
        3 => (0..8usize, any::<bool>()).prop_map(|(a, b)| Op::Ping(a, b)),
        1 => (0..8usize).prop_map(Op::Exit),
        1 => (0..8usize).prop_map(Op::Crash),
        3 => prop_oneof![6 => 0..3u64, 1 => 3..15u64].prop_map(Op::Advance),
        4 => (0..6usize, proptest::bool::weighted(0.2)).prop_map(|(w, s)| Op::CreateRun(w, s)),
        5 => (0..8usize).prop_map(Op::Start),
        5 => (0..12usize, 0..4u8).prop_map(|(t, o)| Op::Finish(t, o)),
        1 => (0..12usize).prop_map(Op::Cancel),
        1 => (0..12usize).prop_map(Op::ForceCancel),
        2 => (0..12usize).prop_map(Op::Confirm),
        1 => (0..12usize).prop_map(Op::Discard),
        1 => (0..4usize).prop_map(Op::RevokeToken),
    ]
}

struct Model {
    w: World,
    workspaces: Vec<Workspace>,
    pools: Vec<AgentPool>,
    /// Token id and subject of each pool's current token.
    pool_tokens: Vec<Option<(String, Subject)>>,
    agents: Vec<(AgentId, Subject)>,
    /// Agents whose process died.
    crashed: std::collections::HashSet<AgentId>,
    runs: Vec<String>,
    /// Every job token ever issued: (job, secret, subject).
    tokens: Vec<(JobId, String, Subject)>,
}

/// An error a random operation may legitimately get; anything else (a store
/// failure) fails the property.
fn tolerated<T>(r: Result<T, Error>) -> Option<T> {
    match r {
        Ok(v) => Some(v),
        Err(Error::Store(e)) => panic!("store error: {e}"),
        Err(_) => None,
    }
}

impl Model {
    async fn new(seed: u64) -> Self {
        let w = World::new(seed).await;
        for o in ORGS {
            w.org(o).await;
        }
        let mut m = Model {
            w,
            workspaces: vec![],
            pools: vec![],
            pool_tokens: vec![],
            agents: vec![],
            crashed: Default::default(),
            runs: vec![],
            tokens: vec![],
        };
        // A baseline so that most sequences get to run things: a remote
        // workspace with a server runner, and an agent workspace with an agent.
        m.apply(Op::CreateWorkspace(0)).await;
        m.apply(Op::CreateWorkspace(0)).await;
        m.apply(Op::CreatePool(0)).await;
        m.apply(Op::Assign(1, Some(0))).await;
        m.apply(Op::Register(None, 2, 0)).await;
        m.apply(Op::Register(Some(0), 1, 0)).await;
        m
    }

    fn ws(&self, i: usize) -> Option<&Workspace> {
        (!self.workspaces.is_empty()).then(|| &self.workspaces[i % self.workspaces.len()])
    }

    fn pool(&self, i: usize) -> Option<(usize, &AgentPool)> {
        (!self.pools.is_empty()).then(|| {
            let k = i % self.pools.len();
            (k, &self.pools[k])
        })
    }

    fn run(&self, i: usize) -> Option<String> {
        (!self.runs.is_empty()).then(|| self.runs[i % self.runs.len()].clone())
    }

    /// Change workspace `w`'s settings (a refusal is tolerated).
    async fn update_workspace(&self, w: usize, update: WorkspaceUpdate) {
        let Some(ws) = self.ws(w) else {
            return;
        };
        let r = self
            .w
            .core
            .update_workspace(&self.w.site, &ws.id, update)
            .await;
        tolerated(r);
    }

    async fn apply(&mut self, op: Op) {
        let site = self.w.site.clone();
        let core = self.w.core.clone();
        match op {
            Op::CreateWorkspace(o) => {
                let name = format!("ws{}", self.workspaces.len());
                let ws = self
                    .w
                    .workspace(ORGS[o], &name, ExecutionMode::Remote)
                    .await;
                self.workspaces.push(ws);
            }
            Op::CreatePool(o) => {
                let pool = self
                    .w
                    .pool(ORGS[o], &format!("pool{}", self.pools.len()))
                    .await;
                let (_, secret) = core.create_agent_token(&site, &pool.id, "t").await.unwrap();
                let subject = core.authenticate(secret.expose()).await.unwrap();
                let token_id = match &subject {
                    Subject::AgentToken { token, .. } => token.to_string(),
                    _ => unreachable!(),
                };
                self.pool_tokens.push(Some((token_id, subject)));
                self.pools.push(pool);
            }
            Op::Grant(p, w) | Op::Revoke(p, w)
                if self.pool(p).is_some() && self.ws(w).is_some() =>
            {
                let pool = self.pool(p).unwrap().1.id.to_string();
                let ws = self.ws(w).unwrap().id.to_string();
                let r = if matches!(op, Op::Grant(..)) {
                    core.grant_workspace(
                        &site,
                        &pool.parse::<otf_core::ids::PoolId>().unwrap(),
                        &ws.parse::<otf_core::ids::WorkspaceId>().unwrap(),
                    )
                    .await
                } else {
                    core.revoke_workspace(
                        &site,
                        &pool.parse::<otf_core::ids::PoolId>().unwrap(),
                        &ws.parse::<otf_core::ids::WorkspaceId>().unwrap(),
                    )
                    .await
                };
                tolerated(r);
            }
            Op::SetScoped(p, scoped) if self.pool(p).is_some() => {
                let pool = self.pool(p).unwrap().1.id.to_string();
                tolerated(
                    core.update_pool(
                        &site,
                        &pool.parse::<otf_core::ids::PoolId>().unwrap(),
                        PoolUpdate {
                            organization_scoped: Some(scoped),
                            ..Default::default()
                        },
                    )
                    .await,
                );
            }
            Op::Assign(w, p) if self.ws(w).is_some() => {
                let mode = match p.and_then(|p| self.pool(p)) {
                    Some((_, pool)) => ExecutionMode::Agent(pool.id.clone()),
                    None => ExecutionMode::Remote,
                };
                let update = WorkspaceUpdate {
                    execution_mode: Some(mode.into()),
                    ..Default::default()
                };
                self.update_workspace(w, update).await;
            }
            Op::Select(w, sel) if self.ws(w).is_some() => {
                let update = WorkspaceUpdate {
                    agent_selector: Some(SELECTORS[sel].parse().unwrap()),
                    ..Default::default()
                };
                self.update_workspace(w, update).await;
            }
            Op::Register(p, max_jobs, labels) => {
                let subject = match p {
                    None => Some(Subject::ServerRunner),
                    Some(p) => self
                        .pool(p)
                        .and_then(|(k, _)| self.pool_tokens[k].as_ref().map(|t| t.1.clone())),
                };
                if let Some(subject) = subject {
                    let name = format!("agent{}", self.agents.len());
                    let labels = if p.is_some() { LABELS[labels] } else { "" };
                    let a = self
                        .w
                        .register_labelled(&subject, &name, max_jobs, labels)
                        .await;
                    self.agents.push((a.id, subject));
                }
            }
            Op::Ping(a, _) | Op::Exit(a) if !self.agents.is_empty() => {
                let (id, subject) = self.agents[a % self.agents.len()].clone();
                if self.crashed.contains(&id) {
                    return;
                }
                let status = match op {
                    Op::Exit(_) => ReportedStatus::Exited,
                    Op::Ping(_, true) => ReportedStatus::Busy,
                    _ => ReportedStatus::Idle,
                };
                tolerated(core.ping(&subject, &id, status, None).await);
            }
            Op::Crash(a) if !self.agents.is_empty() => {
                let id = self.agents[a % self.agents.len()].0.clone();
                self.crashed.insert(id);
            }
            Op::Advance(secs) => {
                // Time passes second by second; live agents ping as they do.
                for _ in 0..secs.max(1) {
                    self.w.clock.advance(Duration::from_secs(1));
                    for (id, subject) in &self.agents {
                        if !self.crashed.contains(id) {
                            let _ = core.ping(subject, id, ReportedStatus::Idle, None).await;
                        }
                    }
                    self.w.dispatcher.tick().await.unwrap();
                    self.w.settle().await;
                }
            }
            Op::CreateRun(w, speculative) if self.ws(w).is_some() => {
                let ws = self.ws(w).unwrap().clone();
                let cv = self.w.upload(&ws).await;
                let spec = otf_core::services::RunSpec {
                    workspace: ws.id.clone(),
                    configuration_version: Some(cv),
                    options: RunOptions {
                        plan_only: speculative,
                        refresh: true,
                        ..Default::default()
                    },
                };
                if let Some(run) = tolerated(core.create_run(&site, spec).await) {
                    self.runs.push(run.id.to_string());
                }
            }
            Op::Start(a) if !self.agents.is_empty() => {
                // The first agent from `a` on that has a job allocated starts it.
                let n = self.agents.len();
                for k in 0..n {
                    let (id, subject) = self.agents[(a + k) % n].clone();
                    if self.crashed.contains(&id) {
                        continue;
                    }
                    let fut = core.await_allocated_jobs(&subject, &id);
                    let Ok(Some(jobs)) = tokio::time::timeout(Duration::from_millis(1), fut)
                        .await
                        .map(tolerated)
                    else {
                        continue;
                    };
                    if let Some(started) =
                        tolerated(core.start_job(&subject, &id, &jobs[0].id).await)
                    {
                        let secret = started.token.expose().to_string();
                        let job_subject = core.authenticate(&secret).await.unwrap();
                        self.tokens.push((started.job.id, secret, job_subject));
                        break;
                    }
                }
            }
            Op::Finish(t, outcome) if !self.tokens.is_empty() => {
                // Mostly a live token; sometimes (t >= 9) whichever, stale or not.
                let n = self.tokens.len();
                let mut pick = t % n;
                if t < 9 {
                    for k in 0..n {
                        let (job, _, _) = &self.tokens[(t + k) % n];
                        let mut tx = core.store().begin().await.unwrap();
                        if tx
                            .get_job(job)
                            .await
                            .unwrap()
                            .is_some_and(|j| j.status == JobStatus::Running)
                        {
                            pick = (t + k) % n;
                            break;
                        }
                    }
                }
                let (_, _, subject) = self.tokens[pick].clone();
                let outcome = match outcome {
                    0 => JobOutcome::Finished {
                        counts: ResourceCounts {
                            additions: 1,
                            ..Default::default()
                        },
                        has_changes: true,
                    },
                    1 => JobOutcome::Finished {
                        counts: ResourceCounts::default(),
                        has_changes: false,
                    },
                    2 => JobOutcome::Errored {
                        message: "boom".into(),
                    },
                    _ => JobOutcome::Canceled,
                };
                tolerated(core.finish_job(&subject, outcome).await);
            }
            Op::Cancel(r) | Op::ForceCancel(r) | Op::Confirm(r) | Op::Discard(r)
                if self.run(r).is_some() =>
            {
                let mut run = self.run(r).unwrap();
                if matches!(op, Op::Confirm(_)) {
                    // Prefer a run that can be confirmed.
                    for k in 0..self.runs.len() {
                        let id = self.run(r + k).unwrap();
                        if core
                            .get_run(&site, &id.parse::<otf_core::ids::RunId>().unwrap())
                            .await
                            .unwrap()
                            .is_confirmable()
                        {
                            run = id;
                            break;
                        }
                    }
                }
                let res = match op {
                    Op::Cancel(_) => {
                        core.cancel_run(&site, &run.parse::<otf_core::ids::RunId>().unwrap())
                            .await
                    }
                    Op::ForceCancel(_) => {
                        core.force_cancel_run(&site, &run.parse::<otf_core::ids::RunId>().unwrap())
                            .await
                    }
                    Op::Confirm(_) => {
                        core.confirm_run(&site, &run.parse::<otf_core::ids::RunId>().unwrap())
                            .await
                    }
                    _ => {
                        core.discard_run(&site, &run.parse::<otf_core::ids::RunId>().unwrap())
                            .await
                    }
                };
                tolerated(res);
            }
            Op::RevokeToken(p) if self.pool(p).is_some() => {
                let k = self.pool(p).unwrap().0;
                if let Some((token, _)) = self.pool_tokens[k].take() {
                    core.delete_agent_token(
                        &site,
                        &token.parse::<otf_core::ids::AgentTokenId>().unwrap(),
                    )
                    .await
                    .unwrap();
                }
            }
            _ => {}
        }
        self.w.dispatcher.tick().await.unwrap();
        self.w.settle().await;
    }

    /// Every invariant of the design, checked on the store's contents.
    async fn check(&self) {
        let mut tx = self.w.core.store().begin().await.unwrap();
        let agents: HashMap<AgentId, otf_core::agent::Agent> = tx
            .list_agents()
            .await
            .unwrap()
            .into_iter()
            .map(|a| (a.id.clone(), a))
            .collect();
        let jobs = tx.list_active_jobs().await.unwrap();

        // Allocation: right pool and organization, within capacity, and never
        // held by an agent that is gone.
        let mut load: HashMap<&AgentId, u32> = HashMap::new();
        for j in &jobs {
            if let Some(a) = &j.agent {
                let agent = agents.get(a).expect("jobs are held by existing agents");
                assert_eq!(
                    agent.pool, j.pool,
                    "job {} on an agent of another pool",
                    j.id
                );
                if agent.pool.is_some() {
                    assert_eq!(agent.organization.as_ref(), Some(&j.organization));
                }
                assert!(
                    !agent.status.is_final(),
                    "job {} held by {} agent",
                    j.id,
                    agent.status
                );
                if j.affinity.is_none() {
                    assert!(
                        agent.labels.includes(&j.selector),
                        "job {} selecting {} on agent {} labelled {}",
                        j.id,
                        j.selector,
                        a,
                        agent.labels
                    );
                }
                *load.entry(a).or_default() += 1;
            }
        }
        for (a, n) in &load {
            assert!(*n <= agents[*a].max_jobs, "agent {a} holds {n} jobs");
        }
        // No job is lost: a queued job waits only while no eligible agent has room.
        for j in jobs.iter().filter(|j| j.status == JobStatus::Unallocated) {
            let eligible = agents.values().any(|a| {
                a.pool == j.pool
                    && a.labels.includes(&j.selector)
                    && !a.drained
                    && a.status.is_schedulable()
                    && load.get(&a.id).copied().unwrap_or(0) < a.max_jobs
            });
            assert!(!eligible, "job {} waits although an agent has room", j.id);
            // A waiting agent job follows its workspace's selector.
            if j.pool.is_some() {
                let ws = tx.get_workspace(&j.workspace).await.unwrap().unwrap();
                assert_eq!(j.selector, ws.agent_selector, "selector of job {}", j.id);
            }
        }

        for ws in &self.workspaces {
            // One active non-speculative run per workspace.
            let (runs, _) = tx.list_runs(&ws.id, 0, 10_000).await.unwrap();
            let active: Vec<_> = runs
                .iter()
                .filter(|r| {
                    !r.status.is_final()
                        && r.status != otf_core::run::RunStatus::Pending
                        && !r.is_speculative()
                })
                .collect();
            assert!(
                active.len() <= 1,
                "two active runs in {}: {active:?}",
                ws.name
            );
            let stored = tx.get_workspace(&ws.id).await.unwrap().unwrap();
            match active.first() {
                Some(r) => assert_eq!(
                    stored.lock,
                    Some(otf_core::workspace::WorkspaceLock::Run(r.id.clone()))
                ),
                None => assert!(
                    runs.iter()
                        .all(|r| r.status != otf_core::run::RunStatus::Pending),
                    "pending runs wait although {} is free",
                    ws.name
                ),
            }
            // Each active run has exactly one active job, or is waiting for a confirm.
            for r in &runs {
                let live = tx
                    .list_jobs_of_run(&r.id)
                    .await
                    .unwrap()
                    .into_iter()
                    .filter(|j| !j.status.is_final())
                    .count();
                use otf_core::run::RunStatus::*;
                let expect = usize::from(matches!(
                    r.status,
                    PlanQueued | Planning | ApplyQueued | Applying
                ));
                assert_eq!(
                    live, expect,
                    "run {} is {} with {live} active jobs",
                    r.id, r.status
                );
            }
        }

        // Restricted pools: assigned ⊆ allowed.
        for p in &self.pools {
            let pool = tx.get_pool(&p.id).await.unwrap().unwrap();
            if !pool.organization_scoped {
                for ws in tx.list_workspaces_in_pool(&p.id).await.unwrap() {
                    assert!(
                        pool.allowed_workspaces.contains(&ws.id),
                        "{} assigned but not granted",
                        ws.name
                    );
                }
            }
        }
        drop(tx);

        // A token works exactly while its attempt runs, and for a given-up
        // apply (its runner lost) until it delivered its state: then only
        // as a late subject, which may do nothing else.
        for (job, secret, _) in &self.tokens {
            let mut tx = self.w.core.store().begin().await.unwrap();
            let j = tx.get_job(job).await.unwrap().unwrap();
            drop(tx);
            let given_up = j.status == JobStatus::Errored
                && j.phase == otf_core::job::JobPhase::Apply
                && j.token_hash.is_some();
            let subject = self.w.core.authenticate(secret).await;
            assert_eq!(
                subject.is_ok(),
                j.status == JobStatus::Running || given_up,
                "token of job {job} ({})",
                j.status
            );
            if let Ok(subject) = subject {
                let late = matches!(subject, Subject::Job { late: true, .. });
                assert_eq!(late, given_up, "late subject of job {job}");
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, .. ProptestConfig::default() })]

    #[test]
    fn invariants_hold_under_random_operations(seed in any::<u64>(), ops in proptest::collection::vec(op(), 1..60)) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap();
        rt.block_on(async {
            let mut m = Model::new(seed).await;
            for op in ops {
                m.apply(op).await;
                m.check().await;
            }
            if std::env::var("OTF_PROP_STATS").is_ok() {
                let mut statuses = std::collections::BTreeMap::new();
                for r in &m.runs {
                    let s = m.w.core.get_run(&m.w.site, &r.parse::<otf_core::ids::RunId>().unwrap()).await.unwrap().status;
                    *statuses.entry(s.as_str()).or_insert(0) += 1;
                }
                eprintln!("STATS agents={} tokens={} runs={statuses:?}", m.agents.len(), m.tokens.len());
            }
        });
    }
}

/// A sequence the property found: a crashed server runner, a second one
/// registered with room for one job, then time passing.
#[test]
fn regression_a_second_server_runner_never_holds_more_than_its_room() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut m = Model::new(7869179544597424309).await;
        for op in [
            Op::CreateRun(0, false),
            Op::Crash(0),
            Op::CreateWorkspace(0),
            Op::CreateWorkspace(0),
            Op::CreateWorkspace(0),
            Op::Advance(0),
            Op::CreateRun(2, false),
            Op::Register(None, 1, 0),
            Op::Advance(3),
        ] {
            m.apply(op).await;
            m.check().await;
        }
    });
}
