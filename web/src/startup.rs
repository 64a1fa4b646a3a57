//! Building the app: bind (port 0 picks a free port, so tests can run side by side),
//! wire the middleware and routes, run until SIGINT/SIGTERM (actix drains open
//! requests before it stops).

use std::net::TcpListener;
use std::path::PathBuf;
use std::time::Duration;

use actix_session::config::CookieContentSecurity;
use actix_session::storage::CookieSessionStore;
use actix_session::SessionMiddleware;
use actix_web::body::MessageBody;
use actix_web::cookie::{Key, SameSite};
use actix_web::dev::{Server, ServiceRequest, ServiceResponse};
use actix_web::http::header;
use actix_web::middleware::{from_fn, DefaultHeaders, Next};
use actix_web::{web, App, HttpServer};
use registry::artifacts::{ArtifactStore, StoreSettings};
use sqlx::PgPool;
use tracing_actix_web::{DefaultRootSpanBuilder, RootSpanBuilder, TracingLogger};

use crate::auth::{self, LoginThrottle};
use crate::error::AppError;
use crate::metrics::{self, Metrics};
use crate::routes;
use crate::settings::Settings;
use labeling::sessions::SessionLimits;
use labeling::throttle::ThrottleRules;

pub struct Application {
    port: u16,
    server: Server,
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot listen on {0}: {1}")]
    Bind(String, #[source] std::io::Error),
    #[error("the session key must be at least 128 hex digits (64 bytes)")]
    SessionKey,
    #[error("the artifact store: {0}")]
    Artifacts(#[from] registry::error::RegistryError),
    #[error("settings: {0}")]
    Settings(String),
}

impl Application {
    pub fn build(settings: &Settings, pool: PgPool) -> Result<Application, StartError> {
        let address = format!("{}:{}", settings.host, settings.port);
        let listener = TcpListener::bind(&address).map_err(|e| StartError::Bind(address.clone(), e))?;
        let port = listener.local_addr().map_err(|e| StartError::Bind(address.clone(), e))?.port();
        let key = match &settings.session_key {
            Some(hex_key) => {
                let bytes = hex::decode(hex_key.expose().trim()).map_err(|_| StartError::SessionKey)?;
                if bytes.len() < 64 {
                    return Err(StartError::SessionKey);
                }
                Key::from(&bytes)
            }
            None => Key::generate(),
        };
        let pool = web::Data::new(pool);
        let metrics = web::Data::new(Metrics::default());
        let metrics_access = web::Data::new(routes::health::MetricsAccess(settings.metrics.token.clone()));
        let location = settings.artifacts.clone().unwrap_or_else(|| PathBuf::from(".plumb/artifacts"));
        // A bucket's artifacts are served from a cache on this machine.
        let artifacts = web::Data::new(ArtifactStore::open(&StoreSettings {
            location: location.display().to_string(),
            cache: std::env::temp_dir().join("plumb-artifacts-cache"),
            s3: settings.s3.clone(),
        })?);
        let mut trusted_proxies = Vec::with_capacity(settings.trusted_proxies.len());
        for proxy in &settings.trusted_proxies {
            let net =
                proxy.parse::<ipnet::IpNet>().or_else(|_| proxy.parse::<std::net::IpAddr>().map(Into::into));
            trusted_proxies.push(net.map_err(|_| {
                StartError::Settings(format!("trusted_proxies: {proxy:?} is not an address or a CIDR block"))
            })?);
        }
        let limiter = web::Data::new(LoginThrottle {
            rules: ThrottleRules {
                free: settings.login_attempts,
                max_wait: Duration::from_secs(settings.login_max_wait_s),
                per_address: settings.login_attempts_per_address,
                window: Duration::from_secs(settings.login_window_s),
            },
            trusted_proxies,
            secure_cookies: settings.secure_cookies,
        });
        if settings.session_idle_s == 0 || settings.session_absolute_s == 0 {
            return Err(StartError::Settings("session_idle_s and session_absolute_s must be above 0".into()));
        }
        let session_limits = web::Data::new(SessionLimits {
            idle: Duration::from_secs(settings.session_idle_s),
            absolute: Duration::from_secs(settings.session_absolute_s),
        });
        let secure = settings.secure_cookies;
        let max_body = settings.max_body_bytes;
        let server = HttpServer::new(move || {
            let session = SessionMiddleware::builder(CookieSessionStore::default(), key.clone())
                .cookie_name("plumb_session".into())
                .cookie_content_security(CookieContentSecurity::Private)
                .cookie_http_only(true)
                .cookie_same_site(SameSite::Strict)
                .cookie_secure(secure)
                .build();
            App::new()
                // Inside the session's middleware, so that an error page can still read the session.
                .wrap(from_fn(error_bodies))
                .wrap(session)
                .wrap(from_fn(refuse_nul))
                .wrap(from_fn(metrics::count))
                .wrap(security_headers(secure))
                .wrap(TracingLogger::<RequestSpan>::new())
                .app_data(pool.clone())
                .app_data(metrics.clone())
                .app_data(metrics_access.clone())
                .app_data(limiter.clone())
                .app_data(session_limits.clone())
                .app_data(artifacts.clone())
                .app_data(web::FormConfig::default().limit(max_body).error_handler(|e, _| {
                    AppError::BadRequest(format!("the form could not be read: {e}")).into()
                }))
                .app_data(web::JsonConfig::default().limit(max_body).error_handler(|e, _| {
                    AppError::BadRequest(format!("the JSON body could not be read: {e}")).into()
                }))
                .app_data(web::PayloadConfig::default().limit(max_body))
                .app_data(web::PathConfig::default().error_handler(path_error))
                .service(routes::health::healthz)
                .service(routes::health::metrics)
                .service(routes::login::login_form)
                .service(routes::login::login)
                .service(routes::login::logout)
                .service(routes::home::home)
                .service(routes::projects::list)
                .service(routes::projects::create)
                .service(routes::projects::api_list)
                .service(routes::projects::api_create)
                .service(routes::prompts::list)
                .service(routes::prompts::upload)
                .service(routes::prompts::api_list)
                .service(routes::prompts::api_import)
                .service(routes::prompts::upload_file)
                .service(routes::prompts::request_demonstrations)
                .service(routes::prompts::api_request_demonstrations)
                .configure(routes::assets::configure)
                .configure(routes::annotate::configure)
                .configure(routes::project::configure)
                .configure(routes::data::configure)
                .service(routes::imports::upload)
                .service(routes::imports::api_import)
                .service(routes::imports::api_sources)
                .configure(routes::runs::configure)
                .configure(routes::compare::configure)
                .configure(routes::evals::configure)
                .configure(routes::models::configure)
                .configure(routes::tokens::configure)
                .configure(routes::account::configure)
                .configure(routes::admin::configure)
                .configure(routes::api_doc::configure)
                .default_service(web::to(not_found))
        })
        .listen(listener)
        .map_err(|e| StartError::Bind(address, e))?
        .shutdown_timeout(30)
        .run();
        Ok(Application { port, server })
    }

    /// The port the app listens on (the real one when the settings said 0).
    pub fn port(&self) -> u16 {
        self.port
    }

    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        self.server.await
    }
}

/// tracing-actix-web's request spans (with request ids), except that a logged-out
/// visitor sent to the login page is routine, not an error worth an ERROR line.
struct RequestSpan;

impl RootSpanBuilder for RequestSpan {
    fn on_request_start(request: &ServiceRequest) -> tracing::Span {
        DefaultRootSpanBuilder::on_request_start(request)
    }

