//! One drawing function per screen.

use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Cell, Paragraph, Row, Sparkline, Table, TableState};
use ratatui::Frame;

use crate::app::{
    log_text, pool_workspace_marks, App, Cursor, LogTail, PoolDetail, QueueSample, RunView, Screen,
    Section,
};
use crate::model::{ExecutionModeKind, Phase, Pool, Workspace};
use crate::theme::Theme;
use crate::time::ago;

pub fn draw(frame: &mut Frame, area: Rect, app: &App, theme: Theme) {
    match app.screen() {
        Screen::Organizations { items, cursor } => {
            let rows = items.as_ref().map(|orgs| {
                orgs.iter()
                    .map(|o| Row::new(vec![o.name.clone()]))
                    .collect()
            });
            let empty = "No organizations yet: press n to create one.";
            table(
                frame,
                area,
                theme,
                "Organizations",
                &["NAME"],
                &[Constraint::Fill(1)],
                rows,
                cursor,
                empty,
            );
        }
        Screen::Organization { org, cursor } => {
            let rows = Some(
                Section::ALL
                    .iter()
                    .map(|s| Row::new(vec![s.title().to_string()]))
                    .collect(),
            );
            let title = format!("Organization {org}");
            table(
                frame,
                area,
                theme,
                &title,
                &["SECTION"],
                &[Constraint::Fill(1)],
                rows,
                cursor,
                "",
            );
        }
        Screen::Pools { org, items, cursor } => {
            let rows = items.as_ref().map(|pools| {
                pools
                    .iter()
                    .map(|p| {
                        Row::new(vec![
                            p.name.clone(),
                            scope(p).to_string(),
                            p.assigned.len().to_string(),
                            p.agent_count.to_string(),
                        ])
                    })
                    .collect()
            });
            let title = format!("Agent pools of {org}");
            let widths = [
                Constraint::Fill(2),
                Constraint::Length(22),
                Constraint::Length(9),
                Constraint::Length(7),
            ];
            let empty = "No agent pools yet: press n to create one.";
            table(
                frame,
                area,
                theme,
                &title,
                &["NAME", "ACCESS", "ASSIGNED", "AGENTS"],
                &widths,
                rows,
                cursor,
                empty,
            );
        }
        Screen::Pool {
            id,
            detail,
            cursor,
            history,
            ..
        } => match detail {
            Some(d) => pool(frame, area, d, cursor, history, app.now, theme),
            None => loading(frame, area, &format!("Agent pool {id}"), theme),
        },
        Screen::Grants {
            pool,
            workspaces,
            organization_scoped,
            granted,
            excluded,
            cursor,
        } => {
            let radio = |on: bool| if on { "(•)" } else { "( )" };
            let mut rows = vec![
                Row::new(vec![format!(
                    "{} All workspaces of the organization",
                    radio(*organization_scoped)
                )]),
                Row::new(vec![format!(
                    "{} Grant access to specific workspaces:",
                    radio(!*organization_scoped)
                )]),
            ];
            for w in workspaces {
                let on = granted.contains(&w.id);
                let out = excluded.contains(&w.id);
                let style = if *organization_scoped && !out {
                    theme.dim()
                } else {
                    Default::default()
                };
                let line = match (out, on) {
                    (true, _) => format!("    [-] {} (excluded: may never use the pool)", w.name),
                    (false, true) => format!("    [x] {}", w.name),
                    (false, false) => format!("    [ ] {}", w.name),
                };
                rows.push(Row::new(vec![line]).style(style));
            }
            let title = format!(
                "Workspaces that may use {} (space grants, x excludes, s saves)",
                pool.name
            );
            table(
                frame,
                area,
                theme,
                &title,
                &["ACCESS"],
                &[Constraint::Fill(1)],
                Some(rows),
                cursor,
                "",
            );
        }
        Screen::Tokens {
            pool,
            items,
            cursor,
        } => {
            let rows = items.as_ref().map(|tokens| {
                tokens
                    .iter()
                    .map(|t| {
                        Row::new(vec![
                            t.description.clone(),
                            ago(t.created_at, app.now),
                            ago(t.last_used_at, app.now),
                        ])
                    })
                    .collect()
            });
            let title = format!("Agent tokens of {}", pool.name);
            let widths = [
                Constraint::Fill(1),
                Constraint::Length(12),
                Constraint::Length(12),
            ];
            let empty = "No tokens: press n to create one for an agent.";
            table(
                frame,
                area,
                theme,
                &title,
                &["DESCRIPTION", "CREATED", "LAST USED"],
                &widths,
                rows,
                cursor,
                empty,
            );
        }
        Screen::Workspaces {
            org,
            items,
            pools,
            cursor,
        } => {
            let rows = items.as_ref().map(|ws| {
                ws.iter()
                    .map(|w| {
                        Row::new(vec![
                            w.name.clone(),
                            w.execution_mode.as_str().to_string(),
                            pool_name(w.pool.as_deref(), pools),
                            w.agent_selector.clone(),
                        ])
                    })
                    .collect()
            });
            let title = format!("Workspaces of {org}");
            let widths = [
                Constraint::Fill(1),
                Constraint::Length(10),
                Constraint::Fill(1),
                Constraint::Fill(1),
            ];
            let empty = "No workspaces yet: press n to create one.";
            table(
                frame,
                area,
                theme,
                &title,
                &["NAME", "MODE", "AGENT POOL", "AGENT LABELS"],
                &widths,
                rows,
                cursor,
                empty,
            );
        }
        Screen::Settings {
            workspace,
            pools,
            mode,
            pool,
            cursor,
        } => settings(
            frame,
            area,
            workspace,
            pools,
            *mode,
            pool.as_deref(),
            cursor,
            theme,
        ),
        Screen::Runs {
            workspace,
            items,
            cursor,
        } => {
            let rows = items.as_ref().map(|runs| {
                runs.iter()
                    .map(|r| {
                        Row::new(vec![
                            Cell::from(r.id.clone()),
                            Cell::from(Span::styled(r.status.as_str(), theme.run(r.status))),
                            Cell::from(ago(r.created_at, app.now)),
                            match &r.wait_message {
                                Some(w) => {
                                    Cell::from(Span::styled(format!("waits: {w}"), theme.dim()))
                                }
                                None => Cell::from(r.message.clone()),
                            },
                        ])
                    })
                    .collect()
            });
            let title = format!(
                "Runs of {} ({})",
                workspace.name,
                mode_text(workspace.execution_mode, workspace.pool.as_deref(), &[])
            );
            let widths = [
                Constraint::Length(22),
                Constraint::Length(20),
                Constraint::Length(9),
                Constraint::Fill(1),
            ];
            let empty = "No runs yet: press n to start one from a directory.";
            table(
                frame,
                area,
                theme,
                &title,
                &["RUN", "STATUS", "CREATED", "MESSAGE"],
                &widths,
                rows,
                cursor,
                empty,
            );
        }
        Screen::Run {
            workspace,
            id,
            detail,
            plan_log,
            apply_log,
            scroll,
        } => match detail {
            Some(d) => run(
                frame, area, workspace, d, plan_log, apply_log, *scroll, theme,
            ),
            None => loading(frame, area, &format!("Run {id}"), theme),
        },
        Screen::Jobs { org, view, cursor } => {
            let rows = view.as_ref().map(|v| {
                v.jobs
                    .iter()
                    .map(|j| {
                        let ws = v
                            .workspaces
                            .iter()
                            .find(|w| w.id == j.workspace)
                            .map_or_else(|| j.workspace.clone(), |w| w.name.clone());
                        let runner = match (&j.pool, &j.agent_name) {
                            (None, Some(a)) => format!("server: {a}"),
                            (None, None) => "server".to_string(),
                            (Some(p), _) => pool_name(Some(p), &v.pools),
                        };
                        let wait = match (j.agent_name.as_deref(), j.wait_reason.as_deref()) {
                            (Some(a), _) => format!("on {a}"),
                            (None, Some(_)) if j.wait_message.is_some() => {
                                format!("waits: {}", j.wait_message.as_deref().unwrap_or_default())
                            }
                            (None, Some("no-agent")) => "waits: no agent".into(),
                            (None, Some("no-capacity")) => "waits: no capacity".into(),
                            (None, Some("drained")) => "waits: pool drained".into(),
                            (None, Some(other)) => format!("waits: {other}"),
                            (None, None) => "being allocated".into(),
                        };
                        Row::new(vec![
                            ws,
                            j.phase.as_str().to_string(),
                            j.status.as_str().to_string(),
                            runner,
                            wait,
                        ])
                    })
                    .collect()
            });
            let title = format!("Active jobs of {org}");
            let widths = [
                Constraint::Fill(1),
                Constraint::Length(5),
                Constraint::Length(11),
                Constraint::Fill(1),
                Constraint::Fill(2),
            ];
            let empty = "No active jobs: nothing runs or waits.";
            table(
                frame,
                area,
                theme,
                &title,
                &["WORKSPACE", "PHASE", "STATUS", "RUNNER", "AGENT / WAIT"],
                &widths,
                rows,
                cursor,
                empty,
            );
        }
    }
}

