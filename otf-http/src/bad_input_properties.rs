//! Property: whatever document is thrown at whatever route, through the
//! real admission and router (no socket), otfd answers: never a 5xx, never
//! a panic; a 4xx is a JSON:API error document and changes nothing in the
//! store. Documents are random or mutated from the valid ones the clients
//! send (organizations, workspaces, pools, tokens, variables, configuration
//! versions, runs, state versions, the agent protocol).

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::{HeaderMap, Method};
use otf_core::clock::{ManualClock, Timestamp};
use otf_core::events::LocalBus;
use otf_core::memory::MemoryStore;
use otf_core::random::SeededRandom;
use otf_core::secret::SecretHash;
use otf_core::{Core, CoreConfig};
use proptest::prelude::*;
use serde_json::{json, Value};

use crate::app::{App, Limits};
use crate::request::Req;

const SITE: &str = "site-token-for-the-property-test";

struct World {
    app: App<MemoryStore>,
    ws: String,
    pool: String,
    agent_token: String,
    agent: String,
    run: String,
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime")
}

async fn call(
    app: &App<MemoryStore>,
    method: Method,
    path: &str,
    token: Option<&str>,
    body: Vec<u8>,
    agent: Option<&str>,
) -> (u16, Vec<u8>) {
    let (path, query) = path
        .split_once('?')
        .map_or((path, None), |(p, q)| (p, Some(q)));
    let mut headers = HeaderMap::new();
    if let Some(t) = token {
        headers.insert(
            "authorization",
            format!("Bearer {t}").parse().expect("a header"),
        );
    }
    if let Some(a) = agent {
        headers.insert("otf-agent-id", a.parse().expect("a header"));
    }
    headers.insert(
        "content-type",
        "application/vnd.api+json".parse().expect("a header"),
    );
    let head = Req::new(
        method,
        path,
        query,
        headers,
        Bytes::new(),
        "127.0.0.1".parse().expect("an ip"),
    );
    let resp = match app.admit(head).await {
        Ok((req, limit)) if body.len() <= limit => {
            app.handle(req.with_body(Bytes::from(body))).await
        }
        Ok(_) => return (413, Vec::new()),
        Err(refused) => refused,
    };
    let status = resp.status().as_u16();
    let body = resp
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes().to_vec())
        .unwrap_or_default();
    (status, body)
}

async fn ok(app: &App<MemoryStore>, method: Method, path: &str, token: &str, body: Value) -> Value {
    let (s, b) = call(
        app,
        method,
        path,
        Some(token),
        body.to_string().into_bytes(),
        None,
    )
    .await;
    assert!(s < 300, "{path}: {s} {}", String::from_utf8_lossy(&b));
    serde_json::from_slice(&b).unwrap_or(Value::Null)
}

