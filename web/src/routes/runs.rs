//! Runs (researchers): launch forms pre-filled with each stage's defaults, the queue, and a run's page with live progress, curves, logs and cancel.

use actix_web::web::ServiceConfig;

pub fn configure(_cfg: &mut ServiceConfig) {}
