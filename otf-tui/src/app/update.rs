//! `update(state, action) -> effects`: what every action does to the state
//! and which requests it needs. Pure: no I/O, no clock, no drawing.

use std::collections::BTreeSet;

use super::{
    Action, App, Confirmed, Cursor, Effect, Flash, InputPurpose, LogTail, Modal, Request, Screen,
    Section,
};
use crate::client::RunAction;
use crate::model::ExecutionModeKind;

/// Bytes that frame a phase log: start and end of text.
const LOG_START: u8 = 0x02;
const LOG_END: u8 = 0x03;

fn fetch(r: Request) -> Vec<Effect> {
    vec![Effect::Fetch(r)]
}

/// The request that loads (or refreshes) a screen; None for screens whose
/// data came with them.
pub fn refresh_of(screen: &Screen) -> Option<Request> {
    Some(match screen {
        Screen::Organizations { .. } => Request::Organizations,
        Screen::Organization { .. } | Screen::Grants { .. } | Screen::Settings { .. } => {
            return None
        }
        Screen::Pools { org, .. } => Request::Pools { org: org.clone() },
        Screen::Pool { org, id, .. } => Request::PoolDetail {
            org: org.clone(),
            id: id.clone(),
        },
        Screen::Tokens { pool, .. } => Request::Tokens {
            pool: pool.id.clone(),
        },
        Screen::Workspaces { org, .. } => Request::Workspaces { org: org.clone() },
        Screen::Runs { workspace, .. } => Request::Runs {
            workspace: workspace.id.clone(),
        },
        Screen::Run {
            id,
            detail,
            plan_log,
            apply_log,
            ..
        } => {
            // A finished run whose logs are complete changes no more.
            if detail.as_ref().is_some_and(|d| d.run.is_final()) && plan_log.done && apply_log.done
            {
                return None;
            }
            Request::RunDetail {
                run: id.clone(),
                plan_offset: plan_log.offset(),
                apply_offset: apply_log.offset(),
            }
        }
        Screen::Jobs { org, .. } => Request::Jobs { org: org.clone() },
    })
}

pub(super) fn refresh(app: &App) -> Vec<Effect> {
    refresh_of(app.screen()).map(fetch).unwrap_or_default()
}

pub(super) fn push(app: &mut App, screen: Screen) -> Vec<Effect> {
    app.stack.push(screen);
    app.flash = None;
    refresh(app)
}

pub(super) fn info(app: &mut App, text: impl Into<String>) {
    app.flash = Some(Flash {
        text: text.into(),
        error: false,
    });
}

pub(super) fn error(app: &mut App, text: impl Into<String>) {
    app.flash = Some(Flash {
        text: text.into(),
        error: true,
    });
}

pub(super) fn refusal(app: &mut App, title: &str, detail: String) {
    app.flash = None;
    app.modal = Some(Modal::Error {
        title: title.to_string(),
        detail,
    });
}

/// Apply `action` to `app`; the requests it needs.
pub fn update(app: &mut App, action: Action) -> Vec<Effect> {
    match action {
        Action::Quit => {
            app.quit = true;
            vec![]
        }
        Action::Tick(now) => {
            app.now = now;
            refresh(app)
        }
        Action::Loaded(loaded) => super::loaded::loaded_into(app, *loaded),
        action if app.modal.is_some() => modal(app, action),
        Action::Help => {
            app.modal = Some(Modal::Help);
            vec![]
        }
        Action::Back => {
            if app.stack.len() > 1 {
                app.stack.pop();
                app.flash = None;
                refresh(app)
            } else {
                app.quit = true;
                vec![]
            }
        }
        Action::Refresh => refresh(app),
        action => screen_action(app, action),
    }
}

/// Keys while a modal is open.
fn modal(app: &mut App, action: Action) -> Vec<Effect> {
    let Some(m) = app.modal.take() else {
        return vec![];
    };
    match (m, action) {
        (Modal::Input { purpose, mut value }, Action::Char(c)) => {
            value.push(c);
            app.modal = Some(Modal::Input { purpose, value });
            vec![]
        }
        (Modal::Input { purpose, mut value }, Action::Backspace) => {
            value.pop();
            app.modal = Some(Modal::Input { purpose, value });
            vec![]
        }
        (Modal::Input { purpose, value }, Action::Submit) => submit(app, purpose, value),
        (Modal::Confirm { on_yes, .. }, Action::Yes) => confirmed(app, on_yes),
        (_, Action::Dismiss | Action::Submit) => vec![],
        (m, _) => {
            app.modal = Some(m);
            vec![]
        }
    }
}

