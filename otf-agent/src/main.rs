//! `otf-agent`: see `otf_agent::cli`.

fn main() -> std::process::ExitCode {
    otf_agent::cli::main_impl()
}
