//! Confinement of terraform: a configuration is untrusted code, so every
//! terraform command of a job (and everything it starts: providers,
//! provisioners) runs under a Landlock domain of its own that lets it read
//! and execute the system, the engine, and the provider mirrors and plugin
//! caches its CLI configuration names, and read and write only its own job
//! directory (which holds its private temp dir). It cannot read the runner's
//! data or work directory, other jobs' directories, or `/proc` (so neither
//! the runner's environment nor its command line), cannot ptrace or signal
//! processes outside its domain, and cannot reach abstract UNIX sockets of
//! other domains. Network egress is not restricted.
//!
//! Landlock can only confine the calling process, so the runner re-executes
//! its own binary as a small launcher ([`helper`]): the launcher confines
//! itself and then `exec`s terraform, which inherits the domain. Every binary
//! that runs a runner calls [`helper::run_if_requested`] first thing in
//! `main`. The launcher starts with an empty environment and receives the
//! job's environment on its standard input, so that nothing the run chose
//! (such as `LD_PRELOAD`) acts before the confinement does.
//!
//! Landlock does not govern `connect` to a UNIX socket by path. Where the
//! kernel allows unprivileged user namespaces, the launcher therefore also
//! gives each command a temp dir (`TMPDIR`) that exists only in a mount
//! namespace of its own, where terraform's provider plugins make their
//! sockets; their channel then needs no TLS (SECURITY.md).

pub mod cli_config;
pub mod helper;

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::str::FromStr;

/// `--sandbox`: whether terraform must run confined.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SandboxMode {
    /// Confine when the kernel allows it; otherwise run unconfined, and say
    /// so once at start.
    #[default]
    Auto,
    /// Refuse to start (and to run any job) without confinement.
    Required,
    /// Never confine (explicit).
    Off,
}

impl SandboxMode {
    pub fn as_str(self) -> &'static str {
        match self {
            SandboxMode::Auto => "auto",
            SandboxMode::Required => "required",
            SandboxMode::Off => "off",
        }
    }
}

impl FromStr for SandboxMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "auto" => Ok(SandboxMode::Auto),
            "required" => Ok(SandboxMode::Required),
            "off" => Ok(SandboxMode::Off),
            other => Err(format!(
                "unknown sandbox mode {other:?}: use auto, required or off"
            )),
        }
    }
}

impl std::fmt::Display for SandboxMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a runner cannot have the confinement it was asked for.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SandboxError {
    #[error("--sandbox required, but terraform cannot be confined here: {0}; run on a Linux kernel with Landlock enabled (5.13 or later, `lsm=landlock` at boot), or pass --sandbox off to run configurations unconfined")]
    Unavailable(String),
}

/// The confinement decided once when a runner starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Confinement {
    /// Each command runs under its own Landlock domain; `abi` is the
    /// kernel's Landlock ABI version, `scoped` whether signals and abstract
    /// UNIX sockets are scoped to the domain too (ABI 6 and later),
    /// `private_tmp` whether each command also gets a temp dir nothing else
    /// can reach (unprivileged user namespaces allowed; [`helper`]).
    Landlock {
        abi: u32,
        scoped: bool,
        private_tmp: bool,
    },
    /// Commands run unconfined, for this reason.
    None { reason: String },
}

impl Confinement {
    pub fn is_confined(&self) -> bool {
        matches!(self, Confinement::Landlock { .. })
    }
}

/// A runner's sandbox: how commands are confined, and what the system
/// grants every job (the same for all jobs of the runner).
#[derive(Debug, Clone)]
pub struct Sandbox {
    pub mode: SandboxMode,
    pub confinement: Confinement,
    /// The launcher: this very binary.
    launcher: PathBuf,
    /// Read (and execute) access for every job.
    read: Vec<PathBuf>,
    /// Read and write access for every job (plugin caches, `/dev/null`).
    write: Vec<PathBuf>,
}

impl Sandbox {
    /// No confinement at all (`--sandbox off`, and embedders that run no
    /// real engine).
    pub fn off() -> Sandbox {
        Sandbox {
            mode: SandboxMode::Off,
            confinement: Confinement::None {
                reason: "--sandbox off".into(),
            },
            launcher: PathBuf::new(),
            read: Vec::new(),
            write: Vec::new(),
        }
    }

