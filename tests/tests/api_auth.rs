//! The authorization matrix against the real otfd, on every database: the
//! four kinds of bearer token each reaching outside their scope. Wrong or
//! revoked tokens get 401; a valid token outside its scope gets 404 on reads
//! (no existence leak) and 403 on writes; agent tokens only work on the
//! agent protocol, job tokens only on their own job's endpoints. Every
//! refused write is followed by a read proving it changed nothing.

mod support;

use reqwest::Method;
use serde_json::json;
use support::api::{state_version_body, Api, OrgFixture};

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime")
}

#[test]
fn authorization_matrix() {
    for db in support::databases() {
        let server = support::Server::start(&db, &["--concurrency", "0"]);
        runtime().block_on(matrix(&server));
        eprintln!("authorization matrix passed on {}", db.name());
    }
}

async fn matrix(server: &support::Server) {
    let api = Api::new(&server.url);
    let site = server.site_token.as_str();
    let a = OrgFixture::create(&api, site, "alpha").await;
    let b = OrgFixture::create(&api, site, "beta").await;
    // A running plan job in each organization, with its job token.
    let run_a = a.run(&api, site).await;
    let (job_a, job_token_a) = a.start_job(&api, &run_a).await;
    let run_b = b.run(&api, site).await;
    let (job_b, _job_token_b) = b.start_job(&api, &run_b).await;

    missing_wrong_and_malformed_tokens(&api).await;
    organization_token_against_another_organization(&api, site, &a, &b).await;
    agent_token_against_another_pool(&api, &a, &b, &job_b).await;
    another_token_of_the_same_pool(&api, &b, &job_b).await;
    writes_on_another_organizations_configuration(&api, &a, &b).await;
    agent_tokens_only_on_the_agent_protocol(&api, site, &a).await;
    job_token_against_other_state(&api, site, &a, &b, &job_token_a).await;
    api_tokens_on_the_agent_protocol(&api, site, &a, &job_a).await;
    revoked_tokens(&api, site, &a, &job_a, &job_token_a).await;
}

async fn missing_wrong_and_malformed_tokens(api: &Api) {
    for (token, what) in [
        (None, "no token"),
        (Some("wrong"), "a wrong token"),
        (Some("at-AAAAAAAAAAAAAAAA.secret"), "a made-up agent token"),
        (
            Some("ot-AAAAAAAAAAAAAAAA.secret"),
            "a made-up organization token",
        ),
        (Some("job-AAAAAAAAAAAAAAAA.secret"), "a made-up job token"),
    ] {
        for path in ["/api/v2/organizations", "/api/agent/jobs"] {
            api.send(
                Method::GET,
                path,
                token,
                &[("otf-agent-id", "agent-AAAAAAAAAAAAAAAA")],
                support::api::Body::None,
            )
            .await
            .expect(401, &format!("{what} on {path}"));
        }
    }
    // A header that is not a bearer token.
    api.send(
        Method::GET,
        "/api/v2/organizations",
        None,
        &[("authorization", "Basic dXNlcjpwYXNz")],
        support::api::Body::None,
    )
    .await
    .expect(401, "basic auth");
}

