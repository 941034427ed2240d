//! Drawing pieces the screens share: titled blocks, the table with a
//! cursor, "loading…", and how pools and modes read.

use ratatui::layout::{Constraint, Rect};
use ratatui::text::Span;
use ratatui::widgets::{Block, Borders, Paragraph, Row, Table, TableState};
use ratatui::Frame;

use crate::app::Cursor;
use crate::model::{ExecutionModeKind, Pool};
use crate::theme::Theme;

pub fn block(title: &str, theme: Theme) -> Block<'static> {
    Block::default()
        .borders(Borders::TOP)
        .title(Span::styled(format!(" {title} "), theme.title()))
}

pub fn loading(frame: &mut Frame, area: Rect, title: &str, theme: Theme) {
    frame.render_widget(
        Paragraph::new(Span::styled("loading…", theme.dim())).block(block(title, theme)),
        area,
    );
}

/// A table's text: its title, column headers and widths, and what it says
/// when it has no rows.
pub struct TableSpec<'a> {
    pub title: &'a str,
    pub header: &'a [&'a str],
    pub widths: &'a [Constraint],
    pub empty: &'a str,
}

/// A titled table with a cursor; `rows: None` while loading.
pub fn table(
    frame: &mut Frame,
    area: Rect,
    theme: Theme,
    spec: TableSpec<'_>,
    rows: Option<Vec<Row>>,
    cursor: &Cursor,
) {
    let Some(rows) = rows else {
        return loading(frame, area, spec.title, theme);
    };
    if rows.is_empty() {
        frame.render_widget(
            Paragraph::new(Span::styled(spec.empty.to_string(), theme.dim()))
                .block(block(spec.title, theme)),
            area,
        );
        return;
    }
    let header = Row::new(spec.header.iter().map(|h| h.to_string())).style(theme.header());
    let t = Table::new(rows, spec.widths.to_vec())
        .header(header)
        .block(block(spec.title, theme))
        .row_highlight_style(theme.selected())
        .highlight_symbol("> ");
    let mut state = TableState::default().with_selected(Some(cursor.selected));
    frame.render_stateful_widget(t, area, &mut state);
}

/// A one-column list of choices (grants, settings).
pub fn choices(
    frame: &mut Frame,
    area: Rect,
    theme: Theme,
    title: &str,
    header: &str,
    rows: Vec<Row>,
    cursor: &Cursor,
) {
    let spec = TableSpec {
        title,
        header: &[header],
        widths: &[Constraint::Fill(1)],
        empty: "",
    };
    table(frame, area, theme, spec, Some(rows), cursor);
}

pub fn radio(on: bool) -> &'static str {
    if on {
        "(•)"
    } else {
        "( )"
    }
}

pub fn scope(p: &Pool) -> &'static str {
    if p.organization_scoped {
        "organization-scoped"
    } else {
        "granted workspaces"
    }
}

pub fn pool_name(id: Option<&str>, pools: &[Pool]) -> String {
    match id {
        None => String::new(),
        Some(id) => pools
            .iter()
            .find(|p| p.id == id)
            .map_or_else(|| id.to_string(), |p| p.name.clone()),
    }
}

pub fn mode_text(mode: ExecutionModeKind, pool: Option<&str>, pools: &[Pool]) -> String {
    match (mode, pool) {
        (ExecutionModeKind::Agent, Some(p)) => format!("agent: {}", pool_name(Some(p), pools)),
        (m, _) => m.as_str().to_string(),
    }
}
