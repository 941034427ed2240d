//! `otfd`: not built yet (issue 4). It exits with a message saying so.

fn main() -> std::process::ExitCode {
    eprintln!(
        "otfd {}: the HTTP server is not implemented yet (see issue 4); the core library is usable through otf-core",
        otf_http::VERSION
    );
    std::process::ExitCode::from(2)
}
