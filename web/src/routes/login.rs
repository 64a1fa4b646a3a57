//! Logging in and out.

use actix_session::Session;
use actix_web::{get, post, web, HttpRequest, HttpResponse};
use askama::Template;
use labeling::domain::Password;
use labeling::error::LabelingError;
use serde::Deserialize;
use sqlx::PgPool;

use super::{page, see_other};
use labeling::throttle::{self, Verdict};

use crate::auth::{self, csrf_field, CsrfForm, CsrfOnly, LoginThrottle, DEVICE_COOKIE};
use crate::error::AppError;

#[derive(Template)]
#[template(path = "login.html")]
struct LoginPage {
    csrf: String,
    next: String,
    username: String,
    error: Option<String>,
}

#[derive(Deserialize)]
pub struct LoginQuery {
    next: Option<String>,
}

#[get("/login")]
pub async fn login_form(
    session: Session,
    query: crate::query::Query<LoginQuery>,
) -> Result<HttpResponse, AppError> {
    let next = safe_next(query.next.as_deref());
    page(&LoginPage { csrf: auth::csrf_token(&session)?, next, username: String::new(), error: None })
}

#[derive(Deserialize)]
pub struct LoginForm {
    username: String,
    password: String,
    csrf: String,
    next: Option<String>,
}
csrf_field!(LoginForm);

/// Logs in, unless the throttle says to wait (429 with Retry-After): per account (not
/// for a browser that logged in as it before) and per client address.
#[tracing::instrument(skip(pool, session, limits, form), fields(username = %form.username))]
#[post("/login")]
pub async fn login(
    req: HttpRequest,
    pool: web::Data<PgPool>,
    session: Session,
    limits: web::Data<LoginThrottle>,
    form: CsrfForm<LoginForm>,
) -> Result<HttpResponse, AppError> {
    let client = limits.client_address(&req);
    let username = form.username.trim().to_lowercase();
    let device = req.cookie(DEVICE_COOKIE).map(|c| c.value().to_owned());
    let known_device = match &device {
        Some(secret) => throttle::is_known_device(&pool, secret, &username).await?,
        None => false,
    };
    if let Verdict::Wait { seconds } = throttle::check(&pool, &username, &client, known_device).await? {
        return Err(AppError::TooManyRequests { retry_after_s: seconds });
    }
    let next = safe_next(form.next.as_deref());
    let user = match Password::parse(form.password.clone()) {
        Ok(password) => labeling::users::authenticate(&pool, &username, &password).await,
        Err(_) => Err(LabelingError::InvalidCredentials),
    };
    match user {
        Ok(user) => {
            throttle::record_success(&pool, &username).await?;
            auth::log_in(&req, &session, &user).await?;
            tracing::info!(user_id = user.id, "logged in");
            let mut response = see_other(&next);
            if !known_device {
                let secret = throttle::remember_device(&pool, user.id).await?;
                response.add_cookie(&limits.device_cookie(secret)).map_err(AppError::internal)?;
            }
            Ok(response)
        }
        Err(LabelingError::InvalidCredentials) => {
            throttle::record_failure(&pool, &username, &client, limits.rules).await?;
            let page = LoginPage {
                csrf: auth::csrf_token(&session)?,
                next,
                username,
                error: Some("Wrong username or password (or the account is disabled).".into()),
            };
            Ok(HttpResponse::Unauthorized().content_type("text/html; charset=utf-8").body(page.render()?))
        }
        Err(e) => Err(e.into()),
    }
}

#[post("/logout")]
pub async fn logout(
    req: HttpRequest,
    session: Session,
    _: CsrfForm<CsrfOnly>,
) -> Result<HttpResponse, AppError> {
    auth::log_out(&req, &session).await?;
    Ok(see_other("/login"))
}

/// Only a local path may follow a login: never another site (an open redirect). Browsers
/// drop tabs and newlines from a URL (so `/\t/evil.example` is `//evil.example`), and a
/// control character cannot go in a `Location` header at all, so neither is accepted.
fn safe_next(next: Option<&str>) -> String {
    let local = |n: &str| {
        n.starts_with('/')
            && !n.starts_with("//")
            && !n.contains('\\')
            && !n.chars().any(|c| c.is_ascii_control())
    };
    match next {
        Some(n) if local(n) => n.to_string(),
        _ => "/".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::safe_next;

    #[test]
    fn a_login_never_redirects_to_another_site() {
        assert_eq!(safe_next(Some("/projects?x=1")), "/projects?x=1");
        assert_eq!(safe_next(Some("//evil.example")), "/");
        assert_eq!(safe_next(Some("https://evil.example")), "/");
        assert_eq!(safe_next(Some("/\\evil.example")), "/");
        assert_eq!(safe_next(None), "/");
    }

    #[test]
    fn a_next_with_a_control_character_falls_back_to_the_home_page() {
        for next in ["/\t/evil.example", "/\n/evil.example", "/a\rb", "/a\u{b}b", "/a\u{7f}", "/\u{0}x"] {
            assert_eq!(safe_next(Some(next)), "/", "{next:?}");
        }
    }
}
