//! The TUI on a terminal that is not this process's own: otfd runs it for
//! each SSH session. The caller brings the terminal's output (any
//! [`Write`]: the channel), its size ([`RemoteSize`], changed when the
//! client's window is), its input as key events (decoded by
//! [`crate::input::InputParser`]) and an [`Api`] (in otfd: its own handlers
//! for the session's key); the screens, keys and live views are the ones
//! `otf-tui` has, through the same [`crate::runtime::run`].

use std::io::{self, Write};
use std::sync::{Arc, Mutex};

use crossterm::cursor::{Hide, Show};
use crossterm::event::Event as TermEvent;
use crossterm::terminal::{EnterAlternateScreen, LeaveAlternateScreen};
use futures_util::Stream;
use ratatui::backend::{Backend, ClearType, CrosstermBackend, WindowSize};
use ratatui::buffer::Cell;
use ratatui::layout::{Position, Size};
use ratatui::Terminal;

use crate::app::{update, Action, App, Loaded};
use crate::client::{Api, ClientError};
use crate::theme::Theme;

/// The size of a remote terminal, shared with whoever learns its changes.
#[derive(Debug, Clone)]
pub struct RemoteSize(Arc<Mutex<Size>>);

impl RemoteSize {
    pub fn new(width: u16, height: u16) -> Self {
        RemoteSize(Arc::new(Mutex::new(Size::new(width, height))))
    }

    pub fn set(&self, width: u16, height: u16) {
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = Size::new(width, height);
    }

    pub fn get(&self) -> Size {
        *self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// crossterm's escape sequences to `W`, with the size the remote side
/// reported instead of this process's terminal's (which otfd has none of).
pub struct RemoteBackend<W: Write> {
    inner: CrosstermBackend<W>,
    size: RemoteSize,
    cursor: Position,
}

impl<W: Write> RemoteBackend<W> {
    pub fn new(out: W, size: RemoteSize) -> Self {
        RemoteBackend {
            inner: CrosstermBackend::new(out),
            size,
            cursor: Position::ORIGIN,
        }
    }
}

impl<W: Write> Write for RemoteBackend<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.inner.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        Write::flush(&mut self.inner)
    }
}

impl<W: Write> Backend for RemoteBackend<W> {
    fn draw<'a, I>(&mut self, content: I) -> io::Result<()>
    where
        I: Iterator<Item = (u16, u16, &'a Cell)>,
    {
        self.inner.draw(content)
    }

    fn hide_cursor(&mut self) -> io::Result<()> {
        self.inner.hide_cursor()
    }

    fn show_cursor(&mut self) -> io::Result<()> {
        self.inner.show_cursor()
    }

    /// Where it was last put: asking the remote terminal would need its
    /// answer on the input stream.
    fn get_cursor_position(&mut self) -> io::Result<Position> {
        Ok(self.cursor)
    }

    fn set_cursor_position<P: Into<Position>>(&mut self, position: P) -> io::Result<()> {
        let p = position.into();
        self.cursor = p;
        self.inner.set_cursor_position(p)
    }

    fn clear(&mut self) -> io::Result<()> {
        self.inner.clear()
    }

    fn clear_region(&mut self, clear_type: ClearType) -> io::Result<()> {
        self.inner.clear_region(clear_type)
    }

    fn size(&self) -> io::Result<Size> {
        Ok(self.size.get())
    }

    fn window_size(&mut self) -> io::Result<WindowSize> {
        Ok(WindowSize {
            columns_rows: self.size.get(),
            pixels: Size::new(0, 0),
        })
    }

    fn flush(&mut self) -> io::Result<()> {
        Backend::flush(&mut self.inner)
    }
}

/// Why a remote session ended other than by the user quitting.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    /// The first request failed (say, the key's organization is gone).
    #[error("{0}")]
    FirstContact(#[source] ClientError),
    /// The terminal's output or input failed (the connection dropped, the
    /// key was revoked: the input stream says why).
    #[error("{0}")]
    Terminal(#[source] io::Error),
}

/// What a remote session shows besides the API's answers.
#[derive(Debug, Clone)]
pub struct SessionOptions {
    /// The title's "where": for SSH, otfd's SSH address.
    pub title: String,
    pub theme: Theme,
}

fn now_millis() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Run one TUI session on a remote terminal until the user quits (`q` on
/// the first screen, Ctrl-C) or `input` ends or fails. The terminal is put
/// in the alternate screen and given back as it was on every way out but a
/// failed output.
pub async fn run_session<W: Write>(
    out: W,
    size: RemoteSize,
    input: impl Stream<Item = io::Result<TermEvent>> + Unpin,
    api: Arc<dyn Api>,
    options: SessionOptions,
) -> Result<(), SessionError> {
    let orgs = api
        .organizations()
        .await
        .map_err(SessionError::FirstContact)?;
    let mut app = App::new(&options.title, now_millis());
    app.local_files = false;
    let first = update(
        &mut app,
        Action::Loaded(Box::new(Loaded::Organizations(Ok(orgs)))),
    );
    let mut terminal =
        Terminal::new(RemoteBackend::new(out, size)).map_err(SessionError::Terminal)?;
    crossterm::execute!(terminal.backend_mut(), EnterAlternateScreen, Hide)
        .map_err(SessionError::Terminal)?;
    let result = crate::runtime::run(
        &mut terminal,
        input,
        app,
        api,
        options.theme,
        now_millis,
        first,
    )
    .await;
    let restored = crossterm::execute!(terminal.backend_mut(), LeaveAlternateScreen, Show);
    result.and(restored).map_err(SessionError::Terminal)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A writer whose bytes the test reads.
    #[derive(Clone, Default)]
    struct Shared(Arc<Mutex<Vec<u8>>>);

    impl Write for Shared {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0.lock().expect("lock").extend_from_slice(buf);
            Ok(buf.len())
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn the_backend_reports_the_remote_size_as_it_changes() {
        let size = RemoteSize::new(80, 24);
        let out = Shared::default();
        let mut terminal = Terminal::new(RemoteBackend::new(out.clone(), size.clone()))
            .expect("a terminal on a buffer");
        terminal
            .draw(|f| assert_eq!(f.area().width, 80))
            .expect("draw");
        size.set(120, 40);
        terminal
            .draw(|f| {
                assert_eq!((f.area().width, f.area().height), (120, 40));
            })
            .expect("draw after the resize");
        // The resize cleared the screen, for the whole frame to be drawn.
        let written = String::from_utf8_lossy(&out.0.lock().expect("lock")).to_string();
        assert!(written.contains("\x1b[2J"), "{written:?}");
    }
}
