//! State versions through the API (local execution) and variables.

mod common;

use common::World;
use otf_core::artifacts::{md5_hex, VariableCategory};
use otf_core::services::{StateSpec, VariableSpec, WorkspaceSpec};
use otf_core::workspace::ExecutionMode;
use otf_core::Error;

#[tokio::test]
async fn local_mode_state_round_trip_with_lock_and_conflicts() {
    let w = World::new(40).await;
    w.org("acme").await;
    let ws = w.workspace("acme", "laptop", ExecutionMode::Local).await;
    let id = ws.id.as_str();
    assert_eq!(
        w.core
            .current_state_version(&w.site, &id.parse::<otf_core::ids::WorkspaceId>().unwrap())
            .await
            .unwrap(),
        None
    );
    let state = br#"{"version":4,"serial":0,"lineage":"abc","outputs":{}}"#.to_vec();
    w.core
        .lock_workspace(&w.site, &id.parse::<otf_core::ids::WorkspaceId>().unwrap())
        .await
        .unwrap();
    let spec = StateSpec {
        serial: 0,
        lineage: "abc".into(),
        md5: Some(md5_hex(&state)),
        state: state.clone(),
        ..Default::default()
    };
    let sv = w
        .core
        .create_state_version(
            &w.site,
            &id.parse::<otf_core::ids::WorkspaceId>().unwrap(),
            spec.clone(),
        )
        .await
        .unwrap();
    assert_eq!(
        w.core
            .current_state_version(&w.site, &id.parse::<otf_core::ids::WorkspaceId>().unwrap())
            .await
            .unwrap(),
        Some(sv.clone())
    );
    assert_eq!(w.core.download_state(&w.site, &sv.id).await.unwrap(), state);
    // A wrong md5 changes nothing.
    let bad = StateSpec {
        md5: Some("0".repeat(32)),
        serial: 1,
        ..spec.clone()
    };
    assert!(matches!(
        w.core
            .create_state_version(
                &w.site,
                &id.parse::<otf_core::ids::WorkspaceId>().unwrap(),
                bad
            )
            .await,
        Err(Error::Invalid { field: "md5", .. })
    ));
    // Another lineage, or going back in serial, needs force.
    let other = StateSpec {
        lineage: "xyz".into(),
        serial: 1,
        ..spec.clone()
    };
    assert!(matches!(
        w.core
            .create_state_version(
                &w.site,
                &id.parse::<otf_core::ids::WorkspaceId>().unwrap(),
                other.clone()
            )
            .await,
        Err(Error::StateConflict { .. })
    ));
    w.core
        .create_state_version(
            &w.site,
            &id.parse::<otf_core::ids::WorkspaceId>().unwrap(),
            StateSpec {
                force: true,
                ..other
            },
        )
        .await
        .unwrap();
    assert_eq!(
        w.core
            .list_state_versions(&w.site, &id.parse::<otf_core::ids::WorkspaceId>().unwrap())
            .await
            .unwrap()
            .len(),
        2
    );
    // Someone else holding the lock may not write.
    let (_, secret) = w
        .core
        .create_org_token(
            &w.site,
            &"acme".parse::<otf_core::ids::OrganizationName>().unwrap(),
            "ci",
        )
        .await
        .unwrap();
    let ci = w.core.authenticate(secret.expose()).await.unwrap();
    let err = w
        .core
        .create_state_version(
            &ci,
            &id.parse::<otf_core::ids::WorkspaceId>().unwrap(),
            StateSpec { serial: 5, ..spec },
        )
        .await
        .unwrap_err();
    assert!(err.to_string().contains("locked by site-admin"), "{err}");
}

#[tokio::test]
async fn variables_validate_keys_and_keep_sensitive_values_write_only() {
    let w = World::new(41).await;
    w.org("acme").await;
    let ws = w
        .core
        .create_workspace(
            &w.site,
            &"acme".parse::<otf_core::ids::OrganizationName>().unwrap(),
            WorkspaceSpec {
                name: "dev".into(),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let id = ws.id.as_str();
    let spec = |key: &str, category, sensitive| VariableSpec {
        key: Some(key.into()),
        value: Some("s3cr3t".into()),
        category: Some(category),
        sensitive: Some(sensitive),
        ..Default::default()
    };
    let token = w
        .core
        .create_variable(
            &w.site,
            &id.parse::<otf_core::ids::WorkspaceId>().unwrap(),
            spec("token", VariableCategory::Terraform, true),
        )
        .await
        .unwrap();
    assert_eq!(token.value, "", "sensitive values are never returned");
    w.core
        .create_variable(
            &w.site,
            &id.parse::<otf_core::ids::WorkspaceId>().unwrap(),
            spec("AWS_REGION", VariableCategory::Env, false),
        )
        .await
        .unwrap();
    let err = w
        .core
        .create_variable(
            &w.site,
            &id.parse::<otf_core::ids::WorkspaceId>().unwrap(),
            spec("token", VariableCategory::Terraform, false),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, Error::AlreadyExists { .. }));
    let err = w
        .core
        .create_variable(
            &w.site,
            &id.parse::<otf_core::ids::WorkspaceId>().unwrap(),
            spec("1bad", VariableCategory::Env, false),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Invalid { field: "key", .. }), "{err}");
    let list = w
        .core
        .list_variables(&w.site, &id.parse::<otf_core::ids::WorkspaceId>().unwrap())
        .await
        .unwrap();
    assert_eq!(
        list.iter()
            .map(|v| (v.key.as_str(), v.value.as_str()))
            .collect::<Vec<_>>(),
        [("AWS_REGION", "s3cr3t"), ("token", "")]
    );
    let err = w
        .core
        .update_variable(
            &w.site,
            &token.id,
            VariableSpec {
                sensitive: Some(false),
                ..Default::default()
            },
        )
        .await
        .unwrap_err();
    assert!(err.to_string().contains("cannot be made non-sensitive"));
    w.core.delete_variable(&w.site, &token.id).await.unwrap();
    assert_eq!(
        w.core
            .list_variables(&w.site, &id.parse::<otf_core::ids::WorkspaceId>().unwrap())
            .await
            .unwrap()
            .len(),
        1
    );
}

#[tokio::test]
async fn workspace_versions_and_directories_are_validated() {
    let w = World::new(42).await;
    w.org("acme").await;
    for (v, ok) in [
        ("1.0.3", true),
        ("latest", true),
        ("1.6.0-rc1", true),
        ("1.0", false),
        ("~> 1.0", false),
        ("x", false),
    ] {
        let r = w
            .core
            .create_workspace(
                &w.site,
                &"acme".parse::<otf_core::ids::OrganizationName>().unwrap(),
                WorkspaceSpec {
                    name: format!("w{}", v.len()),
                    terraform_version: Some(v.into()),
                    ..Default::default()
                },
            )
            .await;
        assert_eq!(r.is_ok(), ok, "{v}: {r:?}");
        if let Ok(ws) = r {
            w.core.delete_workspace(&w.site, &ws.id).await.unwrap();
        }
    }
    for d in ["/etc", "../up", "a/../../b"] {
        let r = w
            .core
            .create_workspace(
                &w.site,
                &"acme".parse::<otf_core::ids::OrganizationName>().unwrap(),
                WorkspaceSpec {
                    name: "d".into(),
                    working_directory: Some(d.into()),
                    ..Default::default()
                },
            )
            .await;
        assert!(
            matches!(
                r,
                Err(Error::Invalid {
                    field: "working-directory",
                    ..
                })
            ),
            "{d}"
        );
    }
}
