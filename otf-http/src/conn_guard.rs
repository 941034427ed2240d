//! Deadlines of one connection, so that no client holds a connection (and
//! its descriptor) longer than the protocol needs:
//!
//! * a new connection must complete a request's headers within the header
//!   timeout, and so must a keep-alive connection from the first byte of
//!   its next request (HTTP/1; a slowloris sends half a header and waits);
//! * a keep-alive connection with no request in flight is closed after the
//!   idle timeout (longer than the agents' long-poll, so their connections
//!   are reused);
//! * while a request is in flight no deadline runs here: its body has a
//!   read timeout of its own and long-polls end by themselves; an answer
//!   still being written counts as activity, so a slow download of a large
//!   state file is not cut off.
//!
//! [`GuardedIo`] notes the bytes a connection receives, [`InFlight`] marks
//! a request from its headers to its answer, and [`expired`] resolves when
//! the connection has outlived its deadline; the server then drops it.

use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::Notify;
use tokio::time::Instant;

/// Where a connection is between requests.
#[derive(Debug, Clone, Copy)]
enum Phase {
    /// Accepted at this instant; no request yet.
    Start(Instant),
    /// The first byte of a request arrived at this instant; its headers
    /// are not complete.
    Head(Instant),
    /// This many requests are being answered.
    Busy(usize),
    /// The last answer went out at this instant.
    Idle(Instant),
}

/// The state shared by a connection's I/O, its requests and its watchdog.
#[derive(Debug)]
pub struct Shared {
    phase: Mutex<Phase>,
    /// Woken on every phase change the watchdog must see.
    changed: Notify,
    /// Whether bytes after an idle period start a header deadline (HTTP/1;
    /// an HTTP/2 connection also carries frames that are not requests).
    head_rule: bool,
}

impl Shared {
    pub fn new(head_rule: bool) -> Arc<Shared> {
        Arc::new(Shared {
            phase: Mutex::new(Phase::Start(Instant::now())),
            changed: Notify::new(),
            head_rule,
        })
    }

    fn set(&self, f: impl FnOnce(Phase) -> Phase) {
        let mut phase = self.phase.lock().unwrap_or_else(|p| p.into_inner());
        *phase = f(*phase);
        drop(phase);
        self.changed.notify_waiters();
    }

    fn received(&self) {
        if !self.head_rule {
            return;
        }
        let idle = matches!(
            *self.phase.lock().unwrap_or_else(|p| p.into_inner()),
            Phase::Idle(_)
        );
        if idle {
            self.set(|p| match p {
                Phase::Idle(_) => Phase::Head(Instant::now()),
                other => other,
            });
        }
    }

    /// An answer is still being written after its request was handled (a
    /// large download to a slow client): progress keeps it from idling out.
    fn wrote(&self) {
        let mut phase = self.phase.lock().unwrap_or_else(|p| p.into_inner());
        if let Phase::Idle(_) = *phase {
            *phase = Phase::Idle(Instant::now());
        }
    }

    /// When the connection must be closed, given the timeouts; `None` while
    /// a request is in flight.
    fn deadline(&self, header: Duration, idle: Duration) -> Option<Instant> {
        match *self.phase.lock().unwrap_or_else(|p| p.into_inner()) {
            Phase::Start(at) | Phase::Head(at) => Some(at + header),
            Phase::Idle(at) => Some(at + idle),
            Phase::Busy(_) => None,
        }
    }
}

/// One request in flight, from its headers until it is answered (or
/// dropped).
pub struct InFlight(Arc<Shared>);

impl InFlight {
    pub fn begin(shared: &Arc<Shared>) -> InFlight {
        shared.set(|p| match p {
            Phase::Busy(n) => Phase::Busy(n + 1),
            _ => Phase::Busy(1),
        });
        InFlight(shared.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.set(|p| match p {
            Phase::Busy(n) if n > 1 => Phase::Busy(n - 1),
            _ => Phase::Idle(Instant::now()),
        });
    }
}

/// Resolves once the connection has outlived its deadline.
pub async fn expired(shared: Arc<Shared>, header: Duration, idle: Duration) {
    loop {
        // Registered before the state is read, so no change is missed.
        let changed = shared.changed.notified();
        match shared.deadline(header, idle) {
            None => changed.await,
            Some(at) if Instant::now() >= at => return,
            Some(at) => {
                tokio::select! {
                    _ = changed => {}
                    _ = tokio::time::sleep_until(at) => {}
                }
            }
        }
    }
}

/// A connection's byte stream, noting when bytes arrive.
pub struct GuardedIo<T> {
    inner: T,
    shared: Arc<Shared>,
}

impl<T> GuardedIo<T> {
    pub fn new(inner: T, shared: Arc<Shared>) -> Self {
        GuardedIo { inner, shared }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for GuardedIo<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.shared.received();
        }
        polled
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for GuardedIo<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write(cx, buf);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.shared.wrote();
        }
        polled
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.shared.wrote();
        }
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn deadlines_follow_the_phases() {
        let (header, idle) = (Duration::from_secs(10), Duration::from_secs(120));
        let shared = Shared::new(true);
        let start = Instant::now();
        assert_eq!(shared.deadline(header, idle), Some(start + header));
        let req = InFlight::begin(&shared);
        assert_eq!(shared.deadline(header, idle), None, "no deadline in flight");
        tokio::time::advance(Duration::from_secs(30)).await;
        drop(req);
        let idle_since = Instant::now();
        assert_eq!(shared.deadline(header, idle), Some(idle_since + idle));
        tokio::time::advance(Duration::from_secs(5)).await;
        shared.received();
        assert_eq!(
            shared.deadline(header, idle),
            Some(Instant::now() + header),
            "half a header after idling has the header deadline"
        );
        // expired() resolves at the deadline, not before.
        let watch = tokio::spawn(expired(shared.clone(), header, idle));
        tokio::time::advance(Duration::from_secs(9)).await;
        tokio::task::yield_now().await;
        assert!(!watch.is_finished());
        tokio::time::advance(Duration::from_secs(2)).await;
        assert!(tokio::time::timeout(Duration::from_secs(1), watch)
            .await
            .is_ok());
    }

    #[tokio::test(start_paused = true)]
    async fn an_answer_still_being_written_is_not_idle() {
        let (header, idle) = (Duration::from_secs(10), Duration::from_secs(120));
        let shared = Shared::new(true);
        drop(InFlight::begin(&shared));
        tokio::time::advance(Duration::from_secs(100)).await;
        shared.wrote();
        assert_eq!(shared.deadline(header, idle), Some(Instant::now() + idle));
    }

    #[tokio::test(start_paused = true)]
    async fn http2_bytes_after_idling_keep_the_idle_deadline() {
        let (header, idle) = (Duration::from_secs(10), Duration::from_secs(120));
        let shared = Shared::new(false);
        drop(InFlight::begin(&shared));
        let idle_since = Instant::now();
        shared.received();
        assert_eq!(shared.deadline(header, idle), Some(idle_since + idle));
    }
}