async fn organization_token_against_another_organization(
    api: &Api,
    site: &str,
    a: &OrgFixture,
    b: &OrgFixture,
) {
    let tok = a.org_token.as_str();
    let var = api
        .post(
            site,
            &format!("/api/v2/workspaces/{}/vars", b.ws),
            json!({"data": {"type": "vars", "attributes": {"key": "k", "value": "v", "category": "env"}}}),
        )
        .await;
    var.expect(201, "beta's variable");
    let var = var.id();
    // Its own organization works.
    api.get(tok, "/api/v2/organizations/alpha")
        .await
        .expect(200, "own organization");
    api.get(tok, &format!("/api/v2/workspaces/{}", a.ws))
        .await
        .expect(200, "own workspace");
    let listed = api.get(tok, "/api/v2/organizations").await;
    listed.expect(200, "organization list");
    let names: Vec<&str> = listed
        .data()
        .as_array()
        .expect("a list")
        .iter()
        .filter_map(|o| o["id"].as_str())
        .collect();
    assert_eq!(
        names,
        ["alpha"],
        "an organization token lists only its organization"
    );

    // Reads of the other organization: 404.
    for path in [
        "/api/v2/organizations/beta".to_string(),
        "/api/v2/organizations/beta/entitlement-set".to_string(),
        "/api/v2/organizations/beta/workspaces".to_string(),
        "/api/v2/organizations/beta/workspaces/ws".to_string(),
        "/api/v2/organizations/beta/agent-pools".to_string(),
        format!("/api/v2/workspaces/{}", b.ws),
        format!("/api/v2/workspaces/{}/vars", b.ws),
        format!("/api/v2/workspaces/{}/runs", b.ws),
        format!("/api/v2/workspaces/{}/current-state-version", b.ws2),
        format!("/api/v2/agent-pools/{}", b.pool),
        format!("/api/v2/agent-pools/{}/agents", b.pool),
        format!("/api/v2/agent-pools/{}/authentication-tokens", b.pool),
        format!("/api/v2/authentication-tokens/{}", b.agent_token_id),
        format!("/api/v2/agents/{}", b.agent),
    ] {
        api.get(tok, &path)
            .await
            .expect(404, &format!("org token A reads {path}"));
    }

    // Writes to the other organization: 403, and nothing changes.
    let writes = [
        (
            Method::PATCH,
            format!("/api/v2/workspaces/{}/vars/{var}", b.ws),
            json!({"data": {"type": "vars", "attributes": {"value": "stolen"}}}),
        ),
        (
            Method::POST,
            "/api/v2/organizations/beta/workspaces".to_string(),
            json!({"data": {"type": "workspaces", "attributes": {"name": "intruder"}}}),
        ),
        (
            Method::PATCH,
            format!("/api/v2/workspaces/{}", b.ws),
            json!({"data": {"type": "workspaces", "attributes": {"auto-apply": true}}}),
        ),
        (
            Method::PATCH,
            "/api/v2/organizations/beta/workspaces/ws".to_string(),
            json!({"data": {"type": "workspaces", "attributes": {"auto-apply": true}}}),
        ),
        (
            Method::POST,
            format!("/api/v2/workspaces/{}/actions/lock", b.ws2),
            json!({}),
        ),
        (
            Method::POST,
            format!("/api/v2/workspaces/{}/vars", b.ws),
            json!({"data": {"type": "vars", "attributes": {"key": "k", "value": "v", "category": "env"}}}),
        ),
        (
            Method::POST,
            format!("/api/v2/workspaces/{}/state-versions", b.ws2),
            state_version_body(5, "lineage"),
        ),
        (
            Method::POST,
            format!("/api/v2/agent-pools/{}/authentication-tokens", b.pool),
            json!({"data": {"type": "authentication-tokens", "attributes": {"description": "steal"}}}),
        ),
        (
            Method::PATCH,
            format!("/api/v2/agent-pools/{}", b.pool),
            json!({"data": {"type": "agent-pools", "attributes": {"name": "mine"}}}),
        ),
        (
            Method::POST,
            "/api/v2/organizations/beta/agent-pools".to_string(),
            json!({"data": {"type": "agent-pools", "attributes": {"name": "mine"}}}),
        ),
        (
            Method::POST,
            "/api/v2/organizations/beta/authentication-token".to_string(),
            json!({"data": {"type": "authentication-token", "attributes": {}}}),
        ),
        (
            Method::POST,
            "/api/v2/runs".to_string(),
            json!({"data": {"type": "runs", "relationships": {"workspace": {"data": {"type": "workspaces", "id": b.ws}}}}}),
        ),
        (
            Method::POST,
            format!("/api/v2/runs/{}/actions/cancel", "run-AAAAAAAAAAAAAAAA"),
            json!({}),
        ),
        (
            Method::POST,
            "/api/v2/organizations".to_string(),
            json!({"data": {"type": "organizations", "attributes": {"name": "gamma", "email": "x@y.z"}}}),
        ),
    ];
    let mut wrong = Vec::new();
    for (method, path, body) in writes {
        let answer = api
            .send(
                method.clone(),
                &path,
                Some(tok),
                &[],
                support::api::Body::Json(body),
            )
            .await;
        // A write naming a run id that does not exist is a 404 for anyone.
        let want = if path.contains("run-AAAA") { 404 } else { 403 };
        if answer.status.as_u16() != want {
            wrong.push(format!(
                "{method} {path}: {} {}",
                answer.status, answer.body
            ));
        } else {
            answer.expect(want, &format!("org token A: {method} {path}"));
        }
    }
    for (method, path) in [
        (Method::DELETE, format!("/api/v2/workspaces/{}", b.ws2)),
        (
            Method::DELETE,
            "/api/v2/organizations/beta/workspaces/ws2".to_string(),
        ),
        (Method::DELETE, format!("/api/v2/agent-pools/{}", b.pool)),
        (
            Method::DELETE,
            format!("/api/v2/authentication-tokens/{}", b.agent_token_id),
        ),
        (Method::DELETE, format!("/api/v2/agents/{}", b.agent)),
        (Method::DELETE, "/api/v2/organizations/beta".to_string()),
    ] {
        let answer = api
            .send(
                method.clone(),
                &path,
                Some(tok),
                &[],
                support::api::Body::None,
            )
            .await;
        if answer.status.as_u16() != 403 {
            wrong.push(format!(
                "{method} {path}: {} {}",
                answer.status, answer.body
            ));
        } else {
            answer.expect(403, &format!("org token A: {method} {path}"));
        }
    }
    assert!(
        wrong.is_empty(),
        "writes by organization A's token to organization B must be 403:\n{}",
        wrong.join("\n")
    );
    // Nothing of beta changed.
    let ws = api.get(site, &format!("/api/v2/workspaces/{}", b.ws)).await;
    ws.expect(200, "beta's workspace is still there");
    assert_eq!(
        ws.attr("auto-apply"),
        &json!(false),
        "beta's workspace is unchanged"
    );
    let ws2 = api
        .get(site, &format!("/api/v2/workspaces/{}", b.ws2))
        .await;
    ws2.expect(200, "beta's ws2 is still there");
    assert_eq!(
        ws2.attr("locked"),
        &json!(false),
        "beta's ws2 is not locked"
    );
    let names: Vec<String> = api
        .get(site, "/api/v2/organizations/beta/workspaces")
        .await
        .data()
        .as_array()
        .expect("a list")
        .iter()
        .map(|w| {
            w["attributes"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_string()
        })
        .collect();
    assert_eq!(names.len(), 2, "no workspace was added to beta: {names:?}");
    let vars = api
        .get(site, &format!("/api/v2/workspaces/{}/vars", b.ws))
        .await;
    let vars = vars.data().as_array().expect("a list");
    assert_eq!(
        vars.len(),
        1,
        "no variable was added to or removed from beta"
    );
    assert_eq!(
        vars[0]["attributes"]["value"],
        json!("v"),
        "beta's variable is unchanged"
    );
    let sv = api
        .get(
            site,
            &format!("/api/v2/workspaces/{}/current-state-version", b.ws2),
        )
        .await;
    assert_eq!(sv.attr("serial"), &json!(1), "beta's state is unchanged");
    let tokens = api
        .get(
            site,
            &format!("/api/v2/agent-pools/{}/authentication-tokens", b.pool),
        )
        .await;
    assert_eq!(
        tokens.data().as_array().map(Vec::len),
        Some(1),
        "no agent token was added to beta"
    );
    let pool = api
        .get(site, &format!("/api/v2/agent-pools/{}", b.pool))
        .await;
    assert_eq!(
        pool.attr("name"),
        &json!("pool"),
        "beta's pool keeps its name"
    );
    api.get(site, &format!("/api/v2/agents/{}", b.agent))
        .await
        .expect(200, "beta's agent is still there");
    api.get(site, "/api/v2/organizations/gamma")
        .await
        .expect(404, "no organization gamma was created");
    let runs = api
        .get(site, &format!("/api/v2/workspaces/{}/runs", b.ws))
        .await;
    assert_eq!(
        runs.data().as_array().map(Vec::len),
        Some(1),
        "no run was added to beta"
    );
}

async fn agent_token_against_another_pool(api: &Api, a: &OrgFixture, b: &OrgFixture, job_b: &str) {
    let tok = a.agent_token.as_str();
    // Pool A's agent token, as pool A's agent, against pool B's job.
    api.agent(
        tok,
        &a.agent,
        Method::POST,
        &format!("/api/agent/jobs/{job_b}/start"),
        None,
    )
    .await
    .expect(404, "agent A starts pool B's job");
    api.agent(
        tok,
        &a.agent,
        Method::GET,
        &format!("/api/agent/jobs/{job_b}/signal"),
        None,
    )
    .await
    .expect(404, "agent A awaits pool B's job's signal");
    // Pool A's token, impersonating pool B's agent.
    api.agent(tok, &b.agent, Method::GET, "/api/agent/jobs", None)
        .await
        .expect(404, "agent token A long-polls as agent B");
    api.agent(
        tok,
        &b.agent,
        Method::POST,
        "/api/agent/status",
        Some(json!({"status": "exited"})),
    )
    .await
    .expect(404, "agent token A pings as agent B");
    api.agent(
        tok,
        &b.agent,
        Method::POST,
        &format!("/api/agent/jobs/{job_b}/start"),
        None,
    )
    .await
    .expect(404, "agent token A starts pool B's job as agent B");
    // Nothing changed: B's agent is idle and its job is still running.
    let agent = api
        .get(&b.org_token, &format!("/api/v2/agents/{}", b.agent))
        .await;
    assert_eq!(agent.attr("status"), &json!("idle"), "agent B is untouched");
}

/// A second agent token of pool B does not act as the agent that
/// registered with the first: it cannot await its job's signals or start
/// jobs as it.
async fn another_token_of_the_same_pool(api: &Api, b: &OrgFixture, job_b: &str) {
    let made = api
        .post(
            &b.org_token,
            &format!("/api/v2/agent-pools/{}/authentication-tokens", b.pool),
            json!({"data": {"type": "authentication-tokens", "attributes": {"description": "second"}}}),
        )
        .await;
    made.expect(201, "a second token of pool B");
    let second = made.attr("token").as_str().unwrap_or_default().to_string();
    api.agent(
        &second,
        &b.agent,
        Method::GET,
        &format!("/api/agent/jobs/{job_b}/signal"),
        None,
    )
    .await
    .expect(
        404,
        "pool B's second token awaits the signals of the first token's agent",
    );
    api.agent(
        &second,
        &b.agent,
        Method::POST,
        &format!("/api/agent/jobs/{job_b}/start"),
        None,
    )
    .await
    .expect(
        404,
        "pool B's second token starts a job as the first token's agent",
    );
}

/// Writes outside the token's organization are 403, configuration
/// versions included; reads stay 404.
async fn writes_on_another_organizations_configuration(api: &Api, a: &OrgFixture, b: &OrgFixture) {
    let cv = api
        .post(
            &b.org_token,
            &format!("/api/v2/workspaces/{}/configuration-versions", b.ws),
            json!({"data": {"type": "configuration-versions", "attributes": {"auto-queue-runs": false}}}),
        )
        .await;
    cv.expect(201, "beta's configuration version");
    let id = cv.id();
    api.get(
        &a.org_token,
        &format!("/api/v2/configuration-versions/{id}"),
    )
    .await
    .expect(404, "alpha reads beta's configuration version");
    api.send(
        Method::PUT,
        &format!("/api/v2/configuration-versions/{id}/upload"),
        Some(&a.org_token),
        &[],
        support::api::Body::Raw(
            support::api::tarball(&[("main.tf", "")]),
            "application/octet-stream",
        ),
    )
    .await
    .expect(403, "alpha uploads to beta's configuration version");
}

async fn agent_tokens_only_on_the_agent_protocol(api: &Api, site: &str, a: &OrgFixture) {
    let tok = a.agent_token.as_str();
    for path in [
        "/api/v2/organizations/alpha".to_string(),
        format!("/api/v2/workspaces/{}", a.ws),
        format!("/api/v2/agent-pools/{}", a.pool),
        format!("/api/v2/agent-pools/{}/agents", a.pool),
        format!("/api/v2/workspaces/{}/current-state-version", a.ws2),
    ] {
        api.get(tok, &path)
            .await
            .expect(404, &format!("agent token reads {path}"));
    }
    api.post(
        tok,
        &format!("/api/v2/agent-pools/{}/authentication-tokens", a.pool),
        json!({"data": {"type": "authentication-tokens", "attributes": {"description": "more"}}}),
    )
    .await
    .expect(403, "an agent token mints agent tokens");
    api.post(
        tok,
        &format!("/api/v2/workspaces/{}/actions/lock", a.ws2),
        json!({}),
    )
    .await
    .expect(403, "an agent token locks a workspace");
    let tokens = api
        .get(
            site,
            &format!("/api/v2/agent-pools/{}/authentication-tokens", a.pool),
        )
        .await;
    assert_eq!(
        tokens.data().as_array().map(Vec::len),
        Some(1),
        "no token was minted"
    );
    let ws2 = api
        .get(site, &format!("/api/v2/workspaces/{}", a.ws2))
        .await;
    assert_eq!(ws2.attr("locked"), &json!(false), "ws2 is not locked");
}

async fn job_token_against_other_state(
    api: &Api,
    site: &str,
    a: &OrgFixture,
    b: &OrgFixture,
    job_token: &str,
) {
    // The TFE API is closed to job tokens, for any workspace's state.
    for ws in [&a.ws, &a.ws2, &b.ws2] {
        for path in [
            format!("/api/v2/workspaces/{ws}/current-state-version"),
            format!("/api/v2/workspaces/{ws}/current-state-version-outputs"),
            format!("/api/v2/workspaces/{ws}/vars"),
        ] {
            api.get(job_token, &path)
                .await
                .expect(404, &format!("job token reads {path}"));
        }
        api.post(
            job_token,
            &format!("/api/v2/workspaces/{ws}/state-versions"),
            state_version_body(7, "lineage"),
        )
        .await
        .expect(403, &format!("job token writes the state of {ws}"));
    }
    // Its own job endpoints work; a plan job may not write state.
    api.get(job_token, "/api/agent/job/variables")
        .await
        .expect(200, "own variables");
    api.get(job_token, "/api/agent/job/state")
        .await
        .expect(204, "own workspace has no state yet");
    let upload = json!({"serial": 1, "lineage": "l", "state": "e30="});
    api.send(
        Method::POST,
        "/api/agent/job/state",
        Some(job_token),
        &[],
        support::api::Body::Raw(upload.to_string().into_bytes(), "application/json"),
    )
    .await
    .expect(403, "a plan job uploads state");
    for ws in [&a.ws2, &b.ws2] {
        let sv = api
            .get(
                site,
                &format!("/api/v2/workspaces/{ws}/current-state-version"),
            )
            .await;
        assert_eq!(
            sv.attr("serial"),
            &json!(1),
            "the state of {ws} is unchanged"
        );
    }
    api.get(
        site,
        &format!("/api/v2/workspaces/{}/current-state-version", a.ws),
    )
    .await
    .expect(404, "the plan job wrote no state");
}

async fn api_tokens_on_the_agent_protocol(api: &Api, site: &str, a: &OrgFixture, job_a: &str) {
    // Site and organization tokens are not agent tokens.
    for (tok, what) in [(site, "site token"), (a.org_token.as_str(), "org token")] {
        let register = json!({"name": "x", "version": "e2e", "concurrency": 1});
        api.agent(
            tok,
            &a.agent,
            Method::POST,
            "/api/agent/register",
            Some(register),
        )
        .await
        .expect(403, &format!("{what} registers an agent"));
        api.agent(
            tok,
            &a.agent,
            Method::POST,
            &format!("/api/agent/jobs/{job_a}/start"),
            None,
        )
        .await
        .expect(403, &format!("{what} starts a job"));
        api.get(tok, "/api/agent/job/config")
            .await
            .expect(403, &format!("{what} on a job endpoint"));
    }
    // Agent tokens are not job tokens.
    api.get(&a.agent_token, "/api/agent/job/config")
        .await
        .expect(403, "agent token on a job endpoint");
}

async fn revoked_tokens(api: &Api, site: &str, a: &OrgFixture, job_a: &str, job_token: &str) {
    // A job token dies with its attempt.
    api.post(
        job_token,
        "/api/agent/job/finish",
        json!({"outcome": "errored", "message": "test"}),
    )
    .await;
    let finish = api
        .send(
            Method::POST,
            "/api/agent/job/finish",
            Some(job_token),
            &[],
            support::api::Body::Raw(
                json!({"outcome": "finished"}).to_string().into_bytes(),
                "application/json",
            ),
        )
        .await;
    finish.expect(401, &format!("the job token of finished {job_a}"));
    api.get(job_token, "/api/agent/job/variables")
        .await
        .expect(401, "a finished job's token reads");

    // A deleted agent token: refused at once, and its agent is shut out.
    api.delete(
        site,
        &format!("/api/v2/authentication-tokens/{}", a.agent_token_id),
    )
    .await
    .expect(204, "delete agent token");
    api.agent(
        &a.agent_token,
        &a.agent,
        Method::GET,
        "/api/agent/jobs",
        None,
    )
    .await
    .expect(401, "a revoked agent token long-polls");
    api.agent(
        &a.agent_token,
        &a.agent,
        Method::POST,
        "/api/agent/status",
        Some(json!({"status": "idle"})),
    )
    .await
    .expect(401, "a revoked agent token pings");
    support::api::register_raw(api, &a.agent_token)
        .await
        .expect(401, "a revoked agent token registers");
    let agent = api.get(site, &format!("/api/v2/agents/{}", a.agent)).await;
    assert_eq!(
        agent.attr("status"),
        &json!("exited"),
        "the revoked token's agent is exited"
    );

    // A deleted organization token.
    api.get(&a.org_token, "/api/v2/organizations/alpha")
        .await
        .expect(200, "org token before revocation");
    api.delete(site, "/api/v2/organizations/alpha/authentication-token")
        .await
        .expect(204, "delete organization token");
    api.get(&a.org_token, "/api/v2/organizations/alpha")
        .await
        .expect(401, "a revoked org token");
}
