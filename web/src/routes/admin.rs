//! User administration (admins): the users page (create a user with a role, disable and
//! re-enable, change a role, reset a password) and the audit log; the same as JSON under
//! /api/admin. A new user's password, and a reset one, is made by the server and shown
//! once; the user then changes it at /account/password. Every change is written to the
//! audit log with the admin who made it. An admin can neither disable themselves nor
//! take away their own admin role, so an admin is always left.

use actix_web::http::header::{self, HeaderValue};
use actix_web::{get, post, put, web, HttpResponse};
use askama::Template;
use labeling::audit::{self, Action, Entry};
use labeling::domain::{DisplayName, Role, Username};
use labeling::sessions;
use labeling::users::{self, User};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::{list_limit, list_offset, page, page_showing, see_other, Nav};
use crate::auth::{csrf_field, Admin, CsrfForm, CsrfJson, CsrfOnly, CsrfOnlyJson};
use crate::caller::{Caller, Reply};
use crate::error::AppError;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(users_page)
        .service(create)
        .service(disable)
        .service(enable)
        .service(change_role)
        .service(reset_password)
        .service(audit_page)
        .service(api_users)
        .service(api_create)
        .service(api_disable)
        .service(api_enable)
        .service(api_change_role)
        .service(api_reset_password)
        .service(api_audit);
}

#[derive(Template)]
#[template(path = "admin_users.html")]
struct UsersPage {
    nav: Nav,
    users: Vec<User>,
    /// The admin looking at the page: their own row offers no disable and no role change.
    me: i64,
    roles: [Role; 3],
    /// A password just made, shown this once.
    made: Option<OneTimePassword>,
    error: Option<String>,
}

impl UsersPage {
    fn has_role(&self, user: &User, role: &Role) -> bool {
        user.role == *role
    }
}

#[derive(Template)]
#[template(path = "admin_audit.html")]
struct AuditPage {
    nav: Nav,
    entries: Vec<Entry>,
    /// The action the list is filtered by; empty for all.
    action: String,
    actions: Vec<&'static str>,
    /// The links to the newer and the older page, where there is one.
    newer: Option<String>,
    older: Option<String>,
}

/// A user and the password just made for them: what creating a user and resetting a
/// password answer, the only time the password is shown.
#[derive(Serialize)]
struct OneTimePassword {
    user: User,
    password: String,
}

/// "Create a user", from the page's form or the API's JSON. The display name defaults to
/// the username.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewUser {
    #[serde(default)]
    username: String,
    #[serde(default)]
    display_name: String,
    #[serde(default)]
    role: String,
    #[serde(default)]
    csrf: String,
}

/// "Give this user another role", from the page's form or the API's JSON.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoleChange {
    #[serde(default)]
    role: String,
    #[serde(default)]
    csrf: String,
}
csrf_field!(NewUser, RoleChange);

/// `?action=&limit=&offset=`: one action's entries (empty: all), a page of them.
#[derive(Deserialize)]
pub struct AuditQuery {
    #[serde(default)]
    action: String,
    limit: Option<i64>,
    offset: Option<i64>,
}

/// A page of the audit log, as the API returns it.
#[derive(Serialize)]
struct AuditList {
    entries: Vec<Entry>,
    limit: i64,
    offset: i64,
}

// The pages.

#[get("/admin/users")]
pub async fn users_page(me: Caller<Admin>) -> Reply {
    render_users(&me, None, None).await
}

#[post("/admin/users")]
#[tracing::instrument(skip_all)]
pub async fn create(me: Caller<Admin>, form: CsrfForm<NewUser>) -> Reply {
    match create_user(&me, form.into_inner()).await {
        Ok(made) => render_users(&me, Some(made), None).await,
        Err(e) => render_users(&me, None, Some(refused(e)?)).await,
    }
}

#[post("/admin/users/{id}/disable")]
#[tracing::instrument(skip_all, fields(user = %path))]
pub async fn disable(me: Caller<Admin>, path: web::Path<i64>, _: CsrfForm<CsrfOnly>) -> Reply {
    back_to_users(&me, set_disabled(&me, *path, true).await).await
}

