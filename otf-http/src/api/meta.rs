//! Discovery, ping, health and metrics: answered to anyone.

use hyper::StatusCode;
use otf_core::store::Store;
use serde_json::json;

use crate::app::App;
use crate::errors::ApiError;
use crate::request::Req;
use crate::response::{self, Resp};

pub async fn discovery<S: Store>(_: &App<S>, _: &Req) -> Result<Resp, ApiError> {
    Ok(response::json(
        StatusCode::OK,
        &json!({
            "state.v2": "/api/v2/",
            "tfe.v2": "/api/v2/",
            "tfe.v2.1": "/api/v2/",
            "tfe.v2.2": "/api/v2/",
            "motd.v1": "/api/terraform/motd",
        }),
    ))
}

pub async fn ping<S: Store>(_: &App<S>, _: &Req) -> Result<Resp, ApiError> {
    Ok(response::empty(StatusCode::NO_CONTENT))
}

/// Healthy when the store answers.
pub async fn healthz<S: Store>(app: &App<S>, _: &Req) -> Result<Resp, ApiError> {
    app.core.check_health().await?;
    Ok(response::json(
        StatusCode::OK,
        &json!({ "status": "ok", "version": crate::VERSION }),
    ))
}

/// The exposition text; with --metrics-token, scrapers must send it.
pub async fn metrics<S: Store>(app: &App<S>, req: &Req) -> Result<Resp, ApiError> {
    if let Some(want) = &app.metrics_token {
        if !req.bearer().is_some_and(|t| want.verify(t)) {
            return Err(ApiError::new(
                StatusCode::UNAUTHORIZED,
                "/metrics needs the metrics token: send `Authorization: Bearer <token>`",
            ));
        }
    }
    // Gauges come from events, not from the store per scrape.
    let gauges = app.metrics.gauges(app.core.now()).ok_or_else(|| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "the gauges are not read yet; retry in a moment",
        )
    })?;
    Ok(response::text(StatusCode::OK, app.metrics.render(&gauges)))
}
