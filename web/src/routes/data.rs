//! A project's data (researchers): counts, agreement per annotator, consensus per task, snapshots and exports.

use actix_web::web::ServiceConfig;

pub fn configure(_cfg: &mut ServiceConfig) {}
