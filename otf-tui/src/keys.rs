//! The one place that says which key does what, where: key events to
//! [`Action`]s, and the key hints of the footer and the help screen.

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};

use crate::app::{Action, App, Modal, Screen, Section};
use crate::client::RunAction;

/// The action of `key` in the current state, if any.
pub fn action(app: &App, key: KeyEvent) -> Option<Action> {
    let ctrl = key.modifiers.contains(KeyModifiers::CONTROL);
    if ctrl && matches!(key.code, KeyCode::Char('c')) {
        return Some(Action::Quit);
    }
    if let Some(m) = &app.modal {
        return modal_action(m, key);
    }
    let common = match key.code {
        KeyCode::Char('q') | KeyCode::Esc | KeyCode::Backspace => Some(Action::Back),
        KeyCode::Char('?') => Some(Action::Help),
        KeyCode::Up | KeyCode::Char('k') => Some(Action::Up),
        KeyCode::Down | KeyCode::Char('j') => Some(Action::Down),
        KeyCode::Char('r') => Some(Action::Refresh),
        KeyCode::Enter => Some(Action::Enter),
        _ => None,
    };
    if common.is_some() {
        return common;
    }
    let KeyCode::Char(c) = key.code else {
        return None;
    };
    match (app.screen(), c) {
        (Screen::Organizations { .. }, 'n') => Some(Action::New),
        (Screen::Organization { .. }, '1' | 'p') => Some(Action::Open(Section::Pools)),
        (Screen::Organization { .. }, '2' | 'w') => Some(Action::Open(Section::Workspaces)),
        (Screen::Organization { .. }, '3' | 'b') => Some(Action::Open(Section::Jobs)),
        (Screen::Pools { .. }, 'n') => Some(Action::New),
        (Screen::Pools { .. }, 'd') => Some(Action::Delete),
        (Screen::Pool { .. }, 'e' | 'g') => Some(Action::Edit),
        (Screen::Pool { .. }, 't') => Some(Action::Tokens),
        (Screen::Pool { .. }, 'd') => Some(Action::Delete),
        (Screen::Pool { .. }, 'x') => Some(Action::DrainAgent(true)),
        (Screen::Pool { .. }, 'u') => Some(Action::DrainAgent(false)),
        (Screen::Pool { .. }, 'X') => Some(Action::Drain(true)),
        (Screen::Pool { .. }, 'U') => Some(Action::Drain(false)),
        (Screen::Grants { .. }, 'x') => Some(Action::Exclude),
        (Screen::Grants { .. } | Screen::Settings { .. }, ' ') => Some(Action::Toggle),
        (Screen::Grants { .. } | Screen::Settings { .. }, 's') => Some(Action::Save),
        (Screen::Tokens { .. }, 'n') => Some(Action::New),
        (Screen::Tokens { .. }, 'd') => Some(Action::Delete),
        (Screen::Workspaces { .. }, 'n') => Some(Action::New),
        (Screen::Workspaces { .. }, 'e' | 's') => Some(Action::Edit),
        (Screen::Workspaces { .. }, 'l') => Some(Action::Selector),
        (Screen::Runs { .. }, 'n') => Some(Action::New),
        (Screen::Run { .. }, 'a') => Some(Action::Run(RunAction::Apply)),
        (Screen::Run { .. }, 'D') => Some(Action::Run(RunAction::Discard)),
        (Screen::Run { .. }, 'c') => Some(Action::Run(RunAction::Cancel)),
        (Screen::Run { .. }, 'C') => Some(Action::Run(RunAction::ForceCancel)),
        _ => None,
    }
}

