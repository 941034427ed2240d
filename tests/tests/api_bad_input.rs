//! Bad input against the real otfd, on every database: malformed JSON,
//! wrong JSON:API types, attributes of the wrong JSON type, oversized bodies
//! (limits set small by flags), invalid names and bad tarballs. Each gets a
//! JSON:API error document with the right status (as a string), and a
//! follow-up read shows that nothing changed.

mod support;

use reqwest::Method;
use serde_json::{json, Value};
use support::api::{state_version_body, tarball, Answer, Api, Body, OrgFixture};

const MAX_JSON: usize = 4096;
const MAX_UPLOAD: usize = 16 * 1024;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime")
}

#[test]
fn bad_input_is_refused_and_changes_nothing() {
    for db in support::databases() {
        let server = support::Server::start(
            &db,
            &[
                "--concurrency",
                "0",
                "--max-json-body",
                &MAX_JSON.to_string(),
                "--max-upload",
                &MAX_UPLOAD.to_string(),
            ],
        );
        runtime().block_on(bad_input(&server));
        eprintln!("bad input refused on {}", db.name());
    }
}

async fn raw(api: &Api, token: &str, method: Method, path: &str, body: &[u8]) -> Answer {
    api.send(
        method,
        path,
        Some(token),
        &[],
        Body::Raw(body.to_vec(), "application/vnd.api+json"),
    )
    .await
}

fn ws_body(attrs: Value) -> Value {
    json!({"data": {"type": "workspaces", "attributes": attrs}})
}

