//! Who is asking: a login session (people in a browser; its secret in the cookie, the
//! session in Postgres: `labeling::sessions`) or an `Authorization: Bearer`
//! API token (scripts, the simulated annotator). A handler says whom it admits and what
//! it checks in its signature: a user extractor ([`Researcher`], [`Admin`],
//! [`Annotator`], or [`CurrentUser`] for anyone logged in) and, for a post, a [`Csrf`]
//! body. Also the session's CSRF token and the login rate limit.

use std::future::Future;
#[cfg(test)]
use std::time::Duration;

use actix_session::{Session, SessionExt};
use actix_web::dev::Payload;
use actix_web::{web, FromRequest, HttpMessage, HttpRequest};
use futures_util::future::{ready, FutureExt, LocalBoxFuture, Ready, TryFutureExt};
use labeling::domain::Role;
use labeling::sessions::{self, SessionLimits};
use labeling::throttle::ThrottleRules;
use labeling::users::{self, User};
use rand::RngCore;
use serde::de::DeserializeOwned;
use serde::Deserialize;
use sqlx::PgPool;

use crate::error::AppError;
use crate::json_body::JsonBody;

/// The cookie's key for the login session's secret (see `labeling::sessions`).
const LOGIN: &str = "login";
const CSRF: &str = "csrf";

/// The person or script making the request. Extracting it fails with
/// `Unauthenticated` when there is neither a valid session nor a valid token; a
/// disabled user's session stops working at their next request. Pages for one role
/// take [`Researcher`], [`Admin`] or [`Annotator`] instead.
pub struct CurrentUser {
    pub user: User,
}

impl AsRef<CurrentUser> for CurrentUser {
    fn as_ref(&self) -> &CurrentUser {
        self
    }
}

impl FromRequest for CurrentUser {
    type Error = AppError;
    type Future = LocalBoxFuture<'static, Result<Self, AppError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        admit(req, Admits::Anyone).boxed_local()
    }
}

/// Which people a handler admits. Its user extractor records this on the request, so
/// that a [`Csrf`] body of the same request refuses in the order the handlers always
/// have: "log in" first, then "not for your role", then "stale form".
#[derive(Clone, Copy, Debug, PartialEq)]
enum Admits {
    Anyone,
    Researchers,
    Admins,
}

impl Admits {
    fn check(self, me: &CurrentUser) -> Result<(), AppError> {
        match (self, me.user.role) {
            (Admits::Anyone, _)
            | (Admits::Researchers, Role::Researcher | Role::Admin)
            | (Admits::Admins, Role::Admin) => Ok(()),
            (Admits::Researchers, _) => Err(AppError::Forbidden("this page is for researchers".into())),
            (Admits::Admins, _) => Err(AppError::Forbidden("this page is for admins".into())),
        }
    }
}

/// Records what the handler admits (now, while the request's extractors are being
/// built), then authenticates the request and checks the role.
fn admit(req: &HttpRequest, admits: Admits) -> impl Future<Output = Result<CurrentUser, AppError>> + 'static {
    req.extensions_mut().insert(admits);
    let req = req.clone();
    async move {
        let me = authenticate(&req).await?;
        admits.check(&me)?;
        Ok(me)
    }
}

/// A user of a role-specific page: extracting it refuses other roles with 403.
macro_rules! role_extractor {
    ($name:ident, $admits:expr) => {
        impl std::ops::Deref for $name {
            type Target = CurrentUser;

            fn deref(&self) -> &CurrentUser {
                &self.0
            }
        }

        impl AsRef<CurrentUser> for $name {
            fn as_ref(&self) -> &CurrentUser {
                &self.0
            }
        }

        impl FromRequest for $name {
            type Error = AppError;
            type Future = LocalBoxFuture<'static, Result<Self, AppError>>;

            fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
                admit(req, $admits).map_ok($name).boxed_local()
            }
        }
    };
}

/// A researcher or an admin: researchers' pages and API.
pub struct Researcher(CurrentUser);
role_extractor!(Researcher, Admits::Researchers);

/// An admin.
pub struct Admin(CurrentUser);
role_extractor!(Admin, Admits::Admins);

