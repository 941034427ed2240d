//! What only the SQLite store has: a file that outlives the process, and
//! stays consistent when a writer is killed mid-transaction; commits shared
//! by concurrent writers, none answered before it is durable.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use otf_core::artifacts::ConfigStatus;
use otf_core::job::JobPhase;
use otf_core::store::*;
use sqlx::{ConnectOptions, Row};

use crate::checks::{begin, commit};
use crate::fixtures::*;
use crate::harness::{open_sqlite, SqliteDb};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn data_survives_reopening_the_file() {
    let db = SqliteDb::new();
    let o = org("acme");
    let w = workspace(&o, "ws");
    let cv = config_version(&w, 1, ConfigStatus::Uploaded);
    let r = run(&w, &cv, 1);
    let store = db.open().await;
    let mut tx = begin(&store).await;
    tx.insert_organization(&o).await.unwrap();
    tx.insert_workspace(&w).await.unwrap();
    tx.insert_config_version(&cv).await.unwrap();
    tx.insert_run(&r).await.unwrap();
    tx.append_log(&r.id, JobPhase::Plan, b"kept").await.unwrap();
    commit(tx).await;
    store.close().await;

    // Reopening runs the migrations again: they change nothing.
    for _ in 0..2 {
        let store = db.open().await;
        let mut tx = begin(&store).await;
        assert_eq!(tx.get_organization(&o.name).await.unwrap(), Some(o.clone()));
        assert_eq!(tx.get_workspace(&w.id).await.unwrap(), Some(w.clone()));
        assert_eq!(tx.get_run(&r.id).await.unwrap(), Some(r.clone()));
        assert_eq!(
            tx.read_log(&r.id, JobPhase::Plan, 0, 100).await.unwrap(),
            b"kept"
        );
        drop(tx);
        store.close().await;
    }
}

