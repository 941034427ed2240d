//! A workspace's runs; starting one from a directory.

use ratatui::layout::{Constraint, Rect};
use ratatui::text::Span;
use ratatui::widgets::{Cell, Row};
use ratatui::Frame;

use super::widgets::{mode_text, table, TableSpec};
use super::{Ctx, RunScreen, Screen, Step, View};
use crate::app::update::{clear_error, error, info, push, refusal};
use crate::app::{Action, App, Cursor, Effect, InputPurpose, Loaded, Request};
use crate::model::{Run, Workspace};
use crate::theme::Theme;
use crate::time::ago;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunsScreen {
    pub workspace: Workspace,
    pub items: Option<Vec<Run>>,
    pub cursor: Cursor,
}

impl View for RunsScreen {
    fn crumb(&self) -> String {
        format!("{} runs", self.workspace.name)
    }

    fn refresh(&self) -> Option<Request> {
        Some(Request::Runs {
            workspace: self.workspace.id.clone(),
        })
    }

    fn key(&self, c: char) -> Option<Action> {
        (c == 'n').then_some(Action::New)
    }

    fn hints(&self, ctx: Ctx) -> Vec<(&'static str, &'static str)> {
        if ctx.local_files {
            vec![("Enter", "open"), ("n", "new run")]
        } else {
            vec![("Enter", "open")]
        }
    }

    fn act(&mut self, action: Action, ctx: Ctx) -> Step {
        match action {
            Action::New if !ctx.local_files => {
                return Step::Error(
                    "this session runs inside otfd, which does not read its own files: \
                     start runs with otf-tui or terraform where the configuration is"
                        .into(),
                )
            }
            Action::Up => self.cursor.up(),
            Action::Down => self.cursor.down(self.items.as_ref().map_or(0, Vec::len)),
            Action::New => {
                return Step::Input {
                    purpose: InputPurpose::RunDirectory {
                        workspace: self.workspace.id.clone(),
                    },
                    value: String::new(),
                }
            }
            Action::Enter => {
                if let Some(r) = self
                    .items
                    .as_ref()
                    .and_then(|i| i.get(self.cursor.selected))
                {
                    let s = RunScreen::new(&self.workspace.name, &r.id);
                    return Step::Push(Box::new(Screen::Run(s)));
                }
            }
            _ => {}
        }
        Step::Nothing
    }

    fn draw(&self, frame: &mut Frame, area: Rect, ctx: Ctx, theme: Theme) {
        let rows = self.items.as_ref().map(|runs| {
            runs.iter()
                .map(|r| {
                    Row::new(vec![
                        Cell::from(r.id.clone()),
                        Cell::from(Span::styled(r.status.as_str(), theme.run(r.status))),
                        Cell::from(ago(r.created_at, ctx.now)),
                        match &r.wait_message {
                            Some(w) => Cell::from(Span::styled(format!("waits: {w}"), theme.dim())),
                            None => Cell::from(r.message.clone()),
                        },
                    ])
                })
                .collect()
        });
        let w = &self.workspace;
        let title = format!(
            "Runs of {} ({})",
            w.name,
            mode_text(w.execution_mode, w.pool.as_deref(), &[])
        );
        let spec = TableSpec {
            title: &title,
            header: &["RUN", "STATUS", "CREATED", "MESSAGE"],
            widths: &[
                Constraint::Length(22),
                Constraint::Length(20),
                Constraint::Length(9),
                Constraint::Fill(1),
            ],
            empty: "No runs yet: press n to start one from a directory.",
        };
        table(frame, area, theme, spec, rows, &self.cursor);
    }
}

pub(super) fn loaded(app: &mut App, loaded: Loaded) -> Vec<Effect> {
    match loaded {
        Loaded::Runs { workspace, result } => {
            if let Screen::Runs(s) = app.screen_mut() {
                if s.workspace.id == workspace {
                    match result {
                        Ok(r) => {
                            s.cursor.clamp(r.len());
                            s.items = Some(r);
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
                    Screen::Runs(s) if s.workspace.id == workspace => s.workspace.name.clone(),
                    _ => workspace,
                };
                return push(app, Screen::Run(RunScreen::new(&name, &r.id)));
            }
            Err(e) => refusal(app, "The run was not started", e),
        },
        _ => {}
    }
    vec![]
}
