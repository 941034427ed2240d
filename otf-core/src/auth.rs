//! Who is calling ([`Subject`]) and what they may do: every authorization
//! decision of the product lives here.
//!
//! Reads outside a subject's scope answer "not found" (no existence leak);
//! writes answer "forbidden".

use crate::ids::{AgentTokenId, JobId, OrgTokenId, OrganizationName, PoolId, RunId, WorkspaceId};
use crate::job::JobPhase;

/// An authenticated caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Subject {
    /// The site administrator: everything.
    SiteAdmin,
    /// Everything of one organization, through the API: an organization
    /// token, or an SSH key limited to it.
    Organization {
        organization: OrganizationName,
        credential: OrgCredential,
    },
    /// An agent token: the agent protocol for its own pool only.
    AgentToken {
        pool: PoolId,
        organization: OrganizationName,
        token: AgentTokenId,
    },
    /// The server runner inside otfd (never from a bearer token).
    ServerRunner,
    /// A job token: its own run and workspace, for the attempt it was issued to.
    Job {
        job: JobId,
        attempt: u32,
        run: RunId,
        workspace: WorkspaceId,
        organization: OrganizationName,
        phase: JobPhase,
        /// The attempt is over: otfd gave up an apply whose runner it lost.
        /// Its token may still deliver the apply's state, and nothing else.
        late: bool,
    },
}

/// What an organization-limited caller presented.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OrgCredential {
    Token(OrgTokenId),
    /// An SSH key of otfd's authorized keys, by its `SHA256:` fingerprint.
    SshKey(String),
}

/// Who an SSH key of otfd's authorized keys is: the site administrator,
/// unless its line limits it to one organization (`otf-organization=`), in
/// which case it may do exactly what that organization's token may.
pub fn ssh_key_subject(organization: Option<OrganizationName>, fingerprint: &str) -> Subject {
    match organization {
        None => Subject::SiteAdmin,
        Some(organization) => Subject::Organization {
            organization,
            credential: OrgCredential::SshKey(fingerprint.to_string()),
        },
    }
}

impl Subject {
    /// A short name for logs and lock holders.
    pub fn describe(&self) -> String {
        match self {
            Subject::SiteAdmin => "site-admin".into(),
            Subject::Organization {
                credential: OrgCredential::Token(token),
                ..
            } => token.to_string(),
            Subject::Organization {
                credential: OrgCredential::SshKey(fingerprint),
                ..
            } => format!("ssh-key {fingerprint}"),
            Subject::AgentToken { token, .. } => token.to_string(),
            Subject::ServerRunner => "server-runner".into(),
            Subject::Job { job, .. } => job.to_string(),
        }
    }
}

/// Whether an access reads or changes something.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    Read,
    Write,
}

/// A refused request.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Denied {
    /// Reads outside the scope: pretend it does not exist.
    #[error("not found")]
    NotFound,
    #[error("{0}")]
    Forbidden(&'static str),
}

fn deny(access: Access, why: &'static str) -> Denied {
    match access {
        Access::Read => Denied::NotFound,
        Access::Write => Denied::Forbidden(why),
    }
}

/// Site-level operations: creating and listing organizations.
pub fn authorize_site(subject: &Subject, access: Access) -> Result<(), Denied> {
    match subject {
        Subject::SiteAdmin => Ok(()),
        _ => Err(deny(access, "only the site administrator may do this")),
    }
}

/// Anything of an organization through the API: its settings, workspaces,
/// pools, agent tokens, agents, runs, variables and state.
pub fn authorize_organization(
    subject: &Subject,
    org: &OrganizationName,
    access: Access,
) -> Result<(), Denied> {
    match subject {
        Subject::SiteAdmin => Ok(()),
        Subject::Organization { organization, .. } if organization == org => Ok(()),
        Subject::Organization { .. } => Err(deny(
            access,
            "this organization token belongs to another organization",
        )),
        Subject::AgentToken { .. } => Err(deny(
            access,
            "agent tokens may only be used by agents on the agent protocol",
        )),
        Subject::ServerRunner | Subject::Job { .. } => Err(deny(
            access,
            "job tokens may only be used for their own run's job endpoints",
        )),
    }
}

/// The agent protocol for jobs of `pool` (None: the server runner's jobs).
/// Whether `subject` may act as an agent of `pool` registered with
/// `agent_token`: the pool's agent token it registered with (another token
/// of the same pool does not see it), or the server runner for its own.
pub fn authorize_agent(
    subject: &Subject,
    pool: Option<&PoolId>,
    agent_token: Option<&crate::ids::AgentTokenId>,
) -> Result<(), Denied> {
    authorize_agent_protocol(subject, pool)?;
    match subject {
        Subject::AgentToken { token, .. } if agent_token != Some(token) => Err(Denied::NotFound),
        _ => Ok(()),
    }
}