fn submit(app: &mut App, purpose: InputPurpose, value: String) -> Vec<Effect> {
    let value = value.trim().to_string();
    if let InputPurpose::AgentSelector { workspace, .. } = &purpose {
        // Checked here by the same rule otfd applies; empty clears it.
        return match value.parse::<otf_core::labels::Labels>() {
            Ok(labels) => {
                info(app, "saving…");
                fetch(Request::SetSelector {
                    workspace: workspace.clone(),
                    selector: labels.to_string(),
                })
            }
            Err(e) => {
                error(app, e.to_string());
                app.modal = Some(Modal::Input { purpose, value });
                vec![]
            }
        };
    }
    if value.is_empty() {
        // Keep asking: every input here is required.
        error(app, format!("{} is required", purpose.prompt()));
        app.modal = Some(Modal::Input { purpose, value });
        return vec![];
    }
    info(app, "working…");
    fetch(match purpose {
        InputPurpose::NewOrganization => Request::CreateOrganization { name: value },
        InputPurpose::NewWorkspace { org } => Request::CreateWorkspace { org, name: value },
        InputPurpose::NewPool { org } => Request::CreatePool { org, name: value },
        InputPurpose::NewToken { pool } => Request::CreateToken {
            pool,
            description: value,
        },
        InputPurpose::RunDirectory { workspace } => Request::StartRun {
            workspace,
            dir: value,
        },
        InputPurpose::AgentSelector { .. } => return vec![],
    })
}

fn confirmed(app: &mut App, what: Confirmed) -> Vec<Effect> {
    info(app, "working…");
    fetch(match what {
        Confirmed::DeletePool { id } => Request::DeletePool { id },
        Confirmed::RevokeToken { pool, id } => Request::RevokeToken { pool, id },
        Confirmed::RunAction { run, action } => Request::RunAction { run, action },
    })
}

fn input(app: &mut App, purpose: InputPurpose) -> Vec<Effect> {
    app.modal = Some(Modal::Input {
        purpose,
        value: String::new(),
    });
    vec![]
}

fn confirm(app: &mut App, question: String, on_yes: Confirmed) -> Vec<Effect> {
    app.modal = Some(Modal::Confirm { question, on_yes });
    vec![]
}

/// Rows of the settings screen: three modes, then the pools.
const MODES: [ExecutionModeKind; 3] = [
    ExecutionModeKind::Remote,
    ExecutionModeKind::Local,
    ExecutionModeKind::Agent,
];