    fn on_request_end<B: MessageBody>(
        span: tracing::Span,
        outcome: &Result<ServiceResponse<B>, actix_web::Error>,
    ) {
        if let Ok(response) = outcome {
            let error = response.response().error().and_then(|e| e.as_error::<AppError>());
            if let Some(AppError::Unauthenticated { .. }) = error {
                span.record("http.status_code", response.status().as_u16());
                tracing::info!(parent: &span, "not logged in: sent to the login page");
                return;
            }
        }
        DefaultRootSpanBuilder::on_request_end(span, outcome);
    }
}

/// No route took the request: a 405 naming the methods the API declares for its path
/// (an `Allow` header too), else a 404.
async fn not_found(req: actix_web::HttpRequest) -> Result<actix_web::HttpResponse, AppError> {
    let allowed =
        if req.path().starts_with("/api/") { routes::api_doc::methods_at(req.path()) } else { Vec::new() };
    if allowed.is_empty() {
        return Err(AppError::NotFound(format!("no page at {}", req.path())));
    }
    let message = format!("{} {} is not allowed: use {}", req.method(), req.path(), allowed.join(" or "));
    Ok(actix_web::HttpResponse::MethodNotAllowed()
        .insert_header((header::ALLOW, allowed.join(", ")))
        .json(serde_json::json!({ "error": { "status": 405, "message": message } })))
}

/// A path that does not parse (`/api/runs/abc`): the API says which parameter is wrong
/// (400); a page is simply not there (404).
fn path_error(e: actix_web::error::PathError, req: &actix_web::HttpRequest) -> actix_web::Error {
    if !req.path().starts_with("/api/") {
        return AppError::NotFound(format!("no page at {}", req.path())).into();
    }
    // The error quotes the value it could not parse, not the parameter's name.
    let message = e.to_string();
    let name = req.match_info().iter().find(|(_, value)| message.contains(&format!("\"{value}\"")));
    let reason = match name {
        Some((name, value)) => format!("the path parameter {name} must be a number, not {value:?}"),
        None => format!("the path could not be read: {message}"),
    };
    AppError::BadRequest(reason).into()
}

/// Postgres text cannot hold a NUL byte, so a `%00` anywhere in the path or the query is
/// refused here, once, before a handler can pass it to SQL (where it would be a 500).
async fn refuse_nul(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<actix_web::body::BoxBody>, actix_web::Error> {
    let raw = req.uri().path_and_query().map_or("", |pq| pq.as_str());
    if !raw.contains("%00") {
        return Ok(next.call(req).await?.map_into_boxed_body());
    }
    let error = AppError::BadRequest("the path or the query string contains a NUL byte (%00)".into());
    let response = if req.path().starts_with("/api/") {
        error.json_response()
    } else {
        actix_web::ResponseError::error_response(&error)
    };
    Ok(req.into_response(response))
}

/// `/api` requests get errors as JSON; pages get the HTML error page, with the site's
/// header when the reader is logged in.
async fn error_bodies(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<actix_web::body::BoxBody>, actix_web::Error> {
    let api = req.path().starts_with("/api/");
    let response = next.call(req).await?.map_into_boxed_body();
    let Some(error) = response.response().error().and_then(|e| e.as_error::<AppError>()) else {
        return Ok(response);
    };
    if api {
        let json = error.json_response();
        return Ok(response.into_response(json));
    }
    // An error page keeps the site's header for a reader who is logged in.
    if matches!(error, AppError::Unauthenticated { .. }) {
        return Ok(response);
    }
    // Cloned only now: a handler may need the request to itself while it runs.
    let request = response.request().clone();
    let page = match auth::nav_of(&request).await {
        Some(nav) => error.page_response(Some(nav)),
        None => return Ok(response),
    };
    Ok(response.into_response(page))
}

/// The headers every answer carries: a content security policy that runs only the app's
/// own scripts (no inline script, no other origin) and lets no page frame it, no MIME
/// sniffing, and no referrer sent off the site. Behind TLS (`secure_cookies`), HSTS too.
fn security_headers(secure: bool) -> DefaultHeaders {
    const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; \
                       img-src 'self' data:; object-src 'none'; base-uri 'none'; form-action 'self'; \
                       frame-ancestors 'none'";
    let headers = DefaultHeaders::new()
        .add((header::CONTENT_SECURITY_POLICY, CSP))
        .add((header::X_FRAME_OPTIONS, "DENY"))
        .add((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .add((header::REFERRER_POLICY, "same-origin"));
    if secure {
        headers.add((header::STRICT_TRANSPORT_SECURITY, "max-age=31536000"))
    } else {
        headers
    }
}