pub fn authorize_agent_protocol(subject: &Subject, pool: Option<&PoolId>) -> Result<(), Denied> {
    match (subject, pool) {
        (Subject::AgentToken { pool: mine, .. }, Some(p)) if mine == p => Ok(()),
        (Subject::ServerRunner, None) => Ok(()),
        (Subject::AgentToken { .. }, _) => Err(Denied::NotFound),
        _ => Err(Denied::Forbidden(
            "the agent protocol needs an agent token of the job's pool",
        )),
    }
}

/// What a job token may do, always for its own run only.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobAction {
    DownloadConfig,
    ReadVariables,
    ReadCurrentState,
    DownloadPlan,
    DownloadLockFile,
    AppendLog,
    /// Plan phase only.
    UploadPlan,
    /// Plan phase only.
    UploadJsonPlan,
    /// Plan phase only.
    UploadLockFile,
    /// Apply phase only.
    CreateStateVersion,
    Finish,
}

impl JobAction {
    fn access(self) -> Access {
        match self {
            JobAction::DownloadConfig
            | JobAction::ReadVariables
            | JobAction::ReadCurrentState
            | JobAction::DownloadPlan
            | JobAction::DownloadLockFile => Access::Read,
            _ => Access::Write,
        }
    }

    fn phase(self) -> Option<JobPhase> {
        match self {
            JobAction::UploadPlan | JobAction::UploadJsonPlan | JobAction::UploadLockFile => {
                Some(JobPhase::Plan)
            }
            JobAction::CreateStateVersion => Some(JobPhase::Apply),
            _ => None,
        }
    }
}