fn screen_action(app: &mut App, action: Action) -> Vec<Effect> {
    if !app.local_files && matches!((app.screen(), &action), (Screen::Runs { .. }, Action::New)) {
        error(
            app,
            "this session runs inside otfd, which does not read its own files: \
             start runs with otf-tui or terraform where the configuration is",
        );
        return vec![];
    }
    let screen = app.screen_mut();
    match (screen, action) {
        // Organizations.
        (Screen::Organizations { cursor, .. }, Action::Up) => cursor.up(),
        (Screen::Organizations { items, cursor }, Action::Down) => {
            cursor.down(items.as_ref().map_or(0, Vec::len))
        }
        (Screen::Organizations { items, cursor }, Action::Enter) => {
            if let Some(o) = items.as_ref().and_then(|i| i.get(cursor.selected)) {
                let org = o.name.clone();
                return push(
                    app,
                    Screen::Organization {
                        org,
                        cursor: Cursor::default(),
                    },
                );
            }
        }
        (Screen::Organizations { .. }, Action::New) => {
            return input(app, InputPurpose::NewOrganization)
        }

        // An organization's sections.
        (Screen::Organization { cursor, .. }, Action::Up) => cursor.up(),
        (Screen::Organization { cursor, .. }, Action::Down) => cursor.down(Section::ALL.len()),
        (Screen::Organization { org, cursor }, Action::Enter) => {
            let (org, section) = (org.clone(), Section::ALL[cursor.selected.min(2)]);
            return open(app, org, section);
        }
        (Screen::Organization { org, .. }, Action::Open(section)) => {
            let org = org.clone();
            return open(app, org, section);
        }

        // Pools.
        (Screen::Pools { cursor, .. }, Action::Up) => cursor.up(),
        (Screen::Pools { items, cursor, .. }, Action::Down) => {
            cursor.down(items.as_ref().map_or(0, Vec::len))
        }
        (Screen::Pools { org, items, cursor }, Action::Enter) => {
            if let Some(p) = items.as_ref().and_then(|i| i.get(cursor.selected)) {
                let s = Screen::Pool {
                    org: org.clone(),
                    id: p.id.clone(),
                    detail: None,
                    cursor: Cursor::default(),
                    history: Vec::new(),
                };
                return push(app, s);
            }
        }
        (Screen::Pools { org, .. }, Action::New) => {
            let org = org.clone();
            return input(app, InputPurpose::NewPool { org });
        }
        (Screen::Pools { items, cursor, .. }, Action::Delete) => {
            if let Some(p) = items.as_ref().and_then(|i| i.get(cursor.selected)) {
                let (q, id) = (delete_question(&p.name), p.id.clone());
                return confirm(app, q, Confirmed::DeletePool { id });
            }
        }

        // A pool.
        (
            Screen::Pool {
                detail: Some(d), ..
            },
            Action::Edit,
        ) => {
            let s = Screen::Grants {
                pool: d.pool.clone(),
                workspaces: d.workspaces.clone(),
                organization_scoped: d.pool.organization_scoped,
                granted: d.pool.allowed.iter().cloned().collect(),
                excluded: d.pool.excluded.iter().cloned().collect(),
                cursor: Cursor::default(),
            };
            return push(app, s);
        }
        (
            Screen::Pool {
                detail: Some(d), ..
            },
            Action::Tokens,
        ) => {
            let s = Screen::Tokens {
                pool: d.pool.clone(),
                items: None,
                cursor: Cursor::default(),
            };
            return push(app, s);
        }
        (Screen::Pool { cursor, .. }, Action::Up) => cursor.up(),
        (
            Screen::Pool {
                detail: Some(d),
                cursor,
                ..
            },
            Action::Down,
        ) => cursor.down(d.agents.len()),
        (
            Screen::Pool {
                detail: Some(d),
                cursor,
                ..
            },
            Action::DrainAgent(drained),
        ) => {
            if let Some(a) = d.agents.get(cursor.selected) {
                let id = a.id.clone();
                return vec![Effect::Fetch(Request::DrainAgent { id, drained })];
            }
        }
        (
            Screen::Pool {
                detail: Some(d), ..
            },
            Action::Drain(drained),
        ) => {
            let id = d.pool.id.clone();
            return vec![Effect::Fetch(Request::DrainPool { id, drained })];
        }
        (
            Screen::Pool {
                detail: Some(d), ..
            },
            Action::Delete,
        ) => {
            let (q, id) = (delete_question(&d.pool.name), d.pool.id.clone());
            return confirm(app, q, Confirmed::DeletePool { id });
        }

        // Grants.
        (Screen::Grants { cursor, .. }, Action::Up) => cursor.up(),
        (
            Screen::Grants {
                workspaces, cursor, ..
            },
            Action::Down,
        ) => cursor.down(workspaces.len() + 2),
        (
            Screen::Grants {
                workspaces,
                organization_scoped,
                granted,
                excluded,
                cursor,
                ..
            },
            Action::Toggle | Action::Enter,
        ) => match cursor.selected {
            0 => *organization_scoped = true,
            1 => *organization_scoped = false,
            n => {
                if let Some(w) = workspaces.get(n - 2) {
                    *organization_scoped = false;
                    // A granted workspace is not also excluded.
                    if !granted.remove(&w.id) {
                        granted.insert(w.id.clone());
                        excluded.remove(&w.id);
                    }
                }
            }
        },
        (
            Screen::Grants {
                workspaces,
                excluded,
                granted,
                cursor,
                ..
            },
            Action::Exclude,
        ) => {
            if let Some(w) = cursor
                .selected
                .checked_sub(2)
                .and_then(|n| workspaces.get(n))
            {
                // An excluded workspace is not also granted.
                if !excluded.remove(&w.id) {
                    excluded.insert(w.id.clone());
                    granted.remove(&w.id);
                }
            }
        }
        (
            Screen::Grants {
                pool,
                workspaces,
                organization_scoped,
                granted,
                excluded,
                ..
            },
            Action::Save,
        ) => {
            // Only workspaces that still exist are sent.
            let of = |set: &BTreeSet<String>| {
                workspaces
                    .iter()
                    .filter(|w| set.contains(&w.id))
                    .map(|w| w.id.clone())
                    .collect()
            };
            let r = Request::SetGrants {
                pool: pool.id.clone(),
                organization_scoped: *organization_scoped,
                allowed: of(granted),
                excluded: of(excluded),
            };
            info(app, "saving…");
            return fetch(r);
        }

        // Tokens.
        (Screen::Tokens { cursor, .. }, Action::Up) => cursor.up(),
        (Screen::Tokens { items, cursor, .. }, Action::Down) => {
            cursor.down(items.as_ref().map_or(0, Vec::len))
        }
        (Screen::Tokens { pool, .. }, Action::New) => {
            let pool = pool.id.clone();
            return input(app, InputPurpose::NewToken { pool });
        }
        (
            Screen::Tokens {
                pool,
                items,
                cursor,
            },
            Action::Delete,
        ) => {
            if let Some(t) = items.as_ref().and_then(|i| i.get(cursor.selected)) {
                let q = format!(
                    "Revoke token {:?}? Agents using it are shut out at once.",
                    t.description
                );
                let what = Confirmed::RevokeToken {
                    pool: pool.id.clone(),
                    id: t.id.clone(),
                };
                return confirm(app, q, what);
            }
        }

        // Workspaces.
        (Screen::Workspaces { cursor, .. }, Action::Up) => cursor.up(),
        (Screen::Workspaces { items, cursor, .. }, Action::Down) => {
            cursor.down(items.as_ref().map_or(0, Vec::len))
        }
        (Screen::Workspaces { org, .. }, Action::New) => {
            let org = org.clone();
            return input(app, InputPurpose::NewWorkspace { org });
        }
        (Screen::Workspaces { items, cursor, .. }, Action::Enter) => {
            if let Some(w) = items.as_ref().and_then(|i| i.get(cursor.selected)) {
                let s = Screen::Runs {
                    workspace: w.clone(),
                    items: None,
                    cursor: Cursor::default(),
                };
                return push(app, s);
            }
        }
        (
            Screen::Workspaces {
                items,
                pools,
                cursor,
                ..
            },
            Action::Edit,
        ) => {
            if let Some(w) = items.as_ref().and_then(|i| i.get(cursor.selected)) {
                let s = settings(w.clone(), pools.clone());
                return push(app, s);
            }
        }
        (Screen::Workspaces { items, cursor, .. }, Action::Selector) => {
            if let Some(w) = items.as_ref().and_then(|i| i.get(cursor.selected)) {
                let purpose = InputPurpose::AgentSelector {
                    workspace: w.id.clone(),
                };
                let value = w.agent_selector.clone();
                app.modal = Some(Modal::Input { purpose, value });
                return vec![];
            }
        }

        // Execution mode.
        (Screen::Settings { cursor, .. }, Action::Up) => cursor.up(),
        (Screen::Settings { pools, cursor, .. }, Action::Down) => {
            cursor.down(MODES.len() + pools.len())
        }
        (
            Screen::Settings {
                pools,
                mode,
                pool,
                cursor,
                ..
            },
            Action::Toggle | Action::Enter,
        ) => {
            if let Some(m) = MODES.get(cursor.selected) {
                *mode = *m;
                if *m == ExecutionModeKind::Agent && pool.is_none() {
                    *pool = pools.first().map(|p| p.id.clone());
                }
            } else if let Some(p) = pools.get(cursor.selected - MODES.len()) {
                *mode = ExecutionModeKind::Agent;
                *pool = Some(p.id.clone());
            }
        }
        (
            Screen::Settings {
                workspace,
                mode,
                pool,
                ..
            },
            Action::Save,
        ) => {
            let r = Request::SetMode {
                workspace: workspace.id.clone(),
                mode: *mode,
                pool: (*mode == ExecutionModeKind::Agent)
                    .then(|| pool.clone())
                    .flatten(),
            };
            info(app, "saving…");
            return fetch(r);
        }

        // Runs.
        (Screen::Runs { cursor, .. }, Action::Up) => cursor.up(),
        (Screen::Runs { items, cursor, .. }, Action::Down) => {
            cursor.down(items.as_ref().map_or(0, Vec::len))
        }
        (Screen::Runs { workspace, .. }, Action::New) => {
            let workspace = workspace.id.clone();
            return input(app, InputPurpose::RunDirectory { workspace });
        }
        (
            Screen::Runs {
                workspace,
                items,
                cursor,
            },
            Action::Enter,
        ) => {
            if let Some(r) = items.as_ref().and_then(|i| i.get(cursor.selected)) {
                let s = run_screen(&workspace.name, &r.id);
                return push(app, s);
            }
        }

        // A run.
        (Screen::Run { scroll, .. }, Action::Up) => *scroll += 1,
        (Screen::Run { scroll, .. }, Action::Down) => *scroll = scroll.saturating_sub(1),
        (Screen::Run { id, detail, .. }, Action::Run(action)) => {
            let Some(d) = detail else {
                return vec![];
            };
            let allowed = match action {
                RunAction::Apply => d.run.is_confirmable,
                RunAction::Discard => d.run.is_discardable,
                RunAction::Cancel => d.run.is_cancelable,
                RunAction::ForceCancel => d.run.is_force_cancelable,
            };
            let (id, status) = (id.clone(), d.run.status);
            if !allowed {
                error(
                    app,
                    format!("cannot {} a run that is {status}", action_verb(action)),
                );
                return vec![];
            }
            let q = format!("{} run {id}?", capitalized(action_verb(action)));
            return confirm(app, q, Confirmed::RunAction { run: id, action });
        }

        // Jobs.
        (Screen::Jobs { cursor, .. }, Action::Up) => cursor.up(),
        (Screen::Jobs { view, cursor, .. }, Action::Down) => {
            cursor.down(view.as_ref().map_or(0, |v| v.jobs.len()))
        }
        _ => {}
    }
    vec![]
}

