//! What only the PostgreSQL store has: several replicas on one database see
//! each other's events, and exactly one of them leads.

use std::time::{Duration, Instant};

use otf_core::events::{Event, EventBus, LeaderElection, RecvError, Subscription};
use otf_core::job::JobPhase;
use otf_core::store::*;
use otf_store::{DbStore, PgBus, PgLeader, LEADER_LOCK};
use sqlx::{Connection, Row};

use crate::checks::{begin, commit};
use crate::fixtures::*;
use crate::harness::{announce, PgDb};

/// Every wait in these tests ends by this deadline.
const DEADLINE: Duration = Duration::from_secs(20);

/// The next event (or lag notice).
async fn next_event(sub: &mut Subscription) -> Result<Event, RecvError> {
    tokio::time::timeout(DEADLINE, sub.recv())
        .await
        .expect("an event before the deadline")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_reach_every_replica() {
    let Some(db) = PgDb::create().await else {
        return;
    };
    let (a, b) = (db.open().await, db.open().await);
    let (bus_a, bus_b) = (
        PgBus::start(&a).await.unwrap(),
        PgBus::start(&b).await.unwrap(),
    );
    let mut on_a = bus_a.subscribe();
    let mut on_b = bus_b.subscribe();

    let o = org("acme");
    let w = workspace(&o, "ws");
    let cv = config_version(&w, 1, otf_core::artifacts::ConfigStatus::Uploaded);
    let r = run(&w, &cv, 1);
    let j = job(&r, JobPhase::Plan, 1, 1);
    let agent = agent(None, None);
    let p = pool(&o, "pool", &[]);
    let token = agent_token(&p, 1);
    let mut tx = begin(&a).await;
    tx.insert_organization(&o).await.unwrap();
    tx.insert_workspace(&w).await.unwrap();
    tx.insert_config_version(&cv).await.unwrap();
    tx.insert_run(&r).await.unwrap();
    tx.insert_job(&j).await.unwrap();
    tx.insert_agent(&agent).await.unwrap();
    commit(tx).await;

    let gone = otf_core::ids::AgentId::generate(&otf_core::random::OsRandom);
    let sent = vec![
        Event::Agent(agent.clone()),
        Event::Job(j.clone()),
        Event::Run(r.clone()),
        Event::Workspace(w.id.clone()),
        Event::Log {
            run: r.id.clone(),
            phase: JobPhase::Apply,
            end: 42,
        },
        Event::TokenRevoked(token.id.clone()),
        Event::AgentDeleted(gone.clone()),
        // An agent event for a row that no longer exists arrives as deleted.
        Event::Agent(otf_core::agent::Agent {
            id: gone.clone(),
            ..agent.clone()
        }),
    ];
    bus_a.publish(sent.clone()).await;
    let mut expected = sent.clone();
    expected[7] = Event::AgentDeleted(gone);
    for want in &expected {
        assert_eq!(
            &next_event(&mut on_b).await.unwrap(),
            want,
            "on the other replica"
        );
    }
    // The publisher's own subscribers get each event once, as published.
    for want in &sent {
        assert_eq!(
            &next_event(&mut on_a).await.unwrap(),
            want,
            "on the publishing replica"
        );
    }
    // ... and not again from the echo: the next one they see is this.
    bus_b.publish(vec![Event::Workspace(w.id.clone())]).await;
    assert_eq!(
        next_event(&mut on_a).await.unwrap(),
        Event::Workspace(w.id.clone())
    );
    assert_eq!(
        next_event(&mut on_b).await.unwrap(),
        Event::Workspace(w.id.clone()),
        "its own publish, locally"
    );
    // Publishes return before their NOTIFY is sent; a burst of them
    // (sent together) still arrives whole and in order.
    let burst: Vec<Event> = (0..200)
        .map(|end| Event::Log {
            run: r.id.clone(),
            phase: JobPhase::Plan,
            end,
        })
        .collect();
    for e in &burst {
        bus_a.publish(vec![e.clone()]).await;
    }
    for want in &burst {
        assert_eq!(&next_event(&mut on_b).await.unwrap(), want, "in order");
    }

    drop((bus_a, bus_b));
    a.close().await;
    b.close().await;
    db.remove().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_whose_listener_reconnects_makes_subscribers_re_read() {
    let Some(db) = PgDb::create().await else {
        return;
    };
    let (a, b) = (db.open().await, db.open().await);
    let (bus_a, bus_b) = (
        PgBus::start(&a).await.unwrap(),
        PgBus::start(&b).await.unwrap(),
    );
    let mut on_b = bus_b.subscribe();

    // Cut every listening connection of the database (both replicas').
    let mut conn = sqlx::postgres::PgConnection::connect(&db.url)
        .await
        .unwrap();
    let killed: i64 = sqlx::query(
        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity \
         WHERE datname = current_database() AND query LIKE 'LISTEN%' AND pid <> pg_backend_pid()",
    )
    .fetch_one(&mut conn)
    .await
    .unwrap()
    .get(0);
    assert!(killed >= 2, "both listeners were cut ({killed})");

    // The subscriber learns it missed events, once the listener is back ...
    assert_eq!(next_event(&mut on_b).await, Err(RecvError::Lagged));
    // ... and later events flow again.
    let w = otf_core::ids::WorkspaceId::generate(&otf_core::random::OsRandom);
    bus_a.publish(vec![Event::Workspace(w.clone())]).await;
    // (A subscriber may lag more than once while the burst passes.)
    let event = loop {
        match next_event(&mut on_b).await {
            Err(RecvError::Lagged) => continue,
            other => break other,
        }
    };
    assert_eq!(event, Ok(Event::Workspace(w)));

    drop((bus_a, bus_b));
    a.close().await;
    b.close().await;
    db.remove().await;
}

/// The backend pid holding the leader lock, if any.
async fn leader_pid(conn: &mut sqlx::postgres::PgConnection) -> Option<i32> {
    sqlx::query(
        "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted \
         AND database = (SELECT oid FROM pg_database WHERE datname = current_database()) \
         AND classid = $1::bigint::oid AND objid = $2::bigint::oid AND objsubid = 1",
    )
    .bind(LEADER_LOCK >> 32)
    .bind(LEADER_LOCK & 0xffff_ffff)
    .fetch_optional(&mut *conn)
    .await
    .unwrap()
    .map(|row| row.get(0))
}

/// Poll until someone waits for the leader lock.
async fn wait_for_a_waiter(conn: &mut sqlx::postgres::PgConnection) {
    let start = Instant::now();
    loop {
        let waiting: i64 = sqlx::query(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted \
             AND classid = $1::bigint::oid AND objid = $2::bigint::oid",
        )
        .bind(LEADER_LOCK >> 32)
        .bind(LEADER_LOCK & 0xffff_ffff)
        .fetch_one(&mut *conn)
        .await
        .unwrap()
        .get(0);
        if waiting > 0 {
            return;
        }
        assert!(
            start.elapsed() < DEADLINE,
            "nobody waits for the leader lock"
        );
        tokio::task::yield_now().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leadership_passes_to_another_replica_when_the_leader_dies() {
    let Some(db) = PgDb::create().await else {
        return;
    };
    let (a, b, c) = (db.open().await, db.open().await, db.open().await);
    let interval = Duration::from_millis(100);
    let leader = |s: &DbStore| PgLeader::new(s).unwrap().with_check_interval(interval);
    let (la, lb, lc) = (leader(&a), leader(&b), leader(&c));
    let mut conn = sqlx::postgres::PgConnection::connect(&db.url)
        .await
        .unwrap();

    let mut lease_a = la.acquire().await.unwrap();
    let a_pid = leader_pid(&mut conn).await.expect("a leads");
    let b_waits = tokio::spawn(async move { lb.acquire().await.map(|lease| (lease, lb)) });
    wait_for_a_waiter(&mut conn).await;
    assert!(!b_waits.is_finished(), "only one replica leads");

    // The leader's process dies (its session is killed).
    let start = Instant::now();
    sqlx::query("SELECT pg_terminate_backend($1)")
        .bind(a_pid)
        .execute(&mut conn)
        .await
        .unwrap();
    tokio::time::timeout(DEADLINE, lease_a.lost())
        .await
        .expect("the old leader notices it lost the lock");
    let (lease_b, _lb) = tokio::time::timeout(DEADLINE, b_waits)
        .await
        .expect("another replica leads before the deadline")
        .unwrap()
        .unwrap();
    let took = start.elapsed();
    announce(&format!(
        "note: PostgreSQL leader hand-over after the leader died took {took:?}"
    ));
    let b_pid = leader_pid(&mut conn).await.expect("b leads");
    assert_ne!(a_pid, b_pid);

    // A leader that steps down (drops its lease) hands over too.
    let c_waits = tokio::spawn(async move { lc.acquire().await.map(|lease| (lease, lc)) });
    wait_for_a_waiter(&mut conn).await;
    drop(lease_b);
    let (_lease_c, _lc) = tokio::time::timeout(DEADLINE, c_waits)
        .await
        .expect("the next replica leads before the deadline")
        .unwrap()
        .unwrap();
    assert!(leader_pid(&mut conn).await.is_some());

    drop(conn);
    a.close().await;
    b.close().await;
    c.close().await;
    db.remove().await;
}

/// Replicas appending to one log at once: every chunk lands at the end that
/// held when it was appended, none overlaps another and none is lost (the
/// append finds the end itself, under the log's advisory lock).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_appends_to_one_log_neither_overlap_nor_collide() {
    let Some(db) = PgDb::create().await else {
        return;
    };
    let (a, b) = (db.open().await, db.open().await);
    let o = org("acme");
    let w = workspace(&o, "ws");
    let cv = config_version(&w, 1, otf_core::artifacts::ConfigStatus::Uploaded);
    let r = run(&w, &cv, 1);
    let mut tx = begin(&a).await;
    tx.insert_organization(&o).await.unwrap();
    tx.insert_workspace(&w).await.unwrap();
    tx.insert_config_version(&cv).await.unwrap();
    tx.insert_run(&r).await.unwrap();
    commit(tx).await;
    const EACH: usize = 40;
    let writers: Vec<_> = [(a.clone(), b'a'), (b.clone(), b'b')]
        .into_iter()
        .map(|(store, byte)| {
            let run = r.id.clone();
            tokio::spawn(async move {
                for i in 0..EACH {
                    let mut tx = begin(&store).await;
                    let chunk = vec![byte; 1 + i % 3];
                    tx.append_log(&run, JobPhase::Plan, &chunk).await.unwrap();
                    commit(tx).await;
                }
            })
        })
        .collect();
    for w in writers {
        w.await.unwrap();
    }
    let mut tx = begin(&a).await;
    let log = tx
        .read_log(&r.id, JobPhase::Plan, 0, 1 << 20)
        .await
        .unwrap();
    let want: usize = (0..EACH).map(|i| 1 + i % 3).sum::<usize>() * 2;
    assert_eq!(log.len(), want, "every byte once");
    assert_eq!(log.iter().filter(|b| **b == b'a').count(), want / 2);
    drop(tx);
    a.close().await;
    b.close().await;
    db.remove().await;
}

/// A read transaction sees one snapshot of what was committed
/// ([`Store::begin_read`]): a write committed after its first statement is
/// not in its later ones (READ COMMITTED would show it to each later
/// statement), and it cannot write.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_sees_one_snapshot_and_cannot_write() {
    let Some(db) = PgDb::create().await else {
        return;
    };
    let store = db.open().await;
    let o = org("acme");
    let w = workspace(&o, "ws");
    let mut tx = begin(&store).await;
    tx.insert_organization(&o).await.unwrap();
    commit(tx).await;

    let mut read = store.begin_read().await.expect("begin a read");
    assert_eq!(read.get_workspace(&w.id).await.unwrap(), None);
    let mut tx = begin(&store).await;
    tx.insert_workspace(&w).await.unwrap();
    commit(tx).await;
    assert_eq!(
        read.get_workspace(&w.id).await.unwrap(),
        None,
        "the read's snapshot predates the insert"
    );
    assert!(
        read.insert_workspace(&workspace(&o, "other"))
            .await
            .is_err(),
        "a read cannot write"
    );
    drop(read);

    let mut read = store.begin_read().await.expect("begin a read");
    assert_eq!(read.get_workspace(&w.id).await.unwrap(), Some(w.clone()));
    read.commit().await.expect("end the read");
    store.close().await;
    db.remove().await;
}
