//! One leader: two otfd replicas on one PostgreSQL database, an agent on
//! each, runs queued; the leader's lock session is killed
//! (`pg_terminate_backend`). Sampled all along: `otf_leader` never reads 1
//! on both replicas, no agent ever holds more jobs than it runs at once;
//! the deposed replica steps down, the other takes over (after the
//! takeover delay, with a new reign that fences the old one's writes) and
//! every run completes.

mod e2e;
mod support;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use e2e::{terraform, Agent, Api};
use sqlx::Connection;
use support::{eventually, Db, Server};

const NULL: &str = "resource \"null_resource\" \"a\" {}\n";

/// A replica's `otf_leader`, if /metrics answers.
async fn leading(url: &str) -> Option<u8> {
    let text = reqwest::get(format!("{url}/metrics"))
        .await
        .ok()?
        .text()
        .await
        .ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix("otf_leader "))
        .and_then(|v| v.trim().parse().ok())
}

/// The most jobs any agent of `pool` holds right now.
async fn busiest(api: &Api, pool: &str) -> u64 {
    let (status, body) = api.get(&format!("/agent-pools/{pool}/agents")).await;
    if status != 200 {
        return 0;
    }
    body["data"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|a| a["attributes"]["current-jobs"].as_u64())
        .max()
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_that_loses_the_lock_stops_leading_and_another_takes_over() {
    let Some(admin) = std::env::var("OTF_TEST_DATABASE_URL")
        .ok()
        .filter(|u| !u.is_empty())
    else {
        eprintln!("note: OTF_TEST_DATABASE_URL is not set; the two-replica leader test needs PostgreSQL and was not run");
        return;
    };
    let tf = terraform();
    let a = Server::start(&Db::Postgres(admin), &["--concurrency", "0"]);
    eventually(Duration::from_secs(20), "replica A to lead", || async {
        (leading(&a.url).await == Some(1)).then_some(())
    })
    .await;
    let b = a.replica(&["--concurrency", "0"]);
    eventually(Duration::from_secs(20), "replica B to wait", || async {
        (leading(&b.url).await == Some(0)).then_some(())
    })
    .await;
    let api = Api::new(&a);
    api.org("acme").await;
    let pool = api.pool("acme", "pool").await;
    let (_, token) = api.token(&pool).await;
    let _on_a = Agent::start(&a, &token, "on-a", &tf, &["--concurrency", "1"], &[]);
    let _on_b = Agent::start(&b, &token, "on-b", &tf, &["--concurrency", "1"], &[]);
    let mut runs = Vec::new();
    for n in 0..4 {
        let ws = api.workspace("acme", &format!("ws-{n}"), Some(&pool)).await;
        runs.push(api.run(&ws, &[("main.tf", NULL)], false).await);
    }

    // Sample both replicas' gauges back to back, and the agents' loads,
    // all along.
    let seen: Arc<Mutex<Vec<String>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let gauges = {
        let (seen, stop) = (seen.clone(), stop.clone());
        let (url_a, url_b) = (a.url.clone(), b.url.clone());
        tokio::spawn(async move {
            let mut samples = 0u32;
            while !stop.load(Ordering::Relaxed) {
                let (x, y) = tokio::join!(leading(&url_a), leading(&url_b));
                if x == Some(1) && y == Some(1) {
                    seen.lock()
                        .unwrap()
                        .push(format!("both lead (sample {samples})"));
                }
                samples += 1;
            }
            samples
        })
    };
    let loads = {
        let (seen, stop, api, pool) = (seen.clone(), stop.clone(), api.clone(), pool.clone());
        tokio::spawn(async move {
            let mut every = tokio::time::interval(Duration::from_millis(50));
            while !stop.load(Ordering::Relaxed) {
                every.tick().await;
                let load = busiest(&api, &pool).await;
                if load > 1 {
                    seen.lock()
                        .unwrap()
                        .push(format!("an agent holds {load} jobs"));
                }
            }
        })
    };

    // Kill the session that holds the leader lock.
    let url = a.database_url().expect("a PostgreSQL URL");
    let mut conn = sqlx::PgConnection::connect(&url).await.expect("connect");
    let (high, low) = (0x6f74_665f_i64, 0x6c65_6164_i64);
    let killed: Vec<(bool,)> = sqlx::query_as(
        "SELECT pg_terminate_backend(pid) FROM pg_locks \
         WHERE locktype = 'advisory' AND granted AND classid = $1 AND objid = $2 \
         AND database = (SELECT oid FROM pg_database WHERE datname = current_database())",
    )
    .bind(high)
    .bind(low)
    .fetch_all(&mut conn)
    .await
    .expect("terminate the lock session");
    assert_eq!(killed, vec![(true,)], "one session held the leader lock");
    eventually(
        Duration::from_secs(20),
        "B to lead and A to step down",
        || async {
            (leading(&a.url).await == Some(0) && leading(&b.url).await == Some(1)).then_some(())
        },
    )
    .await;
    for run in &runs {
        api.wait_for(run, "planned", Duration::from_secs(90)).await;
    }
    stop.store(true, Ordering::Relaxed);
    let samples = gauges.await.expect("the gauge sampler");
    loads.await.expect("the load sampler");
    assert!(samples > 20, "sampled {samples} times");
    let seen = seen.lock().unwrap().clone();
    assert!(seen.is_empty(), "{seen:?}");
    assert!(
        a.log().contains("lost the leader lock") || a.log().contains("another replica leads now"),
        "{}",
        a.log()
    );
    assert!(
        b.log().contains("reign=2"),
        "B began the second reign: {}",
        b.log()
    );
}
