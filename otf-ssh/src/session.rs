//! One TUI session on one SSH channel: the terminal's output queued to the
//! channel, its input (keys, resizes, a revoked key) as one stream, the TUI
//! run on them, and the channel closed with an exit status when it ends.

use std::io;
use std::sync::Arc;

use crossterm::event::Event as TermEvent;
use otf_tui::client::Api;
use otf_tui::remote::{run_session, RemoteSize, SessionError, SessionOptions};
use russh::server::Handle;
use russh::ChannelId;
use tokio::sync::{mpsc, watch};

use crate::authorized_keys::{AuthorizedKey, AuthorizedKeys};
use crate::stats::SessionCount;

/// Frames of output waiting for a client that does not read; past it the
/// session is closed rather than held in memory.
const OUTPUT_FRAMES: usize = 256;

/// Terminal output for a channel: written by the TUI, sent when flushed
/// (ratatui flushes once per frame).
pub struct ChannelWriter {
    tx: mpsc::Sender<Vec<u8>>,
    buf: Vec<u8>,
}

impl io::Write for ChannelWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.buf.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        match self.tx.try_send(std::mem::take(&mut self.buf)) {
            Ok(()) => Ok(()),
            Err(mpsc::error::TrySendError::Full(_)) => Err(io::Error::other(
                "the SSH client has not read its terminal's output for too long",
            )),
            Err(mpsc::error::TrySendError::Closed(_)) => Err(io::Error::new(
                io::ErrorKind::BrokenPipe,
                "the SSH connection is gone",
            )),
        }
    }
}

/// Everything a session starts with.
pub struct Start {
    pub handle: Handle,
    pub channel: ChannelId,
    pub api: Arc<dyn Api>,
    pub size: RemoteSize,
    pub input: mpsc::Receiver<io::Result<TermEvent>>,
    /// Where a revocation is sent (the same stream as the keys); weak, so
    /// that the stream ends when the connection's handler lets go of it.
    pub input_tx: mpsc::WeakSender<io::Result<TermEvent>>,
    pub keys: watch::Receiver<Arc<AuthorizedKeys>>,
    pub key: AuthorizedKey,
    pub options: SessionOptions,
    pub count: SessionCount,
}

/// Whether `key` may still do what it did when it logged in.
fn still_allowed(keys: &AuthorizedKeys, key: &AuthorizedKey) -> Result<(), &'static str> {
    match keys.find(&key.key) {
        None => Err("your key was removed from otfd's authorized keys"),
        Some(k) if k.organization != key.organization => {
            Err("what your key may do has changed in otfd's authorized keys; connect again")
        }
        Some(_) => Ok(()),
    }
}

/// Run the session to its end, then close the channel.
pub async fn run(start: Start) {
    let Start {
        handle,
        channel,
        api,
        size,
        input,
        input_tx,
        mut keys,
        key,
        options,
        count,
    } = start;
    let _counted = count.enter();
    let (out_tx, mut out_rx) = mpsc::channel::<Vec<u8>>(OUTPUT_FRAMES);
    let sender = {
        let handle = handle.clone();
        tokio::spawn(async move {
            while let Some(bytes) = out_rx.recv().await {
                if handle.data(channel, bytes).await.is_err() {
                    break;
                }
            }
        })
    };
    // A change of the file that takes this key's access away ends the
    // session through its input, so the TUI stops as on any other end.
    let revoker = tokio::spawn(async move {
        while keys.changed().await.is_ok() {
            let verdict = still_allowed(&keys.borrow_and_update(), &key);
            if let Err(why) = verdict {
                tracing::info!(fingerprint = %key.fingerprint, "ssh: {why}; closing its session");
                if let Some(tx) = input_tx.upgrade() {
                    let _ = tx.send(Err(io::Error::other(why))).await;
                }
                return;
            }
        }
    });
    let writer = ChannelWriter {
        tx: out_tx,
        buf: Vec::new(),
    };
    let input =
        futures_util::stream::unfold(
            input,
            |mut rx| async move { rx.recv().await.map(|e| (e, rx)) },
        );
    let result = run_session(writer, size, Box::pin(input), api, options).await;
    revoker.abort();
    // Everything the TUI wrote goes out before the channel closes.
    let _ = sender.await;
    let status = match &result {
        Ok(()) => 0,
        Err(e) => {
            let text = match e {
                SessionError::FirstContact(e) => format!("otfd: {e}\r\n"),
                SessionError::Terminal(e) => format!("\r\notfd: {e}\r\n"),
            };
            let _ = handle.extended_data(channel, 1, text.into_bytes()).await;
            1
        }
    };
    let _ = handle.exit_status_request(channel, status).await;
    let _ = handle.eof(channel).await;
    let _ = handle.close(channel).await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn output_goes_out_per_flush_and_a_stuck_client_is_an_error() {
        let (tx, mut rx) = mpsc::channel(2);
        let mut w = ChannelWriter {
            tx,
            buf: Vec::new(),
        };
        w.write_all(b"ab").expect("write");
        w.write_all(b"c").expect("write");
        w.flush().expect("flush");
        w.flush().expect("an empty flush sends nothing");
        assert_eq!(rx.try_recv().ok(), Some(b"abc".to_vec()));
        assert!(rx.try_recv().is_err());
        for _ in 0..2 {
            w.write_all(b"x").expect("write");
            w.flush().expect("room");
        }
        w.write_all(b"x").expect("write");
        let err = w.flush().expect_err("full");
        assert!(err.to_string().contains("has not read"), "{err}");
        drop(rx);
        w.write_all(b"y").expect("write");
        let err = w.flush().expect_err("gone");
        assert_eq!(err.kind(), io::ErrorKind::BrokenPipe);
    }
}
