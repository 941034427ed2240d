//! The launcher: this binary re-executed as
//! `<binary> __otf-sandbox exec --read P… --write P… [--private-tmp DIR] [--required] -- PROGRAM ARGS…`.
//! It reads the command's environment from its standard input (NUL-separated
//! `KEY=VALUE` records; it started with an empty environment), with
//! `--private-tmp` gives itself a temp dir no other process can reach (see
//! [`private_tmp`]), confines itself with Landlock, and `exec`s PROGRAM,
//! which inherits the domain, the mount view, the process id and the
//! process group. `<binary> __otf-sandbox probe` tries the private temp dir
//! on `/tmp`, confines itself with no rules and prints what held.

use std::ffi::{OsStr, OsString};
use std::io::Read;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};

/// The first argument that makes a binary the launcher.
pub const MARKER: &str = "__otf-sandbox";
/// The probe's answer line starts with this.
pub const PROBE_ANSWER: &str = "otf-sandbox:";
/// Exit code of a launcher that could not run its command.
const CANNOT_RUN: i32 = 126;
/// The largest environment the launcher accepts.
const MAX_ENV: u64 = 16 * 1024 * 1024;
/// Terraform's switch for the TLS of its channel to provider plugins.
const PLUGIN_TLS: &str = "TF_DISABLE_PLUGIN_TLS";

/// Encode an environment for the launcher's standard input.
pub fn encode_env(env: &[(OsString, OsString)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (k, v) in env {
        out.extend_from_slice(k.as_bytes());
        out.push(b'=');
        out.extend_from_slice(v.as_bytes());
        out.push(0);
    }
    out
}

fn decode_env(bytes: &[u8]) -> Vec<(OsString, OsString)> {
    bytes
        .split(|b| *b == 0)
        .filter(|r| !r.is_empty())
        .filter_map(|r| {
            let eq = r.iter().position(|b| *b == b'=')?;
            Some((
                OsString::from_vec(r[..eq].to_vec()),
                OsString::from_vec(r[eq + 1..].to_vec()),
            ))
        })
        .collect()
}

/// What the launcher was asked to run.
#[derive(Debug, Default, PartialEq, Eq)]
struct Request {
    read: Vec<PathBuf>,
    write: Vec<PathBuf>,
    private_tmp: Option<PathBuf>,
    required: bool,
    program: PathBuf,
    args: Vec<OsString>,
}

fn parse(args: &[OsString]) -> Result<Request, String> {
    let mut req = Request::default();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.to_str() {
            Some("--read") => req
                .read
                .push(it.next().ok_or("--read needs a path")?.into()),
            Some("--write") => req
                .write
                .push(it.next().ok_or("--write needs a path")?.into()),
            Some("--private-tmp") => {
                req.private_tmp = Some(it.next().ok_or("--private-tmp needs a path")?.into())
            }
            Some("--required") => req.required = true,
            Some("--") => {
                req.program = it.next().ok_or("no program after --")?.into();
                req.args = it.cloned().collect();
                return Ok(req);
            }
            _ => return Err(format!("unexpected launcher argument {a:?}")),
        }
    }
    Err("no program given".into())
}

/// If this process was started as the launcher, act as it and never
/// return; otherwise return at once. Call it first thing in `main`.
pub fn run_if_requested() {
    let args: Vec<OsString> = std::env::args_os().collect();
    if args.get(1).map(OsString::as_os_str) != Some(OsStr::new(MARKER)) {
        return;
    }
    let code = match args.get(2).and_then(|a| a.to_str()) {
        Some("probe") => probe(),
        Some("exec") => exec(&args[3..]),
        _ => {
            eprintln!("otf sandbox: unknown launcher request");
            CANNOT_RUN
        }
    };
    std::process::exit(code);
}

fn probe() -> i32 {
    // The same steps in the same order as `exec`: the namespace first (a
    // confined process may not mount).
    let private = private_tmp(Path::new("/tmp"));
    if let Err(e) = &private {
        eprintln!("no private temp dir: {e}");
    }
    let private = private.is_ok();
    match confine(&[], &[]) {
        Ok(status) => {
            println!(
                "{PROBE_ANSWER} abi={} status={} scoped={} private_tmp={private}",
                status.abi,
                if status.enforced {
                    "enforced"
                } else {
                    "not-enforced"
                },
                status.scoped
            );
            0
        }
        Err(e) => {
            println!("{PROBE_ANSWER} abi=0 status=not-enforced scoped=false private_tmp=false");
            eprintln!("{e}");
            0
        }
    }
}

fn exec(args: &[OsString]) -> i32 {
    use std::os::unix::process::CommandExt;
    let req = match parse(args) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("otf sandbox: {e}");
            return CANNOT_RUN;
        }
    };
    let mut input = Vec::new();
    if let Err(e) = std::io::stdin().take(MAX_ENV).read_to_end(&mut input) {
        eprintln!("otf sandbox: cannot read the command's environment: {e}");
        return CANNOT_RUN;
    }
    let mut env = decode_env(&input);
    if let Some(dir) = &req.private_tmp {
        if let Err(e) = private_tmp(dir) {
            eprintln!(
                "otf sandbox: cannot give {} a private temp dir: {e}",
                req.program.display()
            );
            return CANNOT_RUN;
        }
        // Nothing outside this command can reach the plugins' sockets (they
        // are made in the private temp dir), so the TLS terraform wraps its
        // plugin channel in protects nothing, and costs ~100 ms per plugin
        // start with terraform built before Go 1.17 (P-521 keys). Unless the
        // environment decides (an empty value keeps TLS on).
        if !env.iter().any(|(k, _)| k == PLUGIN_TLS) {
            env.push((PLUGIN_TLS.into(), "1".into()));
        }
    }
    match confine(&req.read, &req.write) {
        Ok(s) if s.enforced => {}
        Ok(_) | Err(_) if req.required => {
            eprintln!("otf sandbox: the kernel did not enforce the confinement, and --sandbox is required; not running {}", req.program.display());
            return CANNOT_RUN;
        }
        Ok(_) => {}
        Err(e) => eprintln!("otf sandbox: running unconfined: {e}"),
    }
    let err = std::process::Command::new(&req.program)
        .args(&req.args)
        .env_clear()
        .envs(env)
        .stdin(std::process::Stdio::null())
        .exec();
    eprintln!("otf sandbox: cannot run {}: {err}", req.program.display());
    CANNOT_RUN
}

