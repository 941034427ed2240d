//! Authentication: a bearer token into a [`Subject`].

use super::{Core, Error};
use crate::auth::{OrgCredential, Subject};
use crate::clock::Timestamp;
use crate::ids::{AgentTokenId, JobId, OrgTokenId};
use crate::job::{JobPhase, JobStatus};
use crate::secret::token_id_part;
use crate::store::{AgentTokenRepo, JobRepo, OrganizationRepo, Store};

impl<S: Store> Core<S> {
    /// Who presents `bearer`. Wrong, malformed and revoked tokens are all
    /// [`Error::Unauthorized`], with no hint which.
    pub async fn authenticate(&self, bearer: &str) -> Result<Subject, Error> {
        let bearer = bearer.trim();
        if let Some(site) = &self.config.site_token {
            if site.verify(bearer) {
                return Ok(Subject::SiteAdmin);
            }
        }
        let id = token_id_part(bearer).ok_or(Error::Unauthorized)?;
        let now = self.now();
        // Tokens are looked up in a read transaction; the rare touch of
        // `last_used_at` (at most once per touch interval) writes on its own.
        if let Ok(id) = id.parse::<AgentTokenId>() {
            let token = {
                let mut tx = self.read().await?;
                tx.get_agent_token(&id).await?.ok_or(Error::Unauthorized)?
            };
            if !token.hash.verify(bearer) {
                return Err(Error::Unauthorized);
            }
            let subject = Subject::AgentToken {
                pool: token.pool.clone(),
                organization: token.organization.clone(),
                token: token.id.clone(),
            };
            if self.due_for_touch(token.last_used_at, now) {
                let mut tx = self.begin().await?;
                if let Some(mut token) = tx.get_agent_token(&id).await? {
                    token.last_used_at = Some(now);
                    tx.update_agent_token(&token).await?;
                    self.commit(tx, vec![]).await?;
                }
            }
            return Ok(subject);
        }
        if let Ok(id) = id.parse::<OrgTokenId>() {
            let token = {
                let mut tx = self.read().await?;
                tx.get_org_token(&id).await?.ok_or(Error::Unauthorized)?
            };
            if !token.hash.verify(bearer) {
                return Err(Error::Unauthorized);
            }
            let subject = Subject::Organization {
                organization: token.organization.clone(),
                credential: OrgCredential::Token(token.id.clone()),
            };
            if self.due_for_touch(token.last_used_at, now) {
                let mut tx = self.begin().await?;
                if let Some(mut token) = tx.get_org_token(&id).await? {
                    token.last_used_at = Some(now);
                    tx.update_org_token(&token).await?;
                    self.commit(tx, vec![]).await?;
                }
            }
            return Ok(subject);
        }
        if let Ok(id) = id.parse::<JobId>() {
            let mut tx = self.read().await?;
            let job = tx.get_job(&id).await?.ok_or(Error::Unauthorized)?;
            // The token lives exactly as long as its attempt runs, and a
            // given-up apply's until it delivered its state (late).
            let late = job.status == JobStatus::Errored && job.phase == JobPhase::Apply;
            let valid = (job.status == JobStatus::Running || late)
                && job.token_hash.as_ref().is_some_and(|h| h.verify(bearer));
            if !valid {
                return Err(Error::Unauthorized);
            }
            return Ok(Subject::Job {
                job: job.id,
                attempt: job.attempt,
                run: job.run,
                workspace: job.workspace,
                organization: job.organization,
                phase: job.phase,
                late,
            });
        }
        Err(Error::Unauthorized)
    }

    fn due_for_touch(&self, last: Option<Timestamp>, now: Timestamp) -> bool {
        last.is_none_or(|l| now.since(l) >= self.config.token_touch_interval)
    }
}
