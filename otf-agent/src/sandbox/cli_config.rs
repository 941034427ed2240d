//! The paths a Terraform CLI configuration file names (filesystem mirrors,
//! `dev_overrides`, `plugin_cache_dir`), which terraform needs inside its
//! sandbox. The file is the operator's, not the configuration's: every
//! absolute path quoted in it is granted (read), and the plugin cache is
//! granted read-write, since terraform fills it.

use std::path::PathBuf;

/// Paths named by a CLI configuration.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct NamedPaths {
    pub read: Vec<PathBuf>,
    pub write: Vec<PathBuf>,
}

/// Quoted strings of one line, with `\"` escapes honoured, each with
/// whether it is the value of `plugin_cache_dir` (HCL `key = "v"` or JSON
/// `"key": "v"`).
fn quoted(line: &str) -> Vec<(String, bool)> {
    let mut out: Vec<(String, bool)> = Vec::new();
    let mut chars = line.chars();
    let mut before = String::new();
    while let Some(c) = chars.next() {
        if c != '"' {
            before.push(c);
            continue;
        }
        let mut s = String::new();
        let mut escaped = false;
        for c in chars.by_ref() {
            match (c, escaped) {
                ('\\', false) => escaped = true,
                ('"', false) => break,
                (c, _) => {
                    s.push(c);
                    escaped = false;
                }
            }
        }
        let lead = before.trim_end().trim_end_matches(['=', ':']).trim_end();
        let cache = lead.ends_with("plugin_cache_dir")
            || (lead.is_empty() && out.last().is_some_and(|(k, _)| k == "plugin_cache_dir"));
        out.push((s, cache));
        before.clear();
    }
    out
}

/// Paths named in the CLI configuration `text` (HCL or JSON syntax).
pub fn named_paths(text: &str) -> NamedPaths {
    let mut named = NamedPaths::default();
    for raw in text.lines() {
        let line = raw.trim_start();
        if line.starts_with('#') || line.starts_with("//") {
            continue;
        }
        for (s, cache) in quoted(line) {
            if !s.starts_with('/') {
                continue;
            }
            let p = PathBuf::from(s);
            if cache {
                named.write.push(p);
            } else {
                named.read.push(p);
            }
        }
    }
    named
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mirrors_overrides_and_the_cache_are_named() {
        let text = r#"
# a comment "/not/this"
plugin_cache_dir = "/var/cache/tf"
provider_installation {
  filesystem_mirror {
    path    = "/srv/mirror"
    include = ["registry.terraform.io/hashicorp/null"]
  }
  dev_overrides {
    "example/x" = "/home/dev/x"
  }
  direct {}
}
"#;
        assert_eq!(
            named_paths(text),
            NamedPaths {
                read: vec!["/srv/mirror".into(), "/home/dev/x".into()],
                write: vec!["/var/cache/tf".into()],
            }
        );
        let json = r#"{"plugin_cache_dir": "/c", "provider_installation": [{"filesystem_mirror": [{"path": "/m"}]}]}"#;
        assert_eq!(
            named_paths(json),
            NamedPaths {
                read: vec!["/m".into()],
                write: vec!["/c".into()],
            }
        );
    }
}
