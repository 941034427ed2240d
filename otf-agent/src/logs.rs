//! Streaming a job's output to the server: writers hand bytes to a channel;
//! one task uploads them in order, batched every few hundred milliseconds, so
//! a user watching the log sees lines within about a second.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::transport::Transport;

/// How often buffered output is sent.
const FLUSH_EVERY: Duration = Duration::from_millis(300);
/// Send at once when this much is buffered.
const FLUSH_BYTES: usize = 64 * 1024;

/// A handle to write to a job's log.
#[derive(Clone)]
pub struct LogSink {
    tx: mpsc::UnboundedSender<Vec<u8>>,
}

/// The uploading side; [`LogUploader::close`] flushes and waits.
pub struct LogUploader {
    task: JoinHandle<()>,
}

impl LogSink {
    pub fn start(transport: Arc<dyn Transport>, token: String) -> (LogSink, LogUploader) {
        let (tx, mut rx) = mpsc::unbounded_channel::<Vec<u8>>();
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
                    if let Err(e) = transport.append_log(&token, data).await {
                        // The job token is dead (canceled, superseded): stop.
                        tracing::debug!(error = %e, "log upload failed");
                        if matches!(e, crate::transport::TransportError::Unauthorized(_)) {
                            return;
                        }
                    }
                }
                if closed {
                    return;
                }
            }
        });
        (LogSink { tx }, LogUploader { task })
    }

    pub fn write(&self, data: &[u8]) {
        let _ = self.tx.send(data.to_vec());
    }

    pub fn line(&self, line: &str) {
        self.write(format!("{line}\n").as_bytes());
    }
}

impl LogUploader {
    /// Wait until everything written before `sink` was dropped is uploaded.
    pub async fn close(self, sink: LogSink) {
        drop(sink);
        let _ = self.task.await;
    }
}
