//! Who may enter: OpenSSH's `authorized_keys` format, each key a site
//! administrator unless its line says `otf-organization="NAME"`; and the
//! file watched, so that a change (a key added, removed or limited) holds
//! from the next login on and closes the sessions of keys it removed.
//!
//! A line's options are honoured or the line is refused: otfd knows
//! `otf-organization` and the options that only take away what it never
//! gives (`restrict`, `no-port-forwarding`, `no-agent-forwarding`,
//! `no-X11-forwarding`, `no-user-rc`, and `pty`, which it needs anyway).
//! Any other (`from=`, `command=`, `expiry-time=`, `no-pty`, ...) would be
//! a restriction otfd does not enforce, so a line carrying one is skipped
//! with a warning rather than let in with less restriction than it says.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use otf_core::auth::Subject;
use otf_core::ids::OrganizationName;
use russh::keys::{HashAlg, PublicKey};
use tokio::sync::watch;

/// One accepted key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthorizedKey {
    pub key: PublicKey,
    /// Its limit, from `otf-organization="NAME"`; none: site administrator.
    pub organization: Option<OrganizationName>,
    /// `SHA256:...`, as `ssh-keygen -l` prints it.
    pub fingerprint: String,
    /// Its line in the file, from 1.
    pub line: usize,
}

impl AuthorizedKey {
    /// What the key may do: the same subject an organization token (or
    /// the site token) gets, so the same authorization code decides.
    pub fn subject(&self) -> Subject {
        otf_core::auth::ssh_key_subject(self.organization.clone(), &self.fingerprint)
    }

    /// "site administrator" or "organization NAME", for logs and messages.
    pub fn access(&self) -> String {
        match &self.organization {
            None => "site administrator".into(),
            Some(o) => format!("organization {o}"),
        }
    }
}

/// A line that was skipped, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LineError {
    pub line: usize,
    pub reason: String,
}

impl std::fmt::Display for LineError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "line {}: {}", self.line, self.reason)
    }
}

/// The keys of one reading of the file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuthorizedKeys {
    keys: Vec<AuthorizedKey>,
}

/// Options that only take away what otfd never gives.
const NO_OPS: [&str; 6] = [
    "restrict",
    "no-port-forwarding",
    "no-agent-forwarding",
    "no-x11-forwarding",
    "no-user-rc",
    "pty",
];

const ORGANIZATION: &str = "otf-organization";

impl AuthorizedKeys {
    /// Parse the file's text: the keys, and the lines skipped. Blank lines
    /// and `#` comments are neither.
    pub fn parse(text: &str) -> (AuthorizedKeys, Vec<LineError>) {
        let mut keys = Vec::new();
        let mut errors = Vec::new();
        for (i, raw) in text.lines().enumerate() {
            let line = raw.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            match parse_line(line) {
                Ok((key, organization)) => keys.push(AuthorizedKey {
                    fingerprint: key.fingerprint(HashAlg::Sha256).to_string(),
                    key,
                    organization,
                    line: i + 1,
                }),
                Err(reason) => errors.push(LineError {
                    line: i + 1,
                    reason,
                }),
            }
        }
        (AuthorizedKeys { keys }, errors)
    }

    /// The first line with `key` (as sshd reads the file), if any.
    pub fn find(&self, key: &PublicKey) -> Option<&AuthorizedKey> {
        self.keys
            .iter()
            .find(|k| k.key.key_data() == key.key_data())
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}

/// `[options] type base64 [comment]`.
fn parse_line(line: &str) -> Result<(PublicKey, Option<OrganizationName>), String> {
    let first = line.split_whitespace().next().unwrap_or("");
    let (options, rest) = if is_key_type(first) {
        ("", line)
    } else {
        split_options(line)?
    };
    let mut fields = rest.split_whitespace();
    let (Some(kind), Some(data)) = (fields.next(), fields.next()) else {
        return Err("expected `[options] key-type base64-key [comment]`".into());
    };
    let key = PublicKey::from_openssh(&format!("{kind} {data}"))
        .map_err(|e| format!("not a public key otfd can use ({kind}): {e}"))?;
    let mut organization = None;
    for (name, value) in parse_options(options)? {
        let lower = name.to_ascii_lowercase();
        if lower == ORGANIZATION {
            let value = value.ok_or("otf-organization needs a value: otf-organization=\"NAME\"")?;
            let org: OrganizationName = value
                .parse()
                .map_err(|e| format!("otf-organization=\"{value}\": {e}"))?;
            if organization.replace(org).is_some() {
                return Err("otf-organization is given twice".into());
            }
        } else if !NO_OPS.contains(&lower.as_str()) || value.is_some() {
            return Err(format!(
                "option {name} is a restriction otfd does not enforce; \
                 the key is not accepted (otfd understands otf-organization=\"NAME\", \
                 restrict and the no-*-forwarding options)"
            ));
        }
    }
    Ok((key, organization))
}

fn is_key_type(word: &str) -> bool {
    word.starts_with("ssh-") || word.starts_with("ecdsa-sha2-") || word.starts_with("sk-")
}

/// The options (up to the first blank outside quotes) and the rest.
fn split_options(line: &str) -> Result<(&str, &str), String> {
    let mut quoted = false;
    let mut escaped = false;
    for (i, c) in line.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            c if c.is_whitespace() && !quoted => return Ok((&line[..i], &line[i..])),
            _ => {}
        }
    }
    Err(if quoted {
        "an option's quoted value does not end".into()
    } else {
        "no key after the options".into()
    })
}