/// Anyone logged in: every role may annotate (annotators in the projects they are
/// members of, researchers and admins anywhere; the annotation pages check the project).
pub struct Annotator(CurrentUser);
role_extractor!(Annotator, Admits::Anyone);

/// The site's header for whoever made `req`, if they are logged in: for a page drawn
/// outside any handler (an error page).
pub(crate) async fn nav_of(req: &HttpRequest) -> Option<crate::routes::Nav> {
    let me = authenticate(req).await.ok()?;
    Some(crate::routes::Nav::new(&me, &req.get_session()).ok()?.at(req.path()))
}

/// The user behind the request's API token or login session.
async fn authenticate(req: &HttpRequest) -> Result<CurrentUser, AppError> {
    let pool = || req.app_data::<web::Data<PgPool>>().expect("the pool is app data");
    let next = req.uri().path_and_query().map(|p| p.as_str().to_string()).unwrap_or_default();
    if let Some(token) = bearer_token(req) {
        // The user comes with the role the token acts with (its scope caps it), so every
        // role check below applies the scope: an `annotate` token is an annotator here.
        return match users::user_for_token(pool(), &token).await {
            Ok(user) => Ok(CurrentUser { user }),
            Err(labeling::error::LabelingError::InvalidCredentials) => {
                Err(AppError::Unauthenticated { next })
            }
            Err(e) => Err(e.into()),
        };
    }
    let session = req.get_session();
    let Some(secret) =
        session.get::<String>(LOGIN).map_err(|_| AppError::Unauthenticated { next: next.clone() })?
    else {
        return Err(AppError::Unauthenticated { next });
    };
    match sessions::user_for_session(pool(), &secret, session_limits(req)).await {
        Ok((user, id)) => {
            req.extensions_mut().insert(LoginSessionId(id));
            Ok(CurrentUser { user })
        }
        // Logged out elsewhere, expired, or the user disabled: the cookie is spent.
        Err(labeling::error::LabelingError::InvalidCredentials) => {
            session.purge();
            Err(AppError::Unauthenticated { next })
        }
        Err(e) => Err(e.into()),
    }
}

/// How long login sessions last (app data from the settings).
fn session_limits(req: &HttpRequest) -> SessionLimits {
    *req.app_data::<web::Data<SessionLimits>>().expect("the session limits are app data").get_ref()
}

/// The id of the login session the request comes from, as authenticating it found it
/// (none for a token, or before a user extractor ran).
pub fn login_session_id(req: &HttpRequest) -> Option<i64> {
    req.extensions().get::<LoginSessionId>().map(|s| s.0)
}

/// What [`authenticate`] records on a request that came from a login session.
#[derive(Clone, Copy)]
struct LoginSessionId(i64);

/// A request from a logged-in browser session, never with an API token: what makes a
/// token or changes a password (a leaked token must not mint its own successors or take
/// the account). A token request is refused with 403, after the user extractor's own
/// answer.
pub struct SessionOnly;

impl FromRequest for SessionOnly {
    type Error = AppError;
    type Future = LocalBoxFuture<'static, Result<Self, AppError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let req = req.clone();
        async move {
            if bearer_token(&req).is_none() {
                return Ok(SessionOnly);
            }
            refuse_as_the_user_extractor_would(&req).await?;
            Err(AppError::Forbidden("this is done from a logged-in session, not with an API token".into()))
        }
        .boxed_local()
    }
}

fn bearer_token(req: &HttpRequest) -> Option<String> {
    let value = req.headers().get(actix_web::http::header::AUTHORIZATION)?.to_str().ok()?;
    let token = value.strip_prefix("Bearer ")?.trim();
    (!token.is_empty()).then(|| token.to_string())
}

