//! A small world for service tests: the in-memory store, a manual clock, a
//! seeded random source, and a dispatcher fed from the bus until it settles.

#![allow(dead_code)]

use std::sync::Arc;
use std::time::Duration;

use otf_core::agent::{Agent, LivenessConfig, ReportedStatus};
use otf_core::auth::Subject;
use otf_core::clock::{ManualClock, Timestamp};
use otf_core::events::{LocalBus, RecvError, Subscription};
use otf_core::job::Job;
use otf_core::memory::MemoryStore;
use otf_core::pool::AgentPool;
use otf_core::random::SeededRandom;
use otf_core::run::{Run, RunOptions, RunStatus};
use otf_core::secret::SecretHash;
use otf_core::services::{
    ConfigSpec, JobOutcome, PoolSpec, RegisterAgent, RunSpec, StartedJob, WorkspaceSpec,
};
use otf_core::workspace::{ExecutionMode, Workspace};
use otf_core::{Core, CoreConfig, Dispatcher};

use otf_core::job::JobTimers;

pub const SITE_TOKEN: &str = "site-token-for-tests";

pub fn liveness() -> LivenessConfig {
    LivenessConfig {
        ping_interval: Duration::from_secs(1),
        ping_timeout: Duration::from_secs(3),
        unknown_grace: Duration::from_secs(10),
        retention: Duration::from_secs(60),
    }
}

pub struct World {
    pub core: Core<MemoryStore>,
    pub dispatcher: Dispatcher<MemoryStore>,
    pub clock: ManualClock,
    pub sub: Subscription,
    pub site: Subject,
}

impl World {
    pub async fn new(seed: u64) -> Self {
        Self::with_timers(seed, JobTimers::default()).await
    }

    /// A world whose jobs have these lease and timeouts.
    pub async fn with_timers(seed: u64, job_timers: JobTimers) -> Self {
        let clock = ManualClock::new(Timestamp(1_700_000_000_000));
        let bus = Arc::new(LocalBus::new(1 << 16));
        let config = CoreConfig {
            liveness: liveness(),
            force_cancel_cool_off: Duration::from_secs(10),
            site_token: Some(SecretHash::of(SITE_TOKEN)),
            job_timers,
            ..CoreConfig::default()
        };
        let core = Core::new(
            MemoryStore::new(),
            bus.clone(),
            Arc::new(clock.clone()),
            Arc::new(SeededRandom::new(seed)),
            config,
        );
        let sub = bus.subscribe_local();
        let mut dispatcher = Dispatcher::new(core.clone());
        dispatcher.rebuild().await.expect("rebuild");
        World {
            core,
            dispatcher,
            clock,
            sub,
            site: Subject::SiteAdmin,
        }
    }

    /// Feed every published event to the dispatcher until none is left.
    pub async fn settle(&mut self) {
        loop {
            match self.sub.try_recv() {
                Some(Ok(e)) => self.dispatcher.handle(&e).await.expect("dispatch"),
                Some(Err(RecvError::Lagged)) => self.dispatcher.rebuild().await.expect("rebuild"),
                Some(Err(RecvError::Closed)) | None => break,
            }
        }
    }

    /// Advance the clock and run the dispatcher's periodic work.
    pub async fn advance(&mut self, d: Duration) {
        self.clock.advance(d);
        self.dispatcher.tick().await.expect("tick");
        self.settle().await;
    }

    pub async fn org(&self, name: &str) {
        self.core
            .create_organization(
                &self.site,
                &name.parse::<otf_core::ids::OrganizationName>().unwrap(),
                "ops@example.com",
            )
            .await
            .expect("create organization");
    }

    pub async fn workspace(&self, org: &str, name: &str, mode: ExecutionMode) -> Workspace {
        self.core
            .create_workspace(
                &self.site,
                &org.parse::<otf_core::ids::OrganizationName>().unwrap(),
                WorkspaceSpec {
                    name: name.into(),
                    execution_mode: Some(mode),
                    ..Default::default()
                },
            )
            .await
            .expect("create workspace")
    }

    pub async fn pool(&self, org: &str, name: &str) -> AgentPool {
        self.core
            .create_pool(
                &self.site,
                &org.parse::<otf_core::ids::OrganizationName>().unwrap(),
                PoolSpec {
                    name: name.into(),
                    ..Default::default()
                },
            )
            .await
            .expect("create pool")
    }

