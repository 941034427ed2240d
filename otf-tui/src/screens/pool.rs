//! One agent pool: its access, queue (with sparklines), workspaces and
//! agents; drains, deletion, and the way to its grants and tokens.

use std::collections::BTreeSet;

use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Cell, Paragraph, Row, Sparkline, Table};
use ratatui::Frame;

use super::pools::delete_question;
use super::widgets::{block, loading, table, TableSpec};
use super::{Ctx, GrantsScreen, Screen, Step, TokensScreen, View};
use crate::app::update::{clear_error, error, info, refresh, refusal};
use crate::app::{Action, App, Confirmed, Cursor, Effect, Loaded, PoolDetail, Request};
use crate::model::{PoolQueue, Workspace};
use crate::theme::Theme;
use crate::time::ago;

/// How far back the pool screen's sparklines reach.
pub const QUEUE_HISTORY_MS: i64 = 5 * 60 * 1000;

/// One reading of a pool's queue: when (ms), queued and running jobs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueSample {
    pub at: i64,
    pub queued: u64,
    pub running: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolScreen {
    pub org: String,
    pub id: String,
    pub detail: Option<PoolDetail>,
    /// Over the pool's agents.
    pub cursor: Cursor,
    /// The queue's readings of the last [`QUEUE_HISTORY_MS`], oldest first,
    /// for the sparklines.
    pub history: Vec<QueueSample>,
}

impl PoolScreen {
    /// The pool `id` of `org`, being loaded.
    pub fn new(org: &str, id: &str) -> PoolScreen {
        PoolScreen {
            org: org.to_string(),
            id: id.to_string(),
            detail: None,
            cursor: Cursor::default(),
            history: Vec::new(),
        }
    }

    /// Add a reading of the pool's queue, keeping the last
    /// [`QUEUE_HISTORY_MS`].
    fn record(&mut self, now: i64, q: PoolQueue) {
        self.history.push(QueueSample {
            at: now,
            queued: q.queued,
            running: q.running,
        });
        let from = now - QUEUE_HISTORY_MS;
        self.history.retain(|s| s.at > from);
    }
}

impl View for PoolScreen {
    fn crumb(&self) -> String {
        self.detail
            .as_ref()
            .map_or_else(|| self.id.clone(), |d| d.pool.name.clone())
    }

    fn refresh(&self) -> Option<Request> {
        Some(Request::PoolDetail {
            org: self.org.clone(),
            id: self.id.clone(),
        })
    }

    fn key(&self, c: char) -> Option<Action> {
        match c {
            'e' | 'g' => Some(Action::Edit),
            't' => Some(Action::Tokens),
            'd' => Some(Action::Delete),
            'x' => Some(Action::DrainAgent(true)),
            'u' => Some(Action::DrainAgent(false)),
            'X' => Some(Action::Drain(true)),
            'U' => Some(Action::Drain(false)),
            _ => None,
        }
    }

    fn hints(&self, _: Ctx) -> Vec<(&'static str, &'static str)> {
        vec![
            ("e", "edit grants"),
            ("t", "tokens"),
            ("x/u", "drain/undrain agent"),
            ("X/U", "pool"),
            ("d", "delete"),
        ]
    }

    fn act(&mut self, action: Action, _: Ctx) -> Step {
        if matches!(action, Action::Up) {
            self.cursor.up();
            return Step::Nothing;
        }
        let Some(d) = &self.detail else {
            return Step::Nothing;
        };
        match action {
            Action::Edit => Step::Push(Box::new(Screen::Grants(GrantsScreen::of(d)))),
            Action::Tokens => Step::Push(Box::new(Screen::Tokens(TokensScreen {
                pool: d.pool.clone(),
                items: None,
                cursor: Cursor::default(),
            }))),
            Action::Down => {
                self.cursor.down(d.agents.len());
                Step::Nothing
            }
            Action::DrainAgent(drained) => match d.agents.get(self.cursor.selected) {
                Some(a) => Step::Fetch(Request::DrainAgent {
                    id: a.id.clone(),
                    drained,
                }),
                None => Step::Nothing,
            },
            Action::Drain(drained) => Step::Fetch(Request::DrainPool {
                id: d.pool.id.clone(),
                drained,
            }),
            Action::Delete => Step::Confirm {
                question: delete_question(&d.pool.name),
                on_yes: Confirmed::DeletePool {
                    id: d.pool.id.clone(),
                },
            },
            _ => Step::Nothing,
        }
    }

