//! Agent tokens: issued once, stored as a hash, revoked by deletion.

use crate::clock::Timestamp;
use crate::ids::{AgentTokenId, OrganizationName, PoolId};
use crate::random::Random;
use crate::secret::{IssuedSecret, SecretHash};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentToken {
    pub id: AgentTokenId,
    pub pool: PoolId,
    pub organization: OrganizationName,
    pub description: String,
    pub created_at: Timestamp,
    pub last_used_at: Option<Timestamp>,
    /// Only the hash of the secret is kept.
    pub hash: SecretHash,
}

/// A token request that cannot be honoured.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AgentTokenError {
    #[error(
        "an agent token needs a description saying what it is for, e.g. \"prod datacenter agents\""
    )]
    DescriptionRequired,
    #[error("the token description is too long ({len} characters); keep it under {max}")]
    DescriptionTooLong { len: usize, max: usize },
}

impl AgentToken {
    pub const MAX_DESCRIPTION: usize = 255;

    /// A new token for `pool` and its secret, which is shown once.
    pub fn issue(
        pool: PoolId,
        organization: OrganizationName,
        description: &str,
        now: Timestamp,
        rng: &dyn Random,
    ) -> Result<(AgentToken, IssuedSecret), AgentTokenError> {
        let description = description.trim();
        if description.is_empty() {
            return Err(AgentTokenError::DescriptionRequired);
        }
        let len = description.chars().count();
        if len > Self::MAX_DESCRIPTION {
            return Err(AgentTokenError::DescriptionTooLong {
                len,
                max: Self::MAX_DESCRIPTION,
            });
        }
        let id = AgentTokenId::generate(rng);
        let secret = IssuedSecret::generate(id.as_str(), rng);
        let token = AgentToken {
            id,
            pool,
            organization,
            description: description.to_string(),
            created_at: now,
            last_used_at: None,
            hash: secret.hash(),
        };
        Ok((token, secret))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::random::SeededRandom;

    #[test]
    fn issue_requires_a_description_and_stores_only_the_hash() {
        let rng = SeededRandom::new(3);
        let pool: PoolId = "apool-0123456789abcdef".parse().unwrap();
        let org: OrganizationName = "acme".parse().unwrap();
        assert_eq!(
            AgentToken::issue(pool.clone(), org.clone(), "  ", Timestamp(0), &rng).unwrap_err(),
            AgentTokenError::DescriptionRequired
        );
        assert!(matches!(
            AgentToken::issue(
                pool.clone(),
                org.clone(),
                &"x".repeat(300),
                Timestamp(0),
                &rng
            ),
            Err(AgentTokenError::DescriptionTooLong { len: 300, .. })
        ));
        let (token, secret) = AgentToken::issue(pool, org, " ci ", Timestamp(0), &rng).unwrap();
        assert_eq!(token.description, "ci");
        assert!(token.hash.verify(secret.expose()));
        assert!(secret.expose().starts_with(token.id.as_str()));
        assert!(!format!("{token:?}").contains(&secret.expose()[25..]));
    }
}