#[post("/admin/users/{id}/enable")]
#[tracing::instrument(skip_all, fields(user = %path))]
pub async fn enable(me: Caller<Admin>, path: web::Path<i64>, _: CsrfForm<CsrfOnly>) -> Reply {
    back_to_users(&me, set_disabled(&me, *path, false).await).await
}

#[post("/admin/users/{id}/role")]
#[tracing::instrument(skip_all, fields(user = %path))]
pub async fn change_role(me: Caller<Admin>, path: web::Path<i64>, form: CsrfForm<RoleChange>) -> Reply {
    back_to_users(&me, set_role(&me, *path, &form.role).await).await
}

#[post("/admin/users/{id}/password")]
#[tracing::instrument(skip_all, fields(user = %path))]
pub async fn reset_password(me: Caller<Admin>, path: web::Path<i64>, _: CsrfForm<CsrfOnly>) -> Reply {
    let made = new_password(&me, *path).await?;
    render_users(&me, Some(made), None).await
}

#[get("/admin/audit")]
pub async fn audit_page(me: Caller<Admin>, query: crate::query::Query<AuditQuery>) -> Reply {
    let (action, limit, offset) = query.parse()?;
    let entries = audit::list(&me.pool, action, limit, offset).await?;
    let link =
        |offset: i64| format!("/admin/audit?action={}&limit={limit}&offset={offset}", query.action.trim());
    let newer = (offset > 0).then(|| link((offset - limit).max(0)));
    let older = (entries.len() as i64 == limit).then(|| link(offset + limit));
    page(&AuditPage {
        nav: me.nav()?,
        entries,
        action: query.action.trim().to_owned(),
        actions: Action::ALL.iter().map(|a| a.as_str()).collect(),
        newer,
        older,
    })
}

// The API.

#[get("/api/admin/users")]
pub async fn api_users(me: Caller<Admin>) -> Reply {
    Ok(HttpResponse::Ok().json(users::list_users(&me.pool).await?))
}

#[post("/api/admin/users")]
#[tracing::instrument(skip_all)]
pub async fn api_create(me: Caller<Admin>, body: CsrfJson<NewUser>) -> Reply {
    let made = create_user(&me, body.into_inner()).await?;
    Ok(shown_once(HttpResponse::Created().json(made)))
}

#[post("/api/admin/users/{id}/disable")]
#[tracing::instrument(skip_all, fields(user = %path))]
pub async fn api_disable(me: Caller<Admin>, path: web::Path<i64>, _: CsrfOnlyJson) -> Reply {
    Ok(HttpResponse::Ok().json(set_disabled(&me, *path, true).await?))
}

#[post("/api/admin/users/{id}/enable")]
#[tracing::instrument(skip_all, fields(user = %path))]
pub async fn api_enable(me: Caller<Admin>, path: web::Path<i64>, _: CsrfOnlyJson) -> Reply {
    Ok(HttpResponse::Ok().json(set_disabled(&me, *path, false).await?))
}

#[put("/api/admin/users/{id}/role")]
#[tracing::instrument(skip_all, fields(user = %path))]
pub async fn api_change_role(me: Caller<Admin>, path: web::Path<i64>, body: CsrfJson<RoleChange>) -> Reply {
    Ok(HttpResponse::Ok().json(set_role(&me, *path, &body.role).await?))
}

#[post("/api/admin/users/{id}/password")]
#[tracing::instrument(skip_all, fields(user = %path))]
pub async fn api_reset_password(me: Caller<Admin>, path: web::Path<i64>, _: CsrfOnlyJson) -> Reply {
    Ok(shown_once(HttpResponse::Ok().json(new_password(&me, *path).await?)))
}

#[get("/api/admin/audit")]
pub async fn api_audit(me: Caller<Admin>, query: crate::query::Query<AuditQuery>) -> Reply {
    let (action, limit, offset) = query.parse()?;
    let entries = audit::list(&me.pool, action, limit, offset).await?;
    Ok(HttpResponse::Ok().json(AuditList { entries, limit, offset }))
}

// The work, for the pages and the API alike.

impl AuditQuery {
    fn parse(&self) -> Result<(Option<Action>, i64, i64), AppError> {
        let action = match self.action.trim() {
            "" => None,
            name => Some(Action::parse(name)?),
        };
        Ok((action, list_limit(self.limit, 50, 500)?, list_offset(self.offset)?))
    }
}