    fn draw(&self, frame: &mut Frame, area: Rect, ctx: Ctx, theme: Theme) {
        match &self.detail {
            Some(d) => draw_pool(frame, area, self, d, ctx.now, theme),
            None => loading(frame, area, &format!("Agent pool {}", self.id), theme),
        }
    }
}

pub(super) fn loaded(app: &mut App, loaded: Loaded) -> Vec<Effect> {
    match loaded {
        Loaded::PoolDetail { id, result } => {
            let now = app.now;
            if let Screen::Pool(s) = app.screen_mut() {
                if s.id == id {
                    match result {
                        Ok(d) => {
                            s.cursor.clamp(d.agents.len());
                            if let Some(q) = d.queue {
                                s.record(now, q);
                            }
                            s.detail = Some(d);
                            clear_error(app);
                        }
                        Err(e) => error(app, e),
                    }
                }
            }
        }
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
                if matches!(app.screen(), Screen::Pool(s) if s.id == id) {
                    app.stack.pop();
                }
                info(app, "deleted the agent pool");
                return refresh(app);
            }
            Err(e) => refusal(app, "The agent pool was not deleted", e),
        },
        _ => {}
    }
    vec![]
}

/// The workspaces a pool's screen lists, each marked granted and/or
/// assigned (an organization-scoped pool grants every workspace).
pub fn pool_workspace_marks(detail: &PoolDetail) -> Vec<(&Workspace, &'static str, bool)> {
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

fn draw_pool(
    frame: &mut Frame,
    area: Rect,
    s: &PoolScreen,
    d: &PoolDetail,
    now: i64,
    theme: Theme,
) {
    let marks = pool_workspace_marks(d);
    let ws_rows = marks.len().max(1) as u16 + 2;
    let [head, queue_area, ws_area, agents_area] = Layout::vertical([
        Constraint::Length(3),
        Constraint::Length(3),
        Constraint::Length(ws_rows.min(area.height / 3)),
        Constraint::Min(3),
    ])
    .areas(area);
    draw_head(frame, head, d, theme);
    draw_queue(frame, queue_area, d, &s.history, theme);
    draw_workspaces(frame, ws_area, &marks, theme);
    draw_agents(frame, agents_area, d, &s.cursor, now, theme);
}

fn draw_head(frame: &mut Frame, area: Rect, d: &PoolDetail, theme: Theme) {
    let p = &d.pool;
    let access = if p.organization_scoped {
        "any workspace of the organization (organization-scoped)"
    } else {
        "granted workspaces only"
    };
    frame.render_widget(
        Paragraph::new(vec![
            Line::from(vec![
                Span::styled(format!(" Agent pool {} ", p.name), theme.title()),
                Span::styled(p.id.clone(), theme.dim()),
            ]),
            Line::from(format!(" Access: {access}")),
            Line::from(if p.drained {
                Span::styled(
                    " Drained: its agents finish what they run and take no new job",
                    theme.dim(),
                )
            } else {
                Span::raw(" Not drained")
            }),
        ]),
        area,
    );
}

fn draw_workspaces(
    frame: &mut Frame,
    area: Rect,
    marks: &[(&Workspace, &'static str, bool)],
    theme: Theme,
) {
    let rows: Vec<Row> = marks
        .iter()
        .map(|(w, access, assigned)| {
            Row::new(vec![
                Cell::from(w.name.clone()),
                Cell::from(*access),
                Cell::from(Span::styled(
                    if *assigned { "assigned" } else { "" },
                    theme.ok(),
                )),
            ])
        })
        .collect();
    let title = "Workspaces (granted or excluded / assigned)";
    if rows.is_empty() {
        let text = "No workspace is granted or assigned.";
        frame.render_widget(
            Paragraph::new(Span::styled(text, theme.dim())).block(block(title, theme)),
            area,
        );
    } else {
        let t = Table::new(
            rows,
            [
                Constraint::Fill(1),
                Constraint::Length(12),
                Constraint::Length(10),
            ],
        )
        .block(block(title, theme));
        frame.render_widget(t, area);
    }
}

fn draw_agents(
    frame: &mut Frame,
    area: Rect,
    d: &PoolDetail,
    cursor: &Cursor,
    now: i64,
    theme: Theme,
) {
    let title = format!("Agents ({})", d.agents.len());
    let rows: Vec<Row> = d
        .agents
        .iter()
        .map(|a| {
            Row::new(vec![
                Cell::from(a.name.clone()),
                Cell::from(Span::styled(a.status.as_str(), theme.agent(a.status))),
                Cell::from(ago(a.last_ping_at, now)),
                Cell::from(a.ip_address.clone()),
                Cell::from(a.version.clone()),
                Cell::from(format!("{}/{}", a.current_jobs, a.max_jobs)),
                Cell::from(if a.drained { "drained" } else { "" }),
                Cell::from(a.labels.clone()),
            ])
        })
        .collect();
    let spec = TableSpec {
        title: &title,
        header: &[
            "NAME", "STATUS", "SEEN", "IP", "VERSION", "JOBS", "DRAIN", "LABELS",
        ],
        widths: &[
            Constraint::Fill(1),
            Constraint::Length(8),
            Constraint::Length(8),
            Constraint::Length(15),
            Constraint::Length(9),
            Constraint::Length(5),
            Constraint::Length(7),
            Constraint::Fill(1),
        ],
        empty: "No agents: create a token (t) and start otf-agent with it.",
    };
    table(frame, area, theme, spec, Some(rows), cursor);
}

/// The pool's queue numbers, and sparklines of its queued and running jobs
/// over the last minutes (one bar per reading, newest on the right).
fn draw_queue(
    frame: &mut Frame,
    area: Rect,
    d: &PoolDetail,
    history: &[QueueSample],
    theme: Theme,
) {
    let [numbers, lines] =
        Layout::vertical([Constraint::Length(1), Constraint::Length(2)]).areas(area);
    let text = match d.queue {
        Some(q) => format!(
            " Queue: {} queued, {} running, {} free slots; oldest waits {}",
            q.queued,
            q.running,
            q.capacity,
            otf_core::duration::human(std::time::Duration::from_secs(q.oldest_queued_seconds))
        ),
        None => " Queue: not read yet".to_string(),
    };
    frame.render_widget(Paragraph::new(Span::raw(text)), numbers);
    let [queued_area, running_area] =
        Layout::horizontal([Constraint::Fill(1), Constraint::Fill(1)]).areas(lines);
    for (area, label, values) in [
        (
            queued_area,
            "queued",
            history.iter().map(|s| s.queued).collect::<Vec<_>>(),
        ),
        (
            running_area,
            "running",
            history.iter().map(|s| s.running).collect::<Vec<_>>(),
        ),
    ] {
        let [name, spark] =
            Layout::horizontal([Constraint::Length(9), Constraint::Fill(1)]).areas(area);
        frame.render_widget(
            Paragraph::new(Span::styled(format!(" {label}"), theme.dim())),
            name,
        );
        // The newest readings that fit.
        let shown = &values[values.len().saturating_sub(spark.width as usize)..];
        frame.render_widget(
            Sparkline::default()
                .data(shown)
                .max(values.iter().copied().max().unwrap_or(0).max(1))
                .style(theme.ok()),
            spark,
        );
    }
}