async fn world() -> World {
    let core = Core::new(
        MemoryStore::new(),
        Arc::new(LocalBus::new(64)),
        Arc::new(ManualClock::new(Timestamp(1_700_000_000_000))),
        Arc::new(SeededRandom::new(7)),
        CoreConfig {
            site_token: Some(SecretHash::of(SITE)),
            max_upload_bytes: 256 * 1024,
            ..CoreConfig::default()
        },
    );
    let app = App {
        core,
        base_url: "http://otfd".into(),
        signer: crate::signing::Signer::new(b"property-test-key"),
        limits: Limits {
            max_json_body: 64 * 1024,
            ..Limits::default()
        },
        long_poll: Duration::from_millis(1),
        url_ttl: Duration::from_secs(3600),
        metrics: Arc::new(crate::metrics::Metrics::default()),
        metrics_token: None,
        routes: crate::routes::table(),
    };
    ok(&app, Method::POST, "/api/v2/organizations", SITE, json!({"data":{"type":"organizations","attributes":{"name":"acme","email":"a@example.com"}}})).await;
    let pool = ok(
        &app,
        Method::POST,
        "/api/v2/organizations/acme/agent-pools",
        SITE,
        json!({"data":{"type":"agent-pools","attributes":{"name":"p"}}}),
    )
    .await;
    let pool = pool["data"]["id"].as_str().unwrap_or_default().to_string();
    let ws = ok(&app, Method::POST, "/api/v2/organizations/acme/workspaces", SITE, json!({"data":{"type":"workspaces","attributes":{"name":"w","execution-mode":"agent","agent-pool-id":pool}}})).await;
    let ws = ws["data"]["id"].as_str().unwrap_or_default().to_string();
    let token = ok(
        &app,
        Method::POST,
        &format!("/api/v2/agent-pools/{pool}/authentication-tokens"),
        SITE,
        json!({"data":{"type":"authentication-tokens","attributes":{"description":"d"}}}),
    )
    .await;
    let agent_token = token["data"]["attributes"]["token"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let reg = ok(
        &app,
        Method::POST,
        "/api/agent/register",
        &agent_token,
        json!({"name":"a","version":"0","concurrency":1}),
    )
    .await;
    let agent = reg["id"].as_str().unwrap_or_default().to_string();
    let cv = ok(
        &app,
        Method::POST,
        &format!("/api/v2/workspaces/{ws}/configuration-versions"),
        SITE,
        json!({"data":{"type":"configuration-versions","attributes":{"auto-queue-runs":false}}}),
    )
    .await;
    let cv = cv["data"]["id"].as_str().unwrap_or_default().to_string();
    let tarball = otf_core::tarball::pack([("main.tf", &b""[..])]);
    let (s, _) = call(
        &app,
        Method::PUT,
        &format!("/api/v2/configuration-versions/{cv}/upload"),
        Some(SITE),
        tarball,
        None,
    )
    .await;
    assert_eq!(s, 200);
    let run = ok(&app, Method::POST, "/api/v2/runs", SITE, json!({"data":{"type":"runs","attributes":{},"relationships":{"workspace":{"data":{"type":"workspaces","id":ws}},"configuration-version":{"data":{"type":"configuration-versions","id":cv}}}}})).await;
    let run = run["data"]["id"].as_str().unwrap_or_default().to_string();
    World {
        app,
        ws,
        pool,
        agent_token,
        agent,
        run,
    }
}

/// What the store holds, as the API shows it.
async fn snapshot(w: &World) -> Vec<(u16, Vec<u8>)> {
    let mut out = Vec::new();
    for path in [
        "/api/v2/organizations".to_string(),
        "/api/v2/organizations/acme/workspaces".to_string(),
        "/api/v2/organizations/acme/agent-pools".to_string(),
        format!("/api/v2/workspaces/{}", w.ws),
        format!("/api/v2/workspaces/{}/vars", w.ws),
        format!("/api/v2/workspaces/{}/runs", w.ws),
        format!("/api/v2/workspaces/{}/current-state-version", w.ws),
        format!("/api/v2/agent-pools/{}", w.pool),
        format!("/api/v2/agent-pools/{}/authentication-tokens", w.pool),
        format!("/api/v2/agent-pools/{}/agents", w.pool),
        format!("/api/v2/runs/{}", w.run),
        "/api/v2/organizations/acme/jobs".to_string(),
    ] {
        out.push(call(&w.app, Method::GET, &path, Some(SITE), Vec::new(), None).await);
    }
    out
}

/// The valid documents clients send, to mutate.
fn seeds(w: &World) -> Vec<Value> {
    vec![
        json!({"data":{"type":"organizations","attributes":{"name":"beta","email":"b@example.com"}}}),
        json!({"data":{"type":"workspaces","attributes":{"name":"w2","execution-mode":"remote","auto-apply":true,"terraform-version":"1.0.3","working-directory":"x"}}}),
        json!({"data":{"type":"agent-pools","attributes":{"name":"p2","organization-scoped":false},"relationships":{"allowed-workspaces":{"data":[{"type":"workspaces","id":w.ws}]}}}}),
        json!({"data":{"type":"authentication-tokens","attributes":{"description":"d2"}}}),
        json!({"data":{"type":"vars","attributes":{"key":"k","value":"v","category":"terraform","hcl":false,"sensitive":true}}}),
        json!({"data":{"type":"configuration-versions","attributes":{"auto-queue-runs":false,"speculative":true}}}),
        json!({"data":{"type":"runs","attributes":{"is-destroy":false,"message":"m","target-addrs":["a.b"]},"relationships":{"workspace":{"data":{"type":"workspaces","id":w.ws}}}}}),
        json!({"data":{"type":"state-versions","attributes":{"serial":1,"md5":"0cc175b9c0f1b6a831c399e269772661","lineage":"l","state":"YQ=="}}}),
        json!({"reason":"r"}),
        json!({"name":"a2","version":"0","concurrency":2}),
        json!({"status":"busy"}),
    ]
}

/// Every route family, with the world's ids where a route needs one.
fn routes(w: &World) -> Vec<(Method, String)> {
    let (ws, pool, run, agent) = (&w.ws, &w.pool, &w.run, &w.agent);
    let plan = run.replacen("run-", "plan-", 1);
    let apply = run.replacen("run-", "apply-", 1);
    let paths = [
        "/api/v2/organizations".to_string(),
        "/api/v2/organizations/acme".into(),
        "/api/v2/organizations/acme/workspaces".into(),
        "/api/v2/organizations/acme/workspaces/w".into(),
        "/api/v2/organizations/acme/agent-pools".into(),
        "/api/v2/organizations/acme/authentication-token".into(),
        "/api/v2/organizations/acme/runs/queue".into(),
        "/api/v2/organizations/acme/jobs".into(),
        format!("/api/v2/workspaces/{ws}"),
        format!("/api/v2/workspaces/{ws}/actions/lock"),
        format!("/api/v2/workspaces/{ws}/actions/unlock"),
        format!("/api/v2/workspaces/{ws}/configuration-versions"),
        format!("/api/v2/workspaces/{ws}/runs"),
        format!("/api/v2/workspaces/{ws}/vars"),
        format!("/api/v2/workspaces/{ws}/vars/var-aaaaaaaaaaaaaaaa"),
        format!("/api/v2/workspaces/{ws}/state-versions"),
        format!("/api/v2/workspaces/{ws}/current-state-version"),
        format!("/api/v2/agent-pools/{pool}"),
        format!("/api/v2/agent-pools/{pool}/agents"),
        format!("/api/v2/agent-pools/{pool}/authentication-tokens"),
        "/api/v2/authentication-tokens/at-aaaaaaaaaaaaaaaa".into(),
        format!("/api/v2/agents/{agent}"),
        "/api/v2/configuration-versions/cv-aaaaaaaaaaaaaaaa".into(),
        "/api/v2/configuration-versions/cv-aaaaaaaaaaaaaaaa/upload".into(),
        "/api/v2/runs".into(),
        format!("/api/v2/runs/{run}"),
        format!("/api/v2/runs/{run}/actions/apply"),
        format!("/api/v2/runs/{run}/actions/discard"),
        format!("/api/v2/runs/{run}/actions/cancel"),
        format!("/api/v2/runs/{run}/actions/force-cancel"),
        format!("/api/v2/plans/{plan}"),
        format!("/api/v2/applies/{apply}"),
        "/api/v2/state-versions/sv-aaaaaaaaaaaaaaaa".into(),
        "/api/agent/register".into(),
        "/api/agent/status".into(),
        "/api/agent/jobs".into(),
        "/api/agent/jobs/job-aaaaaaaaaaaaaaaa/start".into(),
        "/api/agent/jobs/job-aaaaaaaaaaaaaaaa/signal".into(),
        "/api/agent/job/config".into(),
        "/api/agent/job/state".into(),
        "/api/agent/job/logs".into(),
        "/api/agent/job/finish".into(),
        "/api/agent/job/artifacts/plan".into(),
        "/_signed/1/abc/configuration-versions/cv-aaaaaaaaaaaaaaaa/upload".into(),
        "/healthz".into(),
        "/nowhere".into(),
    ];
    let mut out = Vec::new();
    for p in paths {
        for m in [Method::POST, Method::PATCH, Method::PUT, Method::DELETE] {
            // Deleting the organization would leave nothing to test.
            if !(m == Method::DELETE && p == "/api/v2/organizations/acme") {
                out.push((m, p.clone()));
            }
        }
    }
    out
}

/// One change to a JSON value, chosen by `pick`.
fn mutate(v: &mut Value, pick: &[u32]) {
    let Some((&first, rest)) = pick.split_first() else {
        return;
    };
    match v {
        Value::Object(map) if !map.is_empty() && first % 5 != 0 => {
            let keys: Vec<String> = map.keys().cloned().collect();
            let key = &keys[first as usize % keys.len()];
            if first % 7 == 1 {
                map.remove(key);
            } else if let Some(child) = map.get_mut(key) {
                mutate(child, rest);
            }
        }
        Value::Array(items) if !items.is_empty() && first % 5 != 0 => {
            let i = first as usize % items.len();
            mutate(&mut items[i], rest);
        }
        _ => {
            *v = match first % 9 {
                0 => Value::Null,
                1 => json!(true),
                2 => json!(-1),
                3 => json!(1e300),
                4 => json!(""),
                5 => json!("../../etc/passwd"),
                6 => json!([]),
                7 => json!({}),
                _ => json!("x".repeat(first as usize % 300)),
            }
        }
    }
}

/// A request body: a mutated seed, its text cut short, or random bytes.
fn body(seeds: &[Value], choice: u32, picks: &[Vec<u32>], cut: usize, noise: &[u8]) -> Vec<u8> {
    match choice % 6 {
        0 => noise.to_vec(),
        1 => {
            let text = seeds[choice as usize % seeds.len()]
                .to_string()
                .into_bytes();
            text[..cut.min(text.len())].to_vec()
        }
        _ => {
            let mut doc = seeds[choice as usize % seeds.len()].clone();
            for p in picks {
                mutate(&mut doc, p);
            }
            doc.to_string().into_bytes()
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    #[test]
    fn bad_input_gets_a_4xx_and_changes_nothing(
        requests in proptest::collection::vec(
            (any::<u32>(), any::<u32>(), any::<u32>(), proptest::collection::vec(proptest::collection::vec(any::<u32>(), 1..5), 1..4), 0usize..200, proptest::collection::vec(any::<u8>(), 0..64)),
            1..24,
        )
    ) {
        let rt = runtime();
        rt.block_on(async {
            let w = world().await;
            let seeds = seeds(&w);
            let routes = routes(&w);
            let mut before = snapshot(&w).await;
            for (route, token, choice, picks, cut, noise) in &requests {
                let (method, path) = &routes[*route as usize % routes.len()];
                // Mostly the site administrator, who may do anything: then
                // only the document decides.
                let (token, agent) = match token % 8 {
                    0..=4 => (Some(SITE), None),
                    5 => (Some(w.agent_token.as_str()), Some(w.agent.as_str())),
                    6 => (Some("job-aaaaaaaaaaaaaaaa.0000"), None),
                    _ => (None, None),
                };
                let body = body(&seeds, *choice, picks, *cut, noise);
                let (status, answer) = call(&w.app, method.clone(), path, token, body.clone(), agent).await;
                let shown = String::from_utf8_lossy(&answer).into_owned();
                prop_assert!(status < 500, "{method} {path} answered {status}: {shown}\nbody: {}", String::from_utf8_lossy(&body));
                if (400..500).contains(&status) && status != 413 {
                    let doc: Value = serde_json::from_slice(&answer).unwrap_or(Value::Null);
                    prop_assert!(doc["errors"][0]["status"].is_string(), "{method} {path} {status}: not a JSON:API error: {shown}");
                    let after = snapshot(&w).await;
                    prop_assert!(after == before, "{method} {path} answered {status} but changed the store\nbody: {}", String::from_utf8_lossy(&body));
                } else {
                    before = snapshot(&w).await;
                }
            }
            Ok(())
        })?;
    }
}