fn block(title: &str, theme: Theme) -> Block<'static> {
    Block::default()
        .borders(Borders::TOP)
        .title(Span::styled(format!(" {title} "), theme.title()))
}

fn loading(frame: &mut Frame, area: Rect, title: &str, theme: Theme) {
    frame.render_widget(
        Paragraph::new(Span::styled("loading…", theme.dim())).block(block(title, theme)),
        area,
    );
}

/// A titled table with a cursor; `rows: None` while loading.
#[expect(
    clippy::too_many_arguments,
    reason = "one call per screen, all of it layout"
)]
fn table(
    frame: &mut Frame,
    area: Rect,
    theme: Theme,
    title: &str,
    header: &[&str],
    widths: &[Constraint],
    rows: Option<Vec<Row>>,
    cursor: &Cursor,
    empty: &str,
) {
    let Some(rows) = rows else {
        return loading(frame, area, title, theme);
    };
    if rows.is_empty() {
        frame.render_widget(
            Paragraph::new(Span::styled(empty.to_string(), theme.dim())).block(block(title, theme)),
            area,
        );
        return;
    }
    let header = Row::new(header.iter().map(|h| h.to_string())).style(theme.header());
    let t = Table::new(rows, widths.to_vec())
        .header(header)
        .block(block(title, theme))
        .row_highlight_style(theme.selected())
        .highlight_symbol("> ");
    let mut state = TableState::default().with_selected(Some(cursor.selected));
    frame.render_stateful_widget(t, area, &mut state);
}

