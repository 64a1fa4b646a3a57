//! One error type for every handler. A page request gets an HTML error page (or, when
//! logged out, a redirect to the login page); an `/api` request gets JSON
//! `{"error": {"status", "message", "field"?}}`.

use actix_web::http::{header, StatusCode};
use actix_web::{HttpResponse, ResponseError};
use askama::Template;
use labeling::error::LabelingError;
use registry::error::RegistryError;

use crate::routes::Nav;

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// Not logged in: pages redirect to the login page, the API answers 401.
    #[error("log in first")]
    Unauthenticated { next: String },
    /// An API token that no longer works (revoked, expired): 401, saying which.
    #[error("{0}")]
    TokenRefused(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    NotFound(String),
    /// The request itself is malformed (a bad form, a missing CSRF token).
    #[error("{0}")]
    BadRequest(String),
    /// Well-formed but invalid: names the field.
    #[error("{field}: {reason}")]
    Invalid { field: String, reason: String },
    /// Well-formed but invalid in several fields at once: names every one (422).
    #[error("{}", spec::Problems(.0.clone()))]
    Problems(Vec<spec::Problem>),
    #[error("{0}")]
    Conflict(String),
    #[error("too many attempts: try again in {retry_after_s} s")]
    TooManyRequests { retry_after_s: u64 },
    /// Anything else; the cause is logged, the person sees only that it failed.
    #[error("internal error")]
    Internal(#[source] Box<dyn std::error::Error + Send + Sync>),
}

impl AppError {
    pub fn internal(e: impl std::error::Error + Send + Sync + 'static) -> Self {
        AppError::Internal(Box::new(e))
    }

    fn field(&self) -> Option<&str> {
        match self {
            AppError::Invalid { field, .. } => Some(field),
            AppError::Problems(problems) => problems.first().map(|p| p.field.as_str()),
            _ => None,
        }
    }
}

impl From<LabelingError> for AppError {
    fn from(e: LabelingError) -> Self {
        match e {
            LabelingError::Invalid { field, reason } => AppError::Invalid { field, reason },
            LabelingError::NotFound { .. } => AppError::NotFound(e.to_string()),
            LabelingError::Forbidden(m) => AppError::Forbidden(m),
            LabelingError::Conflict(m) => AppError::Conflict(m),
            LabelingError::UploadRefused(m) => AppError::BadRequest(m),
            LabelingError::InvalidCredentials => AppError::BadRequest("invalid credentials".into()),
            LabelingError::TokenRefused(m) => AppError::TokenRefused(m),
            other => AppError::internal(other),
        }
    }
}

impl From<RegistryError> for AppError {
    fn from(e: RegistryError) -> Self {
        use RegistryError as R;
        let invalid =
            |field: &str, e: &RegistryError| AppError::Invalid { field: field.into(), reason: e.to_string() };
        match e {
            R::BadModelName(_) => invalid("model", &e),
            R::BadAlias(_) => invalid("alias", &e),
            R::BadRole(_) => invalid("role", &e),
            R::BadTag(_) => invalid("tag", &e),
            R::BadReference(_) => invalid("reference", &e),
            R::VersionOfAnotherModel { .. } => invalid("version", &e),
            R::ConfigNotObject(_) => invalid("config", &e),
            R::BadRunName(_) => invalid("name", &e),
            R::BadWorldSize { .. } => invalid("world_size", &e),
            R::BadRunNotes(_) => invalid("notes", &e),
            R::NotAnObject(field) => invalid(field, &e),
            R::NonFiniteMetric { .. } | R::BadMetricName(_) | R::DuplicateMetric { .. } => {
                invalid("metrics", &e)
            }
            R::RunNotFound(_)
            | R::ProjectNotFound(_)
            | R::UserNotFound(_)
            | R::ModelNotFound(_)
            | R::VersionNotFound(_)
            | R::NoSuchVersion { .. }
            | R::AliasNotFound { .. }
            | R::SnapshotNotFound(_)
            | R::ArtifactNotFound(_) => AppError::NotFound(e.to_string()),
            // Said as it is: a researcher must learn that the bytes on disk are damaged.
            R::LeaseLost { .. } | R::AlreadyFinished { .. } | R::ArtifactCorrupt { .. } => {
                AppError::Conflict(e.to_string())
            }
            other => AppError::internal(other),
        }
    }
}

impl From<sqlx::Error> for AppError {
    fn from(e: sqlx::Error) -> Self {
        AppError::internal(e)
    }
}

impl From<askama::Error> for AppError {
    fn from(e: askama::Error) -> Self {
        AppError::internal(e)
    }
}

#[derive(Template)]
#[template(path = "error.html")]
struct ErrorPage<'a> {
    status: u16,
    title: &'a str,
    message: String,
    /// The site's header, when the page is drawn for someone logged in.
    nav: Option<Nav>,
}

