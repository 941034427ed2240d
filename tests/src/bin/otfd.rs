//! `otfd` for the end-to-end tests of this crate.

fn main() -> std::process::ExitCode {
    otf_http::cli::main_impl()
}
