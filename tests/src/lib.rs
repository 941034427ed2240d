//! End-to-end and architecture tests of otf. The end-to-end tests start the
//! real binaries on loopback as they land; the architecture tests check the
//! crate boundaries of ARCHITECTURE.md. Nothing here is used by the product.
