//! Durable transition rate of the stores: a job moves allocate -> start ->
//! finish, each step its own committed transaction through the store's
//! read-modify-write path (lock the workspace, read the job, apply the core's
//! transition, write it back, commit). The baseline, measured on the same
//! database in the same run, is the rate of raw single-row `UPDATE` commits
//! (one statement per transaction, no ORM). Prints the ratio (target >= 0.5)
//! for SQLite (a file, WAL, synchronous=FULL) and for PostgreSQL when
//! `OTF_BENCH_DATABASE_URL` or `OTF_TEST_DATABASE_URL` names a server (a
//! fresh database is created and dropped).

use std::str::FromStr;
use std::time::{Duration, Instant};

use otf_core::agent::{Agent, AgentStatus};
use otf_core::artifacts::{ConfigStatus, ConfigurationVersion};
use otf_core::clock::Timestamp;
use otf_core::ids::*;
use otf_core::job::{Job, JobEvent, JobPhase, JobStatus};
use otf_core::organization::Organization;
use otf_core::random::OsRandom;
use otf_core::run::{Run, RunOptions};
use otf_core::store::*;
use otf_core::workspace::{ExecutionMode, Workspace};
use otf_store::DbStore;
use sqlx::{ConnectOptions, Connection, Executor};

/// Jobs driven through their three transitions (and as many raw commits).
const JOBS: usize = 300;
/// Jobs per interleaved round.
const ROUND_JOBS: usize = 10;

type BenchResult<T> = Result<T, Box<dyn std::error::Error>>;

struct Fixture {
    workspace: Workspace,
    agent: AgentId,
    jobs: Vec<JobId>,
}

async fn setup(store: &DbStore) -> BenchResult<Fixture> {
    let now = Timestamp(1);
    let org = Organization {
        name: "bench".parse()?,
        email: "bench@example.com".into(),
        created_at: now,
    };
    let workspace = Workspace {
        agent_selector: Default::default(),
        id: WorkspaceId::generate(&OsRandom),
        organization: org.name.clone(),
        name: "bench".into(),
        execution_mode: ExecutionMode::Remote,
        auto_apply: false,
        terraform_version: "1.0.3".into(),
        working_directory: String::new(),
        lock: None,
        current_run: None,
        created_at: now,
        updated_at: now,
    };
    let cv = ConfigurationVersion {
        id: ConfigVersionId::generate(&OsRandom),
        workspace: workspace.id.clone(),
        organization: org.name.clone(),
        status: ConfigStatus::Uploaded,
        speculative: false,
        auto_queue_runs: true,
        error: None,
        created_at: now,
    };
    let agent = Agent {
        labels: Default::default(),
        id: AgentId::generate(&OsRandom),
        name: "bench".into(),
        version: "0".into(),
        pool: None,
        organization: None,
        status: AgentStatus::Idle,
        max_jobs: 1,
        ip_address: "127.0.0.1".into(),
        last_ping_at: now,
        last_status_at: now,
        token: None,
        registered_at: now,
        drained: false,
        single: false,
    };
    let mut tx = store.begin().await?;
    tx.insert_organization(&org).await?;
    tx.insert_workspace(&workspace).await?;
    tx.insert_config_version(&cv).await?;
    tx.insert_agent(&agent).await?;
    let mut jobs = Vec::new();
    for i in 0..JOBS {
        let run = Run::new(
            RunId::generate(&OsRandom),
            &workspace,
            cv.id.clone(),
            RunOptions::default(),
            now,
        );
        let job = Job {
            selector: Default::default(),
            id: JobId::generate(&OsRandom),
            run: run.id.clone(),
            phase: JobPhase::Plan,
            status: JobStatus::Unallocated,
            pool: None,
            organization: org.name.clone(),
            workspace: workspace.id.clone(),
            agent: None,
            attempt: 1,
            queued_at: Timestamp(i as i64),
            signal: None,
            token_hash: None,
            error: None,
            updated_at: now,
            log_dropped: 0,
            affinity: None,
        };
        tx.insert_run(&run).await?;
        tx.insert_job(&job).await?;
        jobs.push(job.id);
    }
    tx.commit().await?;
    Ok(Fixture {
        workspace,
        agent: agent.id,
        jobs,
    })
}

/// One durable transition: the services' read-modify-write shape.
async fn transition(
    store: &DbStore,
    ws: &WorkspaceId,
    job: &JobId,
    event: JobEvent,
) -> BenchResult<()> {
    let mut tx = store.begin().await?;
    tx.lock_workspace(ws).await?.ok_or("workspace vanished")?;
    let mut j = tx.get_job(job).await?.ok_or("job vanished")?;
    j.apply(event, Timestamp(2))?;
    tx.update_job(&j).await?;
    tx.commit().await?;
    Ok(())
}

fn rate(n: usize, took: Duration) -> f64 {
    n as f64 / took.as_secs_f64().max(f64::EPSILON)
}

async fn create_counter<C>(conn: &mut C) -> BenchResult<()>
where
    for<'c> &'c mut C: Executor<'c>,
{
    conn.execute(
        "CREATE TABLE IF NOT EXISTS bench_counter (id BIGINT PRIMARY KEY, n BIGINT NOT NULL)",
    )
    .await?;
    conn.execute("DELETE FROM bench_counter").await?;
    conn.execute("INSERT INTO bench_counter (id, n) VALUES (1, 0)")
        .await?;
    Ok(())
}

