//! A person's own account: their password, which anyone logged in changes by giving the
//! current one, from a browser session ([`SessionOnly`]); and their login sessions, each
//! of which they may end, or all but this one, or all.

use actix_web::{get, post, web, HttpRequest};
use askama::Template;
use labeling::domain::Password;
use labeling::error::LabelingError;
use labeling::sessions::{self, LoginSession, SessionLimits};
use labeling::users;
use serde::Deserialize;

use super::{page, page_showing, see_other, Nav};
use crate::auth::{self, csrf_field, CsrfForm, CsrfOnly, CurrentUser, SessionOnly};
use crate::caller::{Caller, Reply};
use crate::error::AppError;

#[derive(Template)]
#[template(path = "password.html")]
struct PasswordPage {
    nav: Nav,
    /// The password was just changed.
    changed: bool,
    error: Option<String>,
    /// The person's login sessions that stand, and which is this one.
    sessions: Vec<LoginSession>,
    this_session: Option<i64>,
    /// How many sessions were just ended.
    ended: Option<u64>,
}

impl PasswordPage {
    fn when(t: &chrono::DateTime<chrono::Utc>) -> String {
        t.format("%Y-%m-%d %H:%M UTC").to_string()
    }

    fn is_this(&self, session: &LoginSession) -> bool {
        self.this_session == Some(session.id)
    }
}

/// The current password, and the new one typed twice.
#[derive(Deserialize)]
pub struct PasswordForm {
    #[serde(default)]
    current: String,
    #[serde(default)]
    new: String,
    #[serde(default)]
    repeat: String,
    #[serde(default)]
    csrf: String,
}
csrf_field!(PasswordForm);

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(show).service(change).service(end_session).service(end_others).service(end_all);
}

/// `?ended=N` after sessions were ended.
#[derive(Deserialize)]
pub struct EndedQuery {
    ended: Option<u64>,
}

#[get("/account/password")]
pub async fn show(
    me: Caller<CurrentUser>,
    req: HttpRequest,
    query: crate::query::Query<EndedQuery>,
) -> Reply {
    page(&account_page(&me, &req, false, None, query.ended).await?)
}

/// A changed password ends the person's other sessions: whoever else held one is out.
#[post("/account/password")]
pub async fn change(
    me: Caller<CurrentUser>,
    req: HttpRequest,
    _: SessionOnly,
    form: CsrfForm<PasswordForm>,
) -> Reply {
    let outcome = new_password(&me, &form).await;
    let ended = match &outcome {
        Ok(()) => Some(sessions::end_all(&me.pool, me.user_id(), auth::login_session_id(&req)).await?),
        Err(_) => None,
    };
    let error = outcome.as_ref().err();
    let shown = account_page(&me, &req, outcome.is_ok(), error.map(ToString::to_string), ended).await?;
    page_showing(&shown, error)
}

/// One session of the person's own ended ("Sign out" on its row).
#[post("/account/sessions/{session_id}/end")]
pub async fn end_session(
    me: Caller<CurrentUser>,
    req: HttpRequest,
    _: SessionOnly,
    path: web::Path<i64>,
    _: CsrfForm<CsrfOnly>,
) -> Reply {
    sessions::end_one(&me.pool, me.user_id(), *path).await?;
    // Signing this browser out is logging out.
    if auth::login_session_id(&req) == Some(*path) {
        auth::log_out(&req, &me.session).await?;
        return Ok(see_other("/login"));
    }
    Ok(see_other("/account/password?ended=1#sessions"))
}

/// Every session but this one ended ("Sign out everywhere else").
#[post("/account/sessions/end-others")]
pub async fn end_others(
    me: Caller<CurrentUser>,
    req: HttpRequest,
    _: SessionOnly,
    _: CsrfForm<CsrfOnly>,
) -> Reply {
    let keep = auth::login_session_id(&req);
    let ended = sessions::end_all(&me.pool, me.user_id(), keep).await?;
    Ok(see_other(&format!("/account/password?ended={ended}#sessions")))
}

/// Every session ended, this one too ("Sign out everywhere").
#[post("/account/sessions/end-all")]
pub async fn end_all(
    me: Caller<CurrentUser>,
    req: HttpRequest,
    _: SessionOnly,
    _: CsrfForm<CsrfOnly>,
) -> Reply {
    sessions::end_all(&me.pool, me.user_id(), None).await?;
    auth::log_out(&req, &me.session).await?;
    Ok(see_other("/login"))
}

async fn account_page(
    me: &Caller<CurrentUser>,
    req: &HttpRequest,
    changed: bool,
    error: Option<String>,
    ended: Option<u64>,
) -> Result<PasswordPage, AppError> {
    let limits =
        *req.app_data::<web::Data<SessionLimits>>().expect("the session limits are app data").get_ref();
    Ok(PasswordPage {
        nav: me.nav()?,
        changed,
        error,
        sessions: sessions::list(&me.pool, me.user_id(), limits).await?,
        this_session: auth::login_session_id(req),
        ended,
    })
}

/// Checks the current password, then stores the new one, typed twice alike.
async fn new_password(me: &Caller<CurrentUser>, form: &PasswordForm) -> Result<(), AppError> {
    let invalid = |field: &str, reason: String| AppError::Invalid { field: field.into(), reason };
    let not_yours = || invalid("current", "is not your password".into());
    let current = Password::parse(form.current.clone()).map_err(|_| not_yours())?;
    match users::authenticate(&me.pool, &me.user.username, &current).await {
        Ok(_) => {}
        Err(LabelingError::InvalidCredentials) => return Err(not_yours()),
        Err(e) => return Err(e.into()),
    }
    if form.new != form.repeat {
        return Err(invalid("repeat", "differs from the new password".into()));
    }
    let new = Password::parse(form.new.clone()).map_err(|e| match e {
        LabelingError::Invalid { reason, .. } => invalid("new", reason),
        e => e.into(),
    })?;
    users::set_password(&me.pool, me.user.id, &new).await?;
    Ok(())
}
