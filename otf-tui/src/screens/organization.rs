//! An organization: its sections.

use ratatui::layout::{Constraint, Rect};
use ratatui::widgets::Row;
use ratatui::Frame;

use super::widgets::{table, TableSpec};
use super::{Ctx, JobsScreen, PoolsScreen, Screen, Step, View, WorkspacesScreen};
use crate::app::{Action, Cursor, Request};
use crate::theme::Theme;

/// The sections of an organization.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Section {
    Pools,
    Workspaces,
    Jobs,
}

impl Section {
    pub const ALL: [Section; 3] = [Section::Pools, Section::Workspaces, Section::Jobs];

    pub fn title(self) -> &'static str {
        match self {
            Section::Pools => "Agent pools",
            Section::Workspaces => "Workspaces",
            Section::Jobs => "Jobs and queue",
        }
    }

    /// The section's screen, being loaded.
    fn screen(self, org: String) -> Screen {
        match self {
            Section::Pools => Screen::Pools(PoolsScreen {
                org,
                items: None,
                cursor: Cursor::default(),
            }),
            Section::Workspaces => Screen::Workspaces(WorkspacesScreen {
                org,
                items: None,
                pools: Vec::new(),
                cursor: Cursor::default(),
            }),
            Section::Jobs => Screen::Jobs(JobsScreen {
                org,
                view: None,
                cursor: Cursor::default(),
            }),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrganizationScreen {
    pub org: String,
    pub cursor: Cursor,
}

impl View for OrganizationScreen {
    fn crumb(&self) -> String {
        self.org.clone()
    }

    fn refresh(&self) -> Option<Request> {
        None
    }

    fn key(&self, c: char) -> Option<Action> {
        match c {
            '1' | 'p' => Some(Action::Open(Section::Pools)),
            '2' | 'w' => Some(Action::Open(Section::Workspaces)),
            '3' | 'b' => Some(Action::Open(Section::Jobs)),
            _ => None,
        }
    }

    fn hints(&self, _: Ctx) -> Vec<(&'static str, &'static str)> {
        vec![
            ("Enter", "open"),
            ("p", "pools"),
            ("w", "workspaces"),
            ("b", "jobs"),
        ]
    }

    fn act(&mut self, action: Action, _: Ctx) -> Step {
        match action {
            Action::Up => self.cursor.up(),
            Action::Down => self.cursor.down(Section::ALL.len()),
            Action::Enter => {
                let section = Section::ALL[self.cursor.selected.min(2)];
                return Step::Push(Box::new(section.screen(self.org.clone())));
            }
            Action::Open(section) => return Step::Push(Box::new(section.screen(self.org.clone()))),
            _ => {}
        }
        Step::Nothing
    }

    fn draw(&self, frame: &mut Frame, area: Rect, _: Ctx, theme: Theme) {
        let rows = Some(
            Section::ALL
                .iter()
                .map(|s| Row::new(vec![s.title().to_string()]))
                .collect(),
        );
        let title = format!("Organization {}", self.org);
        let spec = TableSpec {
            title: &title,
            header: &["SECTION"],
            widths: &[Constraint::Fill(1)],
            empty: "",
        };
        table(frame, area, theme, spec, rows, &self.cursor);
    }
}