/// Starts a login session for `user`, recorded in Postgres with the browser and address
/// it came from; the cookie gets its secret, a new id (no fixation) and a new CSRF token.
pub async fn log_in(req: &HttpRequest, session: &Session, user: &User) -> Result<(), AppError> {
    let pool = req.app_data::<web::Data<PgPool>>().expect("the pool is app data");
    let agent = req.headers().get(actix_web::http::header::USER_AGENT).and_then(|v| v.to_str().ok());
    let address = req.peer_addr().map(|a| a.ip().to_string()).unwrap_or_default();
    let (_, secret) =
        sessions::start(pool, user.id, session_limits(req), agent.unwrap_or_default(), &address).await?;
    session.renew();
    session.insert(LOGIN, secret).map_err(AppError::internal)?;
    session.insert(CSRF, new_token()).map_err(AppError::internal)?;
    Ok(())
}

/// Ends the request's login session, in Postgres (so that a copy of the cookie is spent
/// too) and in the browser.
pub async fn log_out(req: &HttpRequest, session: &Session) -> Result<(), AppError> {
    if let Ok(Some(secret)) = session.get::<String>(LOGIN) {
        let pool = req.app_data::<web::Data<PgPool>>().expect("the pool is app data");
        sessions::end(pool, &secret).await?;
    }
    session.purge();
    Ok(())
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

/// A form or JSON body (or header) whose CSRF token matched the session's: every post
/// from a browser carries one, and a mismatch is refused with 403 before the handler
/// runs. Requests with an API token are exempt (they carry no cookie a third site could
/// ride on), but only where the handler authenticates them; logging in and out checks
/// every request. Derefs to what the body holds.
pub struct Csrf<B: CsrfBody>(B::Inner);

/// A form with its CSRF token checked.
pub type CsrfForm<T> = Csrf<web::Form<T>>;
/// A JSON body with its CSRF token checked.
pub type CsrfJson<T> = Csrf<JsonBody<T>>;

/// A form or body type with a `csrf` field (see [`csrf_field`]).
pub trait HasCsrf {
    fn csrf(&self) -> &str;
}

/// Implements [`HasCsrf`] for types with a `csrf: String` field.
macro_rules! csrf_field {
    ($($t:ty),+ $(,)?) => {
        $(impl $crate::auth::HasCsrf for $t {
            fn csrf(&self) -> &str {
                &self.csrf
            }
        })+
    };
}
pub(crate) use csrf_field;

/// The body of a post that carries nothing but (from a browser) the CSRF token.
#[derive(Deserialize, Default)]
pub struct CsrfOnly {
    #[serde(default)]
    pub csrf: String,
}
csrf_field!(CsrfOnly);

/// A form posted as its name/value pairs: the token is the `csrf` pair's value.
impl HasCsrf for Vec<(String, String)> {
    fn csrf(&self) -> &str {
        self.iter().find(|(name, _)| name == "csrf").map_or("", |(_, value)| value.as_str())
    }
}

/// An extractor that carries a CSRF token: what [`Csrf`] can wrap.
pub trait CsrfBody: FromRequest + 'static {
    type Inner;
    /// The token the request carries: empty when it carries none.
    fn csrf(&self) -> &str;
    fn into_inner(self) -> Self::Inner;
}

/// A form or JSON body whose type carries its CSRF token in a field.
macro_rules! csrf_in_field {
    ($($($body:ident)::+),+) => {$(
        impl<T: HasCsrf + DeserializeOwned + 'static> CsrfBody for $($body)::+<T> {
            type Inner = T;

            fn csrf(&self) -> &str {
                self.0.csrf()
            }

            fn into_inner(self) -> T {
                self.0
            }
        }
    )+};
}
csrf_in_field!(web::Form, JsonBody);

/// The body of an API post that sends nothing else: none from a token caller, a JSON
/// `{"csrf": ...}` from a browser session.
pub type CsrfOnlyJson = Csrf<CsrfOnlyBody>;

/// What an API post that sends nothing else may send: no body (or blanks), or a JSON
/// object with at most `csrf`. Anything else (another field, another JSON value, text
/// that is not JSON, a body over the size limit) is a 400 saying what is wrong, so that
/// nothing the caller meant is silently ignored.
pub struct CsrfOnlyBody(String);

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StrictCsrfOnly {
    #[serde(default)]
    csrf: String,
}

