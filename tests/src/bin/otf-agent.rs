//! `otf-agent` for the end-to-end tests of this crate.

fn main() -> std::process::ExitCode {
    otf_agent::cli::main_impl()
}