/// `name`, `name="value"` (with `\"` inside), comma-separated.
fn parse_options(options: &str) -> Result<Vec<(String, Option<String>)>, String> {
    let mut out = Vec::new();
    let mut chars = options.chars().peekable();
    while chars.peek().is_some() {
        let mut name = String::new();
        while let Some(&c) = chars.peek() {
            if c == ',' || c == '=' {
                break;
            }
            name.push(c);
            chars.next();
        }
        let mut value = None;
        if chars.peek() == Some(&'=') {
            chars.next();
            if chars.next() != Some('"') {
                return Err(format!("option {name}: its value must be in double quotes"));
            }
            let mut v = String::new();
            loop {
                match chars.next() {
                    Some('\\') if chars.peek() == Some(&'"') => {
                        v.push('"');
                        chars.next();
                    }
                    Some('"') => break,
                    Some(c) => v.push(c),
                    None => return Err(format!("option {name}: the value does not end")),
                }
            }
            value = Some(v);
        }
        if name.is_empty() {
            return Err("an empty option".into());
        }
        out.push((name, value));
        match chars.next() {
            None | Some(',') => {}
            Some(c) => return Err(format!("unexpected {c:?} after an option")),
        }
    }
    Ok(out)
}

/// Why the file could not be read.
#[derive(Debug, thiserror::Error)]
#[error("cannot read the authorized keys file {path}: {source}")]
pub struct ReadError {
    pub path: PathBuf,
    #[source]
    pub source: std::io::Error,
}

/// Read and parse the file; skipped lines are logged as warnings.
pub fn load(path: &Path) -> Result<AuthorizedKeys, ReadError> {
    let text = std::fs::read_to_string(path).map_err(|source| ReadError {
        path: path.to_path_buf(),
        source,
    })?;
    let (keys, errors) = AuthorizedKeys::parse(&text);
    for e in errors {
        tracing::warn!(file = %path.display(), "ssh: authorized keys {e}; skipped");
    }
    Ok(keys)
}

/// What tells a changed file: its inode, size and times.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Stamp {
    inode: u64,
    len: u64,
    modified: Option<SystemTime>,
    changed: i64,
}

fn stamp(path: &Path) -> Option<Stamp> {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(path).ok()?;
    Some(Stamp {
        inode: m.ino(),
        len: m.len(),
        modified: m.modified().ok(),
        changed: m.ctime_nsec() + m.ctime() * 1_000_000_000,
    })
}

