//! The organization's active jobs: where each runs, or why it waits.

use otf_core::scheduler::WaitReason;
use ratatui::layout::{Constraint, Rect};
use ratatui::widgets::Row;
use ratatui::Frame;

use super::widgets::{pool_name, table, TableSpec};
use super::{Ctx, Screen, Step, View};
use crate::app::update::{clear_error, error};
use crate::app::{Action, App, Cursor, Effect, Loaded, QueueView, Request};
use crate::model::Job;
use crate::theme::Theme;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobsScreen {
    pub org: String,
    pub view: Option<QueueView>,
    pub cursor: Cursor,
}

/// Where a job runs, or why it waits.
fn where_(j: &Job) -> String {
    match (j.agent_name.as_deref(), j.wait_reason) {
        (Some(a), _) => format!("on {a}"),
        (None, Some(_)) if j.wait_message.is_some() => {
            format!("waits: {}", j.wait_message.as_deref().unwrap_or_default())
        }
        (None, Some(WaitReason::NoAgent)) => "waits: no agent".into(),
        (None, Some(WaitReason::NoCapacity)) => "waits: no capacity".into(),
        (None, Some(WaitReason::Drained)) => "waits: pool drained".into(),
        (None, Some(other)) => format!("waits: {other}"),
        (None, None) => "being allocated".into(),
    }
}

impl View for JobsScreen {
    fn crumb(&self) -> String {
        "jobs".into()
    }

    fn refresh(&self) -> Option<Request> {
        Some(Request::Jobs {
            org: self.org.clone(),
        })
    }

    fn key(&self, _: char) -> Option<Action> {
        None
    }

    fn hints(&self, _: Ctx) -> Vec<(&'static str, &'static str)> {
        vec![]
    }

    fn act(&mut self, action: Action, _: Ctx) -> Step {
        match action {
            Action::Up => self.cursor.up(),
            Action::Down => self
                .cursor
                .down(self.view.as_ref().map_or(0, |v| v.jobs.len())),
            _ => {}
        }
        Step::Nothing
    }

    fn draw(&self, frame: &mut Frame, area: Rect, _: Ctx, theme: Theme) {
        let rows = self.view.as_ref().map(|v| {
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
                    Row::new(vec![
                        ws,
                        j.phase.as_str().to_string(),
                        j.status.as_str().to_string(),
                        runner,
                        where_(j),
                    ])
                })
                .collect()
        });
        let title = format!("Active jobs of {}", self.org);
        let spec = TableSpec {
            title: &title,
            header: &["WORKSPACE", "PHASE", "STATUS", "RUNNER", "AGENT / WAIT"],
            widths: &[
                Constraint::Fill(1),
                Constraint::Length(5),
                Constraint::Length(11),
                Constraint::Fill(1),
                Constraint::Fill(2),
            ],
            empty: "No active jobs: nothing runs or waits.",
        };
        table(frame, area, theme, spec, rows, &self.cursor);
    }
}

pub(super) fn loaded(app: &mut App, loaded: Loaded) -> Vec<Effect> {
    let Loaded::Jobs { org, result } = loaded else {
        return vec![];
    };
    if let Screen::Jobs(s) = app.screen_mut() {
        if s.org == org {
            match result {
                Ok(v) => {
                    s.cursor.clamp(v.jobs.len());
                    s.view = Some(v);
                    clear_error(app);
                }
                Err(e) => error(app, e),
            }
        }
    }
    vec![]
}
