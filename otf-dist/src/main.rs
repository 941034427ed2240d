//! `otf-dist OUT`: writes into OUT what the Debian packages ship besides
//! the binaries, generated from the binaries' own clap definitions so that
//! it cannot drift from them:
//!
//! * `man/otfd.1`, `man/otf-agent.1`, `man/otf-tui.1` (clap_mangen);
//! * `completions/{bash,zsh,fish}/…` for each binary (clap_complete);
//! * `env/otfd.env` and `env/agent.env`: every flag as its `OTF_*`
//!   variable, commented out, with its help and default.
//!
//! It owns no rule of otf and nothing depends on it.

#![forbid(unsafe_code)]

use std::fmt::Write as _;
use std::fs;
use std::path::Path;

use anyhow::{Context, Result};
use clap::Command;
use clap_complete::Shell;

fn main() -> Result<()> {
    let out = std::env::args_os()
        .nth(1)
        .context("usage: otf-dist OUT (the directory to write into)")?;
    let out = Path::new(&out);
    let binaries = [
        (otf_http::cli::command(), "otfd.env"),
        (otf_agent::cli::command(), "agent.env"),
        (otf_tui::cli::command(), ""),
    ];
    for (cmd, env_file) in binaries {
        let name = cmd.get_name().to_string();
        write(&out.join("man").join(format!("{name}.1")), &man(&cmd)?)?;
        for (shell, file) in [
            (Shell::Bash, name.clone()),
            (Shell::Zsh, format!("_{name}")),
            (Shell::Fish, format!("{name}.fish")),
        ] {
            let mut buf = Vec::new();
            clap_complete::generate(shell, &mut cmd.clone(), &name, &mut buf);
            write(
                &out.join("completions").join(shell.to_string()).join(file),
                &buf,
            )?;
        }
        if !env_file.is_empty() {
            write(&out.join("env").join(env_file), env(&cmd).as_bytes())?;
        }
    }
    Ok(())
}

fn write(path: &Path, bytes: &[u8]) -> Result<()> {
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    fs::write(path, bytes).with_context(|| format!("cannot write {}", path.display()))
}

fn man(cmd: &Command) -> Result<Vec<u8>> {
    let mut buf = Vec::new();
    clap_mangen::Man::new(cmd.clone())
        .render(&mut buf)
        .context("cannot render a man page")?;
    Ok(buf)
}

/// The environment file of a service: each flag that has a variable, as a
/// commented assignment of its default (or empty), under its help.
fn env(cmd: &Command) -> String {
    let name = cmd.get_name();
    let mut s = format!(
        "# Environment of the {name} service (systemd reads it; see {name}(1)).\n\
         # Every flag of {name} is a variable here: uncomment and set the ones\n\
         # you need. The file is readable by the service only: secrets may go\n\
         # here, or in files named by the *_FILE variables.\n"
    );
    for arg in cmd.get_arguments() {
        let Some(var) = arg.get_env() else {
            continue;
        };
        let var = var.to_string_lossy();
        let flag = arg.get_long().unwrap_or_else(|| arg.get_id().as_str());
        let help = arg
            .get_long_help()
            .or_else(|| arg.get_help())
            .map(|h| h.to_string())
            .unwrap_or_default();
        let _ = writeln!(s, "\n# --{flag}");
        for line in wrap(&help, 74) {
            let _ = writeln!(s, "# {line}");
        }
        let default: Vec<String> = arg
            .get_default_values()
            .iter()
            .map(|v| v.to_string_lossy().into_owned())
            .collect();
        let _ = writeln!(s, "#{var}={}", default.join(","));
    }
    s
}

/// Words of `text` in lines of at most `width` characters (a longer word
/// gets a line of its own).
fn wrap(text: &str, width: usize) -> Vec<String> {
    let mut lines = Vec::new();
    for paragraph in text.lines() {
        let mut line = String::new();
        for word in paragraph.split_whitespace() {
            if !line.is_empty() && line.len() + 1 + word.len() > width {
                lines.push(std::mem::take(&mut line));
            }
            if !line.is_empty() {
                line.push(' ');
            }
            line.push_str(word);
        }
        lines.push(line);
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_files_hold_every_flag_with_a_variable() {
        for cmd in [otf_http::cli::command(), otf_agent::cli::command()] {
            let text = env(&cmd);
            for arg in cmd.get_arguments() {
                if let Some(var) = arg.get_env() {
                    let var = var.to_string_lossy();
                    assert!(text.contains(&format!("\n#{var}=")), "{var}");
                }
            }
            assert!(
                text.lines().all(|l| l.len() <= 80 || !l.contains(' ')),
                "{text}"
            );
        }
    }

    #[test]
    fn wraps_at_word_boundaries() {
        assert_eq!(wrap("aa bb cc", 5), ["aa bb", "cc"]);
        assert_eq!(wrap("a\nb", 10), ["a", "b"]);
    }
}
