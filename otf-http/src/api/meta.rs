//! Discovery, ping, health and metrics.

use hyper::StatusCode;
use otf_core::store::{AgentRepo, JobRepo, RunRepo, Store};
use serde_json::json;

use crate::app::App;
use crate::errors::ApiError;
use crate::request::Req;
use crate::response::{self, Resp};
use crate::router::Route;

pub async fn handle<S: Store>(app: &App<S>, route: Route, req: &Req) -> Result<Resp, ApiError> {
    match route {
        Route::Discovery => Ok(response::json(
            StatusCode::OK,
            &json!({
                "state.v2": "/api/v2/",
                "tfe.v2": "/api/v2/",
                "tfe.v2.1": "/api/v2/",
                "tfe.v2.2": "/api/v2/",
                "motd.v1": "/api/terraform/motd",
            }),
        )),
        Route::Ping => Ok(response::empty(StatusCode::NO_CONTENT)),
        Route::Healthz => {
            // Healthy when the store answers.
            let mut tx = app
                .core
                .store()
                .begin()
                .await
                .map_err(otf_core::Error::from)?;
            tx.list_agents_in_pool(None)
                .await
                .map_err(otf_core::Error::from)?;
            Ok(response::json(
                StatusCode::OK,
                &json!({ "status": "ok", "version": crate::VERSION }),
            ))
        }
        _ => {
            // With --metrics-token, scrapers must send it.
            if let Some(want) = &app.metrics_token {
                if !req.bearer().is_some_and(|t| want.verify(t)) {
                    return Err(ApiError::new(
                        StatusCode::UNAUTHORIZED,
                        "/metrics needs the metrics token: send `Authorization: Bearer <token>`",
                    ));
                }
            }
            Ok(response::text(
                StatusCode::OK,
                app.metrics.render(&gauges(app).await?),
            ))
        }
    }
}

/// Agents by status and pool, active jobs by status and phase.
async fn gauges<S: Store>(app: &App<S>) -> Result<String, ApiError> {
    use std::collections::BTreeMap;
    use std::fmt::Write;
    let mut tx = app
        .core
        .store()
        .begin()
        .await
        .map_err(otf_core::Error::from)?;
    let agents = tx.list_agents().await.map_err(otf_core::Error::from)?;
    let jobs = tx.list_active_jobs().await.map_err(otf_core::Error::from)?;
    let runs = tx
        .count_runs_by_status()
        .await
        .map_err(otf_core::Error::from)?;
    drop(tx);
    let mut by_agent: BTreeMap<(String, &str), u64> = BTreeMap::new();
    for a in &agents {
        let pool = a
            .pool
            .as_ref()
            .map(|p| p.to_string())
            .unwrap_or_else(|| "server".into());
        *by_agent.entry((pool, a.status.as_str())).or_default() += 1;
    }
    let mut by_job: BTreeMap<(&str, &str), u64> = BTreeMap::new();
    for j in &jobs {
        *by_job
            .entry((j.status.as_str(), j.phase.as_str()))
            .or_default() += 1;
    }
    let mut out = String::new();
    out.push_str("# HELP otf_agents Agents by pool and status.\n# TYPE otf_agents gauge\n");
    for ((pool, status), n) in by_agent {
        let _ = writeln!(out, "otf_agents{{pool=\"{pool}\",status=\"{status}\"}} {n}");
    }
    out.push_str("# HELP otf_runs Runs by status.\n# TYPE otf_runs gauge\n");
    for (status, n) in runs {
        let _ = writeln!(out, "otf_runs{{status=\"{status}\"}} {n}");
    }
    out.push_str(
        "# HELP otf_jobs Jobs that are not final, by status and phase.\n# TYPE otf_jobs gauge\n",
    );
    for ((status, phase), n) in by_job {
        let _ = writeln!(out, "otf_jobs{{status=\"{status}\",phase=\"{phase}\"}} {n}");
    }
    Ok(out)
}
