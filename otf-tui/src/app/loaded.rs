//! Answers from otfd into the state: each goes to the screen it was asked
//! for (answers for screens no longer shown are dropped); refusals of
//! writes open an error modal with the server's detail.

use super::update::{action_verb, append_log, error, info, push, refresh, refusal, run_screen};
use super::{App, Cursor, Effect, Loaded, Modal, RunView, Screen};

/// Apply an answer from otfd to the screens it belongs to.
pub(super) fn loaded_into(app: &mut App, loaded: Loaded) -> Vec<Effect> {
    match loaded {
        Loaded::Organizations(result) => match result {
            Ok(orgs) => {
                for s in &mut app.stack {
                    if let Screen::Organizations { items, cursor } = s {
                        cursor.clamp(orgs.len());
                        *items = Some(orgs.clone());
                    }
                }
                clear_error(app);
            }
            Err(e) => error(app, e),
        },
        Loaded::OrganizationCreated(result) => match result {
            Ok(o) => {
                info(app, format!("created organization {}", o.name));
                if let Screen::Organizations { items, cursor } = app.screen_mut() {
                    let list = items.get_or_insert_with(Vec::new);
                    list.push(o);
                    cursor.selected = list.len() - 1;
                }
                return refresh(app);
            }
            Err(e) => refusal(app, "Could not create the organization", e),
        },
        Loaded::Pools { org, result } => {
            if let Screen::Pools {
                org: o,
                items,
                cursor,
            } = app.screen_mut()
            {
                if *o == org {
                    match result {
                        Ok(pools) => {
                            cursor.clamp(pools.len());
                            *items = Some(pools);
                            clear_error(app);
                        }
                        Err(e) => error(app, e),
                    }
                }
            }
        }
        Loaded::PoolCreated { org, result } => match result {
            Ok(p) => {
                info(app, format!("created agent pool {}", p.name));
                return push(
                    app,
                    Screen::Pool {
                        org,
                        id: p.id,
                        detail: None,
                        cursor: Cursor::default(),
                        history: Vec::new(),
                    },
                );
            }
            Err(e) => refusal(app, "Could not create the agent pool", e),
        },
        Loaded::PoolDetail { id, result } => {
            let now = app.now;
            if let Screen::Pool {
                id: i,
                detail,
                cursor,
                history,
                ..
            } = app.screen_mut()
            {
                if *i == id {
                    match result {
                        Ok(d) => {
                            cursor.clamp(d.agents.len());
                            if let Some(q) = d.queue {
                                record(history, now, q);
                            }
                            *detail = Some(d);
                            clear_error(app);
                        }
                        Err(e) => error(app, e),
                    }
                }
            }
        }
        Loaded::GrantsSaved { pool, result } => match result {
            Ok(p) => {
                if matches!(app.screen(), Screen::Grants { pool: g, .. } if g.id == pool) {
                    app.stack.pop();
                }
                info(app, format!("saved the grants of {}", p.name));
                return refresh(app);
            }
            Err(e) => refusal(app, "The grants were not saved", e),
        },
        Loaded::PoolDrained { drained, result } => match result {
            Ok(p) => {
                let what = if drained {
                    "drained: its agents take no new job"
                } else {
                    "undrained"
                };
                info(app, format!("agent pool {} {what}", p.name));
                return refresh(app);
            }
            Err(e) => refusal(app, "The agent pool's drain did not change", e),
        },
        Loaded::AgentDrained { drained, result } => match result {
            Ok(a) => {
                let what = if drained {
                    "drained: it finishes what it runs and takes no new job"
                } else {
                    "undrained"
                };
                info(app, format!("agent {} {what}", a.name));
                return refresh(app);
            }
            Err(e) => refusal(app, "The agent's drain did not change", e),
        },
        Loaded::PoolDeleted { id, result } => match result {
            Ok(()) => {
                if matches!(app.screen(), Screen::Pool { id: i, .. } if *i == id) {
                    app.stack.pop();
                }
                info(app, "deleted the agent pool");
                return refresh(app);
            }
            Err(e) => refusal(app, "The agent pool was not deleted", e),
        },
        Loaded::Tokens { pool, result } => {
            if let Screen::Tokens {
                pool: p,
                items,
                cursor,
            } = app.screen_mut()
            {
                if p.id == pool {
                    match result {
                        Ok(t) => {
                            cursor.clamp(t.len());
                            *items = Some(t);
                            clear_error(app);
                        }
                        Err(e) => error(app, e),
                    }
                }
            }
        }
        Loaded::TokenCreated { pool: _, result } => match result {
            Ok(t) => {
                app.flash = None;
                app.modal = Some(Modal::Secret {
                    description: t.token.description,
                    secret: t.secret,
                });
                return refresh(app);
            }
            Err(e) => refusal(app, "The token was not created", e),
        },
        Loaded::TokenRevoked { pool: _, result } => match result {
            Ok(()) => {
                info(app, "revoked the token");
                return refresh(app);
            }
            Err(e) => refusal(app, "The token was not revoked", e),
        },
        Loaded::Workspaces { org, result } => {
            if let Screen::Workspaces {
                org: o,
                items,
                pools,
                cursor,
            } = app.screen_mut()
            {
                if *o == org {
                    match result {
                        Ok((w, p)) => {
                            cursor.clamp(w.len());
                            *items = Some(w);
                            *pools = p;
                            clear_error(app);
                        }
                        Err(e) => error(app, e),
                    }
                }
            }
        }
        Loaded::WorkspaceCreated { org: _, result } => match result {
            Ok(w) => {
                info(app, format!("created workspace {}", w.name));
                if let Screen::Workspaces { items, cursor, .. } = app.screen_mut() {
                    let list = items.get_or_insert_with(Vec::new);
                    list.push(w);
                    cursor.selected = list.len() - 1;
                }
                return refresh(app);
            }
            Err(e) => refusal(app, "The workspace was not created", e),
        },
        Loaded::ModeSet { workspace, result } => match result {
            Ok(w) => {
                if matches!(app.screen(), Screen::Settings { workspace: s, .. } if s.id == workspace)
                {
                    app.stack.pop();
                }
                if let Screen::Runs { workspace: s, .. } = app.screen_mut() {
                    *s = w.clone();
                }
                info(
                    app,
                    format!("{}: execution mode {}", w.name, w.execution_mode),
                );
                return refresh(app);
            }
            Err(e) => refusal(app, "The execution mode was not changed", e),
        },
        Loaded::SelectorSet {
            workspace: _,
            result,
        } => match result {
            Ok(w) => {
                let what = match w.agent_selector.as_str() {
                    "" => "any agent of its pool".to_string(),
                    s => format!("agents with labels {s}"),
                };
                info(app, format!("{}: runs go to {what}", w.name));
                return refresh(app);
            }
            Err(e) => refusal(app, "The agent selector was not changed", e),
        },
        Loaded::Runs { workspace, result } => {
            if let Screen::Runs {
                workspace: w,
                items,
                cursor,
            } = app.screen_mut()
            {
                if w.id == workspace {
                    match result {
                        Ok(r) => {
                            cursor.clamp(r.len());
                            *items = Some(r);
                            clear_error(app);
                        }
                        Err(e) => error(app, e),
                    }
                }
            }
        }
        Loaded::RunStarted { workspace, result } => match result {
            Ok(r) => {
                info(app, format!("started run {}", r.id));
                let name = match app.screen() {
                    Screen::Runs { workspace: w, .. } if w.id == workspace => w.name.clone(),
                    _ => workspace,
                };
                return push(app, run_screen(&name, &r.id));
            }
            Err(e) => refusal(app, "The run was not started", e),
        },
        Loaded::RunDetail {
            run,
            plan_offset,
            apply_offset,
            result,
        } => {
            if let Screen::Run {
                id,
                detail,
                plan_log,
                apply_log,
                ..
            } = app.screen_mut()
            {
                if *id == run {
                    match result {
                        Ok(d) => {
                            append_log(plan_log, plan_offset, d.plan_log);
                            append_log(apply_log, apply_offset, d.apply_log);
                            *detail = Some(RunView {
                                run: d.run,
                                plan: d.plan,
                                apply: d.apply,
                            });
                            clear_error(app);
                        }
                        Err(e) => error(app, e),
                    }
                }
            }
        }
        Loaded::RunActionDone {
            run,
            action,
            result,
        } => match result {
            Ok(()) => {
                info(app, format!("{}: {} requested", run, action_verb(action)));
                return refresh(app);
            }
            Err(e) => refusal(
                app,
                &format!("Could not {} the run", action_verb(action)),
                e,
            ),
        },
        Loaded::Jobs { org, result } => {
            if let Screen::Jobs {
                org: o,
                view,
                cursor,
            } = app.screen_mut()
            {
                if *o == org {
                    match result {
                        Ok(v) => {
                            cursor.clamp(v.jobs.len());
                            *view = Some(v);
                            clear_error(app);
                        }
                        Err(e) => error(app, e),
                    }
                }
            }
        }
    }
    vec![]
}

/// Add a reading of the pool's queue, keeping the last
/// [`super::QUEUE_HISTORY_MS`].
fn record(history: &mut Vec<super::QueueSample>, now: i64, q: crate::model::PoolQueue) {
    history.push(super::QueueSample {
        at: now,
        queued: q.queued,
        running: q.running,
    });
    let from = now - super::QUEUE_HISTORY_MS;
    history.retain(|s| s.at > from);
}

/// A refresh worked: an earlier refresh failure no longer holds.
fn clear_error(app: &mut App) {
    if app.flash.as_ref().is_some_and(|f| f.error) {
        app.flash = None;
    }
}
