//! Authentication: a bearer token into a [`Subject`].

use super::{Core, Error};
use crate::agent_token::AgentToken;
use crate::auth::{OrgCredential, Subject};
use crate::clock::Timestamp;
use crate::ids::{AgentTokenId, JobId, OrgTokenId};
use crate::job::{JobPhase, JobStatus};
use crate::secret::token_id_part;
use crate::store::{AgentTokenRepo, JobRepo, OrganizationRepo, Store};

/// How long a looked-up agent token is trusted without asking the store
/// again: agents call every few seconds each (pings, long-polls, logs), so
/// this saves most token reads. A revocation drops the entry at once in the
/// process that revoked, and in every other as soon as the bus brings
/// [`crate::events::Event::TokenRevoked`] (otfd routes it).
pub const AGENT_TOKEN_CACHE_FOR: std::time::Duration = std::time::Duration::from_secs(1);

/// Agent tokens recently read from the store (the secret is still checked
/// against the stored hash on every use).
#[derive(Debug, Default)]
pub(crate) struct TokenCache {
    entries: std::sync::Mutex<std::collections::HashMap<AgentTokenId, (AgentToken, Timestamp)>>,
}

impl TokenCache {
    fn lock(
        &self,
    ) -> std::sync::MutexGuard<'_, std::collections::HashMap<AgentTokenId, (AgentToken, Timestamp)>>
    {
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn get(&self, id: &AgentTokenId, now: Timestamp) -> Option<AgentToken> {
        let fresh = AGENT_TOKEN_CACHE_FOR.as_millis() as i64;
        let mut entries = self.lock();
        match entries.get(id) {
            Some((token, at)) if now.0.saturating_sub(at.0) < fresh => Some(token.clone()),
            Some(_) => {
                entries.remove(id);
                None
            }
            None => None,
        }
    }

    fn put(&self, token: AgentToken, now: Timestamp) {
        let mut entries = self.lock();
        // Bounded: stale entries go when the map grows.
        if entries.len() > 100_000 {
            entries.clear();
        }
        entries.insert(token.id.clone(), (token, now));
    }

    /// The token's `last_used_at` was written: the cached copy says so too
    /// (else every use within [`AGENT_TOKEN_CACHE_FOR`] would write it
    /// again). An entry that is gone (revoked meanwhile) stays gone.
    fn touched(&self, id: &AgentTokenId, at: Timestamp) {
        if let Some((token, _)) = self.lock().get_mut(id) {
            token.last_used_at = Some(at);
        }
    }

    /// Forget what an event makes stale (a revoked token).
    pub(crate) fn forget(&self, e: &crate::events::Event) {
        if let crate::events::Event::TokenRevoked(id) = e {
            self.lock().remove(id);
        }
    }

    /// Forget everything (events may have been missed).
    pub(crate) fn clear(&self) {
        self.lock().clear();
    }
}

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
            let token = match self.tokens.get(&id, now) {
                Some(token) => token,
                None => {
                    let mut tx = self.read().await?;
                    let token = tx.get_agent_token(&id).await?.ok_or(Error::Unauthorized)?;
                    self.tokens.put(token.clone(), now);
                    token
                }
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
                    self.tokens.touched(&id, now);
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
