//! "Grant access to specific workspaces": rows 0 and 1 choose the scope,
//! the rest toggle workspaces (granted, or with `x` excluded).

use std::collections::BTreeSet;

use ratatui::layout::Rect;
use ratatui::widgets::Row;
use ratatui::Frame;

use super::widgets::{choices, radio};
use super::{Ctx, Screen, Step, View};
use crate::app::update::{info, refresh, refusal};
use crate::app::{Action, App, Cursor, Effect, Loaded, PoolDetail, Request};
use crate::model::{Pool, Workspace};
use crate::theme::Theme;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GrantsScreen {
    pub pool: Pool,
    pub workspaces: Vec<Workspace>,
    pub organization_scoped: bool,
    pub granted: BTreeSet<String>,
    /// Workspaces that may never use the pool.
    pub excluded: BTreeSet<String>,
    pub cursor: Cursor,
}

impl GrantsScreen {
    /// The grants of the pool on a pool screen, to edit.
    pub fn of(d: &PoolDetail) -> GrantsScreen {
        GrantsScreen {
            pool: d.pool.clone(),
            workspaces: d.workspaces.clone(),
            organization_scoped: d.pool.organization_scoped,
            granted: d.pool.allowed.iter().cloned().collect(),
            excluded: d.pool.excluded.iter().cloned().collect(),
            cursor: Cursor::default(),
        }
    }

    fn toggle(&mut self) {
        match self.cursor.selected {
            0 => self.organization_scoped = true,
            1 => self.organization_scoped = false,
            n => {
                if let Some(w) = self.workspaces.get(n - 2) {
                    self.organization_scoped = false;
                    // A granted workspace is not also excluded.
                    if !self.granted.remove(&w.id) {
                        self.granted.insert(w.id.clone());
                        self.excluded.remove(&w.id);
                    }
                }
            }
        }
    }

    fn exclude(&mut self) {
        let selected = self.cursor.selected.checked_sub(2);
        if let Some(w) = selected.and_then(|n| self.workspaces.get(n)) {
            // An excluded workspace is not also granted.
            if !self.excluded.remove(&w.id) {
                self.excluded.insert(w.id.clone());
                self.granted.remove(&w.id);
            }
        }
    }

    /// The grants to save: only workspaces that still exist are sent.
    fn save(&self) -> Request {
        let of = |set: &BTreeSet<String>| {
            self.workspaces
                .iter()
                .filter(|w| set.contains(&w.id))
                .map(|w| w.id.clone())
                .collect()
        };
        Request::SetGrants {
            pool: self.pool.id.clone(),
            organization_scoped: self.organization_scoped,
            allowed: of(&self.granted),
            excluded: of(&self.excluded),
        }
    }
}

impl View for GrantsScreen {
    fn crumb(&self) -> String {
        "grants".into()
    }

    fn refresh(&self) -> Option<Request> {
        None
    }

    fn key(&self, c: char) -> Option<Action> {
        match c {
            'x' => Some(Action::Exclude),
            ' ' => Some(Action::Toggle),
            's' => Some(Action::Save),
            _ => None,
        }
    }

    fn hints(&self, _: Ctx) -> Vec<(&'static str, &'static str)> {
        vec![
            ("Space", "choose"),
            ("x", "exclude"),
            ("s", "save"),
            ("Esc", "cancel"),
        ]
    }

    fn act(&mut self, action: Action, _: Ctx) -> Step {
        match action {
            Action::Up => self.cursor.up(),
            Action::Down => self.cursor.down(self.workspaces.len() + 2),
            Action::Toggle | Action::Enter => self.toggle(),
            Action::Exclude => self.exclude(),
            Action::Save => return Step::Save(self.save()),
            _ => {}
        }
        Step::Nothing
    }

    fn draw(&self, frame: &mut Frame, area: Rect, _: Ctx, theme: Theme) {
        let scoped = self.organization_scoped;
        let mut rows = vec![
            Row::new(vec![format!(
                "{} All workspaces of the organization",
                radio(scoped)
            )]),
            Row::new(vec![format!(
                "{} Grant access to specific workspaces:",
                radio(!scoped)
            )]),
        ];
        for w in &self.workspaces {
            let on = self.granted.contains(&w.id);
            let out = self.excluded.contains(&w.id);
            let style = if scoped && !out {
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
            self.pool.name
        );
        choices(frame, area, theme, &title, "ACCESS", rows, &self.cursor);
    }
}

pub(super) fn loaded(app: &mut App, loaded: Loaded) -> Vec<Effect> {
    let Loaded::GrantsSaved { pool, result } = loaded else {
        return vec![];
    };
    match result {
        Ok(p) => {
            if matches!(app.screen(), Screen::Grants(g) if g.pool.id == pool) {
                app.stack.pop();
            }
            info(app, format!("saved the grants of {}", p.name));
            refresh(app)
        }
        Err(e) => {
            refusal(app, "The grants were not saved", e);
            vec![]
        }
    }
}
