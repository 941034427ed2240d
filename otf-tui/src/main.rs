//! `otf-tui`: see the crate documentation.

fn main() -> std::process::ExitCode {
    otf_tui::cli::main_impl()
}