impl ResponseError for AppError {
    fn status_code(&self) -> StatusCode {
        match self {
            AppError::Unauthenticated { .. } | AppError::TokenRefused(_) => StatusCode::UNAUTHORIZED,
            AppError::Forbidden(_) => StatusCode::FORBIDDEN,
            AppError::NotFound(_) => StatusCode::NOT_FOUND,
            AppError::BadRequest(_) => StatusCode::BAD_REQUEST,
            AppError::Invalid { .. } | AppError::Problems(_) => StatusCode::UNPROCESSABLE_ENTITY,
            AppError::Conflict(_) => StatusCode::CONFLICT,
            AppError::TooManyRequests { .. } => StatusCode::TOO_MANY_REQUESTS,
            AppError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// An HTML error page; logged out, a redirect to the login page. `/api` requests get
    /// [`AppError::json_response`] instead (the `error_bodies` middleware swaps it in).
    fn error_response(&self) -> HttpResponse {
        if let AppError::Internal(cause) = self {
            tracing::error!(error = %cause, "request failed");
        }
        if let AppError::Unauthenticated { next } = self {
            return HttpResponse::SeeOther()
                .insert_header((header::LOCATION, format!("/login?next={}", urlencode(next))))
                .finish();
        }
        self.page_response(None)
    }
}

impl AppError {
    /// The HTML error page, with the site's header when `nav` is given (the
    /// `error_bodies` middleware draws it again so for a logged-in reader).
    pub fn page_response(&self, nav: Option<Nav>) -> HttpResponse {
        let status = self.status_code();
        let page = ErrorPage {
            status: status.as_u16(),
            title: status.canonical_reason().unwrap_or("Error"),
            message: self.to_string(),
            nav,
        };
        let mut response = self.builder();
        match page.render() {
            Ok(html) => response.content_type("text/html; charset=utf-8").body(html),
            Err(_) => response.body(self.to_string()),
        }
    }

    fn builder(&self) -> actix_web::HttpResponseBuilder {
        let mut response = HttpResponse::build(self.status_code());
        match self {
            AppError::TooManyRequests { retry_after_s } => {
                response.insert_header((header::RETRY_AFTER, retry_after_s.to_string()));
            }
            AppError::Unauthenticated { .. } | AppError::TokenRefused(_) => {
                response.insert_header((header::WWW_AUTHENTICATE, "Bearer"));
            }
            _ => {}
        }
        response
    }

    /// `{"error": {"status", "message", "field"?, "problems"?}}` with the error's status:
    /// `field` names the (first) field at fault, `problems` every one.
    pub fn json_response(&self) -> HttpResponse {
        let mut error =
            serde_json::json!({ "status": self.status_code().as_u16(), "message": self.to_string() });
        if let Some(field) = self.field() {
            error["field"] = field.into();
        }
        if let AppError::Problems(problems) = self {
            error["problems"] = serde_json::json!(problems);
        }
        self.builder().json(serde_json::json!({ "error": error }))
    }
}

/// Percent-encodes a path for a query parameter.
pub fn urlencode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b'/' => out.push(b as char),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}
