//! Embedding otf-core without HTTP or a database: an organization, a
//! workspace, an agent pool and its token, an agent (an in-process fake
//! runner that pretends to run terraform), and one run driven to `applied`.
//! Every run status change is printed.
//!
//! Run it with `cargo run -p otf-core --example embed`.

use std::sync::Arc;
use std::time::Duration;

use otf_core::agent::ReportedStatus;
use otf_core::auth::Subject;
use otf_core::clock::SystemClock;
use otf_core::events::{Event, EventBus, LocalBus, RecvError};
use otf_core::job::JobPhase;
use otf_core::memory::MemoryStore;
use otf_core::random::OsRandom;
use otf_core::run::{ResourceCounts, RunOptions, RunStatus};
use otf_core::secret::SecretHash;
use otf_core::services::{ConfigSpec, JobOutcome, PoolSpec, RegisterAgent, RunSpec, WorkspaceSpec};
use otf_core::workspace::{ExecutionMode, Workspace};
use otf_core::{Core, CoreConfig, Dispatcher};

type Result<T> = std::result::Result<T, Box<dyn std::error::Error + Send + Sync>>;

/// The leader's loop: feed events to the dispatcher, tick once a second.
async fn lead(core: Core<MemoryStore>, bus: Arc<LocalBus>) -> Result<()> {
    let mut events = bus.subscribe();
    let mut dispatcher = Dispatcher::new(core);
    dispatcher.rebuild().await?;
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            e = events.recv() => match e {
                Ok(e) => dispatcher.handle(&e).await?,
                Err(RecvError::Lagged) => dispatcher.rebuild().await?,
                Err(RecvError::Closed) => return Ok(()),
            },
            _ = tick.tick() => dispatcher.tick().await?,
        }
    }
}

/// A runner that "executes" each job it is given: it writes a log line and
/// reports one resource to add.
async fn fake_runner(core: Core<MemoryStore>, token: Subject) -> Result<()> {
    let agent = core
        .register_agent(
            &token,
            RegisterAgent {
                labels: Default::default(),
                name: "fake-runner".into(),
                version: env!("CARGO_PKG_VERSION").into(),
                max_jobs: 1,
                ip_address: "127.0.0.1".into(),
                protocol: *otf_core::agent::AGENT_PROTOCOLS.end(),
                single: false,
            },
        )
        .await?;
    println!(
        "agent {} registered in pool {:?}",
        agent.id,
        agent.pool.as_ref().map(|p| p.to_string())
    );
    loop {
        for job in core.await_allocated_jobs(&token, &agent.id).await? {
            core.ping(&token, &agent.id, ReportedStatus::Busy, None)
                .await?;
            let started = core.start_job(&token, &agent.id, &job.id).await?;
            let job_token = core.authenticate(started.token.expose()).await?;
            let verb = match started.job.phase {
                JobPhase::Plan => "Plan: 1 to add, 0 to change, 0 to destroy.",
                JobPhase::Apply => "Apply complete! Resources: 1 added, 0 changed, 0 destroyed.",
            };
            core.append_job_log(&job_token, format!("{verb}\n").as_bytes())
                .await?;
            let counts = ResourceCounts {
                additions: 1,
                changes: 0,
                destructions: 0,
            };
            core.finish_job(
                &job_token,
                JobOutcome::Finished {
                    counts,
                    has_changes: true,
                },
            )
            .await?;
            core.ping(&token, &agent.id, ReportedStatus::Idle, None)
                .await?;
        }
    }
}

/// An organization, an agent pool, a workspace running on it, and a token
/// of the pool: the workspace and the token's subject.
async fn set_up(core: &Core<MemoryStore>, admin: &Subject) -> Result<(Workspace, Subject)> {
    let org = core
        .create_organization(
            admin,
            &"acme".parse::<otf_core::ids::OrganizationName>().unwrap(),
            "ops@acme.test",
        )
        .await?;
    let pool = core
        .create_pool(
            admin,
            &org.name,
            PoolSpec {
                name: "private".into(),
                ..PoolSpec::default()
            },
        )
        .await?;
    let ws = core
        .create_workspace(
            admin,
            &org.name,
            WorkspaceSpec {
                name: "dev".into(),
                execution_mode: Some(ExecutionMode::Agent(pool.id.clone())),
                ..WorkspaceSpec::default()
            },
        )
        .await?;
    println!(
        "organization {}, workspace {} ({}), pool {}",
        org.name, ws.name, ws.id, pool.id
    );
    let (token, secret) = core
        .create_agent_token(admin, &pool.id, "embedded runner")
        .await?;
    println!(
        "agent token {} created (secret shown once, {} characters)",
        token.id,
        secret.expose().len()
    );
    let agent_subject = core.authenticate(secret.expose()).await?;
    Ok((ws, agent_subject))
}

/// Print the run's status changes, confirming its plan, until it ends.
async fn follow(
    core: &Core<MemoryStore>,
    admin: &Subject,
    runs: &mut otf_core::events::Subscription,
    run: &otf_core::run::Run,
) -> Result<RunStatus> {
    let mut last = run.status;
    let outcome = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            match runs.recv().await {
                Ok(Event::Run(r)) if r.id == run.id && r.status != last => {
                    println!("run {}: {} -> {}", r.id, last, r.status);
                    last = r.status;
                    match r.status {
                        RunStatus::Planned => {
                            core.confirm_run(admin, &r.id).await?;
                        }
                        s if s.is_final() => {
                            return Ok::<_, Box<dyn std::error::Error + Send + Sync>>(s)
                        }
                        _ => {}
                    }
                }
                Ok(_) => {}
                Err(e) => return Err(e.into()),
            }
        }
    })
    .await??;
    Ok(outcome)
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<()> {
    let site_token = "embedded-site-token";
    let bus = Arc::new(LocalBus::default());
    let core = Core::new(
        MemoryStore::new(),
        bus.clone(),
        Arc::new(SystemClock),
        Arc::new(OsRandom),
        CoreConfig {
            site_token: Some(SecretHash::of(site_token)),
            ..CoreConfig::default()
        },
    );
    let admin = core.authenticate(site_token).await?;
    let mut runs = bus.subscribe();
    let leader = tokio::spawn(lead(core.clone(), bus.clone()));

    let (ws, agent_subject) = set_up(&core, &admin).await?;
    let runner = tokio::spawn(fake_runner(core.clone(), agent_subject));

    let cv = core
        .create_configuration_version(&admin, &ws.id, ConfigSpec::default())
        .await?;
    let tarball = otf_core::tarball::pack([(
        "main.tf",
        &b"resource \"null_resource\" \"a\" {}
"[..],
    )]);
    core.upload_configuration(&admin, &cv.id, &tarball).await?;
    let run = core
        .create_run(
            &admin,
            RunSpec {
                workspace: ws.id.clone(),
                configuration_version: Some(cv.id.clone()),
                options: RunOptions {
                    refresh: true,
                    ..RunOptions::default()
                },
            },
        )
        .await?;
    println!("run {} created: {}", run.id, run.status);

    let outcome = follow(&core, &admin, &mut runs, &run).await?;
    let log = core
        .read_log(&admin, &run.id, JobPhase::Apply, 0, 4096)
        .await?;
    print!("apply log: {}", String::from_utf8_lossy(&log));
    leader.abort();
    runner.abort();
    if outcome != RunStatus::Applied {
        return Err(format!("the run ended {outcome}, not applied").into());
    }
    println!("done: run {} is {outcome}", run.id);
    Ok(())
}
