//! A pool's agent tokens: create (the secret is shown once), revoke.

use ratatui::layout::{Constraint, Rect};
use ratatui::widgets::Row;
use ratatui::Frame;

use super::widgets::{table, TableSpec};
use super::{Ctx, Screen, Step, View};
use crate::app::update::{clear_error, error, info, refresh, refusal};
use crate::app::{Action, App, Confirmed, Cursor, Effect, InputPurpose, Loaded, Modal, Request};
use crate::model::{Pool, Token};
use crate::theme::Theme;
use crate::time::ago;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokensScreen {
    pub pool: Pool,
    pub items: Option<Vec<Token>>,
    pub cursor: Cursor,
}

impl View for TokensScreen {
    fn crumb(&self) -> String {
        "tokens".into()
    }

    fn refresh(&self) -> Option<Request> {
        Some(Request::Tokens {
            pool: self.pool.id.clone(),
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
        vec![("n", "new token"), ("d", "revoke")]
    }

    fn act(&mut self, action: Action, _: Ctx) -> Step {
        match action {
            Action::Up => self.cursor.up(),
            Action::Down => self.cursor.down(self.items.as_ref().map_or(0, Vec::len)),
            Action::New => {
                return Step::Input {
                    purpose: InputPurpose::NewToken {
                        pool: self.pool.id.clone(),
                    },
                    value: String::new(),
                }
            }
            Action::Delete => {
                if let Some(t) = self
                    .items
                    .as_ref()
                    .and_then(|i| i.get(self.cursor.selected))
                {
                    return Step::Confirm {
                        question: format!(
                            "Revoke token {:?}? Agents using it are shut out at once.",
                            t.description
                        ),
                        on_yes: Confirmed::RevokeToken {
                            pool: self.pool.id.clone(),
                            id: t.id.clone(),
                        },
                    };
                }
            }
            _ => {}
        }
        Step::Nothing
    }

    fn draw(&self, frame: &mut Frame, area: Rect, ctx: Ctx, theme: Theme) {
        let rows = self.items.as_ref().map(|tokens| {
            tokens
                .iter()
                .map(|t| {
                    Row::new(vec![
                        t.description.clone(),
                        ago(t.created_at, ctx.now),
                        ago(t.last_used_at, ctx.now),
                    ])
                })
                .collect()
        });
        let title = format!("Agent tokens of {}", self.pool.name);
        let spec = TableSpec {
            title: &title,
            header: &["DESCRIPTION", "CREATED", "LAST USED"],
            widths: &[
                Constraint::Fill(1),
                Constraint::Length(12),
                Constraint::Length(12),
            ],
            empty: "No tokens: press n to create one for an agent.",
        };
        table(frame, area, theme, spec, rows, &self.cursor);
    }
}

pub(super) fn loaded(app: &mut App, loaded: Loaded) -> Vec<Effect> {
    match loaded {
        Loaded::Tokens { pool, result } => {
            if let Screen::Tokens(s) = app.screen_mut() {
                if s.pool.id == pool {
                    match result {
                        Ok(t) => {
                            s.cursor.clamp(t.len());
                            s.items = Some(t);
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
        _ => {}
    }
    vec![]
}
