//! A person's own password: anyone logged in changes it by giving the current one, from a
//! browser session ([`SessionOnly`]).

use actix_web::{get, post, web};
use askama::Template;
use labeling::domain::Password;
use labeling::error::LabelingError;
use labeling::users;
use serde::Deserialize;

use super::{page, page_showing, Nav};
use crate::auth::{csrf_field, CsrfForm, CurrentUser, SessionOnly};
use crate::caller::{Caller, Reply};
use crate::error::AppError;

#[derive(Template)]
#[template(path = "password.html")]
struct PasswordPage {
    nav: Nav,
    /// The password was just changed.
    changed: bool,
    error: Option<String>,
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
    cfg.service(show).service(change);
}

#[get("/account/password")]
pub async fn show(me: Caller<CurrentUser>) -> Reply {
    page(&PasswordPage { nav: me.nav()?, changed: false, error: None })
}

#[post("/account/password")]
pub async fn change(me: Caller<CurrentUser>, _: SessionOnly, form: CsrfForm<PasswordForm>) -> Reply {
    let outcome = new_password(&me, &form).await;
    let error = outcome.as_ref().err();
    let shown =
        PasswordPage { nav: me.nav()?, changed: outcome.is_ok(), error: error.map(ToString::to_string) };
    page_showing(&shown, error)
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
