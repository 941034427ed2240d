//! Helpers of the end-to-end tests (filled as the binaries land).
