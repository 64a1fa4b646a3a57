//! API tokens (any logged-in user): a script, or the simulated annotator, acts as its
//! user with `Authorization: Bearer plumb_…`. Each user lists, creates and revokes their
//! own, on the page and on the API; a new token is shown once, where it was created, and
//! only its SHA-256 is kept.
//!
//! A token has a scope and an expiry. An `annotate` token acts as an annotator whatever
//! its user's role (researchers' routes answer 403); a `research` token acts with its
//! user's role. The cap is applied where the token's user is resolved
//! (`labeling::users::user_for_token`), so every role check in the app obeys it. An
//! expired or revoked token is a 401 that says which. Revoking is final and idempotent:
//! revoking again answers as the first time (a 303 on the page, 200 with the record on
//! the API) and keeps the first revocation time.

use actix_web::web::{self, ServiceConfig};
use actix_web::{delete, get, post, HttpResponse};
use askama::Template;
use labeling::audit::{self, Action};
use labeling::domain::{Role, TokenName};
use labeling::users::{self, ApiToken, NewApiToken, TokenLifetime, TokenScope};
use serde::{Deserialize, Serialize};

use super::{page_showing, see_other, Nav};
use crate::auth::{csrf_field, Csrf, CsrfForm, CsrfHeader, CsrfJson, CsrfOnly, SessionOnly};
use crate::caller::{redrawable, Caller, Reply};
use crate::error::AppError;

pub fn configure(cfg: &mut ServiceConfig) {
    cfg.route("/tokens", web::get().to(list))
        .route("/tokens", web::post().to(create))
        .route("/tokens/{id}/revoke", web::post().to(revoke))
        .service(api_list)
        .service(api_create)
        .service(api_revoke);
}

#[derive(Template)]
#[template(path = "tokens.html")]
struct TokensPage {
    nav: Nav,
    tokens: Vec<ApiToken>,
    /// The token just created, shown this once.
    created: Option<(String, String)>,
    error: Option<String>,
    /// The scopes this user may give a token, the default first.
    scopes: Vec<TokenScope>,
    lifetimes: [u16; 4],
    default_lifetime: u16,
}

/// The new-token form: every field as text, so that a bad value is redrawn naming it.
#[derive(Deserialize)]
struct NewTokenForm {
    #[serde(default)]
    name: String,
    #[serde(default)]
    scope: String,
    #[serde(default)]
    expires_in_days: String,
    #[serde(default)]
    csrf: String,
}
csrf_field!(NewTokenForm);

impl NewTokenForm {
    fn parse(&self) -> Result<NewApiToken, AppError> {
        let days = match self.expires_in_days.trim() {
            "" => None,
            days => Some(days.parse::<i64>().map_err(|_| AppError::Invalid {
                field: "expires_in_days".into(),
                reason: format!("{days:?} is not a whole number of days"),
            })?),
        };
        let scope = Some(self.scope.trim()).filter(|s| !s.is_empty());
        new_token(self.name.trim(), scope, days)
    }
}

/// `POST /api/tokens`: what the token is for; scope and lifetime may be left out.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewTokenBody {
    name: String,
    scope: Option<String>,
    expires_in_days: Option<i64>,
    #[serde(default)]
    csrf: String,
}
csrf_field!(NewTokenBody);

/// A token as made: its record and the secret, shown this once.
#[derive(Serialize)]
struct CreatedToken {
    #[serde(flatten)]
    record: ApiToken,
    token: String,
}

/// The token asked for, from the form or the API: a name, a scope (none: the role's
/// default) and a lifetime in days (none: 90).
fn new_token(name: &str, scope: Option<&str>, days: Option<i64>) -> Result<NewApiToken, AppError> {
    Ok(NewApiToken {
        name: TokenName::parse(name)?,
        scope: scope.map(TokenScope::parse).transpose()?,
        lifetime: days.map(TokenLifetime::parse).transpose()?.unwrap_or(TokenLifetime::DEFAULT),
    })
}

async fn list(me: Caller) -> Reply {
    render(&me, None, None).await
}

/// A new token, made only from a logged-in session: a token never mints another (which
/// would outlive its parent's revocation).
async fn create(me: Caller, _: SessionOnly, form: CsrfForm<NewTokenForm>) -> Reply {
    let made = match form.parse() {
        Ok(new) => users::create_scoped_api_token(&me.pool, me.user.id, &new).await.map_err(AppError::from),
        Err(e) => Err(e),
    };
    match made {
        Ok((record, token)) => {
            audited(&me, Action::TokenCreate, &record).await?;
            render(&me, Some((record.name, token)), None).await
        }
        Err(e) => render(&me, None, Some(redrawable(e)?)).await,
    }
}

async fn revoke(me: Caller, path: web::Path<i64>, _: CsrfForm<CsrfOnly>) -> Reply {
    let record = users::revoke_token(&me.pool, me.user.id, path.into_inner()).await?;
    audited(&me, Action::TokenRevoke, &record).await?;
    Ok(see_other("/tokens"))
}

/// Writes the audit log's entry for a token made or revoked by its owner.
async fn audited(me: &Caller, action: Action, token: &ApiToken) -> Result<(), AppError> {
    let subject = audit::token_subject(&token.name, token.id);
    let details = serde_json::json!({ "scope": token.scope, "expires_at": token.expires_at });
    Ok(audit::record(me.pool.get_ref(), Some(me.user_id()), action, &subject, details).await?)
}

/// The tokens page; `created` is a token just made (its name and secret, shown this
/// once); `error`, a refused field.
async fn render(me: &Caller, created: Option<(String, String)>, error: Option<AppError>) -> Reply {
    let tokens = users::list_api_tokens(&me.pool, me.user.id).await?;
    let page = TokensPage {
        nav: me.nav()?,
        tokens,
        created,
        error: error.as_ref().map(AppError::to_string),
        scopes: scopes_for(me.user.role),
        lifetimes: TokenLifetime::CHOICES,
        default_lifetime: TokenLifetime::DEFAULT.days(),
    };
    let mut response = page_showing(&page, error.as_ref())?;
    // The page may show a secret: never cache it.
    response.headers_mut().insert(
        actix_web::http::header::CACHE_CONTROL,
        actix_web::http::header::HeaderValue::from_static("no-store"),
    );
    Ok(response)
}

/// The scopes a user of `role` may choose, their default first.
fn scopes_for(role: Role) -> Vec<TokenScope> {
    let default = TokenScope::default_for(role);
    let mut scopes = TokenScope::allowed_for(role);
    scopes.sort_by_key(|scope| *scope != default);
    scopes
}

#[get("/api/tokens")]
async fn api_list(me: Caller) -> Reply {
    Ok(HttpResponse::Ok().json(users::list_api_tokens(&me.pool, me.user.id).await?))
}

#[post("/api/tokens")]
async fn api_create(me: Caller, _: SessionOnly, body: CsrfJson<NewTokenBody>) -> Reply {
    let new = new_token(&body.name, body.scope.as_deref(), body.expires_in_days)?;
    let (record, token) = users::create_scoped_api_token(&me.pool, me.user.id, &new).await?;
    audited(&me, Action::TokenCreate, &record).await?;
    Ok(HttpResponse::Created().json(CreatedToken { record, token }))
}

#[delete("/api/tokens/{id}")]
async fn api_revoke(me: Caller, path: web::Path<i64>, _: Csrf<CsrfHeader>) -> Reply {
    let record = users::revoke_token(&me.pool, me.user.id, path.into_inner()).await?;
    audited(&me, Action::TokenRevoke, &record).await?;
    Ok(HttpResponse::Ok().json(record))
}
