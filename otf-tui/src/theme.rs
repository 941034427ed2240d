//! Colours, or none: with `NO_COLOR` set every style is plain, and only
//! bold, reverse and underline tell things apart.

use ratatui::style::{Color, Modifier, Style};

use crate::model::{AgentStatus, PhaseStatus, RunStatus};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Theme {
    pub color: bool,
}

impl Theme {
    /// Colour unless `NO_COLOR` is set to anything non-empty
    /// (https://no-color.org).
    pub fn from_env() -> Theme {
        let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
        Theme { color: !no_color }
    }

    fn fg(self, c: Color) -> Style {
        if self.color {
            Style::default().fg(c)
        } else {
            Style::default()
        }
    }

    pub fn title(self) -> Style {
        self.fg(Color::Cyan).add_modifier(Modifier::BOLD)
    }

    pub fn header(self) -> Style {
        Style::default().add_modifier(Modifier::BOLD | Modifier::UNDERLINED)
    }

    pub fn selected(self) -> Style {
        Style::default().add_modifier(Modifier::REVERSED)
    }

    pub fn dim(self) -> Style {
        self.fg(Color::DarkGray)
    }

    pub fn key(self) -> Style {
        self.fg(Color::Yellow).add_modifier(Modifier::BOLD)
    }

    pub fn error(self) -> Style {
        self.fg(Color::Red).add_modifier(Modifier::BOLD)
    }

    pub fn ok(self) -> Style {
        self.fg(Color::Green)
    }

    pub fn warn(self) -> Style {
        self.fg(Color::Yellow)
    }

    pub fn agent(self, s: AgentStatus) -> Style {
        match s {
            AgentStatus::Idle => self.ok(),
            AgentStatus::Busy => self.fg(Color::Blue).add_modifier(Modifier::BOLD),
            AgentStatus::Unknown => self.warn(),
            AgentStatus::Errored => self.error(),
            AgentStatus::Exited => self.dim(),
        }
    }

    pub fn run(self, s: RunStatus) -> Style {
        match s {
            RunStatus::Applied | RunStatus::PlannedAndFinished => self.ok(),
            RunStatus::Errored => self.error(),
            RunStatus::Canceled | RunStatus::ForceCanceled | RunStatus::Discarded => self.dim(),
            RunStatus::Planned => self.warn().add_modifier(Modifier::BOLD),
            _ => self.fg(Color::Blue),
        }
    }

    pub fn phase(self, s: PhaseStatus) -> Style {
        match s {
            PhaseStatus::Finished => self.ok(),
            PhaseStatus::Errored => self.error(),
            PhaseStatus::Running => self.fg(Color::Blue),
            _ => self.dim(),
        }
    }
}
