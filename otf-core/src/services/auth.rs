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
/// again while this process routes the bus's events
/// ([`Core::route_wakeups`], as otfd does): every change that makes an entry
/// stale ([`crate::events::Event::TokenRevoked`], also sent for each token
/// of a deleted pool or organization) drops it at once in the process that
/// made it and in every other as soon as the bus brings the event, and a bus
/// that may have missed events clears the cache. The bound is a backstop.
pub const AGENT_TOKEN_CACHE_FOR: std::time::Duration = std::time::Duration::from_secs(60);

/// The same without routed events (an embedder that does not route them
/// learns other replicas' revocations only from the store).
pub const AGENT_TOKEN_CACHE_UNROUTED: std::time::Duration = std::time::Duration::from_secs(1);

/// Agent tokens recently read from the store (the secret is still checked
/// against the stored hash on every use).
#[derive(Debug, Default)]
pub(crate) struct TokenCache {
    entries: std::sync::Mutex<Entries>,
}

#[derive(Debug, Default)]
struct Entries {
    tokens: std::collections::HashMap<AgentTokenId, (AgentToken, Timestamp)>,
    /// Raised by every invalidation: a token read before one may be stale
    /// and is not cached ([`TokenCache::put`]).
    epoch: u64,
}

impl TokenCache {
    fn lock(&self) -> std::sync::MutexGuard<'_, Entries> {
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The current epoch: take it before reading a token from the store.
    fn epoch(&self) -> u64 {
        self.lock().epoch
    }

    fn get(
        &self,
        id: &AgentTokenId,
        now: Timestamp,
        fresh: std::time::Duration,
    ) -> Option<AgentToken> {
        let fresh = fresh.as_millis() as i64;
        let mut entries = self.lock();
        match entries.tokens.get(id) {
            Some((token, at)) if now.0.saturating_sub(at.0) < fresh => Some(token.clone()),
            Some(_) => {
                entries.tokens.remove(id);
                None
            }
            None => None,
        }
    }

    /// Cache a token read from the store in `epoch`. Not when anything was
    /// invalidated since: the read may predate a revocation whose event has
    /// come and gone (caching it would trust a revoked token).
    fn put(&self, token: AgentToken, now: Timestamp, epoch: u64) {
        let mut entries = self.lock();
        if entries.epoch != epoch {
            return;
        }
        // Bounded: stale entries go when the map grows.
        if entries.tokens.len() > 100_000 {
            entries.tokens.clear();
        }
        entries.tokens.insert(token.id.clone(), (token, now));
    }

    /// The token's `last_used_at` was written: the cached copy says so too
    /// (else every use within the cache window would write it again). An
    /// entry that is gone (revoked meanwhile) stays gone.
    fn touched(&self, id: &AgentTokenId, at: Timestamp) {
        if let Some((token, _)) = self.lock().tokens.get_mut(id) {
            token.last_used_at = Some(at);
        }
    }

    /// Forget what an event makes stale (a revoked token).
    pub(crate) fn forget(&self, e: &crate::events::Event) {
        if let crate::events::Event::TokenRevoked(id) = e {
            let mut entries = self.lock();
            entries.epoch += 1;
            entries.tokens.remove(id);
        }
    }

    /// Forget everything (events may have been missed).
    pub(crate) fn clear(&self) {
        let mut entries = self.lock();
        entries.epoch += 1;
        entries.tokens.clear();
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
            let fresh = match self.waiters.routing() {
                true => AGENT_TOKEN_CACHE_FOR,
                false => AGENT_TOKEN_CACHE_UNROUTED,
            };
            let token = match self.tokens.get(&id, now, fresh) {
                Some(token) => token,
                None => {
                    let epoch = self.tokens.epoch();
                    let mut tx = self.read().await?;
                    let token = tx.get_agent_token(&id).await?.ok_or(Error::Unauthorized)?;
                    self.tokens.put(token.clone(), now, epoch);
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::Event;
    use crate::random::SeededRandom;
    use std::time::Duration;

    fn token(seed: u64) -> AgentToken {
        let pool = "apool-0123456789abcdef".parse().unwrap();
        let org = "acme".parse().unwrap();
        AgentToken::issue(pool, org, "agents", Timestamp(0), &SeededRandom::new(seed))
            .unwrap()
            .0
    }

    #[test]
    fn a_cached_token_is_trusted_until_its_window_ends_or_an_event_drops_it() {
        let cache = TokenCache::default();
        let (t, other) = (token(1), token(2));
        let minute = Duration::from_secs(60);
        cache.put(t.clone(), Timestamp(1_000), cache.epoch());
        cache.put(other.clone(), Timestamp(1_000), cache.epoch());
        assert!(cache.get(&t.id, Timestamp(60_999), minute).is_some());
        assert!(cache.get(&t.id, Timestamp(61_000), minute).is_none());
        assert!(
            cache.get(&t.id, Timestamp(1_000), minute).is_none(),
            "an expired entry is gone"
        );
        cache.forget(&Event::TokenRevoked(other.id.clone()));
        assert!(cache.get(&other.id, Timestamp(1_001), minute).is_none());
        cache.put(t.clone(), Timestamp(2_000), cache.epoch());
        cache.clear();
        assert!(cache.get(&t.id, Timestamp(2_001), minute).is_none());
    }

    #[test]
    fn a_token_read_before_a_revocation_is_not_cached_after_it() {
        // A request reads the token; the revocation commits and its event
        // comes (nothing cached yet to drop); then the read would be cached.
        let cache = TokenCache::default();
        let t = token(1);
        let before_read = cache.epoch();
        cache.forget(&Event::TokenRevoked(t.id.clone()));
        cache.put(t.clone(), Timestamp(1_000), before_read);
        assert!(cache
            .get(&t.id, Timestamp(1_001), Duration::from_secs(60))
            .is_none());
        // Any missed-events clear counts too, and a later read caches.
        let before_read = cache.epoch();
        cache.clear();
        cache.put(t.clone(), Timestamp(1_000), before_read);
        assert!(cache
            .get(&t.id, Timestamp(1_001), Duration::from_secs(60))
            .is_none());
        cache.put(t.clone(), Timestamp(1_000), cache.epoch());
        assert!(cache
            .get(&t.id, Timestamp(1_001), Duration::from_secs(60))
            .is_some());
    }
}
