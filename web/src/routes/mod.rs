//! Handlers: each coordinates (parse, call `labeling`/`registry`, render) and leaves the
//! work to named functions. A page's askama template struct sits beside its handler.

pub mod health;
pub mod home;
pub mod login;
pub mod projects;
pub mod prompts;

use actix_web::HttpResponse;
use askama::Template;

use crate::error::AppError;

/// Renders a page template as an HTML response.
pub fn page(template: &impl Template) -> Result<HttpResponse, AppError> {
    Ok(HttpResponse::Ok().content_type("text/html; charset=utf-8").body(template.render()?))
}

/// After a successful form post: back to a page (POST/redirect/GET).
pub fn see_other(location: &str) -> HttpResponse {
    HttpResponse::SeeOther().insert_header((actix_web::http::header::LOCATION, location)).finish()
}