/// Creates the user with a one-time password.
async fn create_user(me: &Caller<Admin>, new: NewUser) -> Result<OneTimePassword, AppError> {
    let username = Username::parse(new.username.trim())?;
    let display_name = match new.display_name.trim() {
        "" => DisplayName::parse(username.as_str())?,
        name => DisplayName::parse(name)?,
    };
    let role = Role::parse(&new.role)?;
    let password = users::one_time_password();
    let user = users::create_user(&me.pool, &username, &display_name, role, &password).await?;
    let details = json!({ "role": role, "display_name": user.display_name });
    record(me, Action::UserCreate, &user, details).await?;
    Ok(OneTimePassword { user, password: password.expose_secret().to_owned() })
}

/// Disables or re-enables the user; an admin cannot disable themselves.
async fn set_disabled(me: &Caller<Admin>, user_id: i64, disabled: bool) -> Result<User, AppError> {
    if disabled && user_id == me.user_id() {
        let reason = "you cannot disable yourself: another admin can".to_owned();
        return Err(AppError::Invalid { field: "disabled".into(), reason });
    }
    let user = users::get_user(&me.pool, user_id).await?;
    users::set_disabled(&me.pool, user_id, disabled).await?;
    let action = if disabled { Action::UserDisable } else { Action::UserEnable };
    record(me, action, &user, json!({})).await?;
    Ok(User { disabled, ..user })
}

/// Gives the user the role named `role`; an admin cannot take away their own.
async fn set_role(me: &Caller<Admin>, user_id: i64, role: &str) -> Result<User, AppError> {
    let role = Role::parse(role)?;
    if user_id == me.user_id() && role != Role::Admin {
        let reason = "you cannot take away your own admin role: another admin can".to_owned();
        return Err(AppError::Invalid { field: "role".into(), reason });
    }
    let user = users::get_user(&me.pool, user_id).await?;
    users::set_role(&me.pool, user_id, role).await?;
    let details = json!({ "from": user.role, "to": role });
    record(me, Action::UserRole, &user, details).await?;
    Ok(User { role, ..user })
}

/// Replaces the user's password with a one-time password and ends their login sessions
/// (a reset is what an admin does when an account may be in other hands).
async fn new_password(me: &Caller<Admin>, user_id: i64) -> Result<OneTimePassword, AppError> {
    let user = users::get_user(&me.pool, user_id).await?;
    let password = users::one_time_password();
    users::set_password(&me.pool, user_id, &password).await?;
    sessions::end_all(&me.pool, user_id, None).await?;
    record(me, Action::UserPasswordReset, &user, json!({})).await?;
    Ok(OneTimePassword { user, password: password.expose_secret().to_owned() })
}

/// Writes `action` on `user` to the audit log, as the admin's.
async fn record(me: &Caller<Admin>, action: Action, user: &User, details: Value) -> Result<(), AppError> {
    let subject = audit::user_subject(&user.username);
    Ok(audit::record(me.pool.get_ref(), Some(me.user_id()), action, &subject, details).await?)
}

/// A form's refusal that the users page draws again above the table (bad input, a taken
/// username); any other error passes up as `Err`.
fn refused(e: AppError) -> Result<AppError, AppError> {
    match e {
        e @ (AppError::Invalid { .. } | AppError::Conflict(_)) => Ok(e),
        e => Err(e),
    }
}

/// After a change from the users page: back to it, or the page again with the refusal.
async fn back_to_users(me: &Caller<Admin>, changed: Result<User, AppError>) -> Reply {
    match changed {
        Ok(_) => Ok(see_other("/admin/users")),
        Err(e) => render_users(me, None, Some(refused(e)?)).await,
    }
}

/// The users page; `made`, a password just made (shown this once); `error`, a refusal.
async fn render_users(me: &Caller<Admin>, made: Option<OneTimePassword>, error: Option<AppError>) -> Reply {
    let users = users::list_users(&me.pool).await?;
    let shown = UsersPage {
        nav: me.nav()?,
        users,
        me: me.user_id(),
        roles: Role::ALL,
        made,
        error: error.as_ref().map(ToString::to_string),
    };
    Ok(shown_once(page_showing(&shown, error.as_ref())?))
}

/// An answer that may carry a one-time password: never cached.
fn shown_once(mut response: HttpResponse) -> HttpResponse {
    response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}
