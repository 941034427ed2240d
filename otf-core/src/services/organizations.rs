//! Organizations and organization tokens.

use super::{allow, found, Core, Error};
use crate::auth::{authorize_organization, authorize_site, Access, Subject};
use crate::events::Event;
use crate::ids::{OrgTokenId, OrganizationName};
use crate::organization::{Organization, OrganizationToken};
use crate::secret::IssuedSecret;
use crate::store::{AgentTokenRepo, OrganizationRepo, PoolRepo, Store, StoreError};

impl<S: Store> Core<S> {
    /// Create an organization (site administrator only).
    pub async fn create_organization(
        &self,
        subject: &Subject,
        name: &OrganizationName,
        email: &str,
    ) -> Result<Organization, Error> {
        allow(authorize_site(subject, Access::Write), "organization", name)?;
        let org = Organization {
            name: name.clone(),
            email: email.trim().to_string(),
            created_at: self.now(),
        };
        let mut tx = self.begin().await?;
        if tx.get_organization(name).await?.is_some() {
            return Err(Error::AlreadyExists {
                kind: "organization",
                name: name.to_string(),
            });
        }
        tx.insert_organization(&org).await.map_err(|e| match e {
            StoreError::Conflict(_) => Error::AlreadyExists {
                kind: "organization",
                name: name.to_string(),
            },
            e => e.into(),
        })?;
        self.commit(tx, vec![]).await?;
        Ok(org)
    }

    pub async fn get_organization(
        &self,
        subject: &Subject,
        name: &OrganizationName,
    ) -> Result<Organization, Error> {
        allow(
            authorize_organization(subject, name, Access::Read),
            "organization",
            name,
        )?;
        let mut tx = self.read().await?;
        found(tx.get_organization(name).await?, "organization", name)
    }

    /// The organizations the subject can see.
    pub async fn list_organizations(&self, subject: &Subject) -> Result<Vec<Organization>, Error> {
        let mut tx = self.read().await?;
        Ok(tx
            .list_organizations()
            .await?
            .into_iter()
            .filter(|o| authorize_organization(subject, &o.name, Access::Read).is_ok())
            .collect())
    }

    /// Delete an organization and everything in it.
    pub async fn delete_organization(
        &self,
        subject: &Subject,
        name: &OrganizationName,
    ) -> Result<(), Error> {
        allow(
            authorize_organization(subject, name, Access::Write),
            "organization",
            name,
        )?;
        let mut tx = self.begin().await?;
        found(tx.get_organization(name).await?, "organization", name)?;
        // Its agent tokens go with it: every replica forgets them.
        let mut revoked = Vec::new();
        for pool in tx.list_pools(name).await? {
            for token in tx.list_agent_tokens(&pool.id).await? {
                revoked.push(Event::TokenRevoked(token.id));
            }
        }
        tx.delete_organization(name).await?;
        self.commit(tx, revoked).await
    }

    /// Issue an organization token; its secret is returned once.
    pub async fn create_org_token(
        &self,
        subject: &Subject,
        org: &OrganizationName,
        description: &str,
    ) -> Result<(OrganizationToken, IssuedSecret), Error> {
        let org = org_scope(subject, org, Access::Write)?;
        let mut tx = self.begin().await?;
        found(tx.get_organization(&org).await?, "organization", &org)?;
        let id = OrgTokenId::generate(self.rng.as_ref());
        let secret = IssuedSecret::generate(id.as_str(), self.rng.as_ref());
        let token = OrganizationToken {
            id,
            organization: org,
            description: description.trim().to_string(),
            created_at: self.now(),
            last_used_at: None,
            hash: secret.hash(),
        };
        tx.insert_org_token(&token).await?;
        self.commit(tx, vec![]).await?;
        Ok((token, secret))
    }

    pub async fn list_org_tokens(
        &self,
        subject: &Subject,
        org: &OrganizationName,
    ) -> Result<Vec<OrganizationToken>, Error> {
        let org = org_scope(subject, org, Access::Read)?;
        let mut tx = self.read().await?;
        Ok(tx.list_org_tokens(&org).await?)
    }

    /// The organization's newest token; None when it has none.
    pub async fn newest_org_token(
        &self,
        subject: &Subject,
        org: &OrganizationName,
    ) -> Result<Option<OrganizationToken>, Error> {
        let tokens = self.list_org_tokens(subject, org).await?;
        Ok(tokens.into_iter().max_by_key(|t| t.created_at))
    }

    /// Revoke every token of the organization at once, in one transaction.
    pub async fn delete_org_tokens(
        &self,
        subject: &Subject,
        org: &OrganizationName,
    ) -> Result<(), Error> {
        let org = org_scope(subject, org, Access::Write)?;
        let mut tx = self.begin().await?;
        for token in tx.list_org_tokens(&org).await? {
            tx.delete_org_token(&token.id).await?;
        }
        self.commit(tx, vec![]).await
    }

    /// Revoke an organization token at once.
    pub async fn delete_org_token(&self, subject: &Subject, id: &OrgTokenId) -> Result<(), Error> {
        let mut tx = self.begin().await?;
        let token = found(tx.get_org_token(id).await?, "organization token", id)?;
        allow(
            authorize_organization(subject, &token.organization, Access::Write),
            "organization token",
            id,
        )?;
        tx.delete_org_token(id).await?;
        self.commit(tx, vec![]).await
    }
}

/// An organization name from a request (adapters parse with it at their
/// edge): an invalid one cannot exist, so it is "not found".
pub fn parse_org(name: &str) -> Result<OrganizationName, Error> {
    name.parse().map_err(|_| Error::NotFound {
        kind: "organization",
        id: name.to_string(),
    })
}

/// An organization named in a request, if the subject may act on it with
/// `access` (an invalid name cannot exist: not found).
pub(super) fn org_scope(
    subject: &Subject,
    org: &OrganizationName,
    access: Access,
) -> Result<OrganizationName, Error> {
    let org = org.clone();
    allow(
        authorize_organization(subject, &org, access),
        "organization",
        &org,
    )?;
    Ok(org)
}