    /// Issue a token for the pool and authenticate with its secret.
    pub async fn agent_subject(&self, pool: &AgentPool) -> (Subject, String) {
        let (_, secret) = self
            .core
            .create_agent_token(&self.site, &pool.id, "test agents")
            .await
            .expect("create token");
        let subject = self
            .core
            .authenticate(secret.expose())
            .await
            .expect("authenticate");
        (subject, secret.expose().to_string())
    }

    pub async fn register(&mut self, subject: &Subject, name: &str, max_jobs: u32) -> Agent {
        self.register_labelled(subject, name, max_jobs, "").await
    }

    /// Registers an agent with labels (`k=v,k2=v2`).
    pub async fn register_labelled(
        &mut self,
        subject: &Subject,
        name: &str,
        max_jobs: u32,
        labels: &str,
    ) -> Agent {
        let a = self
            .core
            .register_agent(
                subject,
                RegisterAgent {
                    labels: labels.parse().expect("labels"),
                    name: name.into(),
                    version: "test".into(),
                    max_jobs,
                    ip_address: "127.0.0.1".into(),
                    protocol: *otf_core::agent::AGENT_PROTOCOLS.end(),
                    single: false,
                },
            )
            .await
            .expect("register");
        self.settle().await;
        a
    }

    pub async fn upload(&self, ws: &Workspace) -> otf_core::ids::ConfigVersionId {
        let cv = self
            .core
            .create_configuration_version(&self.site, &ws.id, ConfigSpec::default())
            .await
            .expect("create cv");
        self.core
            .upload_configuration(&self.site, &cv.id, &config_tarball())
            .await
            .expect("upload");
        cv.id
    }

    pub async fn run_with(&mut self, ws: &Workspace, options: RunOptions) -> Run {
        let cv = self.upload(ws).await;
        let run = self
            .core
            .create_run(
                &self.site,
                RunSpec {
                    workspace: ws.id.clone(),
                    configuration_version: Some(cv),
                    options,
                },
            )
            .await
            .expect("create run");
        self.settle().await;
        run
    }

    pub async fn run(&mut self, ws: &Workspace) -> Run {
        self.run_with(
            ws,
            RunOptions {
                refresh: true,
                ..Default::default()
            },
        )
        .await
    }

    pub async fn status(&self, run: &Run) -> RunStatus {
        self.core
            .get_run(&self.site, &run.id)
            .await
            .expect("get run")
            .status
    }

    pub async fn allocated(&self, subject: &Subject, agent: &Agent) -> Vec<Job> {
        tokio::time::timeout(
            Duration::from_secs(5),
            self.core.await_allocated_jobs(subject, &agent.id),
        )
        .await
        .expect("a job is allocated")
        .expect("await jobs")
    }

    /// Start the one job allocated to `agent`.
    pub async fn start(&mut self, subject: &Subject, agent: &Agent) -> (StartedJob, Subject) {
        let jobs = self.allocated(subject, agent).await;
        assert_eq!(jobs.len(), 1, "exactly one job allocated: {jobs:?}");
        let started = self
            .core
            .start_job(subject, &agent.id, &jobs[0].id)
            .await
            .expect("start job");
        let job_subject = self
            .core
            .authenticate(started.token.expose())
            .await
            .expect("job token authenticates");
        self.settle().await;
        (started, job_subject)
    }

    pub async fn finish(&mut self, job: &Subject, outcome: JobOutcome) -> Run {
        let run = self
            .core
            .finish_job(job, outcome)
            .await
            .expect("finish job");
        self.settle().await;
        run
    }

    pub async fn ping(&self, subject: &Subject, agent: &Agent, status: ReportedStatus) {
        self.core
            .ping(subject, &agent.id, status, None)
            .await
            .expect("ping");
    }
}

/// A small valid configuration archive.
pub fn config_tarball() -> Vec<u8> {
    otf_core::tarball::pack([("main.tf", &b"resource \"null_resource\" \"a\" {}\n"[..])])
}

pub fn changes(additions: u32) -> JobOutcome {
    JobOutcome::Finished {
        counts: otf_core::run::ResourceCounts {
            additions,
            changes: 0,
            destructions: 0,
        },
        has_changes: additions > 0,
    }
}