/// A job-scoped action on `run` of `workspace`.
pub fn authorize_job(
    subject: &Subject,
    run: &RunId,
    workspace: &WorkspaceId,
    action: JobAction,
) -> Result<(), Denied> {
    let access = action.access();
    match subject {
        Subject::Job {
            run: r,
            workspace: w,
            phase,
            late,
            ..
        } => {
            if r != run || w != workspace {
                return Err(deny(access, "a job token may only act on its own run"));
            }
            if *late && action != JobAction::CreateStateVersion {
                return Err(Denied::Forbidden(
                    "this apply was given up: its job token may only deliver the apply's state",
                ));
            }
            match action.phase() {
                Some(p) if p != *phase => Err(Denied::Forbidden(match p {
                    JobPhase::Plan => "only a plan job may upload plan files",
                    JobPhase::Apply => "only an apply job may create a state version",
                })),
                _ => Ok(()),
            }
        }
        _ => Err(deny(access, "job endpoints need the job token of this run")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn org(s: &str) -> OrganizationName {
        s.parse().unwrap()
    }

    fn job(phase: JobPhase) -> Subject {
        Subject::Job {
            job: "job-000000000000000a".parse().unwrap(),
            attempt: 1,
            run: "run-000000000000000a".parse().unwrap(),
            workspace: "ws-000000000000000a".parse().unwrap(),
            organization: org("acme"),
            phase,
            late: false,
        }
    }

    fn agent(pool: &str) -> Subject {
        Subject::AgentToken {
            pool: pool.parse().unwrap(),
            organization: org("acme"),
            token: "at-000000000000000a".parse().unwrap(),
        }
    }

    #[test]
    fn organization_scope() {
        let acme = org("acme");
        let token = Subject::Organization {
            organization: acme.clone(),
            credential: OrgCredential::Token("ot-000000000000000a".parse().unwrap()),
        };
        // A key limited to acme is held to the same rule as acme's token.
        let key = ssh_key_subject(Some(acme.clone()), "SHA256:abc");
        assert_eq!(authorize_organization(&key, &acme, Access::Write), Ok(()));
        assert_eq!(
            authorize_organization(&key, &org("other"), Access::Read),
            Err(Denied::NotFound)
        );
        assert!(authorize_site(&key, Access::Write).is_err());
        assert_eq!(ssh_key_subject(None, "SHA256:abc"), Subject::SiteAdmin);
        assert_eq!(
            authorize_organization(&Subject::SiteAdmin, &acme, Access::Write),
            Ok(())
        );
        assert_eq!(authorize_organization(&token, &acme, Access::Write), Ok(()));
        assert_eq!(
            authorize_organization(&token, &org("other"), Access::Read),
            Err(Denied::NotFound)
        );
        assert!(matches!(
            authorize_organization(&token, &org("other"), Access::Write),
            Err(Denied::Forbidden(_))
        ));
        assert_eq!(
            authorize_organization(&agent("apool-000000000000000a"), &acme, Access::Read),
            Err(Denied::NotFound)
        );
        assert!(matches!(
            authorize_organization(&job(JobPhase::Plan), &acme, Access::Write),
            Err(Denied::Forbidden(_))
        ));
        assert!(authorize_site(&token, Access::Write).is_err());
        assert!(authorize_site(&Subject::SiteAdmin, Access::Write).is_ok());
    }

    #[test]
    fn agents_only_reach_their_own_pool() {
        let a: PoolId = "apool-000000000000000a".parse().unwrap();
        let b: PoolId = "apool-000000000000000b".parse().unwrap();
        assert_eq!(
            authorize_agent_protocol(&agent(a.as_str()), Some(&a)),
            Ok(())
        );
        assert_eq!(
            authorize_agent_protocol(&agent(a.as_str()), Some(&b)),
            Err(Denied::NotFound)
        );
        assert_eq!(
            authorize_agent_protocol(&agent(a.as_str()), None),
            Err(Denied::NotFound)
        );
        assert_eq!(
            authorize_agent_protocol(&Subject::ServerRunner, None),
            Ok(())
        );
        assert!(authorize_agent_protocol(&Subject::ServerRunner, Some(&a)).is_err());
        assert!(authorize_agent_protocol(&Subject::SiteAdmin, Some(&a)).is_err());
    }

    #[test]
    fn agents_act_only_as_agents_of_their_own_token() {
        let a: PoolId = "apool-000000000000000a".parse().unwrap();
        let mine: crate::ids::AgentTokenId = "at-000000000000000a".parse().unwrap();
        let other: crate::ids::AgentTokenId = "at-000000000000000b".parse().unwrap();
        let subject = agent(a.as_str());
        assert_eq!(authorize_agent(&subject, Some(&a), Some(&mine)), Ok(()));
        assert_eq!(
            authorize_agent(&subject, Some(&a), Some(&other)),
            Err(Denied::NotFound),
            "another token of the same pool does not see the agent"
        );
        assert_eq!(
            authorize_agent(&subject, Some(&a), None),
            Err(Denied::NotFound)
        );
        assert_eq!(authorize_agent(&Subject::ServerRunner, None, None), Ok(()));
    }

    #[test]
    fn job_tokens_only_reach_their_own_run_and_phase() {
        let run: RunId = "run-000000000000000a".parse().unwrap();
        let other_run: RunId = "run-000000000000000b".parse().unwrap();
        let ws: WorkspaceId = "ws-000000000000000a".parse().unwrap();
        let other_ws: WorkspaceId = "ws-000000000000000b".parse().unwrap();
        let plan = job(JobPhase::Plan);
        let apply = job(JobPhase::Apply);
        assert_eq!(
            authorize_job(&plan, &run, &ws, JobAction::UploadPlan),
            Ok(())
        );
        assert!(authorize_job(&apply, &run, &ws, JobAction::UploadPlan).is_err());
        assert_eq!(
            authorize_job(&apply, &run, &ws, JobAction::CreateStateVersion),
            Ok(())
        );
        assert!(matches!(
            authorize_job(&plan, &run, &ws, JobAction::CreateStateVersion),
            Err(Denied::Forbidden(
                "only an apply job may create a state version"
            ))
        ));
        assert_eq!(
            authorize_job(&plan, &run, &other_ws, JobAction::ReadCurrentState),
            Err(Denied::NotFound)
        );
        assert!(matches!(
            authorize_job(&plan, &other_run, &ws, JobAction::AppendLog),
            Err(Denied::Forbidden(_))
        ));
        assert_eq!(
            authorize_job(&Subject::SiteAdmin, &run, &ws, JobAction::DownloadConfig),
            Err(Denied::NotFound)
        );
    }

    #[test]
    fn a_given_up_apply_may_only_deliver_its_state() {
        let run: RunId = "run-000000000000000a".parse().unwrap();
        let ws: WorkspaceId = "ws-000000000000000a".parse().unwrap();
        let mut late = job(JobPhase::Apply);
        if let Subject::Job { late: l, .. } = &mut late {
            *l = true;
        }
        assert_eq!(
            authorize_job(&late, &run, &ws, JobAction::CreateStateVersion),
            Ok(())
        );
        for action in [
            JobAction::DownloadConfig,
            JobAction::ReadVariables,
            JobAction::ReadCurrentState,
            JobAction::AppendLog,
            JobAction::Finish,
        ] {
            assert!(
                matches!(
                    authorize_job(&late, &run, &ws, action),
                    Err(Denied::Forbidden(_))
                ),
                "{action:?}"
            );
        }
    }
}
