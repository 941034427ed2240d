//! An organization's agent pools.

use ratatui::layout::{Constraint, Rect};
use ratatui::widgets::Row;
use ratatui::Frame;

use super::widgets::{scope, table, TableSpec};
use super::{Ctx, PoolScreen, Screen, Step, View};
use crate::app::update::{clear_error, error, info, push, refusal};
use crate::app::{Action, App, Confirmed, Cursor, Effect, InputPurpose, Loaded, Request};
use crate::model::Pool;
use crate::theme::Theme;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolsScreen {
    pub org: String,
    pub items: Option<Vec<Pool>>,
    pub cursor: Cursor,
}

/// The question before a pool is deleted.
pub(super) fn delete_question(name: &str) -> String {
    format!("Delete agent pool {name:?}? Its tokens are revoked.")
}

impl View for PoolsScreen {
    fn crumb(&self) -> String {
        "agent pools".into()
    }

    fn refresh(&self) -> Option<Request> {
        Some(Request::Pools {
            org: self.org.clone(),
        })
    }

    fn key(&self, c: char) -> Option<Action> {
        match c {
            'n' => Some(Action::New),
            'd' => Some(Action::Delete),
            _ => None,
        }
    }

    fn hints(&self, _: Ctx) -> Vec<(&'static str, &'static str)> {
        vec![("Enter", "open"), ("n", "new pool"), ("d", "delete")]
    }

    fn act(&mut self, action: Action, _: Ctx) -> Step {
        let selected = self
            .items
            .as_ref()
            .and_then(|i| i.get(self.cursor.selected));
        match action {
            Action::Up => self.cursor.up(),
            Action::Down => self.cursor.down(self.items.as_ref().map_or(0, Vec::len)),
            Action::Enter => {
                if let Some(p) = selected {
                    return Step::Push(Box::new(Screen::Pool(PoolScreen::new(&self.org, &p.id))));
                }
            }
            Action::New => {
                return Step::Input {
                    purpose: InputPurpose::NewPool {
                        org: self.org.clone(),
                    },
                    value: String::new(),
                }
            }
            Action::Delete => {
                if let Some(p) = selected {
                    return Step::Confirm {
                        question: delete_question(&p.name),
                        on_yes: Confirmed::DeletePool { id: p.id.clone() },
                    };
                }
            }
            _ => {}
        }
        Step::Nothing
    }

    fn draw(&self, frame: &mut Frame, area: Rect, _: Ctx, theme: Theme) {
        let rows = self.items.as_ref().map(|pools| {
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
        let title = format!("Agent pools of {}", self.org);
        let spec = TableSpec {
            title: &title,
            header: &["NAME", "ACCESS", "ASSIGNED", "AGENTS"],
            widths: &[
                Constraint::Fill(2),
                Constraint::Length(22),
                Constraint::Length(9),
                Constraint::Length(7),
            ],
            empty: "No agent pools yet: press n to create one.",
        };
        table(frame, area, theme, spec, rows, &self.cursor);
    }
}

pub(super) fn loaded(app: &mut App, loaded: Loaded) -> Vec<Effect> {
    match loaded {
        Loaded::Pools { org, result } => {
            if let Screen::Pools(s) = app.screen_mut() {
                if s.org == org {
                    match result {
                        Ok(pools) => {
                            s.cursor.clamp(pools.len());
                            s.items = Some(pools);
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
                return push(app, Screen::Pool(PoolScreen::new(&org, &p.id)));
            }
            Err(e) => refusal(app, "Could not create the agent pool", e),
        },
        _ => {}
    }
    vec![]
}
