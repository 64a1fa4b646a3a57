//! `/healthz` (is the database reachable?) and `/metrics` (Prometheus).

use actix_web::http::header;
use actix_web::{get, web, HttpRequest, HttpResponse};
use sqlx::PgPool;

use crate::auth::constant_time_eq;
use crate::metrics::Metrics;
use crate::settings::Secret;

#[get("/healthz")]
pub async fn healthz(pool: web::Data<PgPool>) -> HttpResponse {
    match sqlx::query_scalar::<_, i32>("SELECT 1").fetch_one(pool.get_ref()).await {
        Ok(_) => HttpResponse::Ok().json(serde_json::json!({ "status": "ok", "database": "ok" })),
        // The cause goes to the log only: the probe is open to anyone.
        Err(e) => {
            tracing::warn!(error = %e, "health check: database unreachable");
            HttpResponse::ServiceUnavailable()
                .json(serde_json::json!({ "status": "unavailable", "database": "unreachable" }))
        }
    }
}

/// Who may read `/metrics`: a scraper with this bearer token, or with none set, only a
/// request from this machine.
#[derive(Clone)]
pub struct MetricsAccess(pub Option<Secret>);

#[get("/metrics")]
pub async fn metrics(
    req: HttpRequest,
    metrics: web::Data<Metrics>,
    access: web::Data<MetricsAccess>,
) -> HttpResponse {
    let allowed = match &access.0 {
        Some(token) => req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .is_some_and(|given| constant_time_eq(given.as_bytes(), token.expose().as_bytes())),
        None => req.peer_addr().is_some_and(|a| a.ip().is_loopback()),
    };
    if !allowed {
        let message = if access.0.is_some() {
            "/metrics needs its bearer token (the metrics.token setting)"
        } else {
            "/metrics answers only this machine unless the metrics.token setting is set"
        };
        return HttpResponse::Forbidden()
            .json(serde_json::json!({ "error": { "status": 403, "message": message } }));
    }
    HttpResponse::Ok().content_type("text/plain; version=0.0.4").body(metrics.render())
}
