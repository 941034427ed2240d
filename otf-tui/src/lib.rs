//! `otf-tui` is the administrator's terminal UI (ratatui + crossterm): a
//! client of otfd's public HTTP API only, never of its database. It must not
//! depend on `otf-store` or `otf-agent`; from `otf-core` it uses pure helpers
//! only (status enums and their wire spelling, tarball packing).
//!
//! The layers, each testable alone:
//! * [`app`]: the state, and `update(state, action) -> effects`, pure;
//! * [`screens`]: one module per screen, owning its state, refresh, keys,
//!   actions, answers and drawing;
//! * [`keys`]: the keys every screen shares, and modals' keys;
//! * [`view`]: the frame around the screen, a function of the state
//!   (tested on `TestBackend`);
//! * [`client`]: the client behind the [`client::Api`] trait, over HTTP or
//!   any other [`client::Exchange`];
//! * `runtime`: the event loop and the background requests;
//! * [`cli`]: flags, first contact, exit codes; entry [`cli::main_impl`];
//! * [`remote`] and [`input`]: the same TUI on a terminal that is not this
//!   process's (otfd's SSH sessions): output to any writer, key events
//!   decoded from the terminal's bytes.

#![forbid(unsafe_code)]

pub mod app;
pub mod cli;
pub mod client;
pub mod input;
pub mod keys;
pub mod model;
pub mod remote;
pub mod runtime;
pub mod screens;
mod terminal;
pub mod theme;
pub mod time;
pub mod view;