    /// Decide the confinement for `mode`, probing the kernel through the
    /// launcher (which also proves that this binary can launch confined
    /// commands). `env` is the environment jobs get (its CLI configuration
    /// and plugin cache name the paths terraform needs); `extra_read` are
    /// the operator's additional read grants (`--sandbox-read`).
    ///
    /// The probe re-executes this binary: its `main` must call
    /// [`helper::run_if_requested`] first (otfd and otf-agent do).
    pub async fn setup(
        mode: SandboxMode,
        env: &[(OsString, OsString)],
        extra_read: &[PathBuf],
    ) -> Result<Sandbox, SandboxError> {
        if mode == SandboxMode::Off {
            return Ok(Sandbox::off());
        }
        let (launcher, confinement) = match probe().await {
            Ok((launcher, c)) => (launcher, c),
            Err(reason) => (PathBuf::new(), Confinement::None { reason }),
        };
        if mode == SandboxMode::Required {
            if let Confinement::None { reason } = &confinement {
                return Err(SandboxError::Unavailable(reason.clone()));
            }
        }
        let (mut read, write) = system_grants(env);
        read.extend(extra_read.iter().cloned());
        Ok(Sandbox {
            mode,
            confinement,
            launcher,
            read,
            write,
        })
    }

    /// The same sandbox, letting every job also read `path` (the runner's
    /// shared plugin cache).
    pub fn with_read(mut self, path: PathBuf) -> Sandbox {
        self.read.push(path);
        self
    }

    /// One line for the start log: which confinement is active.
    pub fn describe(&self) -> String {
        match &self.confinement {
            Confinement::Landlock {
                abi,
                scoped,
                private_tmp,
            } => format!(
                "terraform runs confined by Landlock (ABI {abi}{}): it reads the system, its engine and provider mirrors, and writes only its job directory{}",
                if *scoped { ", signals and abstract sockets scoped" } else { "" },
                if *private_tmp {
                    "; each command has a private temp dir, so its plugin channel needs no TLS"
                } else {
                    "; no private temp dirs (unprivileged user namespaces are not available), so terraform keeps TLS on its plugin channel"
                }
            ),
            Confinement::None { reason } => format!(
                "terraform runs UNCONFINED ({reason}): a configuration can read everything this process can"
            ),
        }
    }

    /// The command that runs `program` for the job whose directory is
    /// `job_dir`, and the bytes to write to its standard input (the job's
    /// environment, for the launcher). `env` is the whole environment of
    /// the command.
    pub fn command(
        &self,
        program: &Path,
        args: &[String],
        job_dir: &Path,
        env: &[(OsString, OsString)],
    ) -> (tokio::process::Command, Option<Vec<u8>>) {
        if !self.confinement.is_confined() {
            let mut cmd = tokio::process::Command::new(program);
            cmd.args(args)
                .env_clear()
                .envs(env.iter().map(|(k, v)| (k, v)))
                .stdin(Stdio::null());
            return (cmd, None);
        }
        let mut cmd = tokio::process::Command::new(&self.launcher);
        cmd.arg(helper::MARKER).arg("exec");
        for p in self
            .read
            .iter()
            .chain(std::iter::once(&program.to_path_buf()))
        {
            cmd.arg("--read").arg(p);
        }
        for p in self
            .write
            .iter()
            .chain(std::iter::once(&job_dir.to_path_buf()))
        {
            cmd.arg("--write").arg(p);
        }
        if let Some(tmp) = self.private_tmp(job_dir, env) {
            cmd.arg("--private-tmp").arg(tmp);
        }
        if self.mode == SandboxMode::Required {
            cmd.arg("--required");
        }
        cmd.arg("--").arg(program).args(args);
        // The launcher itself starts with nothing from the run.
        cmd.env_clear().stdin(Stdio::piped());
        (cmd, Some(helper::encode_env(env)))
    }

    /// The temp dir (`TMPDIR`, inside the job directory) the launcher makes
    /// private for a command, when the kernel allows it.
    fn private_tmp<'e>(
        &self,
        job_dir: &Path,
        env: &'e [(OsString, OsString)],
    ) -> Option<&'e OsString> {
        let Confinement::Landlock {
            private_tmp: true, ..
        } = self.confinement
        else {
            return None;
        };
        env.iter()
            .find(|(k, _)| k == "TMPDIR")
            .map(|(_, v)| v)
            .filter(|v| {
                let p = Path::new(v);
                p.is_absolute() && p != job_dir && p.starts_with(job_dir)
            })
    }
}