#[tokio::test]
async fn an_in_memory_database_is_refused_with_a_reason() {
    for url in [
        "sqlite::memory:",
        "sqlite://:memory:",
        "sqlite://x.db?mode=memory",
    ] {
        let e = otf_store::DbStore::connect(url)
            .await
            .expect_err("an in-memory database is refused");
        assert!(e.to_string().contains("in-memory SQLite"), "{url}: {e}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_see_the_last_commit_without_waiting_for_an_open_writer() {
    let db = SqliteDb::new();
    let store = db.open().await;
    let o = org("acme");
    let mut tx = begin(&store).await;
    tx.insert_organization(&o).await.unwrap();
    commit(tx).await;
    // A writer holds the store's one write transaction, uncommitted.
    let mut writer = begin(&store).await;
    let w = workspace(&o, "ws");
    writer.insert_workspace(&w).await.unwrap();
    // A read neither waits for it nor sees its changes.
    let read = tokio::time::timeout(std::time::Duration::from_secs(5), async {
        let mut tx = store.begin_read().await.unwrap();
        let org = tx.get_organization(&o.name).await.unwrap();
        let ws = tx.get_workspace(&w.id).await.unwrap();
        (org, ws)
    })
    .await
    .expect("a read does not wait behind the open writer");
    assert_eq!(read, (Some(o.clone()), None));
    // Nor can it write.
    let mut tx = store.begin_read().await.unwrap();
    assert!(tx.insert_workspace(&workspace(&o, "other")).await.is_err());
    drop(tx);
    commit(writer).await;
    let mut tx = store.begin_read().await.unwrap();
    assert_eq!(tx.get_workspace(&w.id).await.unwrap(), Some(w));
}

/// Start the ignored test `name` of this binary as a writer process on
/// `db` (named to it by the env var `var`), its stdout piped.
fn writer_process(name: &str, var: &str, db: &SqliteDb) -> std::process::Child {
    Command::new(std::env::current_exe().expect("the test binary"))
        .args([
            &format!("sqlite_only::{name}"),
            "--exact",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(var, db.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start the writer process")
}

/// A plain connection to `db`'s file, after SQLite's own integrity check.
async fn consistent_file(db: &SqliteDb) -> sqlx::SqliteConnection {
    let mut conn = sqlx::sqlite::SqliteConnectOptions::new()
        .filename(db.path())
        .connect()
        .await
        .expect("open the file");
    let integrity: String = sqlx::query("PRAGMA integrity_check")
        .fetch_one(&mut conn)
        .await
        .unwrap()
        .get(0);
    assert_eq!(integrity, "ok");
    conn
}

/// Env var that turns `child_writer` into the writer process.
const CHILD_DB: &str = "OTF_STORE_TEST_CHILD_DB";

/// Run by `a_killed_writer_leaves_the_file_consistent` in a child process:
/// commit transactions of several rows each, forever, saying after each.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "the writer process of a_killed_writer_leaves_the_file_consistent"]
async fn child_writer() {
    let Ok(path) = std::env::var(CHILD_DB) else {
        return;
    };
    let store = open_sqlite(std::path::Path::new(&path)).await;
    let o = org("acme");
    let mut w = workspace(&o, "ws");
    let cv = config_version(&w, 1, ConfigStatus::Uploaded);
    let mut tx = begin(&store).await;
    tx.insert_organization(&o).await.unwrap();
    tx.insert_workspace(&w).await.unwrap();
    tx.insert_config_version(&cv).await.unwrap();
    commit(tx).await;
    for i in 0.. {
        let r = run(&w, &cv, i);
        let mut tx = begin(&store).await;
        tx.lock_workspace(&w.id).await.unwrap();
        tx.insert_run(&r).await.unwrap();
        tx.insert_job(&job(&r, JobPhase::Plan, 1, i)).await.unwrap();
        tx.append_log(&r.id, JobPhase::Plan, &vec![b'x'; 4096])
            .await
            .unwrap();
        w.current_run = Some(r.id.clone());
        tx.update_workspace(&w).await.unwrap();
        commit(tx).await;
        println!("committed {i}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_writer_leaves_the_file_consistent() {
    let db = SqliteDb::new();
    let mut child = writer_process("child_writer", CHILD_DB, &db);
    let stdout = child.stdout.take().expect("the writer's stdout");
    // Wait (on its output, not a timer) until it is well into writing.
    let mut committed = 0;
    for line in BufReader::new(stdout).lines() {
        let line = line.expect("read the writer's output");
        if let Some(n) = line.strip_prefix("committed ") {
            committed = n.parse::<u64>().expect("a count") + 1;
            if committed >= 30 {
                break;
            }
        }
    }
    assert!(
        committed >= 30,
        "the writer stopped before committing 30 transactions"
    );
    child.kill().expect("kill the writer");
    child.wait().expect("reap the writer");

    // SQLite's own checks first.
    let mut conn = consistent_file(&db).await;
    let broken = sqlx::query("PRAGMA foreign_key_check")
        .fetch_all(&mut conn)
        .await
        .unwrap();
    assert!(broken.is_empty(), "rows without their parents");
    drop(conn);

    // Then the story's: every committed transaction is whole.
    let store = db.open().await;
    let mut tx = begin(&store).await;
    let o = org("acme");
    let w = tx
        .get_workspace_by_name(&o.name, "ws")
        .await
        .unwrap()
        .expect("the workspace");
    let (runs, total) = tx.list_runs(&w.id, 0, u64::MAX).await.unwrap();
    assert!(total >= committed, "{total} runs, {committed} acknowledged");
    assert_eq!(
        w.current_run.as_ref(),
        Some(&runs[0].id),
        "the newest run is current"
    );
    for r in &runs {
        assert_eq!(tx.list_jobs_of_run(&r.id).await.unwrap().len(), 1);
        assert_eq!(
            tx.read_log(&r.id, JobPhase::Plan, 0, u64::MAX)
                .await
                .unwrap()
                .len(),
            4096
        );
    }
    drop(tx);
    store.close().await;
}

/// Poll (with a deadline) until `n` transactions wait to begin.
async fn until_waiting(store: &otf_store::DbStore, n: usize) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while store.sqlite_writer().map(|(_, w)| w) != Some(n) {
        assert!(std::time::Instant::now() < deadline, "no writer waited");
        tokio::task::yield_now().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commit_that_others_wait_behind_is_answered_once_their_batch_is_durable() {
    let db = SqliteDb::new();
    let store = db.open().await;
    let (first, second) = (org("first"), org("second"));
    let mut m1 = begin(&store).await;
    m1.insert_organization(&first).await.unwrap();
    let s2 = store.clone();
    let next = tokio::spawn(async move { begin(&s2).await });
    until_waiting(&store, 1).await;
    // The first hands the open batch to the second, and waits for it.
    let m1_commit = tokio::spawn(async move { m1.commit().await });
    let mut m2 = next.await.unwrap();
    assert!(!m1_commit.is_finished(), "answered before it is durable");
    // Nobody reads what is not durable yet.
    let mut read = store.begin_read().await.unwrap();
    assert_eq!(read.get_organization(&first.name).await.unwrap(), None);
    drop(read);
    m2.insert_organization(&second).await.unwrap();
    commit(m2).await;
    m1_commit.await.unwrap().expect("the batch committed");
    store.close().await;
    let store = db.open().await;
    let mut read = store.begin_read().await.unwrap();
    assert_eq!(
        read.get_organization(&first.name).await.unwrap(),
        Some(first)
    );
    assert_eq!(
        read.get_organization(&second.name).await.unwrap(),
        Some(second)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_whose_next_transaction_fails_is_still_committed() {
    let db = SqliteDb::new();
    let store = db.open().await;
    let (kept, dropped) = (org("kept"), org("dropped"));
    let mut m1 = begin(&store).await;
    m1.insert_organization(&kept).await.unwrap();
    let s2 = store.clone();
    let next = tokio::spawn(async move { begin(&s2).await });
    until_waiting(&store, 1).await;
    let m1_commit = tokio::spawn(async move { m1.commit().await });
    let mut m2 = next.await.unwrap();
    m2.insert_organization(&dropped).await.unwrap();
    // The second fails (dropped uncommitted): the first commits the batch
    // itself, without the second's changes.
    drop(m2);
    m1_commit.await.unwrap().expect("the batch committed");
    let mut read = store.begin_read().await.unwrap();
    assert_eq!(read.get_organization(&kept.name).await.unwrap(), Some(kept));
    assert_eq!(read.get_organization(&dropped.name).await.unwrap(), None);
    drop(read);
    // The writer goes on.
    let mut tx = begin(&store).await;
    tx.insert_organization(&org("after")).await.unwrap();
    commit(tx).await;
}

/// A batch's first transaction runs without a savepoint of its own: dropped
/// uncommitted, the whole batch (only its changes) is rolled back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batchs_first_transaction_dropped_uncommitted_leaves_nothing() {
    let db = SqliteDb::new();
    let store = db.open().await;
    let mut first = begin(&store).await;
    first.insert_organization(&org("gone")).await.unwrap();
    let s2 = store.clone();
    let next = tokio::spawn(async move {
        let mut tx = begin(&s2).await;
        tx.insert_organization(&org("kept")).await.unwrap();
        tx.commit().await
    });
    until_waiting(&store, 1).await;
    drop(first);
    next.await.unwrap().expect("the next transaction commits");
    store.close().await;
    let store = db.open().await;
    let mut read = store.begin_read().await.unwrap();
    assert_eq!(
        read.get_organization(&org("gone").name).await.unwrap(),
        None
    );
    assert!(read
        .get_organization(&org("kept").name)
        .await
        .unwrap()
        .is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writers_share_commits_and_every_acknowledged_one_survives() {
    let db = SqliteDb::new();
    let store = db.open().await;
    let (before, _) = store.sqlite_writer().unwrap();
    let writers: Vec<_> = (0..40)
        .map(|i| {
            let store = store.clone();
            tokio::spawn(async move {
                let mut tx = begin(&store).await;
                tx.insert_organization(&org(&format!("org-{i}")))
                    .await
                    .unwrap();
                // Every fifth fails after writing.
                if i % 5 == 4 {
                    drop(tx);
                    return false;
                }
                tx.commit().await.expect("commit");
                true
            })
        })
        .collect();
    let mut acknowledged = Vec::new();
    for (i, w) in writers.into_iter().enumerate() {
        if w.await.unwrap() {
            acknowledged.push(i);
        }
    }
    let (after, _) = store.sqlite_writer().unwrap();
    assert!(
        after - before < 32,
        "32 commits went in {} batches: none was shared",
        after - before
    );
    store.close().await;
    let store = db.open().await;
    let mut read = store.begin_read().await.unwrap();
    for i in 0..40 {
        let found = read
            .get_organization(&org(&format!("org-{i}")).name)
            .await
            .unwrap();
        assert_eq!(found.is_some(), acknowledged.contains(&i), "org-{i}");
    }
}

/// Env var that turns `child_group_writer` into the writer process.
const CHILD_GROUP_DB: &str = "OTF_STORE_TEST_CHILD_GROUP_DB";

/// Run by `a_killed_writer_loses_no_acknowledged_commit_of_a_group` in a
/// child process: writers at once, forever, each saying which of its
/// commits were answered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "the writer process of a_killed_writer_loses_no_acknowledged_commit_of_a_group"]
async fn child_group_writer() {
    let Ok(path) = std::env::var(CHILD_GROUP_DB) else {
        return;
    };
    let store = open_sqlite(std::path::Path::new(&path)).await;
    let writers: Vec<_> = (0..8)
        .map(|w| {
            let store = store.clone();
            tokio::spawn(async move {
                for i in 0.. {
                    let name = format!("w{w}-{i}");
                    let mut tx = begin(&store).await;
                    tx.insert_organization(&org(&name)).await.unwrap();
                    commit(tx).await;
                    println!("acked {name}");
                }
            })
        })
        .collect();
    for w in writers {
        w.await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_writer_loses_no_acknowledged_commit_of_a_group() {
    let db = SqliteDb::new();
    let mut child = writer_process("child_group_writer", CHILD_GROUP_DB, &db);
    let stdout = child.stdout.take().expect("the writer's stdout");
    // Killed while its writers are mid-batch (on its output, not a timer).
    let mut acked = Vec::new();
    for line in BufReader::new(stdout).lines() {
        let line = line.expect("read the writer's output");
        if let Some(name) = line.strip_prefix("acked ") {
            acked.push(name.to_string());
            if acked.len() >= 200 {
                break;
            }
        }
    }
    assert!(acked.len() >= 200, "the writers stopped early");
    child.kill().expect("kill the writer");
    child.wait().expect("reap the writer");

    drop(consistent_file(&db).await);
    let store = db.open().await;
    let mut read = store.begin_read().await.unwrap();
    for name in &acked {
        assert!(
            read.get_organization(&org(name).name)
                .await
                .unwrap()
                .is_some(),
            "{name} was acknowledged but is gone"
        );
    }
}

/// What each step of one run's dispatch costs in statements on SQLite
/// (queries and changes; BEGIN, COMMIT and savepoints not counted), through
/// the core's use cases: the write path's budget. A use case that starts
/// reading back what it wrote, or counting, fails here.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_runs_dispatch_issues_only_the_statements_it_needs() {
    use std::sync::Arc;

    use otf_core::auth::Subject;
    use otf_core::clock::{ManualClock, Timestamp};
    use otf_core::events::LocalBus;
    use otf_core::job::JobPhase;
    use otf_core::random::SeededRandom;
    use otf_core::run::{ResourceCounts, RunOptions, RunStatus};
    use otf_core::services::{
        ConfigSpec, JobOutcome, PoolSpec, RegisterAgent, RunSpec, WorkspaceSpec,
    };
    use otf_core::workspace::ExecutionMode;
    use otf_core::{Core, CoreConfig, Dispatcher};

    let db = SqliteDb::new();
    let store = db.open().await;
    let bus = Arc::new(LocalBus::new(1 << 10));
    let core = Core::new(
        store.clone(),
        bus.clone(),
        Arc::new(ManualClock::new(Timestamp(1_700_000_000_000))),
        Arc::new(SeededRandom::new(7)),
        CoreConfig::default(),
    );
    let mut events = bus.subscribe_local();
    let mut dispatcher = Dispatcher::new(core.clone());
    dispatcher.rebuild().await.unwrap();
    let site = Subject::SiteAdmin;
    let org: otf_core::ids::OrganizationName = "acme".parse().unwrap();
    core.create_organization(&site, &org, "ops@example.com")
        .await
        .unwrap();
    let pool = core
        .create_pool(
            &site,
            &org,
            PoolSpec {
                name: "agents".into(),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let ws = core
        .create_workspace(
            &site,
            &org,
            WorkspaceSpec {
                name: "ws".into(),
                execution_mode: Some(ExecutionMode::Agent(pool.id.clone())),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let (_, secret) = core
        .create_agent_token(&site, &pool.id, "agents")
        .await
        .unwrap();
    let agent_subject = core.authenticate(secret.expose()).await.unwrap();
    let agent = core
        .register_agent(
            &agent_subject,
            RegisterAgent {
                labels: Default::default(),
                name: "a".into(),
                version: "test".into(),
                max_jobs: 1,
                ip_address: "127.0.0.1".into(),
                protocol: *otf_core::agent::AGENT_PROTOCOLS.end(),
                single: false,
            },
        )
        .await
        .unwrap();
    let cv = core
        .create_configuration_version(&site, &ws.id, ConfigSpec::default())
        .await
        .unwrap();
    let tarball = otf_core::tarball::pack([("main.tf", &b"# nothing\n"[..])]);
    core.upload_configuration(&site, &cv.id, &tarball)
        .await
        .unwrap();
    // The dispatcher has taken in everything so far.
    while let Some(e) = events.try_recv() {
        dispatcher.handle(&e.unwrap()).await.unwrap();
    }

    let counted = || store.sqlite_statements().expect("a SQLite store counts");
    let mut last = counted();
    let mut step = || {
        let now = counted();
        let took = now - last;
        last = now;
        took
    };
    let mut took = Vec::new();
    // A plan-only run, then one that applies at once after its plan.
    for (auto_apply, additions) in [(None, 0), (Some(true), 1)] {
        let run = core
            .create_run(
                &site,
                RunSpec {
                    workspace: ws.id.clone(),
                    configuration_version: Some(cv.id.clone()),
                    options: RunOptions {
                        auto_apply,
                        ..Default::default()
                    },
                },
            )
            .await
            .unwrap();
        took.push(("create the run", step()));
        let mut done = run.clone();
        while !done.status.is_final() {
            while let Some(e) = events.try_recv() {
                dispatcher.handle(&e.unwrap()).await.unwrap();
            }
            took.push(("allocate its job", step()));
            let jobs = core
                .await_allocated_jobs(&agent_subject, &agent.id)
                .await
                .unwrap();
            assert_eq!(jobs.len(), 1, "{jobs:?}");
            took.push(("the agent's poll", step()));
            let started = core
                .start_job(&agent_subject, &agent.id, &jobs[0].id)
                .await
                .unwrap();
            took.push(("start the job", step()));
            let job_subject = core.authenticate(started.token.expose()).await.unwrap();
            took.push(("authenticate the job token", step()));
            done = core
                .finish_job(
                    &job_subject,
                    JobOutcome::Finished {
                        counts: ResourceCounts {
                            additions,
                            ..Default::default()
                        },
                        has_changes: additions > 0,
                    },
                )
                .await
                .unwrap();
            took.push(("finish the job", step()));
        }
        assert_eq!(done.id, run.id);
        let (ended, logs): (_, &[(JobPhase, &[u8])]) = match auto_apply {
            None => (
                RunStatus::PlannedAndFinished,
                &[(JobPhase::Plan, b"\x02\x03"), (JobPhase::Apply, b"")],
            ),
            Some(_) => (
                RunStatus::Applied,
                &[
                    (JobPhase::Plan, b"\x02\x03"),
                    (JobPhase::Apply, b"\x02\x03"),
                ],
            ),
        };
        assert_eq!(done.status, ended);
        // Each phase that ran has its log opened at its start and closed at
        // its finish; a phase that never ran has none.
        for (phase, log) in logs {
            let read = core.read_log(&site, &run.id, *phase, 0, 16).await.unwrap();
            assert_eq!(read, *log, "{phase:?}");
        }
        step();
    }
    // create: lock the workspace, its configuration version, its newest
    // run's creation time, any pending run, insert the run and its job, the
    // workspace's bookkeeping. allocate: the job, its update. poll: the
    // agent, its jobs. start: the agent, the job, lock the workspace, the
    // run, open the phase's log, update the job and the run. finish: lock
    // the workspace, the job, the run, update the job and the run, close
    // the phase's log (no read: its start opened it, and no apply can have
    // begun before a plan ends), then either any next run and the
    // workspace's bookkeeping (the run ended) or, on auto-apply, the
    // planner agent (does it keep the apply?) and the apply's job.
    let phase = |finish| {
        [
            ("allocate its job", 2),
            ("the agent's poll", 2),
            ("start the job", 7),
            ("authenticate the job token", 1),
            ("finish the job", finish),
        ]
    };
    let plan_only = [[("create the run", 7)].as_slice(), &phase(8)].concat();
    let applied = [[("create the run", 7)].as_slice(), &phase(8), &phase(8)].concat();
    assert_eq!(took, [plan_only, applied].concat());
    store.close().await;
}
