//! What otfd's `/metrics` shows of the SSH server: sessions open now,
//! connections open now, and logins refused.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

#[derive(Debug, Default)]
pub struct Stats {
    sessions: AtomicUsize,
    connections: AtomicUsize,
    refused: AtomicU64,
}

impl Stats {
    /// TUI sessions running now.
    pub fn sessions(&self) -> usize {
        self.sessions.load(Ordering::Relaxed)
    }

    /// SSH connections open now (authenticated or not).
    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::Relaxed)
    }

    /// Public keys refused since the start.
    pub fn refused(&self) -> u64 {
        self.refused.load(Ordering::Relaxed)
    }

    pub(crate) fn refuse(&self) {
        self.refused.fetch_add(1, Ordering::Relaxed);
    }
}

/// Counts something while its guard lives.
#[derive(Debug, Clone)]
pub struct SessionCount(pub(crate) Arc<Stats>);

pub struct Counted {
    stats: Arc<Stats>,
    connection: bool,
}

impl SessionCount {
    pub(crate) fn enter(&self) -> Counted {
        self.0.sessions.fetch_add(1, Ordering::Relaxed);
        Counted {
            stats: self.0.clone(),
            connection: false,
        }
    }

    pub(crate) fn connect(&self) -> Counted {
        self.0.connections.fetch_add(1, Ordering::Relaxed);
        Counted {
            stats: self.0.clone(),
            connection: true,
        }
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        let n = if self.connection {
            &self.stats.connections
        } else {
            &self.stats.sessions
        };
        n.fetch_sub(1, Ordering::Relaxed);
    }
}