/// Ask the launcher (this binary, re-executed) to confine itself and say
/// what the kernel enforced.
async fn probe() -> Result<(PathBuf, Confinement), String> {
    let launcher = std::env::current_exe()
        .map_err(|e| format!("cannot find this program's own binary to launch terraform: {e}"))?;
    let out = tokio::process::Command::new(&launcher)
        .arg(helper::MARKER)
        .arg("probe")
        .env_clear()
        .stdin(Stdio::null())
        .stderr(Stdio::piped())
        .stdout(Stdio::piped())
        .output()
        .await
        .map_err(|e| format!("cannot start {}: {e}", launcher.display()))?;
    let text = String::from_utf8_lossy(&out.stdout);
    let Some(line) = text
        .lines()
        .find_map(|l| l.strip_prefix(helper::PROBE_ANSWER))
    else {
        return Err(format!(
            "{} does not launch confined commands (its main does not call otf_agent::sandbox::helper::run_if_requested)",
            launcher.display()
        ));
    };
    let field = |name: &str| {
        line.split_whitespace()
            .find_map(|kv| kv.strip_prefix(name)?.strip_prefix('='))
            .unwrap_or("")
            .to_string()
    };
    let abi: u32 = field("abi").parse().unwrap_or(0);
    match field("status").as_str() {
        "enforced" if abi > 0 => Ok((
            launcher,
            Confinement::Landlock {
                abi,
                scoped: field("scoped") == "true",
                private_tmp: field("private_tmp") == "true",
            },
        )),
        _ => Err(format!(
            "the kernel does not enforce Landlock ({})",
            String::from_utf8_lossy(&out.stderr).trim()
        )),
    }
}

/// System directories every job may read and execute.
const SYSTEM: &[&str] = &[
    "/usr",
    "/bin",
    "/sbin",
    "/lib",
    "/lib32",
    "/lib64",
    "/libx32",
    "/nix/store",
];

