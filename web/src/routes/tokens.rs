//! API tokens (any logged-in user): a script, or the simulated annotator, acts as its
//! user with `Authorization: Bearer plumb_…`. Each user lists, creates and revokes their
//! own; a new token is shown once, on the page that created it, and only its SHA-256 is
//! kept.

use actix_web::web::{self, ServiceConfig};
use askama::Template;
use labeling::domain::TokenName;
use labeling::users::{self, ApiToken};
use serde::Deserialize;

use super::{page_showing, see_other, Nav};
use crate::auth::{csrf_field, CsrfForm, CsrfOnly, SessionOnly};
use crate::caller::{Caller, Reply};
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

async fn list(me: Caller) -> Reply {
    render(&me, None, None).await
}

/// A new token, made only from a logged-in session: a token never mints another (which
/// would outlive its parent's revocation).
async fn create(me: Caller, _: SessionOnly, form: CsrfForm<NewTokenForm>) -> Reply {
    let name = match TokenName::parse(form.name.trim()) {
        Ok(name) => name,
        Err(e) => return render(&me, None, Some(AppError::from(e))).await,
    };
    let (_, token) = users::create_api_token(&me.pool, me.user.id, &name).await?;
    render(&me, Some((form.name.trim().to_owned(), token)), None).await
}

async fn revoke(me: Caller, path: web::Path<i64>, _: CsrfForm<CsrfOnly>) -> Reply {
    users::revoke_token(&me.pool, me.user.id, path.into_inner()).await?;
    Ok(see_other("/tokens"))
}

/// The tokens page; `created` is a token just made (its name and secret, shown this
/// once); `error`, a refused name.
async fn render(me: &Caller, created: Option<(String, String)>, error: Option<AppError>) -> Reply {
    let tokens = users::list_api_tokens(&me.pool, me.user.id).await?;
    let error_text = error.as_ref().map(|e| format!("name: {e}"));
    let mut response =
        page_showing(&TokensPage { nav: me.nav()?, tokens, created, error: error_text }, error.as_ref())?;
    // The page may show a secret: never cache it.
    response.headers_mut().insert(
        actix_web::http::header::CACHE_CONTROL,
        actix_web::http::header::HeaderValue::from_static("no-store"),
    );
    Ok(response)
}