/// `n` raw single-row update commits on a plain connection: each a
/// transaction of one `UPDATE` (`BEGIN; UPDATE; COMMIT`, the shape of every
/// otf write), or (for information) the bare `UPDATE` in autocommit mode.
async fn raw_commits<C>(conn: &mut C, n: usize, explicit: bool) -> BenchResult<Duration>
where
    for<'c> &'c mut C: Executor<'c>,
{
    let start = Instant::now();
    for _ in 0..n {
        if explicit {
            conn.execute("BEGIN").await?;
        }
        conn.execute("UPDATE bench_counter SET n = n + 1 WHERE id = 1")
            .await?;
        if explicit {
            conn.execute("COMMIT").await?;
        }
    }
    Ok(start.elapsed())
}

/// Rates per second: (raw transaction commits, raw autocommits, store
/// transitions). The three are measured in interleaved rounds so that all
/// see the same machine load (another build, a checkpoint).
async fn measure<C>(store: &DbStore, conn: &mut C) -> BenchResult<(f64, f64, f64)>
where
    for<'c> &'c mut C: Executor<'c>,
{
    create_counter(conn).await?;
    let f = setup(store).await?;
    let (mut raw, mut auto, mut store_time) = (Duration::ZERO, Duration::ZERO, Duration::ZERO);
    for round in f.jobs.chunks(ROUND_JOBS) {
        raw += raw_commits(conn, 3 * round.len(), true).await?;
        let start = Instant::now();
        for job in round {
            transition(
                store,
                &f.workspace.id,
                job,
                JobEvent::Allocate(f.agent.clone()),
            )
            .await?;
            transition(store, &f.workspace.id, job, JobEvent::Start).await?;
            transition(store, &f.workspace.id, job, JobEvent::Finish).await?;
        }
        store_time += start.elapsed();
        auto += raw_commits(conn, 3 * round.len(), false).await?;
    }
    let n = 3 * f.jobs.len();
    Ok((rate(n, raw), rate(n, auto), rate(n, store_time)))
}

fn report(backend: &str, (raw, autocommit, transitions): (f64, f64, f64)) {
    println!(
        "store/{backend}: durable job transitions {transitions:.0}/s; raw single-row update commits \
         {raw:.0}/s; ratio {:.2} (target >= 0.5) [autocommit updates {autocommit:.0}/s, ratio {:.2}]",
        transitions / raw,
        transitions / autocommit,
    );
}

async fn sqlite() -> BenchResult<()> {
    let mut suffix = [0u8; 8];
    getrandom::getrandom(&mut suffix)?;
    let dir = std::env::temp_dir().join(format!("otf-bench-{}", hex::encode(suffix)));
    std::fs::create_dir_all(&dir)?;
    let path = dir.join("otf.db");
    let result = async {
        let store = DbStore::open_sqlite(&path).await?;
        let mut conn = sqlx::sqlite::SqliteConnectOptions::new()
            .filename(&path)
            .journal_mode(sqlx::sqlite::SqliteJournalMode::Wal)
            .synchronous(sqlx::sqlite::SqliteSynchronous::Full)
            .connect()
            .await?;
        let rates = measure(&store, &mut conn).await?;
        conn.close().await?;
        store.close().await;
        report("sqlite", rates);
        Ok(())
    }
    .await;
    let _ = std::fs::remove_dir_all(&dir);
    result
}

async fn postgres(url: &str) -> BenchResult<()> {
    let admin = sqlx::postgres::PgConnectOptions::from_str(url)?;
    let mut suffix = [0u8; 8];
    getrandom::getrandom(&mut suffix)?;
    let name = format!("otf_bench_{}", hex::encode(suffix));
    let mut conn = admin.connect().await?;
    conn.execute(format!("CREATE DATABASE {name}").as_str())
        .await?;
    let options = admin.clone().database(&name);
    let result = async {
        let mut raw_conn = options.connect().await?;
        let (base, _) = url.split_once('?').unwrap_or((url, ""));
        let db_url = match base.rfind('/') {
            Some(i) if i > base.find("://").map_or(0, |s| s + 2) => {
                format!("{}/{name}", &base[..i])
            }
            _ => format!("{base}/{name}"),
        };
        let store = DbStore::connect(&db_url).await?;
        let rates = measure(&store, &mut raw_conn).await?;
        raw_conn.close().await?;
        store.close().await;
        report("postgres", rates);
        Ok::<(), Box<dyn std::error::Error>>(())
    }
    .await;
    conn.execute(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)").as_str())
        .await?;
    result
}

#[tokio::main]
async fn main() -> BenchResult<()> {
    sqlite().await?;
    let url = std::env::var("OTF_BENCH_DATABASE_URL")
        .or_else(|_| std::env::var("OTF_TEST_DATABASE_URL"))
        .ok()
        .filter(|u| !u.is_empty());
    match url {
        Some(url) => postgres(&url).await?,
        None => println!(
            "store/postgres: not measured (set OTF_BENCH_DATABASE_URL or OTF_TEST_DATABASE_URL)"
        ),
    }
    Ok(())
}