fn scope(p: &Pool) -> &'static str {
    if p.organization_scoped {
        "organization-scoped"
    } else {
        "granted workspaces"
    }
}

fn pool_name(id: Option<&str>, pools: &[Pool]) -> String {
    match id {
        None => String::new(),
        Some(id) => pools
            .iter()
            .find(|p| p.id == id)
            .map_or_else(|| id.to_string(), |p| p.name.clone()),
    }
}

fn mode_text(mode: ExecutionModeKind, pool: Option<&str>, pools: &[Pool]) -> String {
    match (mode, pool) {
        (ExecutionModeKind::Agent, Some(p)) => format!("agent: {}", pool_name(Some(p), pools)),
        (m, _) => m.as_str().to_string(),
    }
}

fn pool(
    frame: &mut Frame,
    area: Rect,
    d: &PoolDetail,
    cursor: &Cursor,
    history: &[QueueSample],
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
    queue(frame, queue_area, d, history, theme);
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
        head,
    );
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
            ws_area,
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
        frame.render_widget(t, ws_area);
    }
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
    table(
        frame,
        agents_area,
        theme,
        &title,
        &[
            "NAME", "STATUS", "SEEN", "IP", "VERSION", "JOBS", "DRAIN", "LABELS",
        ],
        &[
            Constraint::Fill(1),
            Constraint::Length(8),
            Constraint::Length(8),
            Constraint::Length(15),
            Constraint::Length(9),
            Constraint::Length(5),
            Constraint::Length(7),
            Constraint::Fill(1),
        ],
        Some(rows),
        cursor,
        "No agents: create a token (t) and start otf-agent with it.",
    );
}

