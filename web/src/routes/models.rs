//! The registry (researchers): models, versions, lineage, config and metrics, aliases, checkpoint download.

use actix_web::web::ServiceConfig;

pub fn configure(_cfg: &mut ServiceConfig) {}
