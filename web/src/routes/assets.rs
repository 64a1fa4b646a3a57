//! Static assets (scripts and styles), compiled into the binary.

use actix_web::web::ServiceConfig;

pub fn configure(_cfg: &mut ServiceConfig) {}
