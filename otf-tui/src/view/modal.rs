//! Modals: inputs, confirmations, a new token's secret, refusals, help.

use ratatui::layout::{Constraint, Flex, Layout, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Clear, Paragraph, Wrap};
use ratatui::Frame;

use crate::app::{App, Modal};
use crate::keys;
use crate::theme::Theme;

fn centered(area: Rect, width: u16, height: u16) -> Rect {
    let [r] = Layout::horizontal([Constraint::Length(width.min(area.width))])
        .flex(Flex::Center)
        .areas(area);
    let [r] = Layout::vertical([Constraint::Length(height.min(area.height))])
        .flex(Flex::Center)
        .areas(r);
    r
}

pub fn draw(frame: &mut Frame, area: Rect, m: &Modal, app: &App, theme: Theme) {
    let width = area.width.saturating_sub(4).min(76);
    let (title, lines, style): (String, Vec<Line>, _) = match m {
        Modal::Input { purpose, value } => (
            purpose.title().into(),
            vec![
                Line::from(format!("{}:", purpose.prompt())),
                Line::from(vec![
                    Span::raw(format!("> {value}")),
                    Span::styled("_", theme.key()),
                ]),
            ],
            theme.title(),
        ),
        Modal::Confirm { question, .. } => (
            "Confirm".into(),
            vec![
                Line::from(question.clone()),
                Line::from(""),
                Line::from(vec![
                    Span::styled("y", theme.key()),
                    Span::raw(" yes   "),
                    Span::styled("n", theme.key()),
                    Span::raw(" no"),
                ]),
            ],
            theme.warn(),
        ),
        Modal::Secret {
            description,
            secret,
        } => (
            "New agent token".into(),
            vec![
                Line::from(format!("Token {description:?} created.")),
                Line::styled("Copy it now: it is shown only this once.", theme.error()),
                Line::from(""),
                // On a line of its own so that it can be selected whole.
                Line::from(secret.clone()),
                Line::from(""),
                Line::from("Start an agent: otf-agent --token <token> --address <otfd>"),
            ],
            theme.warn(),
        ),
        Modal::Error { title, detail } => (
            title.clone(),
            vec![Line::styled(detail.clone(), theme.error())],
            theme.error(),
        ),
        Modal::Help => {
            let mut lines = vec![Line::from("Keys of this screen:")];
            let mut behind = app.clone();
            behind.modal = None;
            for (k, what) in keys::hints(&behind) {
                lines.push(Line::from(vec![
                    Span::styled(format!("  {k:<8}"), theme.key()),
                    Span::raw(what),
                ]));
            }
            lines.push(Line::from(vec![
                Span::styled("  ↑↓ j k  ", theme.key()),
                Span::raw("move   "),
                Span::styled("r", theme.key()),
                Span::raw(" refresh   "),
                Span::styled("Ctrl-C", theme.key()),
                Span::raw(" quit"),
            ]));
            lines.push(Line::from("Views refresh by themselves every second."));
            ("Help".into(), lines, theme.title())
        }
    };
    // Long secrets and refusals wrap: count the rows they take.
    let inner = width.saturating_sub(2).max(1) as usize;
    let rows: usize = lines.iter().map(|l| l.width().max(1).div_ceil(inner)).sum();
    let (r, borders) = if matches!(m, Modal::Secret { .. }) {
        // The secret gets the whole width, without side borders, so that it
        // stays on one line where the terminal allows and copies cleanly.
        let rows: usize = lines
            .iter()
            .map(|l| l.width().max(1).div_ceil(area.width.max(1) as usize))
            .sum();
        (
            centered(area, area.width, rows as u16 + 2),
            Borders::TOP | Borders::BOTTOM,
        )
    } else {
        (centered(area, width, rows as u16 + 2), Borders::ALL)
    };
    frame.render_widget(Clear, r);
    let block = Block::default()
        .borders(borders)
        .border_style(style)
        .title(Span::styled(format!(" {title} "), style));
    frame.render_widget(
        Paragraph::new(lines)
            .block(block)
            .wrap(Wrap { trim: false }),
        r,
    );
}
