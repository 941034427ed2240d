//! State versions through the API (the CLI in local mode, SDKs) and
//! workspace variables.

use super::{allow, found, Core, Error};
use crate::artifacts::{md5_hex, StateVersion, Variable, VariableCategory};
use crate::auth::{authorize_organization, Access, Subject};
use crate::events::Event;
use crate::ids::{RunId, StateVersionId, VariableId, WorkspaceId};
use crate::state_file::{self, Redaction, StateOutput, StateOutputId, StateSummary};
use crate::store::{StateRepo, Store, VariableRepo, WorkspaceRepo};
use crate::workspace::WorkspaceLock;

/// A state upload.
#[derive(Debug, Clone, Default)]
pub struct StateSpec {
    pub serial: i64,
    pub lineage: String,
    /// Hex MD5 the client computed; checked when given.
    pub md5: Option<String>,
    pub state: Vec<u8>,
    /// Accept a lower serial or another lineage (`state push -force`).
    pub force: bool,
    pub run: Option<RunId>,
}

/// A new variable, or every field of an updated one (None keeps a field).
#[derive(Debug, Clone, Default)]
pub struct VariableSpec {
    pub key: Option<String>,
    pub value: Option<String>,
    pub description: Option<String>,
    pub category: Option<VariableCategory>,
    pub hcl: Option<bool>,
    pub sensitive: Option<bool>,
}

fn validate_key(key: &str, category: VariableCategory) -> Result<(), Error> {
    let mut chars = key.chars();
    let first_ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_');
    let rest_ok = chars.all(|c| {
        c.is_ascii_alphanumeric()
            || c == '_'
            || (category == VariableCategory::Terraform && c == '-')
    });
    if first_ok && rest_ok && key.len() <= 128 {
        Ok(())
    } else {
        Err(Error::Invalid {
            field: "key",
            reason: format!(
                "{key:?} is not a valid {category} variable name: start with a letter or `_`, then letters, digits, `_`{}",
                if category == VariableCategory::Terraform { " or `-`" } else { "" }
            ),
        })
    }
}

/// A copy fit for API readers: sensitive values are write-only.
fn redacted(mut v: Variable) -> Variable {
    if v.sensitive {
        v.value = String::new();
    }
    v
}

/// A state version, if the subject may read it.
async fn readable_state_version<T: StateRepo>(
    tx: &mut T,
    subject: &Subject,
    id: &StateVersionId,
) -> Result<StateVersion, Error> {
    let sv = found(tx.get_state_version(id).await?, "state version", id)?;
    allow(
        authorize_organization(subject, &sv.organization, Access::Read),
        "state version",
        id,
    )?;
    Ok(sv)
}

impl<S: Store> Core<S> {
    /// Store a new state version for a workspace.
    pub async fn create_state_version(
        &self,
        subject: &Subject,
        workspace: &WorkspaceId,
        spec: StateSpec,
    ) -> Result<StateVersion, Error> {
        let ws = self.get_workspace_to_change(subject, workspace).await?;
        let md5 = md5_hex(&spec.state);
        if let Some(given) = &spec.md5 {
            if !given.eq_ignore_ascii_case(&md5) {
                return Err(Error::Invalid {
                    field: "md5",
                    reason: format!("{given} does not match the MD5 of the state ({md5}); upload the state again"),
                });
            }
        }
        if spec.serial < 0 {
            return Err(Error::Invalid {
                field: "serial",
                reason: "a state serial is zero or more".into(),
            });
        }
        let mut tx = self.begin().await?;
        let ws = found(tx.lock_workspace(&ws.id).await?, "workspace", &ws.id)?;
        match &ws.lock {
            Some(WorkspaceLock::Holder(h)) if *h != subject.describe() => {
                return Err(Error::StateConflict {
                    reason: format!(
                        "workspace {} is locked by {h}; only the lock holder may write its state",
                        ws.name
                    ),
                })
            }
            Some(WorkspaceLock::Run(r)) => {
                return Err(Error::StateConflict {
                    reason: format!(
                        "workspace {} is locked by run {r}; its state is written by that run",
                        ws.name
                    ),
                })
            }
            _ => {}
        }
        if let Some(current) = tx.current_state_version(&ws.id).await? {
            if !spec.force {
                if !current.lineage.is_empty()
                    && !spec.lineage.is_empty()
                    && current.lineage != spec.lineage
                {
                    return Err(Error::StateConflict {
                        reason: format!(
                            "lineage {} differs from the current state's {}; push with force if you mean to replace it",
                            spec.lineage, current.lineage
                        ),
                    });
                }
                if spec.serial < current.serial {
                    return Err(Error::StateConflict {
                        reason: format!(
                            "serial {} is lower than the current state's {}; push with force if you mean to roll back",
                            spec.serial, current.serial
                        ),
                    });
                }
            }
        }
        let sv = StateVersion {
            id: StateVersionId::generate(self.rng.as_ref()),
            workspace: ws.id.clone(),
            organization: ws.organization.clone(),
            serial: spec.serial,
            lineage: spec.lineage,
            md5,
            size: spec.state.len() as u64,
            run: spec.run,
            created_at: self.now(),
        };
        tx.insert_state_version(&sv, &spec.state).await?;
        self.commit(tx, vec![Event::Workspace(ws.id)]).await?;
        Ok(sv)
    }

