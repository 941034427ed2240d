//! `otf-tui` for the end-to-end tests of this crate.

fn main() -> std::process::ExitCode {
    otf_tui::cli::main_impl()
}
