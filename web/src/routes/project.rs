//! A project's settings (researchers): guidelines (Markdown, rendered safely), annotators and overlap.

use actix_web::web::ServiceConfig;

pub fn configure(_cfg: &mut ServiceConfig) {}