fn delete_question(name: &str) -> String {
    format!("Delete agent pool {name:?}? Its tokens are revoked.")
}

pub fn action_verb(a: RunAction) -> &'static str {
    match a {
        RunAction::Apply => "confirm and apply",
        RunAction::Discard => "discard",
        RunAction::Cancel => "cancel",
        RunAction::ForceCancel => "force-cancel",
    }
}

fn capitalized(s: &str) -> String {
    let mut c = s.chars();
    c.next()
        .map(|f| f.to_uppercase().chain(c).collect())
        .unwrap_or_default()
}

fn settings(workspace: crate::model::Workspace, pools: Vec<crate::model::Pool>) -> Screen {
    let mode = workspace.execution_mode;
    let pool = workspace.pool.clone();
    let selected = MODES.iter().position(|m| *m == mode).unwrap_or(0);
    Screen::Settings {
        workspace,
        pools,
        mode,
        pool,
        cursor: Cursor { selected },
    }
}

pub(super) fn run_screen(workspace: &str, id: &str) -> Screen {
    Screen::Run {
        workspace: workspace.to_string(),
        id: id.to_string(),
        detail: None,
        plan_log: LogTail::default(),
        apply_log: LogTail::default(),
        scroll: 0,
    }
}

fn open(app: &mut App, org: String, section: Section) -> Vec<Effect> {
    let s = match section {
        Section::Pools => Screen::Pools {
            org,
            items: None,
            cursor: Cursor::default(),
        },
        Section::Workspaces => Screen::Workspaces {
            org,
            items: None,
            pools: Vec::new(),
            cursor: Cursor::default(),
        },
        Section::Jobs => Screen::Jobs {
            org,
            view: None,
            cursor: Cursor::default(),
        },
    };
    push(app, s)
}

