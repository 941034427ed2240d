//! Drawing: functions of the state, nothing else. A title line with where
//! you are, the screen (drawn by its module in `crate::screens`), a message
//! line, and the footer with the keys of the current screen; modals on top.

mod modal;

use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::Paragraph;
use ratatui::Frame;

use crate::app::App;
use crate::keys;
use crate::theme::Theme;

/// Draw the whole TUI.
pub fn draw(frame: &mut Frame, app: &App, theme: Theme) {
    let [title, body, flash, footer] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Min(1),
        Constraint::Length(1),
        Constraint::Length(1),
    ])
    .areas(frame.area());
    draw_title(frame, title, app, theme);
    app.screen().view().draw(frame, body, app.ctx(), theme);
    if let Some(f) = &app.flash {
        let style = if f.error { theme.error() } else { theme.ok() };
        let text = if f.error {
            format!("! {}", f.text)
        } else {
            f.text.clone()
        };
        frame.render_widget(Paragraph::new(Span::styled(text, style)), flash);
    }
    draw_footer(frame, footer, app, theme);
    if let Some(m) = &app.modal {
        modal::draw(frame, body, m, app, theme);
    }
}

fn draw_title(frame: &mut Frame, area: Rect, app: &App, theme: Theme) {
    let crumbs: Vec<String> = app.stack.iter().map(|s| s.crumb()).collect();
    // Deep stacks lose their first crumbs, not the current one.
    let room = (area.width as usize).saturating_sub(4);
    let mut shown = crumbs.join(" › ");
    let mut skip = 0;
    while shown.chars().count() > room && skip + 1 < crumbs.len() {
        skip += 1;
        shown = format!("… › {}", crumbs[skip..].join(" › "));
    }
    let line = Line::from(vec![
        Span::styled("otf ", theme.title()),
        Span::raw(shown),
        Span::styled(format!("  {}", app.address), theme.dim()),
    ]);
    frame.render_widget(Paragraph::new(line), area);
}

fn draw_footer(frame: &mut Frame, area: Rect, app: &App, theme: Theme) {
    let mut spans = Vec::new();
    let mut width = 0usize;
    for (key, what) in keys::hints(app) {
        let w = key.chars().count() + what.chars().count() + 3;
        if width + w > area.width as usize {
            break;
        }
        width += w;
        spans.push(Span::styled(key, theme.key()));
        spans.push(Span::raw(format!(" {what}  ")));
    }
    frame.render_widget(Paragraph::new(Line::from(spans)), area);
}

#[cfg(test)]
mod tests;
