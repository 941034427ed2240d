//! A terminal program in a detached tmux session on a tmux server of its
//! own, driven with `send-keys` and read with `capture-pane` (the TUI's
//! end-to-end tests: `otf-tui` itself, and `ssh` into otfd).

use std::process::{Command, Output};
use std::time::Duration;

/// How long one step of a walkthrough may take.
pub const STEP: Duration = Duration::from_secs(20);

pub struct Tmux {
    socket: String,
}

fn tmux_output(args: &[&str]) -> Output {
    match Command::new("tmux").args(args).output() {
        Ok(o) => o,
        Err(e) => panic!(
            "tmux is needed for the TUI end-to-end tests ({e}): install it with \
             `apt-get install tmux` (./scripts/test does)"
        ),
    }
}

impl Tmux {
    /// Run `cmd` in a `width`×`height` pane of a server named after `name`;
    /// when it ends the pane says "`label` exited with CODE".
    pub fn start(name: &str, width: u16, height: u16, label: &str, cmd: &[&str]) -> Tmux {
        let socket = format!("{name}-{}", std::process::id());
        let script = format!(r#""$0" "$@"; echo "{label} exited with $?"; sleep 600"#);
        let (w, h) = (width.to_string(), height.to_string());
        let mut args = vec![
            "-L",
            &socket,
            "-f",
            "/dev/null",
            "new-session",
            "-d",
            "-s",
            "tui",
            "-x",
            &w,
            "-y",
            &h,
            "sh",
            "-c",
            &script,
        ];
        args.extend_from_slice(cmd);
        let out = tmux_output(&args);
        assert!(
            out.status.success(),
            "tmux new-session failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Tmux { socket }
    }

    fn tmux(&self, args: &[&str]) -> Output {
        let mut all = vec!["-L", &self.socket];
        all.extend_from_slice(args);
        tmux_output(&all)
    }

    /// Press keys by tmux name (`Enter`, `Escape`, `Down`, `q`, ...).
    pub fn keys(&self, keys: &[&str]) {
        for k in keys {
            self.tmux(&["send-keys", "-t", "tui", k]);
        }
    }

    /// Type text literally.
    pub fn text(&self, text: &str) {
        self.tmux(&["send-keys", "-t", "tui", "-l", text]);
    }

    /// Make the window `width`×`height` (the program gets SIGWINCH).
    pub fn resize(&self, width: u16, height: u16) {
        let (w, h) = (width.to_string(), height.to_string());
        self.tmux(&["resize-window", "-t", "tui", "-x", &w, "-y", &h]);
    }

    /// The program ends as if its terminal went away.
    pub fn kill(&self) {
        self.tmux(&["kill-session", "-t", "tui"]);
    }

    pub fn capture(&self) -> String {
        String::from_utf8_lossy(&self.tmux(&["capture-pane", "-p", "-t", "tui"]).stdout)
            .into_owned()
    }

    /// Poll the pane until `check` holds; the pane then.
    pub fn wait(&self, what: &str, deadline: Duration, check: impl Fn(&str) -> bool) -> String {
        super::poll_until(deadline, what, || {
            let pane = self.capture();
            if check(&pane) {
                Ok(pane)
            } else {
                Err(format!("the pane:\n{pane}"))
            }
        })
    }

    pub fn wait_for(&self, text: &str) -> String {
        self.wait(&format!("{text:?}"), STEP, |p| p.contains(text))
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        self.tmux(&["kill-server"]);
    }
}

/// The line of the pane that starts (after spaces and a cursor) with `start`.
pub fn line<'a>(pane: &'a str, start: &str) -> Option<&'a str> {
    pane.lines()
        .find(|l| l.trim_start_matches(['>', ' ']).starts_with(start))
}

/// The agent token's secret from the "copy it now" modal (it may wrap).
pub fn secret(pane: &str) -> String {
    let lines: Vec<&str> = pane.lines().map(str::trim).collect();
    let i = lines
        .iter()
        .position(|l| l.starts_with("at-") && l.contains('.'))
        .unwrap_or_else(|| panic!("no secret on the pane:\n{pane}"));
    let mut s = lines[i].to_string();
    for l in &lines[i + 1..] {
        if l.is_empty() || l.contains(' ') {
            break;
        }
        s.push_str(l);
    }
    s
}