/// Read `path`, then watch it every `interval` until `stop` is set or
/// dropped: each change is read and published. A file that is gone or
/// unreadable lets no one in (fail closed) until it is back; at the start
/// it is an error.
pub fn watch(
    path: PathBuf,
    interval: Duration,
    mut stop: watch::Receiver<bool>,
) -> Result<watch::Receiver<Arc<AuthorizedKeys>>, ReadError> {
    // Stamped before it is read: a change in between is read again.
    let mut last = stamp(&path);
    let (tx, rx) = watch::channel(Arc::new(load(&path)?));
    tokio::spawn(async move {
        let mut ticker = tokio::time::interval(interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = ticker.tick() => {}
                r = stop.changed() => if r.is_err() || *stop.borrow() { return },
            }
            let now = stamp(&path);
            if now == last {
                continue;
            }
            last = now;
            let keys = match load(&path) {
                Ok(k) => {
                    tracing::info!(file = %path.display(), keys = k.len(), "ssh: authorized keys read again");
                    k
                }
                Err(e) => {
                    tracing::error!("ssh: {e}; no key may enter until it can be read");
                    AuthorizedKeys::default()
                }
            };
            if tx.send(Arc::new(keys)).is_err() {
                return;
            }
        }
    });
    Ok(rx)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const ED: &str = "AAAAC3NzaC1lZDI1NTE5AAAAIJ9WqS8BvQlvQ7qs5IpriRzYj+1xKY58RpfBGG/UOkXS";
    const ED2: &str = "AAAAC3NzaC1lZDI1NTE5AAAAID6o0eOX2+jDM7jF5XMEAvoQAfOzlr6Cqy+MvkYJfuEF";

    fn key(data: &str) -> PublicKey {
        PublicKey::from_openssh(&format!("ssh-ed25519 {data}")).expect("a test key")
    }

    #[test]
    fn keys_with_and_without_an_organization() {
        let text = format!(
            "# admins\n\nssh-ed25519 {ED} alice@laptop\n\
             otf-organization=\"acme\",no-port-forwarding ssh-ed25519 {ED2} bob\n"
        );
        let (keys, errors) = AuthorizedKeys::parse(&text);
        assert_eq!(errors, vec![]);
        let alice = keys.find(&key(ED)).expect("alice's key");
        assert_eq!((alice.line, alice.organization.as_ref()), (3, None));
        assert_eq!(alice.subject(), Subject::SiteAdmin);
        assert!(
            alice.fingerprint.starts_with("SHA256:"),
            "{}",
            alice.fingerprint
        );
        let bob = keys.find(&key(ED2)).expect("bob's key");
        assert_eq!(bob.organization.as_ref().map(|o| o.as_str()), Some("acme"));
        assert!(matches!(bob.subject(), Subject::Organization { .. }));
        assert_eq!(bob.access(), "organization acme");
    }

    #[test]
    fn the_first_line_of_a_key_wins() {
        let text = format!("otf-organization=\"acme\" ssh-ed25519 {ED}\nssh-ed25519 {ED}\n");
        let (keys, _) = AuthorizedKeys::parse(&text);
        assert_eq!(keys.find(&key(ED)).map(|k| k.line), Some(1));
    }

    #[test]
    fn lines_otfd_cannot_honour_are_skipped_with_a_reason() {
        let cases = [
            (format!("from=\"10.0.0.0/8\" ssh-ed25519 {ED}"), "from"),
            (format!("command=\"id\" ssh-ed25519 {ED}"), "command"),
            (format!("no-pty ssh-ed25519 {ED}"), "no-pty"),
            (
                format!("otf-organization=\"Not A Name\" ssh-ed25519 {ED}"),
                "otf-organization",
            ),
            (
                format!("otf-organization ssh-ed25519 {ED}"),
                "needs a value",
            ),
            (
                format!("otf-organization=\"a\",otf-organization=\"b\" ssh-ed25519 {ED}"),
                "twice",
            ),
            (
                format!("otf-organization=\"acme ssh-ed25519 {ED}"),
                "does not end",
            ),
            ("ssh-ed25519 AAAAnot-base64".to_string(), "not a public key"),
            ("ssh-ed25519".to_string(), "expected"),
        ];
        for (line, why) in cases {
            let (keys, errors) = AuthorizedKeys::parse(&line);
            assert!(keys.is_empty(), "{line}");
            assert_eq!(errors.len(), 1, "{line}");
            assert!(errors[0].reason.contains(why), "{line}: {}", errors[0]);
            assert_eq!(errors[0].line, 1);
        }
    }

    #[test]
    fn quoted_values_may_hold_blanks_commas_and_quotes() {
        let opts = parse_options(r#"a="x y,z",b="say \"hi\"",restrict"#).expect("options");
        assert_eq!(
            opts,
            vec![
                ("a".into(), Some("x y,z".into())),
                ("b".into(), Some("say \"hi\"".into())),
                ("restrict".into(), None),
            ]
        );
    }

    #[tokio::test]
    async fn a_changed_file_is_read_again_and_a_missing_one_lets_no_one_in() {
        let dir = tempfile::tempdir().expect("a dir");
        let path = dir.path().join("keys");
        std::fs::write(&path, format!("ssh-ed25519 {ED}\n")).expect("write");
        let (stop, stopped) = watch::channel(false);
        let mut rx = watch(path.clone(), Duration::from_millis(10), stopped).expect("read");
        assert!(
            watch(
                dir.path().join("absent"),
                Duration::from_millis(10),
                stop.subscribe()
            )
            .is_err(),
            "a file that cannot be read at the start is an error"
        );
        assert!(rx.borrow().find(&key(ED)).is_some());
        std::fs::write(&path, format!("ssh-ed25519 {ED2}\n")).expect("rewrite");
        tokio::time::timeout(Duration::from_secs(10), rx.changed())
            .await
            .expect("the change is seen")
            .expect("the watcher runs");
        assert!(rx.borrow().find(&key(ED)).is_none());
        assert!(rx.borrow().find(&key(ED2)).is_some());
        std::fs::remove_file(&path).expect("remove");
        tokio::time::timeout(Duration::from_secs(10), rx.changed())
            .await
            .expect("the removal is seen")
            .expect("the watcher runs");
        assert!(rx.borrow().is_empty());
        let _ = stop.send(true);
    }

    proptest! {
        /// Whatever a line holds, parsing gives a key or a reason, never a
        /// panic; and an accepted line's key is the one written.
        #[test]
        fn any_line_parses_or_says_why(options in "[a-z=\",\\\\ -]{0,30}", comment in "[ -~]{0,20}") {
            let line = format!("{options} ssh-ed25519 {ED} {comment}");
            let (keys, errors) = AuthorizedKeys::parse(&line);
            prop_assert_eq!(keys.len() + errors.len(), usize::from(!line.trim().starts_with('#')));
            if let Some(k) = keys.keys.first() {
                let expected = key(ED);
                prop_assert_eq!(k.key.key_data(), expected.key_data());
            }
        }
    }
}
