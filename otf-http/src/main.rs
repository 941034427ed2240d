//! `otfd`: see `otf_http::cli`.

/// mimalloc instead of glibc's malloc: dispatch allocates and frees small
/// buffers per request and per statement, and glibc's malloc and free were
/// a sixth of otfd's CPU under load. Built with lazy arena commits
/// (`.cargo/config.toml`) so freed pages leave the RSS (ARCHITECTURE.md,
/// "otfd allocates with mimalloc").
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    otf_http::cli::main_impl()
}