async fn bad_input(server: &support::Server) {
    let api = Api::new(&server.url);
    let site = server.site_token.as_str();
    let org = OrgFixture::create(&api, site, "acme").await;
    let ws_path = format!("/api/v2/workspaces/{}", org.ws);
    let before = api.get(site, &ws_path).await;
    before.expect(200, "read workspace");
    let workspaces = "/api/v2/organizations/acme/workspaces";
    let count = |a: Answer| a.data().as_array().map(Vec::len).unwrap_or(0);
    let n_ws = count(api.get(site, workspaces).await);

    // Malformed JSON: 400.
    for (method, path) in [
        (Method::POST, workspaces.to_string()),
        (Method::PATCH, ws_path.clone()),
        (Method::POST, "/api/v2/organizations".to_string()),
        (
            Method::POST,
            format!("/api/v2/agent-pools/{}/authentication-tokens", org.pool),
        ),
        (Method::POST, format!("{ws_path}/vars")),
        (Method::POST, format!("{ws_path}/actions/lock")),
        (Method::POST, "/api/v2/runs".to_string()),
    ] {
        raw(
            &api,
            site,
            method.clone(),
            &path,
            br#"{"data": {"type": "workspaces", "#,
        )
        .await
        .expect(400, &format!("malformed JSON to {method} {path}"));
    }

    // Wrong JSON:API type: 409; no document at all: 422.
    api.post(
        site,
        workspaces,
        json!({"data": {"type": "runs", "attributes": {"name": "x"}}}),
    )
    .await
    .expect(409, "a run document to the workspaces endpoint");
    api.patch(
        site,
        &format!("/api/v2/agent-pools/{}", org.pool),
        json!({"data": {"type": "workspaces", "attributes": {"name": "x"}}}),
    )
    .await
    .expect(409, "a workspace document to a pool");
    api.post(
        site,
        &format!("{ws_path}/configuration-versions"),
        json!({"data": {"type": "runs", "attributes": {}}}),
    )
    .await
    .expect(409, "a run document to configuration versions");
    api.post(site, workspaces, json!({"name": "x"}))
        .await
        .expect(422, "plain JSON where a JSON:API document is needed");
    api.post(site, workspaces, json!([1, 2]))
        .await
        .expect(422, "a JSON array");

    // Attributes of the wrong JSON type: 422.
    for (what, attrs) in [
        (
            "auto-apply as a string",
            json!({"name": "x1", "auto-apply": "yes"}),
        ),
        ("name as a number", json!({"name": 5})),
        (
            "terraform-version as a bool",
            json!({"name": "x2", "terraform-version": true}),
        ),
        (
            "execution-mode as a list",
            json!({"name": "x3", "execution-mode": ["agent"]}),
        ),
    ] {
        api.post(site, workspaces, ws_body(attrs))
            .await
            .expect(422, what);
    }
    api.patch(site, &ws_path, ws_body(json!({"auto-apply": 1})))
        .await
        .expect(422, "auto-apply as a number");
    api.patch(
        site,
        &format!("/api/v2/agent-pools/{}", org.pool),
        json!({"data": {"type": "agent-pools", "attributes": {"organization-scoped": "false"}}}),
    )
    .await
    .expect(422, "organization-scoped as a string");
    api.patch(
        site,
        &format!("/api/v2/agent-pools/{}", org.pool),
        json!({"data": {"type": "agent-pools", "attributes": {},
                              "relationships": {"allowed-workspaces": {"data": "ws-x"}}}}),
    )
    .await
    .expect(422, "allowed-workspaces that is not a list");
    api.post(site, &format!("{ws_path}/vars"),
             json!({"data": {"type": "vars", "attributes": {"key": "k", "value": "v", "category": "env", "sensitive": "true"}}}))
        .await
        .expect(422, "sensitive as a string");
    api.post(site, &format!("{ws_path}/vars"),
             json!({"data": {"type": "vars", "attributes": {"key": "k", "value": "v", "category": "nope"}}}))
        .await
        .expect(422, "an unknown variable category");
    let mut sv = state_version_body(2, "lineage");
    sv["data"]["attributes"]["serial"] = json!("2");
    api.post(
        site,
        &format!("/api/v2/workspaces/{}/state-versions", org.ws2),
        sv,
    )
    .await
    .expect(422, "serial as a string");
    let mut sv = state_version_body(2, "lineage");
    sv["data"]["attributes"]["md5"] = json!("00000000000000000000000000000000");
    api.post(
        site,
        &format!("/api/v2/workspaces/{}/state-versions", org.ws2),
        sv,
    )
    .await
    .expect(422, "an md5 that does not match");
    let mut sv = state_version_body(2, "lineage");
    sv["data"]["attributes"]["state"] = json!("%%% not base64 %%%");
    api.post(
        site,
        &format!("/api/v2/workspaces/{}/state-versions", org.ws2),
        sv,
    )
    .await
    .expect(422, "state that is not base64");
    api.post(
        site,
        &format!("/api/v2/workspaces/{}/state-versions", org.ws2),
        state_version_body(0, "lineage"),
    )
    .await
    .expect(409, "a serial lower than the current state's");
    api.post(site, "/api/v2/runs",
             json!({"data": {"type": "runs", "attributes": {"is-destroy": "yes"},
                             "relationships": {"workspace": {"data": {"type": "workspaces", "id": org.ws}}}}}))
        .await
        .expect(422, "is-destroy as a string");
    api.post(site, "/api/v2/runs",
             json!({"data": {"type": "runs", "attributes": {"target-addrs": [1]},
                             "relationships": {"workspace": {"data": {"type": "workspaces", "id": org.ws}}}}}))
        .await
        .expect(422, "target-addrs with a number");

    // Invalid names and values: 422.
    for (what, attrs) in [
        ("a name with a slash", json!({"name": "a/b"})),
        ("a name with spaces", json!({"name": "a b"})),
        ("an empty name", json!({"name": ""})),
        ("a name of dots", json!({"name": ".."})),
        ("a missing name", json!({"auto-apply": true})),
        (
            "an unknown terraform version",
            json!({"name": "x4", "terraform-version": "banana"}),
        ),
        (
            "an unknown execution mode",
            json!({"name": "x5", "execution-mode": "bogus"}),
        ),
        (
            "agent mode without a pool",
            json!({"name": "x6", "execution-mode": "agent"}),
        ),
        (
            "a pool id that is not one",
            json!({"name": "x7", "execution-mode": "agent", "agent-pool-id": "nope"}),
        ),
        (
            "a working directory leaving the root",
            json!({"name": "x8", "working-directory": "../up"}),
        ),
    ] {
        api.post(site, workspaces, ws_body(attrs))
            .await
            .expect(422, what);
    }
    for name in ["bad name", "bad/name", "", "a\u{0}b"] {
        api.post(site, "/api/v2/organizations",
                 json!({"data": {"type": "organizations", "attributes": {"name": name, "email": "x@y.z"}}}))
            .await
            .expect(422, &format!("organization name {name:?}"));
    }
    api.post(
        site,
        &format!("/api/v2/agent-pools/{}/authentication-tokens", org.pool),
        json!({"data": {"type": "authentication-tokens", "attributes": {"description": "  "}}}),
    )
    .await
    .expect(422, "an agent token without a description");
    api.patch(site, &ws_path, ws_body(json!({"name": "bad name"})))
        .await
        .expect(422, "renaming to an invalid name");
    api.post(site, &format!("{ws_path}/vars"),
             json!({"data": {"type": "vars", "attributes": {"key": "not a var", "value": "v", "category": "terraform"}}}))
        .await
        .expect(422, "an invalid variable key");

    // Unknown attributes are ignored (pytfe sends many): still accepted.
    api.post(
        site,
        workspaces,
        ws_body(json!({
        "name": "tolerant", "type": "workspaces", "vcs-repo": {}, "setting-overwrites": {},
        "no-such-attribute": [1, {"x": null}]})),
    )
    .await
    .expect(201, "unknown attributes are ignored");
    api.delete(site, "/api/v2/organizations/acme/workspaces/tolerant")
        .await
        .expect(204, "delete the tolerant workspace");

    // Oversized JSON bodies: 413.
    let big = ws_body(json!({"name": "big", "description": "x".repeat(MAX_JSON)}));
    api.post(site, workspaces, big)
        .await
        .expect(413, "a JSON body over the limit");
    let big = ws_body(json!({"name": "x".repeat(MAX_JSON)}));
    api.patch(site, &ws_path, big)
        .await
        .expect(413, "a PATCH over the limit");

    // Bad tarballs: refused, and the configuration version stays pending.
    let cv = api
        .post(site, &format!("{ws_path}/configuration-versions"),
              json!({"data": {"type": "configuration-versions", "attributes": {"auto-queue-runs": false}}}))
        .await;
    cv.expect(201, "create configuration version");
    let upload = cv
        .attr("upload-url")
        .as_str()
        .expect("upload-url")
        .to_string();
    let cv_path = format!("/api/v2/configuration-versions/{}", cv.id());
    let put = |body: Vec<u8>| {
        let api = api.clone();
        let upload = upload.clone();
        async move {
            api.send(
                Method::PUT,
                &upload,
                None,
                &[],
                Body::Raw(body, "application/octet-stream"),
            )
            .await
        }
    };
    put(b"this is not a tarball".to_vec())
        .await
        .expect(422, "not a tarball");
    put(tarball(&[("main.tf", "\n")])[..20].to_vec())
        .await
        .expect(422, "a truncated tarball");
    put(evil_tarball("../escape.tf"))
        .await
        .expect(422, "a tarball with a `..` path");
    put(evil_tarball("/etc/passwd"))
        .await
        .expect(422, "a tarball with an absolute path");
    put(symlink_tarball())
        .await
        .expect(422, "a tarball with a link leaving the directory");
    put(vec![0u8; MAX_UPLOAD + 1])
        .await
        .expect(413, "an upload over the limit");
    let read = api.get(site, &cv_path).await;
    assert_eq!(
        read.attr("status"),
        &json!("pending"),
        "a refused upload leaves the configuration version pending"
    );
    api.post(site, "/api/v2/runs",
             json!({"data": {"type": "runs", "relationships": {
                 "workspace": {"data": {"type": "workspaces", "id": org.ws}},
                 "configuration-version": {"data": {"type": "configuration-versions", "id": cv.id()}}}}}))
        .await
        .expect(422, "a run of a configuration that was never uploaded");
    put(tarball(&[("main.tf", "\n")]))
        .await
        .expect(200, "a good tarball after the bad ones");
    let read = api.get(site, &cv_path).await;
    assert_eq!(
        read.attr("status"),
        &json!("uploaded"),
        "then it is uploaded"
    );
    put(tarball(&[("main.tf", "\n")]))
        .await
        .expect(422, "a second upload to the same version");

    // Bad input on the agent protocol: JSON error documents too.
    let agent = |method: Method, path: &str, body: &[u8]| {
        let api = api.clone();
        let (tok, id, path, body) = (
            org.agent_token.clone(),
            org.agent.clone(),
            path.to_string(),
            body.to_vec(),
        );
        async move {
            api.send(
                method,
                &path,
                Some(&tok),
                &[("otf-agent-id", &id)],
                Body::Raw(body, "application/json"),
            )
            .await
        }
    };
    agent(Method::POST, "/api/agent/register", b"{nope")
        .await
        .expect(422, "malformed registration");
    agent(Method::POST, "/api/agent/register", br#"{"name": 1}"#)
        .await
        .expect(422, "registration with a wrong type");
    agent(
        Method::POST,
        "/api/agent/status",
        br#"{"status": "dancing"}"#,
    )
    .await
    .expect(422, "an unknown agent status");
    api.send(
        Method::GET,
        "/api/agent/jobs",
        Some(&org.agent_token),
        &[],
        Body::None,
    )
    .await
    .expect(400, "a long-poll without the agent id header");

    // Unknown ids and paths: 404 documents.
    api.get(site, "/api/v2/workspaces/nonsense")
        .await
        .expect(404, "a malformed workspace id");
    api.get(site, "/api/v2/workspaces/ws-AAAAAAAAAAAAAAAA")
        .await
        .expect(404, "an unknown workspace");
    api.get(site, "/api/v2/no/such/endpoint")
        .await
        .expect(404, "an unknown endpoint");
    api.send(Method::PUT, &ws_path, Some(site), &[], Body::None)
        .await
        .expect(405, "a wrong method");
    api.get(site, "/api/v2/organizations?page%5Bnumber%5D=abc")
        .await
        .expect(422, "a page number that is not a number");

    // Nothing changed.
    let after = api.get(site, &ws_path).await;
    after.expect(200, "read workspace again");
    for key in [
        "name",
        "auto-apply",
        "execution-mode",
        "agent-pool-id",
        "terraform-version",
        "working-directory",
        "locked",
    ] {
        assert_eq!(
            after.attr(key),
            before.attr(key),
            "workspace attribute {key} changed"
        );
    }
    assert_eq!(
        count(api.get(site, workspaces).await),
        n_ws,
        "no workspace was created"
    );
    let orgs = api.get(site, "/api/v2/organizations").await;
    assert_eq!(
        orgs.data().as_array().map(Vec::len),
        Some(1),
        "no organization was created"
    );
    assert_eq!(
        count(api.get(site, &format!("{ws_path}/vars")).await),
        0,
        "no variable was created"
    );
    let pool = api
        .get(site, &format!("/api/v2/agent-pools/{}", org.pool))
        .await;
    assert_eq!(
        pool.attr("organization-scoped"),
        &json!(true),
        "the pool is unchanged"
    );
    let tokens = api
        .get(
            site,
            &format!("/api/v2/agent-pools/{}/authentication-tokens", org.pool),
        )
        .await;
    assert_eq!(count(tokens), 1, "no agent token was created");
    let sv = api
        .get(
            site,
            &format!("/api/v2/workspaces/{}/current-state-version", org.ws2),
        )
        .await;
    assert_eq!(sv.attr("serial"), &json!(1), "the state is unchanged");
    assert_eq!(
        count(api.get(site, &format!("{ws_path}/runs")).await),
        0,
        "no run was created"
    );
    let agent_read = api
        .get(site, &format!("/api/v2/agents/{}", org.agent))
        .await;
    assert_eq!(
        agent_read.attr("status"),
        &json!("idle"),
        "the agent is unchanged"
    );
}

/// A gzipped tarball with one member at `path`, written raw so that the
/// builder's own path checks do not stop it.
fn evil_tarball(path: &str) -> Vec<u8> {
    let mut header = tar::Header::new_gnu();
    let data = b"x";
    header.set_size(data.len() as u64);
    header.set_mode(0o644);
    let name = &mut header.as_old_mut().name;
    name[..path.len()].copy_from_slice(path.as_bytes());
    header.set_cksum();
    let mut builder = tar::Builder::new(flate2::write::GzEncoder::new(
        Vec::new(),
        flate2::Compression::fast(),
    ));
    builder.append(&header, &data[..]).expect("append");
    builder
        .into_inner()
        .and_then(|gz| gz.finish())
        .expect("finish")
}

/// A gzipped tarball with a symlink pointing out of the directory.
fn symlink_tarball() -> Vec<u8> {
    let mut header = tar::Header::new_gnu();
    header.set_entry_type(tar::EntryType::Symlink);
    header.set_size(0);
    header.set_mode(0o777);
    let mut builder = tar::Builder::new(flate2::write::GzEncoder::new(
        Vec::new(),
        flate2::Compression::fast(),
    ));
    builder
        .append_link(&mut header, "link", "../../etc/passwd")
        .expect("append link");
    builder
        .into_inner()
        .and_then(|gz| gz.finish())
        .expect("finish")
}
