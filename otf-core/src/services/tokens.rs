//! Agent tokens: issue (secret shown once), list, revoke.

use super::{allow, found, Core, Error};
use crate::agent::AgentEvent;
use crate::agent_token::AgentToken;
use crate::auth::{authorize_organization, Access, Subject};
use crate::events::Event;
use crate::ids::{AgentTokenId, PoolId};
use crate::secret::IssuedSecret;
use crate::store::{AgentRepo, AgentTokenRepo, PoolRepo, Store};

impl<S: Store> Core<S> {
    /// Issue a token for a pool. The secret is returned here and never again.
    pub async fn create_agent_token(
        &self,
        subject: &Subject,
        pool: &PoolId,
        description: &str,
    ) -> Result<(AgentToken, IssuedSecret), Error> {
        let pool_id = pool;
        let mut tx = self.begin().await?;
        let pool = found(tx.lock_pool(pool_id).await?, "agent pool", pool_id)?;
        allow(
            authorize_organization(subject, &pool.organization, Access::Write),
            "agent pool",
            pool_id,
        )?;
        let (token, secret) = AgentToken::issue(
            pool.id,
            pool.organization,
            description,
            self.now(),
            self.rng.as_ref(),
        )?;
        tx.insert_agent_token(&token).await?;
        self.commit(tx, vec![]).await?;
        Ok((token, secret))
    }

    pub async fn list_agent_tokens(
        &self,
        subject: &Subject,
        pool: &PoolId,
    ) -> Result<Vec<AgentToken>, Error> {
        let pool = self.get_pool(subject, pool).await?;
        let mut tx = self.read().await?;
        Ok(tx.list_agent_tokens(&pool.id).await?)
    }

    pub async fn get_agent_token(
        &self,
        subject: &Subject,
        id: &AgentTokenId,
    ) -> Result<AgentToken, Error> {
        let mut tx = self.read().await?;
        let token = found(tx.get_agent_token(id).await?, "agent token", id)?;
        allow(
            authorize_organization(subject, &token.organization, Access::Read),
            "agent token",
            id,
        )?;
        Ok(token)
    }

    /// Revoke a token at once: it authenticates nothing more, and the agents
    /// that registered with it are marked exited (their jobs are handled as
    /// those of lost agents).
    pub async fn delete_agent_token(
        &self,
        subject: &Subject,
        id: &AgentTokenId,
    ) -> Result<(), Error> {
        let id: AgentTokenId = id.clone();
        let mut tx = self.begin().await?;
        let token = found(tx.get_agent_token(&id).await?, "agent token", &id)?;
        allow(
            authorize_organization(subject, &token.organization, Access::Write),
            "agent token",
            &id,
        )?;
        let mut events = Vec::new();
        self.revoke_token_agents(&mut tx, &id, &mut events).await?;
        tx.delete_agent_token(&id).await?;
        events.push(Event::TokenRevoked(id));
        self.commit(tx, events).await
    }

    /// Mark every live agent of the token exited.
    pub(super) async fn revoke_token_agents(
        &self,
        tx: &mut S::Tx,
        token: &AgentTokenId,
        events: &mut Vec<Event>,
    ) -> Result<(), Error> {
        let now = self.now();
        for agent in tx.list_agents_of_token(token).await? {
            let Some(mut agent) = tx.lock_agent(&agent.id).await? else {
                continue;
            };
            if agent.status.is_final() {
                continue;
            }
            agent.apply(AgentEvent::TokenRevoked, now)?;
            tx.update_agent(&agent).await?;
            events.push(Event::Agent(agent));
        }
        Ok(())
    }
}