    /// The workspace's current state version; None when it has no state.
    pub async fn current_state_version(
        &self,
        subject: &Subject,
        workspace: &WorkspaceId,
    ) -> Result<Option<StateVersion>, Error> {
        let ws = self.get_workspace(subject, workspace).await?;
        let mut tx = self.read().await?;
        Ok(tx.current_state_version(&ws.id).await?)
    }

    /// Newest first.
    pub async fn list_state_versions(
        &self,
        subject: &Subject,
        workspace: &WorkspaceId,
    ) -> Result<Vec<StateVersion>, Error> {
        let ws = self.get_workspace(subject, workspace).await?;
        let mut tx = self.read().await?;
        Ok(tx.list_state_versions(&ws.id).await?)
    }

    pub async fn get_state_version(
        &self,
        subject: &Subject,
        id: &StateVersionId,
    ) -> Result<StateVersion, Error> {
        let mut tx = self.read().await?;
        readable_state_version(&mut tx, subject, id).await
    }

    /// The raw state file of a state version.
    pub async fn download_state(
        &self,
        subject: &Subject,
        id: &StateVersionId,
    ) -> Result<Vec<u8>, Error> {
        Ok(self.state_version_with_bytes(subject, id).await?.1)
    }

    /// A state version with what its file says, sensitive output values
    /// hidden or shown as `redaction` asks.
    pub async fn read_state_version(
        &self,
        subject: &Subject,
        id: &StateVersionId,
        redaction: Redaction,
    ) -> Result<(StateVersion, StateSummary), Error> {
        let (sv, bytes) = self.state_version_with_bytes(subject, id).await?;
        let summary = state_file::summarize(&sv.id, &bytes, redaction);
        Ok((sv, summary))
    }

    /// A state version the subject may read and its bytes, in one
    /// transaction.
    async fn state_version_with_bytes(
        &self,
        subject: &Subject,
        id: &StateVersionId,
    ) -> Result<(StateVersion, Vec<u8>), Error> {
        let mut tx = self.read().await?;
        let sv = readable_state_version(&mut tx, subject, id).await?;
        let bytes = found(tx.get_state_bytes(&sv.id).await?, "state version", &sv.id)?;
        Ok((sv, bytes))
    }

    /// The outputs of the workspace's current state, sensitive values
    /// hidden; empty when it has no state.
    pub async fn current_outputs(
        &self,
        subject: &Subject,
        workspace: &WorkspaceId,
    ) -> Result<Vec<StateOutput>, Error> {
        let Some(sv) = self.current_state_version(subject, workspace).await? else {
            return Ok(Vec::new());
        };
        let (_, summary) = self
            .read_state_version(subject, &sv.id, Redaction::HideSensitive)
            .await?;
        Ok(summary.outputs)
    }

    /// One output of a state version, its value shown.
    pub async fn get_state_output(
        &self,
        subject: &Subject,
        id: &StateOutputId,
    ) -> Result<StateOutput, Error> {
        let (_, summary) = self
            .read_state_version(subject, &id.state_version, Redaction::ShowAll)
            .await?;
        found(
            summary.outputs.into_iter().nth(id.index),
            "state version output",
            id,
        )
    }

