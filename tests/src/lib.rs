//! End-to-end and architecture tests of otf. The tests (in `tests/`) start
//! the real binaries through the thin wrappers in `src/bin`; their harness is
//! `tests/support`. Nothing here is used by the product.
