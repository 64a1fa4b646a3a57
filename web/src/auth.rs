//! Who is asking: a session cookie (people in a browser) or an `Authorization: Bearer`
//! API token (scripts, the simulated annotator). Also the role checks, CSRF tokens and
//! the login rate limit.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use actix_session::{Session, SessionExt};
use actix_web::{web, FromRequest, HttpRequest};
use labeling::domain::Role;
use labeling::users::{self, User};
use rand::RngCore;
use sqlx::PgPool;

use crate::error::AppError;

const USER_ID: &str = "user_id";
const CSRF: &str = "csrf";

/// The person or script making the request. Extracting it fails with
/// `Unauthenticated` when there is neither a valid session nor a valid token; a
/// disabled user's session stops working at their next request.
pub struct CurrentUser {
    pub user: User,
    /// Requests with an API token carry no cookies, so they need no CSRF token.
    pub by_token: bool,
}

impl CurrentUser {
    /// Researchers' routes admit researchers and admins.
    pub fn require_researcher(&self) -> Result<(), AppError> {
        match self.user.role {
            Role::Researcher | Role::Admin => Ok(()),
            Role::Annotator => Err(AppError::Forbidden("this page is for researchers".into())),
        }
    }

    pub fn require_admin(&self) -> Result<(), AppError> {
        match self.user.role {
            Role::Admin => Ok(()),
            _ => Err(AppError::Forbidden("this page is for admins".into())),
        }
    }
}

impl FromRequest for CurrentUser {
    type Error = AppError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, AppError>>>>;

    fn from_request(req: &HttpRequest, _: &mut actix_web::dev::Payload) -> Self::Future {
        let req = req.clone();
        Box::pin(async move {
            let pool = req.app_data::<web::Data<PgPool>>().expect("the pool is app data").clone();
            let next = req.uri().path_and_query().map(|p| p.as_str().to_string()).unwrap_or_default();
            if let Some(token) = bearer_token(&req) {
                return match users::user_for_token(&pool, &token).await {
                    Ok(user) => Ok(CurrentUser { user, by_token: true }),
                    Err(labeling::error::LabelingError::InvalidCredentials) => {
                        Err(AppError::Unauthenticated { next })
                    }
                    Err(e) => Err(e.into()),
                };
            }
            let session = req.get_session();
            let Some(user_id) =
                session.get::<i64>(USER_ID).map_err(|_| AppError::Unauthenticated { next: next.clone() })?
            else {
                return Err(AppError::Unauthenticated { next });
            };
            match users::get_user(&pool, user_id).await {
                Ok(user) if !user.disabled => Ok(CurrentUser { user, by_token: false }),
                Ok(_) | Err(labeling::error::LabelingError::NotFound { .. }) => {
                    session.purge();
                    Err(AppError::Unauthenticated { next })
                }
                Err(e) => Err(e.into()),
            }
        })
    }
}

fn bearer_token(req: &HttpRequest) -> Option<String> {
    let value = req.headers().get(actix_web::http::header::AUTHORIZATION)?.to_str().ok()?;
    let token = value.strip_prefix("Bearer ")?.trim();
    (!token.is_empty()).then(|| token.to_string())
}

/// Starts a session for `user`: a new session id (no fixation) and a new CSRF token.
pub fn log_in(session: &Session, user: &User) -> Result<(), AppError> {
    session.renew();
    session.insert(USER_ID, user.id).map_err(AppError::internal)?;
    session.insert(CSRF, new_token()).map_err(AppError::internal)?;
    Ok(())
}

pub fn log_out(session: &Session) {
    session.purge();
}

/// The session's CSRF token, made on first use (also for the login form itself).
pub fn csrf_token(session: &Session) -> Result<String, AppError> {
    if let Some(token) = session.get::<String>(CSRF).map_err(AppError::internal)? {
        return Ok(token);
    }
    let token = new_token();
    session.insert(CSRF, &token).map_err(AppError::internal)?;
    Ok(token)
}

/// Every form post carries the session's CSRF token; a mismatch is refused. Requests
/// with an API token are exempt: they carry no cookie a third site could ride on.
pub fn check_csrf(session: &Session, submitted: &str, by_token: bool) -> Result<(), AppError> {
    if by_token {
        return Ok(());
    }
    let expected = session.get::<String>(CSRF).map_err(AppError::internal)?;
    match expected {
        Some(expected) if constant_time_eq(expected.as_bytes(), submitted.as_bytes()) => Ok(()),
        _ => Err(AppError::Forbidden(
            "the form's CSRF token is missing or stale: reload the page and try again".into(),
        )),
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn new_token() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    hex::encode(bytes)
}

/// Failed logins per (username, client address): after `attempts` failures within
/// `window`, further tries are refused until the oldest failure leaves the window.
pub struct LoginLimiter {
    attempts: u32,
    window: Duration,
    failures: Mutex<HashMap<(String, String), Vec<Instant>>>,
}

impl LoginLimiter {
    pub fn new(attempts: u32, window: Duration) -> Self {
        LoginLimiter { attempts, window, failures: Mutex::new(HashMap::new()) }
    }

    /// `Err(TooManyRequests)` when this key has used up its attempts.
    pub fn check(&self, username: &str, client: &str, now: Instant) -> Result<(), AppError> {
        let mut failures = self.failures.lock().expect("limiter lock");
        let key = (username.to_string(), client.to_string());
        let Some(times) = failures.get_mut(&key) else { return Ok(()) };
        times.retain(|t| now.duration_since(*t) < self.window);
        if times.len() as u32 >= self.attempts {
            let retry = self.window.saturating_sub(now.duration_since(times[0]));
            return Err(AppError::TooManyRequests { retry_after_s: retry.as_secs().max(1) });
        }
        Ok(())
    }

    pub fn record_failure(&self, username: &str, client: &str, now: Instant) {
        let mut failures = self.failures.lock().expect("limiter lock");
        // Bound the memory an attacker can make us use: forget the oldest keys.
        if failures.len() > 100_000 {
            failures.clear();
        }
        failures.entry((username.to_string(), client.to_string())).or_default().push(now);
    }

    pub fn record_success(&self, username: &str, client: &str) {
        self.failures.lock().expect("limiter lock").remove(&(username.to_string(), client.to_string()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_login_is_refused_after_too_many_failures_and_allowed_again_later() {
        let limiter = LoginLimiter::new(3, Duration::from_secs(60));
        let t0 = Instant::now();
        for _ in 0..3 {
            limiter.check("ann", "1.2.3.4", t0).unwrap();
            limiter.record_failure("ann", "1.2.3.4", t0);
        }
        assert!(matches!(limiter.check("ann", "1.2.3.4", t0), Err(AppError::TooManyRequests { .. })));
        // Another address, or another user, is not affected.
        limiter.check("ann", "5.6.7.8", t0).unwrap();
        limiter.check("bob", "1.2.3.4", t0).unwrap();
        limiter.check("ann", "1.2.3.4", t0 + Duration::from_secs(61)).unwrap();
    }

    #[test]
    fn tokens_compare_whole() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
    }
}