/// Give this process (and what it `exec`s) a temp dir of its own: a new
/// user and mount namespace (this user mapped to itself, nothing else) in
/// which a fresh tmpfs (0700) covers `dir`. The tmpfs exists only in this
/// namespace, so no process outside the command, another job's included,
/// can open or connect to anything in it, by any path; it goes when the
/// command's last process does. Must run while the process has one thread,
/// and before Landlock (a confined process may not mount); a confined
/// command cannot unmount it either.
#[cfg(target_os = "linux")]
fn private_tmp(dir: &Path) -> Result<(), String> {
    use nix::mount::{mount, MsFlags};
    use nix::sched::{unshare, CloneFlags};
    let (uid, gid) = (nix::unistd::getuid(), nix::unistd::getgid());
    unshare(CloneFlags::CLONE_NEWUSER | CloneFlags::CLONE_NEWNS)
        .map_err(|e| format!("cannot create a user and mount namespace: {e}"))?;
    let write = |file: &str, text: String| {
        std::fs::write(file, text).map_err(|e| format!("cannot write {file}: {e}"))
    };
    write("/proc/self/setgroups", "deny".into())?;
    write("/proc/self/uid_map", format!("{uid} {uid} 1"))?;
    write("/proc/self/gid_map", format!("{gid} {gid} 1"))?;
    // Nothing mounted here propagates anywhere else.
    mount(
        None::<&str>,
        "/",
        None::<&str>,
        MsFlags::MS_REC | MsFlags::MS_PRIVATE,
        None::<&str>,
    )
    .map_err(|e| format!("cannot make the mounts private: {e}"))?;
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    mount(
        Some("tmpfs"),
        dir,
        Some("tmpfs"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
        Some("mode=0700"),
    )
    .map_err(|e| format!("cannot mount a tmpfs on {}: {e}", dir.display()))
}

#[cfg(not(target_os = "linux"))]
fn private_tmp(_dir: &Path) -> Result<(), String> {
    Err("namespaces exist only on Linux".into())
}

/// What the kernel enforced.
struct Status {
    abi: u32,
    enforced: bool,
    scoped: bool,
}

#[cfg(target_os = "linux")]
fn confine(read: &[PathBuf], write: &[PathBuf]) -> Result<Status, String> {
    use landlock::{
        path_beneath_rules, Access, AccessFs, CompatLevel, Compatible, LandlockStatus, Ruleset,
        RulesetAttr, RulesetCreatedAttr, RulesetStatus, Scope, ABI,
    };
    // The newest ABI whose rights we name; older kernels get what they
    // support (best effort), and the status says what held.
    let abi = ABI::V6;
    let err = |e: landlock::RulesetError| format!("landlock: {e}");
    let status = Ruleset::default()
        .set_compatibility(CompatLevel::BestEffort)
        .handle_access(AccessFs::from_all(abi))
        .map_err(err)?
        .scope(Scope::Signal | Scope::AbstractUnixSocket)
        .map_err(err)?
        .create()
        .map_err(err)?
        .add_rules(path_beneath_rules(read, AccessFs::from_read(abi)))
        .map_err(err)?
        .add_rules(path_beneath_rules(write, AccessFs::from_all(abi)))
        .map_err(err)?
        .restrict_self()
        .map_err(err)?;
    let kernel = match status.landlock {
        LandlockStatus::Available { effective_abi, .. } => effective_abi as u32,
        _ => 0,
    };
    Ok(Status {
        abi: kernel,
        enforced: status.ruleset != RulesetStatus::NotEnforced && status.no_new_privs,
        scoped: kernel >= 6,
    })
}

#[cfg(not(target_os = "linux"))]
fn confine(_read: &[PathBuf], _write: &[PathBuf]) -> Result<Status, String> {
    Err("Landlock exists only on Linux".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn environments_round_trip() {
        let env: Vec<(OsString, OsString)> = vec![
            ("A".into(), "1".into()),
            ("B".into(), "x=y\nz".into()),
            ("EMPTY".into(), "".into()),
        ];
        assert_eq!(decode_env(&encode_env(&env)), env);
    }

    #[test]
    fn requests_parse() {
        let args: Vec<OsString> = [
            "--read",
            "/usr",
            "--write",
            "/job",
            "--private-tmp",
            "/job/tmp",
            "--required",
            "--",
            "/bin/tf",
            "plan",
            "-x",
        ]
        .map(OsString::from)
        .to_vec();
        assert_eq!(
            parse(&args).unwrap(),
            Request {
                read: vec!["/usr".into()],
                write: vec!["/job".into()],
                private_tmp: Some("/job/tmp".into()),
                required: true,
                program: "/bin/tf".into(),
                args: vec!["plan".into(), "-x".into()],
            }
        );
        assert!(parse(&["--read".into()]).is_err());
        assert!(parse(&["--private-tmp".into()]).is_err());
        assert!(parse(&["--bogus".into()]).is_err());
    }
}
