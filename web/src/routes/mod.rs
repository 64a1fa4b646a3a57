//! Handlers: each coordinates (parse, call `labeling`/`registry`, render) and leaves the
//! work to named functions. A page's askama template struct sits beside its handler.

pub mod account;
pub mod admin;
pub mod annotate;
pub mod api_doc;
pub mod assets;
pub mod compare;
pub mod data;
pub mod evals;
pub mod health;
pub mod home;
pub mod imports;
pub mod login;
pub mod models;
pub mod project;
pub mod projects;
pub mod prompts;
pub mod runs;
pub mod tokens;

use actix_web::HttpResponse;
use askama::Template;

use actix_session::Session;
use labeling::domain::Role;

use crate::auth::{self, CurrentUser};
use crate::error::AppError;

/// What the header of every logged-in page shows: who is logged in, the links their role
/// may follow, and the session's CSRF token (for the log-out form and the page's forms).
pub struct Nav {
    pub csrf: String,
    pub username: String,
    pub researcher: bool,
    /// Whether the header links to the admin pages.
    pub admin: bool,
    /// The path of the page drawn, to mark its link in the header ("" when unknown).
    pub path: String,
}

impl Nav {
    pub fn new(me: &CurrentUser, session: &Session) -> Result<Nav, AppError> {
        Ok(Nav {
            csrf: auth::csrf_token(session)?,
            username: me.user.username.clone(),
            researcher: matches!(me.user.role, Role::Researcher | Role::Admin),
            admin: me.user.role == Role::Admin,
            path: String::new(),
        })
    }

    /// The header of the page at `path`.
    pub fn at(self, path: &str) -> Nav {
        Nav { path: path.to_owned(), ..self }
    }

    /// Whether the header's link to `section` is the current page's: the section itself
    /// or a page under it (`/runs/7` is under `/runs`; a run's launch form too).
    pub fn is_in(&self, section: &str) -> bool {
        let under = |s: &str| self.path == s || self.path.starts_with(&format!("{s}/"));
        match section {
            "/tasks" => under("/tasks") || under("/assignments"),
            "/models" => under("/models") || under("/versions"),
            "/compare" => under("/compare") || under("/evals"),
            _ => under(section),
        }
    }
}

/// Renders a page template as an HTML response.
pub fn page(template: &impl Template) -> Result<HttpResponse, AppError> {
    Ok(HttpResponse::Ok().content_type("text/html; charset=utf-8").body(template.render()?))
}

/// Renders a page that may be showing a refused form's error: with that error's status
/// (422, 409, …), else 200.
pub fn page_showing(template: &impl Template, error: Option<&AppError>) -> Result<HttpResponse, AppError> {
    let mut response = page(template)?;
    if let Some(error) = error {
        *response.status_mut() = actix_web::ResponseError::status_code(error);
    }
    Ok(response)
}

/// A list's size from `?limit=`: `default` when not asked. An ask outside 1..=`max` is
/// refused with a 422 naming `limit`, not clamped, so that a script learns that it did
/// not get what it asked for.
pub fn list_limit(limit: Option<i64>, default: i64, max: i64) -> Result<i64, AppError> {
    match limit.unwrap_or(default) {
        n if (1..=max).contains(&n) => Ok(n),
        n => Err(AppError::Invalid { field: "limit".into(), reason: format!("must be 1 to {max}, not {n}") }),
    }
}

/// Where a list starts, from `?offset=`: 0 when not asked; a negative one is a 422
/// naming `offset`.
pub fn list_offset(offset: Option<i64>) -> Result<i64, AppError> {
    match offset.unwrap_or(0) {
        n if n >= 0 => Ok(n),
        n => Err(AppError::Invalid {
            field: "offset".into(),
            reason: format!("must not be negative, not {n}"),
        }),
    }
}

/// After a successful form post: back to a page (POST/redirect/GET).
pub fn see_other(location: &str) -> HttpResponse {
    HttpResponse::SeeOther().insert_header((actix_web::http::header::LOCATION, location)).finish()
}
