//! The OpenAPI document of the JSON API, at /api/openapi.json.

use actix_web::web::ServiceConfig;

pub fn configure(_cfg: &mut ServiceConfig) {}
