#!/usr/bin/env python3
"""The administrator's and client's walkthrough, driven by HashiCorp's pytfe
SDK (1.5.0) against a running otfd, unchanged: organizations, entitlements,
agent pools (organization-scoped, then restricted to granted workspaces),
workspaces in agent mode, agent tokens, agents, configuration versions, runs
and their actions, plans and applies with logs and the JSON plan, variables,
state versions and outputs, workspace locks, organization tokens, deletes.

The script plays the pool agent itself on otfd's agent protocol (plain httpx
requests: register, long-poll, start, logs, artifacts, state, finish), so
that runs move through every status without terraform.

Environment: OTF_URL (http://127.0.0.1:PORT), OTF_TOKEN (the site token),
optional OTF_ORG (organization name to create, default "acme").
Exit status 0 when every check holds; otherwise 1 with the failed check.
Run by tests/tests/pytfe.rs with the virtual environment of scripts/test.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import sys
import tarfile
import time
import traceback

import httpx
from pytfe import TFEClient, TFEConfig
from pytfe.errors import NotFound, TFEError
from pytfe.models import (
    AgentPoolCreateOptions,
    AgentPoolListOptions,
    AgentPoolReadOptions,
    AgentPoolUpdateOptions,
    AgentListOptions,
    AgentStatus,
    AgentTokenCreateOptions,
    ConfigurationVersion,
    ConfigurationVersionCreateOptions,
    OrganizationCreateOptions,
    RunApplyOptions,
    RunCancelOptions,
    RunCreateOptions,
    RunReadOptions,
    StateVersionCreateOptions,
    StateVersionListOptions,
    VariableCreateOptions,
    VariableUpdateOptions,
    Workspace,
    WorkspaceCreateOptions,
    WorkspaceListOptions,
    WorkspaceLockOptions,
    WorkspaceUpdateOptions,
)

URL = os.environ.get("OTF_URL", "").rstrip("/")
TOKEN = os.environ.get("OTF_TOKEN", "")
ORG = os.environ.get("OTF_ORG", "acme")
DEADLINE = 20.0


class CheckFailed(Exception):
    pass


def step(name: str) -> None:
    print(f"--- {name}", flush=True)


def check(cond: object, what: str) -> None:
    if not cond:
        raise CheckFailed(what)


def status_of(x) -> str | None:
    """An enum's wire value (pytfe models hold enums)."""
    s = getattr(x, "status", None)
    return getattr(s, "value", s)


def refused(fn, what: str, *, kind=TFEError, contains: str | None = None) -> TFEError:
    """`fn` must raise a pytfe error of `kind` (optionally naming `contains`)."""
    try:
        fn()
    except kind as e:
        if contains is not None:
            check(contains in str(e), f"{what}: error {str(e)!r} should mention {contains!r}")
        return e
    raise CheckFailed(f"{what}: expected {kind.__name__}, but the call succeeded")


def eventually(what: str, fn):
    """Poll `fn` until it returns something truthy, or fail after DEADLINE."""
    until = time.monotonic() + DEADLINE
    wait = 0.02
    while True:
        v = fn()
        if v:
            return v
        if time.monotonic() > until:
            raise CheckFailed(f"timed out waiting for {what}")
        time.sleep(wait)
        wait = min(wait * 2, 0.25)


class Agent:
    """A pool agent speaking otfd's agent protocol (see otf-agent/src/protocol.rs)."""

    def __init__(self, token: str, name: str) -> None:
        self.http = httpx.Client(base_url=URL, timeout=30.0)
        self.token = token
        r = self.post("/api/agent/register", {"name": name, "version": "walkthrough", "concurrency": 1})
        check(r.status_code == 200, f"agent registration answered {r.status_code}: {r.text}")
        self.reg = r.json()
        self.id = self.reg["id"]

    def headers(self, token: str | None = None) -> dict[str, str]:
        h = {"Authorization": f"Bearer {token or self.token}"}
        if token is None:
            h["otf-agent-id"] = self.id if hasattr(self, "id") else ""
        return h

    def post(self, path: str, body: dict) -> httpx.Response:
        return self.http.post(path, json=body, headers=self.headers())

    def ping(self, status: str) -> httpx.Response:
        return self.post("/api/agent/status", {"status": status})

    def next_job(self, run_id: str) -> dict:
        def poll():
            r = self.http.get("/api/agent/jobs", headers=self.headers())
            check(r.status_code == 200, f"job long-poll answered {r.status_code}: {r.text}")
            return next((j for j in r.json()["jobs"] if j["run_id"] == run_id), None)

        return eventually(f"a job of {run_id} for agent {self.id}", poll)

    def start(self, job: dict) -> str:
        r = self.post(f"/api/agent/jobs/{job['id']}/start", {})
        check(r.status_code == 200, f"job start answered {r.status_code}: {r.text}")
        return r.json()["token"]

    def job(self, token: str, method: str, path: str, **kw) -> httpx.Response:
        return self.http.request(method, f"/api/agent/job/{path}", headers=self.headers(token), **kw)


