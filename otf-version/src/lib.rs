//! `otf-version` owns how otf's binaries name themselves: the release
//! version of the workspace and the git commit they were built from
//! (`OTF_COMMIT` at build time overrides it, e.g. for builds from a source
//! tarball). It is a leaf: it depends on nothing, so that a new commit
//! rebuilds only the binaries, not the libraries.

#![forbid(unsafe_code)]

/// The release, e.g. `0.1.0`.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// The commit (12 hex digits), or `unknown` outside a git checkout.
pub const COMMIT: &str = env!("OTF_COMMIT");

/// What `--version` prints after the program's name: `0.1.0 (commit abc…)`.
pub const LONG: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (commit ",
    env!("OTF_COMMIT"),
    ")"
);

#[cfg(test)]
mod tests {
    #[test]
    fn long_names_the_release_and_the_commit() {
        assert!(super::LONG.starts_with(super::VERSION));
        assert!(super::LONG.contains(super::COMMIT));
        assert!(!super::COMMIT.is_empty());
    }
}