impl FromRequest for CsrfOnlyBody {
    type Error = AppError;
    type Future = LocalBoxFuture<'static, Result<Self, AppError>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let bytes = web::Bytes::from_request(req, payload);
        async move {
            let bytes =
                bytes.await.map_err(|e| AppError::BadRequest(format!("the body could not be read: {e}")))?;
            if bytes.iter().all(u8::is_ascii_whitespace) {
                return Ok(CsrfOnlyBody(String::new()));
            }
            let body: StrictCsrfOnly = serde_json::from_slice(&bytes).map_err(|e| {
                AppError::BadRequest(format!("the body may be empty or {{\"csrf\": …}}, no more: {e}"))
            })?;
            Ok(CsrfOnlyBody(body.csrf))
        }
        .boxed_local()
    }
}

impl CsrfBody for CsrfOnlyBody {
    type Inner = ();

    fn csrf(&self) -> &str {
        &self.0
    }

    fn into_inner(self) {}
}

/// The CSRF token of a request without a body to carry it (an API `DELETE` from a
/// browser session): the `X-CSRF-Token` header, empty when absent.
pub struct CsrfHeader(String);

impl FromRequest for CsrfHeader {
    type Error = AppError;
    type Future = Ready<Result<Self, AppError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let token = req.headers().get("x-csrf-token").and_then(|v| v.to_str().ok()).unwrap_or_default();
        ready(Ok(CsrfHeader(token.to_string())))
    }
}

impl CsrfBody for CsrfHeader {
    type Inner = ();

    fn csrf(&self) -> &str {
        &self.0
    }

    fn into_inner(self) {}
}

impl<B: CsrfBody> FromRequest for Csrf<B> {
    type Error = actix_web::Error;
    type Future = LocalBoxFuture<'static, Result<Self, actix_web::Error>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let body = B::from_request(req, payload);
        let req = req.clone();
        async move {
            let body = match body.await {
                Ok(body) => body,
                Err(e) => {
                    refuse_as_the_user_extractor_would(&req).await?;
                    return Err(e.into());
                }
            };
            check_csrf(&req, body.csrf()).await?;
            Ok(Csrf(body.into_inner()))
        }
        .boxed_local()
    }
}

impl<B: CsrfBody> std::ops::Deref for Csrf<B> {
    type Target = B::Inner;

    fn deref(&self) -> &B::Inner {
        &self.0
    }
}

impl<B: CsrfBody> Csrf<B> {
    pub fn into_inner(self) -> B::Inner {
        self.0
    }
}

async fn check_csrf(req: &HttpRequest, submitted: &str) -> Result<(), AppError> {
    // No token has a control character: such a value is refused even where a token
    // caller's `csrf` would not be looked at.
    if submitted.chars().any(char::is_control) {
        return Err(AppError::Invalid { field: "csrf".into(), reason: "is not a CSRF token".into() });
    }
    let authenticates = req.extensions().get::<Admits>().is_some();
    if authenticates && bearer_token(req).is_some() {
        // The user extractor refuses the request if the token is not valid.
        return Ok(());
    }
    let expected = req.get_session().get::<String>(CSRF).map_err(AppError::internal)?;
    if expected.is_some_and(|expected| constant_time_eq(expected.as_bytes(), submitted.as_bytes())) {
        return Ok(());
    }
    refuse_as_the_user_extractor_would(req).await?;
    Err(AppError::Forbidden(
        "the form's CSRF token is missing or stale: reload the page and try again".into(),
    ))
}

/// The handler's user extractor runs beside its [`Csrf`] body, and either may finish
/// first. A request that is logged out or of the wrong role hears that before anything
/// about its body: this gives the extractor's answer, so both answer alike.
async fn refuse_as_the_user_extractor_would(req: &HttpRequest) -> Result<(), AppError> {
    let Some(admits) = req.extensions().get::<Admits>().copied() else { return Ok(()) };
    admits.check(&authenticate(req).await?)
}

pub(crate) fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn new_token() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    hex::encode(bytes)
}

