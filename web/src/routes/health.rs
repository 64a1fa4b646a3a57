//! `/healthz` (is the database reachable?) and `/metrics` (Prometheus).

use actix_web::{get, web, HttpResponse};
use sqlx::PgPool;

use crate::metrics::Metrics;

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

#[get("/metrics")]
pub async fn metrics(metrics: web::Data<Metrics>) -> HttpResponse {
    HttpResponse::Ok().content_type("text/plain; version=0.0.4").body(metrics.render())
}
