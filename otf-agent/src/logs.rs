//! Streaming a job's output to the server: writers hand bytes to a bounded
//! channel; one task uploads them in order, batched every few hundred
//! milliseconds, so a user watching the log sees lines within about a
//! second. When otfd is slow or away the channel fills and writers wait
//! (terraform's output pipe then fills and terraform waits: backpressure,
//! not memory); a chunk that fails to upload is retried, never dropped
//! silently.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::transport::{Transport, TransportError};

/// How often buffered output is sent.
const FLUSH_EVERY: Duration = Duration::from_millis(300);
/// Send at once when this much is buffered.
const FLUSH_BYTES: usize = 64 * 1024;
/// Writes (of at most 16 KiB each) waiting for the uploader.
const QUEUED_WRITES: usize = 64;
/// Retries of a failed upload back off up to this.
const MAX_RETRY_WAIT: Duration = Duration::from_secs(5);
/// After the job ended, how long a failing upload is retried before the
/// rest of the log is given up (with a warning saying how much).
const CLOSING_RETRIES_FOR: Duration = Duration::from_secs(60);

/// A handle to write to a job's log.
#[derive(Clone)]
pub struct LogSink {
    tx: mpsc::Sender<Vec<u8>>,
}

/// The uploading side; [`LogUploader::close`] flushes and waits.
pub struct LogUploader {
    task: JoinHandle<()>,
}

/// Upload `data`, retrying transient failures; false when the job token
/// is dead (nothing more can be written) or, once closing, retries ran out.
async fn upload(transport: &dyn Transport, token: &str, data: &[u8], closing: bool) -> bool {
    let mut wait = Duration::from_millis(200);
    let started = tokio::time::Instant::now();
    loop {
        match transport.append_log(token, data.to_vec()).await {
            Ok(()) => return true,
            // The job token is dead (canceled, superseded): stop.
            Err(TransportError::Unauthorized(_)) | Err(TransportError::Gone(_)) => return false,
            // Refused for good (too large, say): say so, and go on.
            Err(e @ (TransportError::Refused(_) | TransportError::NotFound(_))) => {
                tracing::warn!(error = %e, bytes = data.len(), "otfd refused a chunk of a job's log");
                return true;
            }
            Err(e) => {
                if closing && started.elapsed() > CLOSING_RETRIES_FOR {
                    tracing::warn!(error = %e, bytes = data.len(), "giving up uploading the end of a job's log");
                    return false;
                }
                tracing::debug!(error = %e, retry_in = ?wait, "log upload failed; retrying");
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(MAX_RETRY_WAIT);
            }
        }
    }
}

impl LogSink {
    pub fn start(transport: Arc<dyn Transport>, token: String) -> (LogSink, LogUploader) {
        let (tx, mut rx) = mpsc::channel::<Vec<u8>>(QUEUED_WRITES);
        let task = tokio::spawn(async move {
            let mut buf = Vec::new();
            let mut tick = tokio::time::interval(FLUSH_EVERY);
            loop {
                let closed = tokio::select! {
                    chunk = rx.recv() => match chunk {
                        Some(c) => {
                            buf.extend_from_slice(&c);
                            if buf.len() < FLUSH_BYTES {
                                continue;
                            }
                            false
                        }
                        None => true,
                    },
                    _ = tick.tick() => false,
                };
                if !buf.is_empty() {
                    let data = std::mem::take(&mut buf);
                    if !upload(&*transport, &token, &data, closed).await {
                        return;
                    }
                }
                if closed {
                    return;
                }
            }
        });
        (LogSink { tx }, LogUploader { task })
    }

    /// Queue `data`, waiting while the uploader is behind.
    pub async fn write(&self, data: &[u8]) {
        let _ = self.tx.send(data.to_vec()).await;
    }

    pub async fn line(&self, line: &str) {
        self.write(format!("{line}\n").as_bytes()).await;
    }
}

impl LogUploader {
    /// Wait until everything written before `sink` was dropped is uploaded.
    pub async fn close(self, sink: LogSink) {
        drop(sink);
        let _ = self.task.await;
    }
}