/// The login throttle's rules and where a request comes from: the peer's address, or,
/// when the peer is a trusted proxy, the first address in `X-Forwarded-For` (from the
/// right) that is not a trusted proxy. A client cannot pick its own address by sending
/// the header: it is read only from proxies named in the settings.
pub struct LoginThrottle {
    pub rules: ThrottleRules,
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// Whether the remembered-browser cookie goes only over HTTPS.
    pub secure_cookies: bool,
}

/// The cookie that marks a browser as one that logged in before (see
/// `labeling::throttle`), sent only to the login form's handler.
pub const DEVICE_COOKIE: &str = "plumb_device";

impl LoginThrottle {
    pub fn client_address(&self, req: &HttpRequest) -> String {
        let Some(peer) = req.peer_addr().map(|a| a.ip()) else { return String::new() };
        let trusted = |ip: &std::net::IpAddr| self.trusted_proxies.iter().any(|net| net.contains(ip));
        if !trusted(&peer) {
            return peer.to_string();
        }
        let forwarded = req.headers().get_all("x-forwarded-for").filter_map(|v| v.to_str().ok());
        let hops: Vec<std::net::IpAddr> =
            forwarded.flat_map(|v| v.split(',')).filter_map(|h| h.trim().parse().ok()).collect();
        hops.iter().rev().find(|ip| !trusted(ip)).unwrap_or(&peer).to_string()
    }

    /// The long-lived cookie that remembers this browser for `username`'s account.
    pub fn device_cookie(&self, secret: String) -> actix_web::cookie::Cookie<'static> {
        actix_web::cookie::Cookie::build(DEVICE_COOKIE, secret)
            .path("/login")
            .http_only(true)
            .secure(self.secure_cookies)
            .same_site(actix_web::cookie::SameSite::Strict)
            .max_age(actix_web::cookie::time::Duration::days(365))
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn throttle(proxies: &[&str]) -> LoginThrottle {
        let rules = ThrottleRules {
            free: 5,
            max_wait: Duration::from_secs(900),
            per_address: 50,
            window: Duration::from_secs(300),
        };
        let trusted_proxies = proxies.iter().map(|p| p.parse().unwrap()).collect();
        LoginThrottle { rules, trusted_proxies, secure_cookies: false }
    }

    fn from(peer: &str, forwarded: Option<&str>) -> HttpRequest {
        let mut request =
            actix_web::test::TestRequest::post().peer_addr(format!("{peer}:4000").parse().unwrap());
        if let Some(f) = forwarded {
            request = request.insert_header(("X-Forwarded-For", f));
        }
        request.to_http_request()
    }

    #[test]
    fn the_client_address_is_read_from_x_forwarded_for_only_behind_a_trusted_proxy() {
        let direct = throttle(&[]);
        assert_eq!(direct.client_address(&from("203.0.113.7", Some("198.51.100.1"))), "203.0.113.7");
        let proxied = throttle(&["10.0.0.0/8"]);
        assert_eq!(proxied.client_address(&from("10.0.0.2", Some("198.51.100.1"))), "198.51.100.1");
        // A client's own forged entry sits left of what the proxy appended: not read.
        let forged = from("10.0.0.2", Some("1.2.3.4, 198.51.100.1, 10.0.0.9"));
        assert_eq!(proxied.client_address(&forged), "198.51.100.1");
        assert_eq!(proxied.client_address(&from("10.0.0.2", None)), "10.0.0.2");
        assert_eq!(proxied.client_address(&from("203.0.113.7", Some("1.2.3.4"))), "203.0.113.7");
    }