/// The pool's queue numbers, and sparklines of its queued and running jobs
/// over the last minutes (one bar per reading, newest on the right).
fn queue(frame: &mut Frame, area: Rect, d: &PoolDetail, history: &[QueueSample], theme: Theme) {
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

#[expect(clippy::too_many_arguments, reason = "the settings screen's fields")]
fn settings(
    frame: &mut Frame,
    area: Rect,
    workspace: &Workspace,
    pools: &[Pool],
    mode: ExecutionModeKind,
    pool: Option<&str>,
    cursor: &Cursor,
    theme: Theme,
) {
    let radio = |on: bool| if on { "(•)" } else { "( )" };
    let mut rows = vec![
        Row::new(vec![format!(
            "{} remote: runs execute on the server",
            radio(mode == ExecutionModeKind::Remote)
        )]),
        Row::new(vec![format!(
            "{} local: the CLI runs terraform, state only",
            radio(mode == ExecutionModeKind::Local)
        )]),
        Row::new(vec![format!(
            "{} agent: runs execute on an agent pool:",
            radio(mode == ExecutionModeKind::Agent)
        )]),
    ];
    for p in pools {
        let on = mode == ExecutionModeKind::Agent && pool == Some(p.id.as_str());
        let style = if mode == ExecutionModeKind::Agent {
            Default::default()
        } else {
            theme.dim()
        };
        rows.push(
            Row::new(vec![format!("    {} {} ({})", radio(on), p.name, scope(p))]).style(style),
        );
    }
    if pools.is_empty() {
        rows.push(
            Row::new(vec!["    (no agent pools in this organization)".to_string()])
                .style(theme.dim()),
        );
    }
    let title = format!("Execution mode of {} (s saves)", workspace.name);
    table(
        frame,
        area,
        theme,
        &title,
        &["MODE"],
        &[Constraint::Fill(1)],
        Some(rows),
        cursor,
        "",
    );
}

fn phase_line<'a>(name: &'a str, p: Option<&Phase>, theme: Theme) -> Line<'a> {
    match p {
        None => Line::from(format!(" {name:<6} -")),
        Some(p) => Line::from(vec![
            Span::raw(format!(" {name:<6} ")),
            Span::styled(format!("{:<9}", p.status.as_str()), theme.phase(p.status)),
            Span::raw(format!(
                " +{} ~{} -{}  (add, change, destroy)",
                p.additions, p.changes, p.destructions
            )),
        ]),
    }
}

#[expect(clippy::too_many_arguments, reason = "the run screen's fields")]
fn run(
    frame: &mut Frame,
    area: Rect,
    workspace: &str,
    d: &RunView,
    plan_log: &LogTail,
    apply_log: &LogTail,
    scroll: usize,
    theme: Theme,
) {
    let [head, log_area] =
        Layout::vertical([Constraint::Length(5), Constraint::Min(2)]).areas(area);
    let r = &d.run;
    let mut actions = Vec::new();
    if r.is_confirmable {
        actions.push("a apply");
    }
    if r.is_discardable {
        actions.push("D discard");
    }
    if r.is_cancelable {
        actions.push("c cancel");
    }
    if r.is_force_cancelable {
        actions.push("C force-cancel");
    }
    let mut lines = vec![
        Line::from(vec![
            Span::styled(format!(" Run {} ", r.id), theme.title()),
            Span::raw(format!("of {workspace}: ")),
            Span::styled(r.status.as_str(), theme.run(r.status)),
        ]),
        phase_line("plan", d.plan.as_ref(), theme),
        phase_line("apply", d.apply.as_ref(), theme),
    ];
    if let Some(e) = &r.error {
        lines.push(Line::styled(format!(" error: {e}"), theme.error()));
    } else if !actions.is_empty() {
        lines.push(Line::styled(
            format!(" now possible: {}", actions.join(", ")),
            theme.warn(),
        ));
    }
    frame.render_widget(Paragraph::new(lines), head);

    let mut text = strip_ansi(&log_text(plan_log));
    if !apply_log.bytes.is_empty() {
        text.push_str("\n--- apply ---\n");
        text.push_str(&strip_ansi(&log_text(apply_log)));
    }
    let all: Vec<&str> = text.lines().collect();
    let height = log_area.height.saturating_sub(1) as usize;
    let end = all.len().saturating_sub(scroll.min(all.len()));
    let start = end.saturating_sub(height);
    let shown: Vec<Line> = all[start..end]
        .iter()
        .map(|l| Line::from(l.to_string()))
        .collect();
    let live = if plan_log.done && (apply_log.done || apply_log.bytes.is_empty()) {
        "log"
    } else {
        "log (live)"
    };
    let title = if scroll > 0 {
        format!("{live}, {scroll} lines up")
    } else {
        live.to_string()
    };
    frame.render_widget(Paragraph::new(shown).block(block(&title, theme)), log_area);
}

/// Terraform may colour its output; escape sequences would garble the screen.
fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\x1b' {
            // CSI: ESC [ params... final byte in @..~
            if chars.next() == Some('[') {
                for c in chars.by_ref() {
                    if ('@'..='~').contains(&c) {
                        break;
                    }
                }
            }
        } else if c == '\r' || (c.is_control() && c != '\n' && c != '\t') {
            continue;
        } else {
            out.push(c);
        }
    }
    out
}
