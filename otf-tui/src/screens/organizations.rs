//! The first screen: the organizations.

use ratatui::layout::{Constraint, Rect};
use ratatui::widgets::Row;
use ratatui::Frame;

use super::widgets::{table, TableSpec};
use super::{Ctx, OrganizationScreen, Screen, Step, View};
use crate::app::update::{clear_error, error, info, refresh, refusal};
use crate::app::{Action, App, Cursor, Effect, InputPurpose, Loaded, Request};
use crate::model::Organization;
use crate::theme::Theme;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OrganizationsScreen {
    pub items: Option<Vec<Organization>>,
    pub cursor: Cursor,
}

impl View for OrganizationsScreen {
    fn crumb(&self) -> String {
        "organizations".into()
    }

    fn refresh(&self) -> Option<Request> {
        Some(Request::Organizations)
    }

    fn key(&self, c: char) -> Option<Action> {
        (c == 'n').then_some(Action::New)
    }

    fn hints(&self, _: Ctx) -> Vec<(&'static str, &'static str)> {
        vec![("Enter", "open"), ("n", "new org")]
    }

    fn act(&mut self, action: Action, _: Ctx) -> Step {
        match action {
            Action::Up => self.cursor.up(),
            Action::Down => self.cursor.down(self.items.as_ref().map_or(0, Vec::len)),
            Action::Enter => {
                if let Some(o) = self
                    .items
                    .as_ref()
                    .and_then(|i| i.get(self.cursor.selected))
                {
                    return Step::Push(Box::new(Screen::Organization(OrganizationScreen {
                        org: o.name.clone(),
                        cursor: Cursor::default(),
                    })));
                }
            }
            Action::New => {
                return Step::Input {
                    purpose: InputPurpose::NewOrganization,
                    value: String::new(),
                }
            }
            _ => {}
        }
        Step::Nothing
    }

    fn draw(&self, frame: &mut Frame, area: Rect, _: Ctx, theme: Theme) {
        let rows = self.items.as_ref().map(|orgs| {
            orgs.iter()
                .map(|o| Row::new(vec![o.name.clone()]))
                .collect()
        });
        let spec = TableSpec {
            title: "Organizations",
            header: &["NAME"],
            widths: &[Constraint::Fill(1)],
            empty: "No organizations yet: press n to create one.",
        };
        table(frame, area, theme, spec, rows, &self.cursor);
    }
}

pub(super) fn loaded(app: &mut App, loaded: Loaded) -> Vec<Effect> {
    match loaded {
        Loaded::Organizations(Ok(orgs)) => {
            for s in &mut app.stack {
                if let Screen::Organizations(s) = s {
                    s.cursor.clamp(orgs.len());
                    s.items = Some(orgs.clone());
                }
            }
            clear_error(app);
        }
        Loaded::Organizations(Err(e)) => error(app, e),
        Loaded::OrganizationCreated(Ok(o)) => {
            info(app, format!("created organization {}", o.name));
            if let Screen::Organizations(s) = app.screen_mut() {
                let list = s.items.get_or_insert_with(Vec::new);
                list.push(o);
                s.cursor.selected = list.len() - 1;
            }
            return refresh(app);
        }
        Loaded::OrganizationCreated(Err(e)) => refusal(app, "Could not create the organization", e),
        _ => {}
    }
    vec![]
}