    #[test]
    fn tokens_compare_whole() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
    }

    fn user(role: Role) -> CurrentUser {
        let user = User {
            id: 1,
            username: "ann".into(),
            display_name: "Ann".into(),
            role,
            disabled: false,
            created_at: chrono::Utc::now(),
        };
        CurrentUser { user }
    }

    #[test]
    fn each_page_admits_its_roles_and_refuses_others_with_todays_messages() {
        for role in Role::ALL {
            Admits::Anyone.check(&user(role)).unwrap();
        }
        Admits::Researchers.check(&user(Role::Researcher)).unwrap();
        Admits::Researchers.check(&user(Role::Admin)).unwrap();
        Admits::Admins.check(&user(Role::Admin)).unwrap();
        let refused = |admits: Admits, role| match admits.check(&user(role)) {
            Err(AppError::Forbidden(message)) => message,
            other => panic!("{admits:?} admitted {role:?}: {:?}", other.map(|_| ())),
        };
        assert_eq!(refused(Admits::Researchers, Role::Annotator), "this page is for researchers");
        assert_eq!(refused(Admits::Admins, Role::Researcher), "this page is for admins");
        assert_eq!(refused(Admits::Admins, Role::Annotator), "this page is for admins");
    }

    /// A form post with `submitted` as its token, the session holding `in_session`;
    /// `admits` stands for the handler's user extractor (none: logging in or out).
    async fn post_form(
        in_session: Option<&str>,
        submitted: &str,
        bearer: bool,
        admits: Option<Admits>,
    ) -> Result<CsrfForm<CsrfOnly>, actix_web::Error> {
        let mut request = actix_web::test::TestRequest::post().set_form([("csrf", submitted)]);
        if bearer {
            request = request.insert_header((actix_web::http::header::AUTHORIZATION, "Bearer t0ken"));
        }
        let (req, mut payload) = request.to_http_parts();
        if let Some(token) = in_session {
            req.get_session().insert(CSRF, token).unwrap();
        }
        if let Some(admits) = admits {
            req.extensions_mut().insert(admits);
        }
        CsrfForm::<CsrfOnly>::from_request(&req, &mut payload).await
    }

    fn refusal(result: Result<CsrfForm<CsrfOnly>, actix_web::Error>) -> String {
        match result {
            Ok(_) => panic!("the post was accepted"),
            Err(e) => e.as_error::<AppError>().expect("an AppError").to_string(),
        }
    }

    const STALE: &str = "the form's CSRF token is missing or stale: reload the page and try again";

    #[actix_web::test]
    async fn a_form_with_the_sessions_token_passes() {
        let form = post_form(Some("abc"), "abc", false, None).await.unwrap();
        assert_eq!(form.csrf, "abc");
    }

    #[actix_web::test]
    async fn a_form_with_a_stale_or_missing_token_is_refused() {
        assert_eq!(refusal(post_form(Some("abc"), "abd", false, None).await), STALE);
        assert_eq!(refusal(post_form(Some("abc"), "", false, None).await), STALE);
        assert_eq!(refusal(post_form(None, "abc", false, None).await), STALE);
    }

    #[actix_web::test]
    async fn an_api_token_request_needs_no_csrf_token_where_the_handler_authenticates() {
        // The user extractor checks the token itself; this one only lets the request by.
        post_form(None, "", true, Some(Admits::Researchers)).await.unwrap();
    }

    #[actix_web::test]
    async fn logging_in_and_out_checks_the_csrf_token_even_with_an_api_token() {
        assert_eq!(refusal(post_form(Some("abc"), "", true, None).await), STALE);
    }

    #[actix_web::test]
    async fn a_logged_out_post_with_a_stale_token_is_told_to_log_in_first() {
        let refused = post_form(Some("abc"), "forged", false, Some(Admits::Researchers)).await;
        assert_eq!(refusal(refused), "log in first");
    }

    #[actix_web::test]
    async fn a_logged_out_post_with_an_unreadable_body_is_told_to_log_in_first() {
        let (req, mut payload) =
            actix_web::test::TestRequest::post().set_payload("csrf=%zz%").to_http_parts();
        req.extensions_mut().insert(Admits::Anyone);
        let refused = CsrfForm::<CsrfOnly>::from_request(&req, &mut payload).await;
        assert_eq!(refusal(refused), "log in first");
    }

    #[test]
    fn a_form_read_as_pairs_carries_the_token_of_its_csrf_pair() {
        let pairs = vec![("rank_0".to_string(), "1".to_string()), ("csrf".to_string(), "abc".to_string())];
        assert_eq!(HasCsrf::csrf(&pairs), "abc");
        assert_eq!(HasCsrf::csrf(&Vec::<(String, String)>::new()), "");
    }
}
