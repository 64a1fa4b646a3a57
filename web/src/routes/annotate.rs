//! Annotators' pages and API: the next task, demonstrations, rankings, blind A/B votes, their own history and agreement.

use actix_web::web::ServiceConfig;

pub fn configure(_cfg: &mut ServiceConfig) {}
