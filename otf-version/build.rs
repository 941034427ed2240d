//! Finds the git commit the build comes from (for `--version`).

use std::path::Path;
use std::process::Command;

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
        .filter(|s| !s.is_empty())
}

fn main() {
    println!("cargo:rerun-if-env-changed=OTF_COMMIT");
    let given = std::env::var("OTF_COMMIT").ok().filter(|c| !c.is_empty());
    let commit = given.or_else(|| {
        // Rebuild when HEAD moves: its file, the branch it names, packed refs.
        if let Some(dir) = git(&["rev-parse", "--git-dir"]) {
            println!(
                "cargo:rerun-if-changed={}",
                Path::new(&dir).join("HEAD").display()
            );
        }
        // Branches live in the common directory (a worktree has its own HEAD).
        if let Some(common) = git(&["rev-parse", "--git-common-dir"]) {
            let common = Path::new(&common);
            println!(
                "cargo:rerun-if-changed={}",
                common.join("packed-refs").display()
            );
            if let Some(branch) = git(&["symbolic-ref", "-q", "HEAD"]) {
                println!("cargo:rerun-if-changed={}", common.join(branch).display());
            }
        }
        git(&["rev-parse", "--short=12", "HEAD"])
    });
    println!(
        "cargo:rustc-env=OTF_COMMIT={}",
        commit.unwrap_or_else(|| "unknown".into())
    );
}