/// What every job is granted besides its own directory: the system, the
/// paths the CLI configuration names, certificates, the user's terraform
/// plugin directories; and read-write the plugin cache and a few devices.
fn system_grants(env: &[(OsString, OsString)]) -> (Vec<PathBuf>, Vec<PathBuf>) {
    let get = |name: &str| {
        env.iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| PathBuf::from(v))
            .filter(|p| p.is_absolute())
    };
    let mut read: Vec<PathBuf> = SYSTEM.iter().map(PathBuf::from).collect();
    // All of /etc except otf's own configuration (which may hold secrets).
    if let Ok(entries) = std::fs::read_dir("/etc") {
        let mut etc: Vec<PathBuf> = entries
            .filter_map(Result::ok)
            .filter(|e| e.file_name() != "otf")
            .map(|e| e.path())
            .collect();
        etc.sort();
        read.extend(etc);
    }
    read.extend(["/dev/urandom", "/dev/random"].map(PathBuf::from));
    let mut write: Vec<PathBuf> = ["/dev/null", "/dev/zero", "/dev/full"]
        .map(PathBuf::from)
        .to_vec();
    for name in ["SSL_CERT_FILE", "SSL_CERT_DIR"] {
        read.extend(get(name));
    }
    let home = get("HOME");
    let config =
        get("TF_CLI_CONFIG_FILE").or_else(|| home.as_ref().map(|h| h.join(".terraformrc")));
    if let Some(config) = config {
        if let Ok(text) = std::fs::read_to_string(&config) {
            let named = cli_config::named_paths(&text);
            read.extend(named.read);
            write.extend(named.write);
        }
        read.push(config);
    }
    if let Some(home) = &home {
        read.push(home.join(".terraform.d"));
        read.push(home.join(".local/share/terraform/plugins"));
    }
    write.extend(get("TF_PLUGIN_CACHE_DIR"));
    (read, write)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_round_trip() {
        for m in [SandboxMode::Auto, SandboxMode::Required, SandboxMode::Off] {
            assert_eq!(m.as_str().parse::<SandboxMode>(), Ok(m));
        }
        assert!("strict"
            .parse::<SandboxMode>()
            .unwrap_err()
            .contains("auto, required or off"));
    }

    /// The test harness does not call `run_if_requested`, so the probe
    /// finds no launcher: `required` refuses, `auto` runs unconfined and
    /// says so.
    #[tokio::test]
    async fn without_a_launcher_required_refuses_and_auto_says_unconfined() {
        let err = Sandbox::setup(SandboxMode::Required, &[], &[])
            .await
            .unwrap_err();
        assert!(
            err.to_string()
                .contains("does not launch confined commands"),
            "{err}"
        );
        assert!(err.to_string().contains("--sandbox off"), "{err}");
        let auto = Sandbox::setup(SandboxMode::Auto, &[], &[]).await.unwrap();
        assert!(!auto.confinement.is_confined());
        assert!(
            auto.describe().contains("UNCONFINED"),
            "{}",
            auto.describe()
        );
        let off = Sandbox::setup(SandboxMode::Off, &[], &[]).await.unwrap();
        assert_eq!(off.mode, SandboxMode::Off);
    }

    #[test]
    fn only_a_temp_dir_inside_the_job_is_made_private() {
        let sandbox = |private_tmp| Sandbox {
            mode: SandboxMode::Auto,
            confinement: Confinement::Landlock {
                abi: 6,
                scoped: true,
                private_tmp,
            },
            launcher: PathBuf::from("/bin/launcher"),
            read: Vec::new(),
            write: Vec::new(),
        };
        let env = |tmp: &str| vec![(OsString::from("TMPDIR"), OsString::from(tmp))];
        let job = Path::new("/work/job-1");
        let inside = env("/work/job-1/tmp");
        assert_eq!(
            sandbox(true).private_tmp(job, &inside),
            Some(&OsString::from("/work/job-1/tmp"))
        );
        assert_eq!(sandbox(false).private_tmp(job, &inside), None);
        for outside in ["/tmp", "/work/job-1", "/work/job-10/tmp", "tmp", ""] {
            assert_eq!(
                sandbox(true).private_tmp(job, &env(outside)),
                None,
                "{outside}"
            );
        }
        assert_eq!(sandbox(true).private_tmp(job, &[]), None);
        // The launcher is told, and only then.
        let args = |s: &Sandbox| -> Vec<String> {
            let (cmd, _) = s.command(Path::new("/bin/tf"), &["plan".into()], job, &inside);
            cmd.as_std()
                .get_args()
                .map(|a| a.to_string_lossy().into_owned())
                .collect()
        };
        let on = args(&sandbox(true));
        let at = on
            .iter()
            .position(|a| a == "--private-tmp")
            .expect("--private-tmp");
        assert_eq!(on[at + 1], "/work/job-1/tmp");
        assert!(at < on.iter().position(|a| a == "--").unwrap());
        assert!(!args(&sandbox(false)).contains(&"--private-tmp".to_string()));
    }

    #[test]
    fn grants_follow_the_environment() {
        let dir = tempfile::tempdir().unwrap();
        let rc = dir.path().join("rc");
        std::fs::write(
            &rc,
            "plugin_cache_dir = \"/cache\"\nprovider_installation {\n filesystem_mirror {\n  path = \"/mirror\"\n }\n}\n",
        )
        .unwrap();
        let env = vec![
            ("TF_CLI_CONFIG_FILE".into(), rc.clone().into_os_string()),
            ("TF_PLUGIN_CACHE_DIR".into(), "/pcache".into()),
            ("SSL_CERT_FILE".into(), "/certs/ca.pem".into()),
            ("HOME".into(), "/home/u".into()),
        ];
        let (read, write) = system_grants(&env);
        for p in ["/usr", "/mirror", "/certs/ca.pem", "/home/u/.terraform.d"] {
            assert!(read.contains(&PathBuf::from(p)), "{p} in {read:?}");
        }
        assert!(read.contains(&rc));
        assert!(!read.iter().any(|p| p == Path::new("/etc/otf")));
        for p in ["/cache", "/pcache", "/dev/null"] {
            assert!(write.contains(&PathBuf::from(p)), "{p} in {write:?}");
        }
    }
}
