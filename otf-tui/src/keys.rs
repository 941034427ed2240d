//! Key events to [`Action`]s: the keys every screen shares and those of
//! modals here, each screen's own letters and hints in its module
//! (`crate::screens`).

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};

use crate::app::{Action, App, Modal};

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
    app.screen().view().key(c)
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
    let mut keys = app.screen().view().hints(app.ctx());
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