def tarball(files: dict[str, str]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, text in files.items():
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = 0o644
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def state_file(serial: int, lineage: str, outputs: dict) -> bytes:
    return json.dumps(
        {"version": 4, "terraform_version": "1.0.3", "serial": serial, "lineage": lineage,
         "outputs": outputs, "resources": []}
    ).encode()


def walkthrough() -> None:
    check(URL and TOKEN, "set OTF_URL and OTF_TOKEN")
    tfe = TFEClient(TFEConfig(address=URL, token=TOKEN, max_retries=0, timeout=30))
    raw = httpx.Client(base_url=URL, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=30.0)

    step("organizations: create by the site admin, read, list, entitlements")
    org = tfe.organizations.create(OrganizationCreateOptions(name=ORG, email="ops@acme.test"))
    check(org.name == ORG, f"created organization is named {org.name!r}")
    org = tfe.organizations.read(ORG)
    check(org.email == "ops@acme.test", f"organization email read back as {org.email!r}")
    names = [o.name for o in tfe.organizations.list()]
    check(ORG in names, f"organization list {names} lacks {ORG}")
    ent = tfe.organizations.read_entitlements(ORG)
    check(ent.operations and ent.agents and ent.state_storage, f"entitlements {ent}")
    refused(lambda: tfe.organizations.read("no-such-org"), "reading a missing organization", kind=NotFound)

    step("agent pool: create, organization-scoped by default")
    pool = tfe.agent_pools.create(ORG, AgentPoolCreateOptions(name="pool1"))
    check(pool.id.startswith("apool-"), f"pool id {pool.id}")
    check(pool.organization_scoped is True, "a new pool is organization-scoped by default")
    check(pool.agent_count == 0, f"a new pool has {pool.agent_count} agents")

    step("workspaces: create (remote and agent mode), read by name and id, list")
    other = tfe.workspaces.create(ORG, WorkspaceCreateOptions(name="ws-other"))
    check(getattr(other.execution_mode, "value", other.execution_mode) == "remote",
          f"default execution mode {other.execution_mode}")
    ws = tfe.workspaces.create(
        ORG,
        WorkspaceCreateOptions(name="ws-agent", terraform_version="1.0.3", working_directory=""),
    )
    check(tfe.workspaces.read("ws-agent", organization=ORG).id == ws.id, "read by name")
    check(tfe.workspaces.read_by_id(ws.id).name == "ws-agent", "read by id")
    listed = sorted(w.name for w in tfe.workspaces.list(ORG))
    check(listed == ["ws-agent", "ws-other"], f"workspace list {listed}")
    paged = sorted(w.name for w in tfe.workspaces.list(ORG, WorkspaceListOptions(page_size=1)))
    check(paged == listed, f"workspace list one per page {paged}")
    found = [w.name for w in tfe.workspaces.list(ORG, WorkspaceListOptions(search="agent"))]
    check(found == ["ws-agent"], f"workspace search {found}")

    step("restrict the pool: grant access to specific workspaces")
    pool = tfe.agent_pools.update(
        pool.id, AgentPoolUpdateOptions(organization_scoped=False, allowed_workspace_ids=[ws.id])
    )
    check(pool.organization_scoped is False, "pool is no longer organization-scoped")
    check([w.id for w in pool.allowed_workspaces] == [ws.id], f"allowed {pool.allowed_workspaces}")

    step("assign the granted workspace: execution mode agent with the pool")
    ws = tfe.workspaces.update_by_id(
        ws.id, WorkspaceUpdateOptions(execution_mode="agent", agent_pool_id=pool.id)
    )
    check(getattr(ws.execution_mode, "value", ws.execution_mode) == "agent", f"mode {ws.execution_mode}")
    check(ws.agent_pool_id == pool.id if hasattr(ws, "agent_pool_id") else True, "agent-pool-id")
    pool = tfe.agent_pools.read(pool.id, AgentPoolReadOptions(include=["workspaces"]))
    check([w.id for w in pool.workspaces] == [ws.id], f"pool's assigned workspaces {pool.workspaces}")
    check([w.id for w in pool.allowed_workspaces] == [ws.id], f"pool's granted workspaces {pool.allowed_workspaces}")
    check(pool.workspaces[0].name == "ws-agent", "included workspace is hydrated with its name")
    pools = list(tfe.agent_pools.list(ORG, AgentPoolListOptions(include=["workspaces"])))
    check([[w.id for w in p.workspaces] for p in pools] == [[ws.id]], f"pool list {pools}")
    # pytfe's list drops `included`; the wire must still carry it.
    doc = raw.get(f"/api/v2/organizations/{ORG}/agent-pools", params={"include": "workspaces"}).json()
    check([i["id"] for i in doc.get("included", [])] == [ws.id], f"pool list includes workspaces: {doc}")
    by_filter = list(tfe.agent_pools.list(ORG, AgentPoolListOptions(allowed_workspace_name="ws-agent")))
    check([p.id for p in by_filter] == [pool.id], f"pools filtered by allowed workspace: {by_filter}")
    none = list(tfe.agent_pools.list(ORG, AgentPoolListOptions(allowed_workspace_name="ws-other")))
    check(none == [], f"no pool grants ws-other: {none}")

    step("assigning a workspace that is not granted is refused; so is ungranting an assigned one")
    refused(
        lambda: tfe.workspaces.update_by_id(
            other.id, WorkspaceUpdateOptions(execution_mode="agent", agent_pool_id=pool.id)
        ),
        "assigning a non-granted workspace",
    )
    check(getattr(tfe.workspaces.read_by_id(other.id).execution_mode, "value", None) == "remote",
          "the refused assignment changed nothing")
    refused(
        lambda: tfe.agent_pools.update(pool.id, AgentPoolUpdateOptions(allowed_workspace_ids=[other.id])),
        "removing an assigned workspace from the allow list",
        contains="ws-agent",
    )

    step("workspace update by name")
    renamed = tfe.workspaces.update("ws-other", WorkspaceUpdateOptions(auto_apply=True), organization=ORG)
    check(renamed.auto_apply is True, "auto-apply updated by name")

    step("agent tokens: create (secret once), list and read without it")
    tok = tfe.agent_tokens.create(pool.id, AgentTokenCreateOptions(description="ci token"))
    check(tok.id.startswith("at-") and tok.token, "the create response carries the secret")
    check(tok.description == "ci token", f"description {tok.description!r}")
    tokens = list(tfe.agent_tokens.list(pool.id))
    check([t.id for t in tokens] == [tok.id], f"token list {tokens}")
    check(tfe.agent_tokens.read(tok.id).description == "ci token", "token read")
    for path in (f"/api/v2/agent-pools/{pool.id}/authentication-tokens", f"/api/v2/authentication-tokens/{tok.id}"):
        body = raw.get(path).json()["data"]
        for item in body if isinstance(body, list) else [body]:
            check(item["attributes"].get("token") is None, f"{path} shows no secret")
    refused(lambda: tfe.agent_tokens.create(pool.id, AgentTokenCreateOptions(description="")),
            "a token without description", kind=ValueError)
    r = raw.post(f"/api/v2/agent-pools/{pool.id}/authentication-tokens",
                 json={"data": {"type": "authentication-tokens", "attributes": {"description": ""}}})
    check(r.status_code == 422, f"the server refuses an empty description too: {r.status_code}")

    step("an agent registers with the token; the pool lists it idle")
    agent = Agent(tok.token, "walkthrough-agent")
    check(agent.reg["pool_id"] == pool.id, f"registered in pool {agent.reg['pool_id']}")
    check(agent.reg["status"] == "idle", f"registered as {agent.reg['status']}")
    agents = list(tfe.agents.list(pool.id))
    check([a.id for a in agents] == [agent.id], f"agents of the pool: {agents}")
    check(status_of(agents[0]) == "idle", f"agent listed as {status_of(agents[0])}")
    a = tfe.agents.read(agent.id)
    check(a.name == "walkthrough-agent" and a.ip_address, f"agent read: {a}")
    check(tfe.agent_pools.read(pool.id).agent_count == 1, "pool counts its agent")
    refused(lambda: tfe.agents.delete(agent.id), "deleting an idle agent")
    idle = list(tfe.agents.list(pool.id, AgentListOptions(status=AgentStatus.IDLE)))
    busy = list(tfe.agents.list(pool.id, AgentListOptions(status=AgentStatus.BUSY)))
    check(len(idle) == 1 and busy == [], f"agents filtered by status: {idle} {busy}")

    step("drain: pytfe still lists the agents of a drained pool, idle")
    admin = {"Authorization": f"Bearer {TOKEN}"}
    for action in ("drain", "undrain"):
        r = httpx.post(f"{URL}/api/v2/agent-pools/{pool.id}/actions/{action}", headers=admin, json={})
        check(r.status_code == 200, f"pool {action} answered {r.status_code}: {r.text}")
        r = httpx.get(f"{URL}/api/v2/agents/{agent.id}", headers=admin)
        check(r.json()["data"]["attributes"]["drained"] == (action == "drain"), f"after {action}: {r.text}")
        if action == "drain":
            agents = list(tfe.agents.list(pool.id))
            check([a.id for a in agents] == [agent.id], f"agents of a drained pool: {agents}")
            check(status_of(agents[0]) == "idle", f"a drained agent lists as {status_of(agents[0])}")

    step("variables: CRUD, sensitive values write-only")
    v1 = tfe.variables.create(ws.id, VariableCreateOptions(key="region", value="eu", category="terraform",
                                                             hcl=False, sensitive=False))
    check(v1.value == "eu", "plain value echoed")
    v2 = tfe.variables.create(ws.id, VariableCreateOptions(key="SECRET", value="hunter2", category="env",
                                                             sensitive=True))
    check(v2.sensitive is True and not v2.value, f"sensitive value echoed: {v2.value!r}")
    vs = {v.key: v for v in tfe.variables.list(ws.id)}
    check(set(vs) == {"region", "SECRET"}, f"variables {list(vs)}")
    check(not vs["SECRET"].value and vs["region"].value == "eu", "list hides only the sensitive value")
    check(not tfe.variables.read(ws.id, v2.id).value, "read hides the sensitive value")
    v1 = tfe.variables.update(ws.id, v1.id, VariableUpdateOptions(value="us"))
    check(v1.value == "us", "update")
    v2 = tfe.variables.update(ws.id, v2.id, VariableUpdateOptions(description="db password"))
    check(not v2.value and v2.description == "db password", "sensitive value stays hidden after update")
    tmp = tfe.variables.create(ws.id, VariableCreateOptions(key="tmp", value="x", category="terraform"))
    tfe.variables.delete(ws.id, tmp.id)
    check({v.key for v in tfe.variables.list(ws.id)} == {"region", "SECRET"}, "delete")
    refused(lambda: tfe.variables.create(ws.id, VariableCreateOptions(key="region", value="x",
                                                                        category="terraform")),
            "a duplicate variable key")

    step("configuration version: create, upload a tar.gz, read uploaded")
    cv = tfe.configuration_versions.create(ws.id, ConfigurationVersionCreateOptions(auto_queue_runs=False))
    check(status_of(cv) == "pending" and cv.upload_url and cv.upload_url.startswith("http"),
          f"new configuration version {cv}")
    tfe.configuration_versions.upload_tar_gzip(
        cv.upload_url, io.BytesIO(tarball({"main.tf": 'resource "null_resource" "x" {}\n'}))
    )
    cv = eventually("the configuration version to be uploaded",
                    lambda: (c := tfe.configuration_versions.read(cv.id)) and status_of(c) == "uploaded" and c)
    bad = tfe.configuration_versions.create(ws.id, ConfigurationVersionCreateOptions(auto_queue_runs=False))
    refused(lambda: tfe.configuration_versions.upload_tar_gzip(bad.upload_url, io.BytesIO(b"not a tarball")),
            "uploading something that is not a tar.gz")

    step("run: create, read, list; the agent plans it")
    run = tfe.runs.create(RunCreateOptions(workspace=Workspace(id=ws.id),
                                           configuration_version=ConfigurationVersion(id=cv.id),
                                           message="hello from pytfe"))
    check(run.id.startswith("run-") and run.message == "hello from pytfe", f"run {run}")
    check(status_of(run) in ("pending", "plan_queued"), f"new run is {status_of(run)}")
    job = agent.next_job(run.id)
    check(job["phase"] == "plan" and job["workspace_id"] == ws.id, f"plan job {job}")
    jt = agent.start(job)
    check(agent.ping("busy").status_code == 200, "busy ping")
    check(status_of(tfe.agents.read(agent.id)) == "busy", "agent is busy while it runs a job")
    check(status_of(tfe.runs.read(run.id)) == "planning", "run is planning")
    r = agent.job(jt, "GET", "config")
    check(r.status_code == 200 and r.content[:2] == b"\x1f\x8b", "the job downloads its configuration")
    r = agent.job(jt, "GET", "variables")
    got = {v["key"]: v["value"] for v in r.json()["variables"]}
    check(got == {"region": "us", "SECRET": "hunter2"}, f"the runner gets every value: {got}")
    check(agent.job(jt, "POST", "logs", content=b"Terraform v1.0.3\nPlan: 1 to add\n").status_code == 200, "log")
    plan_json = {"format_version": "0.2", "terraform_version": "1.0.3", "resource_changes": [{"address": "null_resource.x"}]}
    check(agent.job(jt, "PUT", "artifacts/json-plan", content=json.dumps(plan_json).encode()).status_code < 300,
          "json plan upload")
    r = agent.job(jt, "POST", "finish", json={"outcome": "finished", "additions": 1, "has_changes": True})
    check(r.status_code == 200, f"plan finish answered {r.status_code}: {r.text}")
    check(agent.ping("idle").status_code == 200, "idle ping")

    step("plan: status, resource counts, log through its log-read URL, JSON plan")
    run = tfe.runs.read_with_options(run.id, RunReadOptions(include=["plan"]))
    check(status_of(run) == "planned" and run.has_changes, f"run after plan: {status_of(run)}")
    check(run.actions.is_confirmable and run.actions.is_discardable, f"actions {run.actions}")
    plan = tfe.plans.read(run.plan.id)
    check(status_of(plan) == "finished" and plan.resource_additions == 1 and plan.has_changes, f"plan {plan}")
    log = httpx.get(plan.log_read_url, params={"offset": 0, "limit": 65536}).content
    check(log.startswith(b"\x02") and b"Plan: 1 to add" in log and log.endswith(b"\x03"),
          f"plan log without a token: {log!r}")
    tail = httpx.get(plan.log_read_url, params={"offset": 1, "limit": 9}).content
    check(tail == log[1:10], f"offset/limit read {tail!r}")
    check(tfe.plans.read_json_output(plan.id) == plan_json, "JSON plan")
    check(tfe.plans.logs(plan.id) is not None, "plans.logs")
    check([r.id for r in tfe.runs.list(ws.id)] == [run.id], "run list")
    check(tfe.plans.read_for_run(run.id).id == plan.id, "plan of a run")
    check(tfe.plans.read_json_output_for_run(run.id) == plan_json, "JSON plan of a run")

    step("apply: confirm, the agent applies and uploads state")
    tfe.runs.apply(run.id, RunApplyOptions(comment="lgtm"))
    job = agent.next_job(run.id)
    check(job["phase"] == "apply", f"apply job {job}")
    jt = agent.start(job)
    refused_plan = agent.job(jt, "PUT", "artifacts/plan", content=b"x")
    check(refused_plan.status_code == 403, f"an apply job may not upload a plan: {refused_plan.status_code}")
    lineage = "walkthrough-lineage"
    state1 = state_file(1, lineage, {"greeting": {"value": "hi", "type": "string"},
                                     "password": {"value": "s3cret", "type": "string", "sensitive": True}})
    r = agent.job(jt, "POST", "state", json={"serial": 1, "lineage": lineage,
                                             "state": base64.b64encode(state1).decode()})
    check(r.status_code == 200, f"state upload answered {r.status_code}: {r.text}")
    agent.job(jt, "POST", "logs", content=b"Apply complete! Resources: 1 added\n")
    r = agent.job(jt, "POST", "finish", json={"outcome": "finished", "additions": 1})
    check(r.status_code == 200, f"apply finish answered {r.status_code}: {r.text}")
    check(agent.job(jt, "POST", "logs", content=b"late").status_code == 401,
          "the job token dies with its attempt")
    run = tfe.runs.read(run.id)
    check(status_of(run) == "applied", f"run after apply: {status_of(run)}")
    ap = tfe.applies.read(run.apply.id)
    check(status_of(ap) == "finished" and ap.resource_additions == 1, f"apply {ap}")
    log = httpx.get(ap.log_read_url, params={"offset": 0, "limit": 65536}).content
    check(b"Apply complete!" in log and log.endswith(b"\x03"), f"apply log {log!r}")
    check(tfe.applies.logs(ap.id) is not None, "applies.logs")

    step("state versions: current, list, read, download, outputs, create")
    sv = tfe.state_versions.read_current(ws.id)
    check(sv.serial == 1 and status_of(sv) == "finalized", f"current state {sv}")
    check(tfe.state_versions.download(sv.id) == state1, "download")
    check(tfe.state_versions.download_current(ws.id) == state1, "download current")
    outs = {o.name: o for o in tfe.state_versions.list_outputs(sv.id)}
    check(outs["greeting"].value == "hi" and outs["password"].sensitive, f"outputs {outs}")
    one = tfe.state_version_outputs.read(outs["greeting"].id)
    check(one.value == "hi", f"output read {one}")
    cur = {o.name: o for o in tfe.state_version_outputs.read_current(ws.id)}
    check(cur["greeting"].value == "hi" and cur["password"].value is None,
          f"current outputs hide sensitive values: {cur}")
    state2 = state_file(2, lineage, {"greeting": {"value": "hello", "type": "string"}})
    sv2 = tfe.state_versions.create(ws.id, StateVersionCreateOptions(
        serial=2, md5=hashlib.md5(state2).hexdigest(), lineage=lineage,
        state=base64.b64encode(state2).decode()))
    check(sv2.serial == 2, f"created state {sv2}")
    check(tfe.state_versions.read(sv2.id).serial == 2, "read")
    listed = [s.serial for s in tfe.state_versions.list(StateVersionListOptions(organization=ORG, workspace="ws-agent"))]
    check(sorted(listed) == [1, 2], f"state version list {listed}")
    check(tfe.state_versions.read_current(ws.id).id == sv2.id, "the new state is current")
    refused(lambda: tfe.state_versions.create(ws.id, StateVersionCreateOptions(
        serial=3, md5="0" * 32, lineage=lineage, state=base64.b64encode(state2).decode())),
        "a state whose md5 does not match")
    refused(lambda: tfe.state_versions.read_current(other.id), "no state yet", kind=NotFound)

    step("runs: discard a queued run, cancel and force-cancel a running one")
    cv2 = tfe.configuration_versions.create(ws.id, ConfigurationVersionCreateOptions(auto_queue_runs=False))
    tfe.configuration_versions.upload_tar_gzip(cv2.upload_url, io.BytesIO(tarball({"main.tf": "\n"})))
    eventually("cv2 uploaded", lambda: status_of(tfe.configuration_versions.read(cv2.id)) == "uploaded")
    first = tfe.runs.create(RunCreateOptions(workspace=Workspace(id=ws.id),
                                             configuration_version=ConfigurationVersion(id=cv2.id)))
    second = tfe.runs.create(RunCreateOptions(workspace=Workspace(id=ws.id),
                                              configuration_version=ConfigurationVersion(id=cv2.id)))
    check(status_of(tfe.runs.read(second.id)) == "pending", "the second run waits behind the first")
    tfe.runs.discard(second.id)
    check(status_of(tfe.runs.read(second.id)) == "discarded", "discarded")
    refused(lambda: tfe.runs.discard(second.id), "discarding twice")
    job = agent.next_job(first.id)
    jt = agent.start(job)
    tfe.runs.cancel(first.id, RunCancelOptions(comment="stop"))
    sig = agent.http.get(f"/api/agent/jobs/{job['id']}/signal", headers=agent.headers()).json()
    check(sig["signal"] == "cancel", f"the agent receives the cancel signal: {sig}")
    eventually("force-cancel to become available",
               lambda: tfe.runs.read(first.id).actions.is_force_cancelable)
    tfe.runs.force_cancel(first.id)
    check(status_of(tfe.runs.read(first.id)) == "canceled", "force-canceled reads as canceled for pytfe")
    check(len(list(tfe.runs.list(ws.id))) == 3, "three runs listed")
    agent.ping("idle")

    step("workspace lock, unlock, force-unlock")
    locked = tfe.workspaces.lock(ws.id, WorkspaceLockOptions(reason="maintenance"))
    check(locked.locked is True, "locked")
    refused(lambda: tfe.workspaces.lock(ws.id, WorkspaceLockOptions(reason="again")), "locking twice")
    check(tfe.workspaces.unlock(ws.id).locked is False, "unlocked")
    refused(lambda: tfe.workspaces.unlock(ws.id), "unlocking an unlocked workspace")
    tfe.workspaces.lock(ws.id, WorkspaceLockOptions(reason="again"))
    check(tfe.workspaces.force_unlock(ws.id).locked is False, "force-unlocked")

    step("organization token: create, use, scope")
    ot = tfe.organization_tokens.create(ORG)
    check(ot.token, "organization token secret")
    check(tfe.organization_tokens.read(ORG).id == ot.id, "organization token read")
    scoped = TFEClient(TFEConfig(address=URL, token=ot.token, max_retries=0))
    check(scoped.workspaces.read_by_id(ws.id).name == "ws-agent", "org token reads its organization")
    refused(lambda: scoped.organizations.create(OrganizationCreateOptions(name="other-org", email="x@y.z")),
            "an organization token creating organizations")

    step("deleting the agent token revokes it and shuts its agent out")
    tfe.agent_tokens.delete(tok.id)
    refused(lambda: tfe.agent_tokens.read(tok.id), "reading a deleted token", kind=NotFound)
    check(agent.ping("idle").status_code == 401, "the agent's next request is refused")
    a = tfe.agents.read(agent.id)
    check(status_of(a) == "unknown", f"an exited agent reads as unknown for pytfe: {status_of(a)}")
    tfe.agents.delete(agent.id)
    refused(lambda: tfe.agents.read(agent.id), "reading a deleted agent", kind=NotFound)

    step("pool delete: refused while assigned, allowed after unassigning")
    refused(lambda: tfe.agent_pools.delete(pool.id), "deleting a pool in use", contains="ws-agent")
    tfe.workspaces.update_by_id(ws.id, WorkspaceUpdateOptions(execution_mode="remote"))
    tfe.agent_pools.delete(pool.id)
    refused(lambda: tfe.agent_pools.read(pool.id), "reading a deleted pool", kind=NotFound)

    step("workspace and organization delete")
    tfe.workspaces.delete("ws-other", organization=ORG)
    refused(lambda: tfe.workspaces.read("ws-other", organization=ORG), "a deleted workspace", kind=NotFound)
    tfe.workspaces.delete_by_id(ws.id)
    tfe.organizations.delete(ORG)
    refused(lambda: tfe.organizations.read(ORG), "a deleted organization", kind=NotFound)


def main() -> int:
    try:
        walkthrough()
    except CheckFailed as e:
        print(f"FAILED: {e}", file=sys.stderr)
        return 1
    except Exception as e:  # an SDK error or a validation error of a response
        traceback.print_exc()
        print(f"FAILED: unexpected {type(e).__name__}: {e}", file=sys.stderr)
        return 1
    print("walkthrough passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
