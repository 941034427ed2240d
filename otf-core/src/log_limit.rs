//! The per-job log limit (`--max-log-bytes`): a runaway job (an endless
//! `local-exec`) must not fill the database. Output up to the limit is kept;
//! the chunk that crosses it is cut, a notice says the log was truncated,
//! and later output is counted and dropped. When the job ends, a last line
//! says how much was dropped. The run itself goes on.

/// What to do with one chunk of runner output.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Admission {
    /// Bytes of the chunk to append.
    pub keep: usize,
    /// Bytes of the chunk dropped.
    pub dropped: u64,
    /// Whether this chunk crosses the limit (the truncation notice follows
    /// what is kept).
    pub crosses: bool,
}

/// Admit `incoming` bytes of runner output to a log that already holds
/// `len` bytes, of which `dropped_before` were dropped so far, under `limit`.
pub fn admit(len: u64, dropped_before: u64, incoming: usize, limit: u64) -> Admission {
    let room = limit.saturating_sub(len);
    let keep = usize::try_from(room).unwrap_or(usize::MAX).min(incoming);
    let dropped = (incoming - keep) as u64;
    Admission {
        keep,
        dropped,
        crosses: dropped > 0 && dropped_before == 0,
    }
}

/// The line written where the log is cut.
pub fn truncated_notice(limit: u64) -> String {
    format!("\n[otf] this log reached its limit of {limit} bytes (--max-log-bytes); later output is dropped, the job goes on\n")
}

/// The line written when the job ends, if anything was dropped.
pub fn dropped_notice(limit: u64, dropped: u64) -> String {
    format!(
        "[otf] the log was truncated at {limit} bytes: {dropped} bytes of output were dropped\n"
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn the_crossing_chunk_is_cut_and_later_ones_dropped() {
        assert_eq!(
            admit(0, 0, 10, 100),
            Admission {
                keep: 10,
                dropped: 0,
                crosses: false
            }
        );
        assert_eq!(
            admit(95, 0, 10, 100),
            Admission {
                keep: 5,
                dropped: 5,
                crosses: true
            }
        );
        assert_eq!(
            admit(180, 5, 10, 100),
            Admission {
                keep: 0,
                dropped: 10,
                crosses: false
            },
            "past the limit: dropped, the notice is written once"
        );
        assert_eq!(
            admit(90, 0, 10, 100),
            Admission {
                keep: 10,
                dropped: 0,
                crosses: false
            },
            "exactly at the limit is not truncated"
        );
        assert_eq!(
            admit(100, 0, 1, 100),
            Admission {
                keep: 0,
                dropped: 1,
                crosses: true
            },
            "a log filled exactly gets its notice with the first dropped byte"
        );
        assert!(dropped_notice(100, 5).contains("5 bytes"));
        assert!(truncated_notice(100).contains("100 bytes"));
    }

    proptest! {
        /// Over any sequence of chunks: what is kept never passes the limit,
        /// kept + dropped is everything, and the notice comes exactly once
        /// when anything is dropped.
        #[test]
        fn a_log_never_passes_its_limit(limit in 0u64..5_000, chunks in proptest::collection::vec(0usize..2_000, 0..40)) {
            let (mut kept, mut dropped, mut notices) = (0u64, 0u64, 0);
            for c in &chunks {
                let a = admit(kept, dropped, *c, limit);
                prop_assert_eq!(a.keep as u64 + a.dropped, *c as u64);
                kept += a.keep as u64;
                dropped += a.dropped;
                notices += usize::from(a.crosses);
            }
            prop_assert!(kept <= limit);
            prop_assert_eq!(kept + dropped, chunks.iter().map(|c| *c as u64).sum::<u64>());
            prop_assert_eq!(notices, usize::from(dropped > 0));
        }
    }
}