fn modal_action(m: &Modal, key: KeyEvent) -> Option<Action> {
    match m {
        Modal::Input { .. } => match key.code {
            KeyCode::Enter => Some(Action::Submit),
            KeyCode::Esc => Some(Action::Dismiss),
            KeyCode::Backspace => Some(Action::Backspace),
            KeyCode::Char(c) => Some(Action::Char(c)),
            _ => None,
        },
        Modal::Confirm { .. } => match key.code {
            KeyCode::Char('y') | KeyCode::Char('Y') => Some(Action::Yes),
            KeyCode::Char('n') | KeyCode::Char('N') | KeyCode::Esc | KeyCode::Char('q') => {
                Some(Action::Dismiss)
            }
            _ => None,
        },
        Modal::Secret { .. } | Modal::Error { .. } | Modal::Help => match key.code {
            KeyCode::Enter | KeyCode::Esc | KeyCode::Char('q') | KeyCode::Char('?') => {
                Some(Action::Dismiss)
            }
            _ => None,
        },
    }
}

/// Keys of the current screen (or modal): (key, what it does), most useful
/// first. The footer shows as many as fit; `?` shows them all.
pub fn hints(app: &App) -> Vec<(&'static str, &'static str)> {
    if let Some(m) = &app.modal {
        return match m {
            Modal::Input { .. } => vec![("Enter", "ok"), ("Esc", "cancel")],
            Modal::Confirm { .. } => vec![("y", "yes"), ("n/Esc", "no")],
            _ => vec![("Enter/Esc", "close")],
        };
    }
    let mut keys: Vec<(&'static str, &'static str)> = match app.screen() {
        Screen::Organizations { .. } => vec![("Enter", "open"), ("n", "new org")],
        Screen::Organization { .. } => {
            vec![
                ("Enter", "open"),
                ("p", "pools"),
                ("w", "workspaces"),
                ("b", "jobs"),
            ]
        }
        Screen::Pools { .. } => vec![("Enter", "open"), ("n", "new pool"), ("d", "delete")],
        Screen::Pool { .. } => vec![
            ("e", "edit grants"),
            ("t", "tokens"),
            ("x/u", "drain/undrain agent"),
            ("X/U", "pool"),
            ("d", "delete"),
        ],
        Screen::Grants { .. } => vec![
            ("Space", "choose"),
            ("x", "exclude"),
            ("s", "save"),
            ("Esc", "cancel"),
        ],
        Screen::Settings { .. } => {
            vec![("Space", "choose"), ("s", "save"), ("Esc", "cancel")]
        }
        Screen::Tokens { .. } => vec![("n", "new token"), ("d", "revoke")],
        Screen::Workspaces { .. } => vec![
            ("Enter", "runs"),
            ("e", "settings"),
            ("l", "agent labels"),
            ("n", "new"),
        ],
        Screen::Runs { .. } if app.local_files => vec![("Enter", "open"), ("n", "new run")],
        Screen::Runs { .. } => vec![("Enter", "open")],
        Screen::Run { .. } => vec![
            ("a", "apply"),
            ("D", "discard"),
            ("c", "cancel"),
            ("C", "force-cancel"),
            ("↑↓", "scroll"),
        ],
        Screen::Jobs { .. } => vec![],
    };
    keys.extend([("q", "back"), ("?", "help")]);
    keys
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(c: KeyCode) -> KeyEvent {
        KeyEvent::new(c, KeyModifiers::NONE)
    }

    #[test]
    fn letters_are_text_in_an_input() {
        let mut app = App::new("x", 0);
        assert_eq!(action(&app, key(KeyCode::Char('n'))), Some(Action::New));
        app.modal = Some(Modal::Input {
            purpose: crate::app::InputPurpose::NewOrganization,
            value: String::new(),
        });
        assert_eq!(
            action(&app, key(KeyCode::Char('q'))),
            Some(Action::Char('q'))
        );
        assert_eq!(action(&app, key(KeyCode::Esc)), Some(Action::Dismiss));
    }

    #[test]
    fn ctrl_c_quits_everywhere() {
        let app = App::new("x", 0);
        let k = KeyEvent::new(KeyCode::Char('c'), KeyModifiers::CONTROL);
        assert_eq!(action(&app, k), Some(Action::Quit));
    }
}
