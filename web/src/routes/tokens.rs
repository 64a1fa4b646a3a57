//! API tokens (any logged-in user): a script, or the simulated annotator, acts as its
//! user with `Authorization: Bearer plumb_…`. Each user lists, creates and revokes their
//! own; a new token is shown once, on the page that created it, and only its SHA-256 is
//! kept.

use actix_session::Session;
use actix_web::web::{self, ServiceConfig};
use actix_web::HttpResponse;
use askama::Template;
use labeling::domain::TokenName;
use labeling::users::{self, ApiToken};
use serde::Deserialize;
use sqlx::PgPool;

use super::{page, see_other, Nav};
use crate::auth::{csrf_field, CsrfForm, CsrfOnly, CurrentUser};
use crate::error::AppError;

pub fn configure(cfg: &mut ServiceConfig) {
    cfg.route("/tokens", web::get().to(list))
        .route("/tokens", web::post().to(create))
        .route("/tokens/{id}/revoke", web::post().to(revoke));
}

#[derive(Template)]
#[template(path = "tokens.html")]
struct TokensPage {
    nav: Nav,
    tokens: Vec<ApiToken>,
    /// The token just created, shown this once.
    created: Option<(String, String)>,
    error: Option<String>,
}

#[derive(Deserialize)]
struct NewTokenForm {
    #[serde(default)]
    name: String,
    #[serde(default)]
    csrf: String,
}
csrf_field!(NewTokenForm);

async fn list(me: CurrentUser, pool: web::Data<PgPool>, session: Session) -> Result<HttpResponse, AppError> {
    render(&me, &pool, &session, None, None, actix_web::http::StatusCode::OK).await
}

async fn create(
    me: CurrentUser,
    pool: web::Data<PgPool>,
    session: Session,
    form: CsrfForm<NewTokenForm>,
) -> Result<HttpResponse, AppError> {
    let name = match TokenName::parse(form.name.trim()) {
        Ok(name) => name,
        Err(e) => {
            let error = format!("name: {}", AppError::from(e));
            let status = actix_web::http::StatusCode::UNPROCESSABLE_ENTITY;
            return render(&me, &pool, &session, None, Some(error), status).await;
        }
    };
    let (_, token) = users::create_api_token(&pool, me.user.id, &name).await?;
    let created = Some((form.name.trim().to_owned(), token));
    render(&me, &pool, &session, created, None, actix_web::http::StatusCode::OK).await
}

async fn revoke(
    me: CurrentUser,
    pool: web::Data<PgPool>,
    path: web::Path<i64>,
    _: CsrfForm<CsrfOnly>,
) -> Result<HttpResponse, AppError> {
    users::revoke_token(&pool, me.user.id, path.into_inner()).await?;
    Ok(see_other("/tokens"))
}

async fn render(
    me: &CurrentUser,
    pool: &PgPool,
    session: &Session,
    created: Option<(String, String)>,
    error: Option<String>,
    status: actix_web::http::StatusCode,
) -> Result<HttpResponse, AppError> {
    let tokens = users::list_api_tokens(pool, me.user.id).await?;
    let mut response = page(&TokensPage { nav: Nav::new(me, session)?, tokens, created, error })?;
    *response.status_mut() = status;
    // The page may show a secret: never cache it.
    response.headers_mut().insert(
        actix_web::http::header::CACHE_CONTROL,
        actix_web::http::header::HeaderValue::from_static("no-store"),
    );
    Ok(response)
}
