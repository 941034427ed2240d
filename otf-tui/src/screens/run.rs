//! One run: its status, phases and live logs; apply, discard and cancels.

use otf_core::run::{LOG_END, LOG_START};
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::Paragraph;
use ratatui::Frame;

use super::widgets::{block, loading};
use super::{Ctx, Screen, Step, View};
use crate::app::update::{action_verb, clear_error, error, info, refresh, refusal};
use crate::app::{Action, App, Confirmed, Effect, Loaded, Request};
use crate::client::RunAction;
use crate::model::{Phase, Run};
use crate::theme::Theme;

/// A log being tailed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LogTail {
    pub bytes: Vec<u8>,
    /// The end marker arrived: nothing more will come.
    pub done: bool,
}

impl LogTail {
    /// Where to read on from; None once done.
    pub fn offset(&self) -> Option<usize> {
        (!self.done).then_some(self.bytes.len())
    }

    /// Append new log bytes; the end marker closes the log.
    fn append(&mut self, read_from: Option<usize>, bytes: Vec<u8>) {
        // Bytes read from an offset other than the current end are stale.
        if read_from != self.offset() {
            return;
        }
        self.bytes.extend_from_slice(&bytes);
        if self.bytes.last() == Some(&LOG_END) {
            self.done = true;
        }
    }
}

/// The text of a log without its frame bytes.
pub fn log_text(tail: &LogTail) -> String {
    let b = &tail.bytes;
    let b = b.strip_prefix(&[LOG_START]).unwrap_or(b);
    let b = b.strip_suffix(&[LOG_END]).unwrap_or(b);
    String::from_utf8_lossy(b).into_owned()
}

/// What the run screen shows besides the logs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunView {
    pub run: Run,
    pub plan: Option<Phase>,
    pub apply: Option<Phase>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunScreen {
    pub workspace: String,
    pub id: String,
    pub detail: Option<RunView>,
    pub plan_log: LogTail,
    pub apply_log: LogTail,
    /// Lines scrolled up from the end of the log; 0 follows it.
    pub scroll: usize,
}

impl RunScreen {
    /// Run `id` of the workspace named `workspace`, being loaded.
    pub fn new(workspace: &str, id: &str) -> RunScreen {
        RunScreen {
            workspace: workspace.to_string(),
            id: id.to_string(),
            detail: None,
            plan_log: LogTail::default(),
            apply_log: LogTail::default(),
            scroll: 0,
        }
    }

    /// The confirmation to ask before `action`, or why it cannot be done.
    fn run_action(&self, action: RunAction) -> Step {
        let Some(d) = &self.detail else {
            return Step::Nothing;
        };
        let allowed = match action {
            RunAction::Apply => d.run.is_confirmable,
            RunAction::Discard => d.run.is_discardable,
            RunAction::Cancel => d.run.is_cancelable,
            RunAction::ForceCancel => d.run.is_force_cancelable,
        };
        if !allowed {
            return Step::Error(format!(
                "cannot {} a run that is {}",
                action_verb(action),
                d.run.status
            ));
        }
        Step::Confirm {
            question: format!("{} run {}?", capitalized(action_verb(action)), self.id),
            on_yes: Confirmed::RunAction {
                run: self.id.clone(),
                action,
            },
        }
    }
}

fn capitalized(s: &str) -> String {
    let mut c = s.chars();
    c.next()
        .map(|f| f.to_uppercase().chain(c).collect())
        .unwrap_or_default()
}

impl View for RunScreen {
    fn crumb(&self) -> String {
        self.id.clone()
    }

    fn refresh(&self) -> Option<Request> {
        // A finished run whose logs are complete changes no more.
        let final_ = self.detail.as_ref().is_some_and(|d| d.run.is_final());
        if final_ && self.plan_log.done && self.apply_log.done {
            return None;
        }
        Some(Request::RunDetail {
            run: self.id.clone(),
            plan_offset: self.plan_log.offset(),
            apply_offset: self.apply_log.offset(),
        })
    }

    fn key(&self, c: char) -> Option<Action> {
        match c {
            'a' => Some(Action::Run(RunAction::Apply)),
            'D' => Some(Action::Run(RunAction::Discard)),
            'c' => Some(Action::Run(RunAction::Cancel)),
            'C' => Some(Action::Run(RunAction::ForceCancel)),
            _ => None,
        }
    }

    fn hints(&self, _: Ctx) -> Vec<(&'static str, &'static str)> {
        vec![
            ("a", "apply"),
            ("D", "discard"),
            ("c", "cancel"),
            ("C", "force-cancel"),
            ("↑↓", "scroll"),
        ]
    }

    fn act(&mut self, action: Action, _: Ctx) -> Step {
        match action {
            Action::Up => self.scroll += 1,
            Action::Down => self.scroll = self.scroll.saturating_sub(1),
            Action::Run(action) => return self.run_action(action),
            _ => {}
        }
        Step::Nothing
    }

    fn draw(&self, frame: &mut Frame, area: Rect, _: Ctx, theme: Theme) {
        match &self.detail {
            Some(d) => draw_run(frame, area, self, d, theme),
            None => loading(frame, area, &format!("Run {}", self.id), theme),
        }
    }
}

pub(super) fn loaded(app: &mut App, loaded: Loaded) -> Vec<Effect> {
    match loaded {
        Loaded::RunDetail {
            run,
            plan_offset,
            apply_offset,
            result,
        } => {
            if let Screen::Run(s) = app.screen_mut() {
                if s.id == run {
                    match result {
                        Ok(d) => {
                            s.plan_log.append(plan_offset, d.plan_log);
                            s.apply_log.append(apply_offset, d.apply_log);
                            s.detail = Some(RunView {
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
        _ => {}
    }
    vec![]
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

fn draw_run(frame: &mut Frame, area: Rect, s: &RunScreen, d: &RunView, theme: Theme) {
    let [head, log_area] =
        Layout::vertical([Constraint::Length(5), Constraint::Min(2)]).areas(area);
    draw_head(frame, head, &s.workspace, d, theme);
    draw_log(frame, log_area, s, theme);
}

fn draw_head(frame: &mut Frame, area: Rect, workspace: &str, d: &RunView, theme: Theme) {
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
    frame.render_widget(Paragraph::new(lines), area);
}

fn draw_log(frame: &mut Frame, area: Rect, s: &RunScreen, theme: Theme) {
    let (plan_log, apply_log, scroll) = (&s.plan_log, &s.apply_log, s.scroll);
    let mut text = strip_ansi(&log_text(plan_log));
    if !apply_log.bytes.is_empty() {
        text.push_str("\n--- apply ---\n");
        text.push_str(&strip_ansi(&log_text(apply_log)));
    }
    let all: Vec<&str> = text.lines().collect();
    let height = area.height.saturating_sub(1) as usize;
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
    frame.render_widget(Paragraph::new(shown).block(block(&title, theme)), area);
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
