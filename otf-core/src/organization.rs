//! Organizations and their API tokens.

use crate::clock::Timestamp;
use crate::ids::{OrgTokenId, OrganizationName};
use crate::secret::SecretHash;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Organization {
    pub name: OrganizationName,
    pub email: String,
    pub created_at: Timestamp,
}

/// An organization API token: acts on everything of one organization.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrganizationToken {
    pub id: OrgTokenId,
    pub organization: OrganizationName,
    pub description: String,
    pub created_at: Timestamp,
    pub last_used_at: Option<Timestamp>,
    /// Only the hash of the secret is kept.
    pub hash: SecretHash,
}