    pub async fn create_variable(
        &self,
        subject: &Subject,
        workspace: &WorkspaceId,
        spec: VariableSpec,
    ) -> Result<Variable, Error> {
        let ws = self.get_workspace_to_change(subject, workspace).await?;
        let category = spec.category.ok_or_else(|| Error::Invalid {
            field: "category",
            reason: "say whether the variable is a `terraform` input or an `env` variable".into(),
        })?;
        let key = spec.key.unwrap_or_default();
        validate_key(&key, category)?;
        let var = Variable {
            id: VariableId::generate(self.rng.as_ref()),
            workspace: ws.id.clone(),
            key,
            value: spec.value.unwrap_or_default(),
            description: spec.description.unwrap_or_default(),
            category,
            hcl: spec.hcl.unwrap_or(false),
            sensitive: spec.sensitive.unwrap_or(false),
        };
        let mut tx = self.begin().await?;
        if tx
            .list_variables(&ws.id)
            .await?
            .iter()
            .any(|v| v.key == var.key && v.category == var.category)
        {
            return Err(Error::AlreadyExists {
                kind: "variable",
                name: var.key,
            });
        }
        tx.insert_variable(&var).await?;
        self.commit(tx, vec![]).await?;
        Ok(redacted(var))
    }

    /// Variables of a workspace; sensitive values are blank.
    pub async fn list_variables(
        &self,
        subject: &Subject,
        workspace: &WorkspaceId,
    ) -> Result<Vec<Variable>, Error> {
        let ws = self.get_workspace(subject, workspace).await?;
        let mut tx = self.read().await?;
        Ok(tx
            .list_variables(&ws.id)
            .await?
            .into_iter()
            .map(redacted)
            .collect())
    }

    async fn variable_for(
        &self,
        tx: &mut S::Tx,
        subject: &Subject,
        id: &VariableId,
        access: Access,
    ) -> Result<Variable, Error> {
        let var = found(tx.get_variable(id).await?, "variable", id)?;
        let ws = found(tx.get_workspace(&var.workspace).await?, "variable", id)?;
        allow(
            authorize_organization(subject, &ws.organization, access),
            "variable",
            id,
        )?;
        Ok(var)
    }

    pub async fn get_variable(
        &self,
        subject: &Subject,
        id: &VariableId,
    ) -> Result<Variable, Error> {
        let mut tx = self.read().await?;
        Ok(redacted(
            self.variable_for(&mut tx, subject, id, Access::Read)
                .await?,
        ))
    }

    /// Change a variable. A sensitive variable cannot be made non-sensitive.
    pub async fn update_variable(
        &self,
        subject: &Subject,
        id: &VariableId,
        spec: VariableSpec,
    ) -> Result<Variable, Error> {
        let mut tx = self.begin().await?;
        let mut var = self
            .variable_for(&mut tx, subject, id, Access::Write)
            .await?;
        if var.sensitive && spec.sensitive == Some(false) {
            return Err(Error::Invalid {
                field: "sensitive",
                reason:
                    "a sensitive variable cannot be made non-sensitive; delete and create it again"
                        .into(),
            });
        }
        if let Some(c) = spec.category {
            var.category = c;
        }
        if let Some(k) = spec.key {
            var.key = k;
        }
        validate_key(&var.key, var.category)?;
        if let Some(v) = spec.value {
            var.value = v;
        }
        if let Some(d) = spec.description {
            var.description = d;
        }
        if let Some(h) = spec.hcl {
            var.hcl = h;
        }
        if let Some(s) = spec.sensitive {
            var.sensitive = s;
        }
        if tx
            .list_variables(&var.workspace)
            .await?
            .iter()
            .any(|v| v.id != var.id && v.key == var.key && v.category == var.category)
        {
            return Err(Error::AlreadyExists {
                kind: "variable",
                name: var.key,
            });
        }
        tx.update_variable(&var).await?;
        self.commit(tx, vec![]).await?;
        Ok(redacted(var))
    }

    pub async fn delete_variable(&self, subject: &Subject, id: &VariableId) -> Result<(), Error> {
        let mut tx = self.begin().await?;
        let var = self
            .variable_for(&mut tx, subject, id, Access::Write)
            .await?;
        tx.delete_variable(&var.id).await?;
        self.commit(tx, vec![]).await
    }
}
