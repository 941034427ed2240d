//! `otfd`: see `otf_http::cli`.

fn main() -> std::process::ExitCode {
    otf_http::cli::main_impl()
}