/// Append new log bytes; the end marker closes the log.
pub(super) fn append_log(tail: &mut LogTail, read_from: Option<usize>, bytes: Vec<u8>) {
    // Bytes read from an offset other than the current end are stale.
    if read_from != tail.offset() {
        return;
    }
    tail.bytes.extend_from_slice(&bytes);
    if tail.bytes.last() == Some(&LOG_END) {
        tail.done = true;
    }
}

/// The text of a log without its frame bytes.
pub fn log_text(tail: &LogTail) -> String {
    let b = &tail.bytes;
    let b = b.strip_prefix(&[LOG_START]).unwrap_or(b);
    let b = b.strip_suffix(&[LOG_END]).unwrap_or(b);
    String::from_utf8_lossy(b).into_owned()
}

/// The workspaces a pool's screen lists, each marked granted and/or
/// assigned (an organization-scoped pool grants every workspace).
pub fn pool_workspace_marks(
    detail: &super::PoolDetail,
) -> Vec<(&crate::model::Workspace, &'static str, bool)> {
    let allowed: BTreeSet<&String> = detail.pool.allowed.iter().collect();
    let excluded: BTreeSet<&String> = detail.pool.excluded.iter().collect();
    let assigned: BTreeSet<&String> = detail.pool.assigned.iter().collect();
    detail
        .workspaces
        .iter()
        .filter_map(|w| {
            let access = if excluded.contains(&w.id) {
                "excluded"
            } else if detail.pool.organization_scoped || allowed.contains(&w.id) {
                "granted"
            } else {
                "NOT granted"
            };
            let assigned = assigned.contains(&w.id);
            (access != "NOT granted" || assigned).then_some((w, access, assigned))
        })
        .collect()
}
