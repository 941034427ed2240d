//! The environment terraform gets (SECURITY.md, "clean environment"): the
//! runner's own, so that `TF_CLI_CONFIG_FILE`, `TF_VAR_*`, proxies,
//! `SSL_CERT_FILE`, `PATH` and `HOME` work, minus everything the runner reads
//! as its own configuration or secret: no `OTF_*` variable, no logging or
//! service-manager variable, and no variable whose value holds one of the
//! runner's secrets, whatever its name. The run's variables and
//! `TF_IN_AUTOMATION=1` come on top, and `TF_FORK=0` unless the runner's
//! environment or the run sets `TF_FORK`: terraform up to 1.0 re-executes
//! itself under a panic wrapper otherwise, 25-40 ms per command (a panic's
//! trace still reaches the job's log, from its stderr).

use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStrExt;

/// Variables the runner (or its service manager) reads for itself.
fn is_runner_variable(key: &OsStr) -> bool {
    let k = key.as_bytes();
    k.starts_with(b"OTF_")
        || k.starts_with(b"LISTEN_")
        || matches!(
            k,
            b"RUST_LOG"
                | b"CREDENTIALS_DIRECTORY"
                | b"NOTIFY_SOCKET"
                | b"WATCHDOG_USEC"
                | b"WATCHDOG_PID"
        )
}

/// Whether `value` contains one of `secrets` (secrets shorter than 8 bytes
/// are not looked for, so that a short value cannot hide half the
/// environment).
fn holds_secret(value: &OsStr, secrets: &[String]) -> bool {
    let v = value.as_bytes();
    secrets
        .iter()
        .filter(|s| s.len() >= 8)
        .any(|s| v.windows(s.len()).any(|w| w == s.as_bytes()))
}

/// The environment a runner passes on to every job, from its own
/// environment `vars` and the secrets it was started with.
pub fn inherited(
    vars: impl IntoIterator<Item = (OsString, OsString)>,
    secrets: &[String],
) -> Vec<(OsString, OsString)> {
    let mut env: Vec<(OsString, OsString)> = vars
        .into_iter()
        .filter(|(k, v)| !is_runner_variable(k) && !holds_secret(v, secrets))
        .collect();
    env.sort();
    env
}

/// The variables HCP Terraform sets for every run, so configurations and
/// scripts that read them work unchanged.
pub fn run_variables(start: &crate::transport::Started) -> Vec<(String, String)> {
    let ws = &start.workspace;
    vec![
        ("TFC_RUN_ID".into(), start.run.id.to_string()),
        ("TFC_WORKSPACE_NAME".into(), ws.name.clone()),
        (
            "TFC_WORKSPACE_SLUG".into(),
            format!("{}/{}", ws.organization, ws.name),
        ),
        (
            "TFC_CONFIGURATION_VERSION_ID".into(),
            start
                .run
                .configuration_version
                .as_ref()
                .map(ToString::to_string)
                .unwrap_or_default(),
        ),
    ]
}

/// The environment of one job's commands: the inherited one, the run's
/// environment variables over it, then what the runner always sets.
pub fn for_job(
    inherited: &[(OsString, OsString)],
    run: &[(String, String)],
    tmp: &std::path::Path,
) -> Vec<(OsString, OsString)> {
    let mut env: Vec<(OsString, OsString)> = inherited.to_vec();
    let mut set = |k: OsString, v: OsString| {
        env.retain(|(key, _)| *key != k);
        env.push((k, v));
    };
    for (k, v) in run {
        set(k.into(), v.into());
    }
    set("TF_IN_AUTOMATION".into(), "1".into());
    // The job's private temp dir (the sandbox lets it write nowhere else).
    for name in ["TMPDIR", "TMP", "TEMP"] {
        set(name.into(), tmp.as_os_str().to_owned());
    }
    if !env.iter().any(|(k, _)| k == "TF_FORK") {
        env.push(("TF_FORK".into(), "0".into()));
    }
    env
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> Vec<(OsString, OsString)> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).into(), (*v).into()))
            .collect()
    }

    #[test]
    fn the_runners_configuration_and_secrets_stay_behind() {
        let secret = "at-abc.0123456789abcdef".to_string();
        let env = inherited(
            vars(&[
                ("PATH", "/usr/bin"),
                ("HOME", "/home/a"),
                ("TF_CLI_CONFIG_FILE", "/etc/tf.rc"),
                ("TF_VAR_region", "eu"),
                ("HTTPS_PROXY", "http://proxy:3128"),
                ("SSL_CERT_FILE", "/ca.pem"),
                ("OTF_AGENT_TOKEN", &secret),
                ("OTF_ADDRESS", "otfd:8080"),
                ("RUST_LOG", "debug"),
                ("COPY_OF_TOKEN", &format!("Bearer {secret}")),
                ("SHORT", "x"),
            ]),
            &[secret.clone(), "x".into()],
        );
        let keys: Vec<&str> = env.iter().map(|(k, _)| k.to_str().unwrap()).collect();
        assert_eq!(
            keys,
            [
                "HOME",
                "HTTPS_PROXY",
                "PATH",
                "SHORT",
                "SSL_CERT_FILE",
                "TF_CLI_CONFIG_FILE",
                "TF_VAR_region"
            ]
        );
    }

    #[test]
    fn the_runs_variables_and_the_runners_settings_go_on_top() {
        let base = vars(&[
            ("PATH", "/usr/bin"),
            ("TF_IN_AUTOMATION", "0"),
            ("TMPDIR", "/tmp"),
        ]);
        let env = for_job(
            &base,
            &[
                ("AWS_REGION".into(), "eu-west-1".into()),
                ("PATH".into(), "/opt/bin".into()),
            ],
            std::path::Path::new("/job/tmp"),
        );
        let get = |k: &str| {
            env.iter()
                .find(|(key, _)| key == k)
                .map(|(_, v)| v.to_str().unwrap())
        };
        assert_eq!(get("PATH"), Some("/opt/bin"));
        assert_eq!(get("AWS_REGION"), Some("eu-west-1"));
        assert_eq!(get("TF_IN_AUTOMATION"), Some("1"));
        assert_eq!(get("TMPDIR"), Some("/job/tmp"));
        assert_eq!(env.iter().filter(|(k, _)| k == "TMPDIR").count(), 1);
        assert_eq!(get("TF_FORK"), Some("0"), "no panic wrapper by default");
    }

    #[test]
    fn a_tf_fork_of_the_runner_or_the_run_is_kept() {
        let tmp = std::path::Path::new("/job/tmp");
        fn get(env: &[(OsString, OsString)]) -> Vec<&str> {
            env.iter()
                .filter(|(k, _)| k == "TF_FORK")
                .map(|(_, v)| v.to_str().unwrap())
                .collect()
        }
        let runner = for_job(&vars(&[("TF_FORK", "1")]), &[], tmp);
        assert_eq!(get(&runner), ["1"]);
        let run = for_job(&[], &[("TF_FORK".into(), "1".into())], tmp);
        assert_eq!(get(&run), ["1"]);
    }
}
