//! What a handler works with besides its body, as one extractor: who is asking (admitted
//! as the handler's user extractor admits), the database and the session; for a page or
//! an API call under `/projects/{id}`, the project too. A handler's signature then says
//! its role and its body, and nothing else.

use std::ops::Deref;

use actix_session::{Session, SessionExt};
use actix_web::dev::Payload;
use actix_web::{web, FromRequest, HttpRequest, HttpResponse};
use futures_util::future::{FutureExt, LocalBoxFuture};
use labeling::projects::{self, Project};
use sqlx::PgPool;

use crate::auth::CurrentUser;
use crate::error::AppError;
use crate::routes::Nav;

/// What a handler answers: a page, a redirect or JSON, or an error drawn as the path
/// decides (a page under `/`, JSON under `/api`).
pub type Reply = Result<HttpResponse, AppError>;

/// The user making the request (extracted as `R`: [`crate::auth::Researcher`], [`crate::auth::Admin`],
/// [`crate::auth::Annotator`] or [`CurrentUser`]), with the database and their session.
pub struct Caller<R = CurrentUser> {
    pub who: R,
    pub pool: web::Data<PgPool>,
    pub session: Session,
    /// The request's path, for the header to mark where the page is.
    pub path: String,
}

impl<R: AsRef<CurrentUser>> Caller<R> {
    /// The header of a page drawn for this user.
    pub fn nav(&self) -> Result<Nav, AppError> {
        Ok(Nav::new(self.who.as_ref(), &self.session)?.at(&self.path))
    }

    /// The user's id, as rows they write record it.
    pub fn user_id(&self) -> i64 {
        self.who.as_ref().user.id
    }
}

impl<R> Deref for Caller<R> {
    type Target = R;

    fn deref(&self) -> &R {
        &self.who
    }
}

impl<R: FromRequest<Error = AppError> + 'static> FromRequest for Caller<R> {
    type Error = AppError;
    type Future = LocalBoxFuture<'static, Result<Self, AppError>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let who = R::from_request(req, payload);
        let pool = req.app_data::<web::Data<PgPool>>().cloned();
        let session = req.get_session();
        let path = req.path().to_owned();
        async move {
            let who = who.await?;
            let pool = pool.ok_or_else(|| AppError::Internal("the app has no database pool".into()))?;
            Ok(Caller { who, pool, session, path })
        }
        .boxed_local()
    }
}

/// Declares a [`Caller`] at the page or API of a row that the request's path names, with
/// the row in the named field. The caller is checked first, so that a stranger hears "log
/// in" (or "not for your role") and learns nothing of which rows exist; then a path that
/// does not parse is a 400, and a row that `load` does not find a 404.
macro_rules! caller_at {
    ($(#[$doc:meta])* $name:ident { $field:ident: $row:ty }, $path:ty, $load:path) => {
        $(#[$doc])*
        pub struct $name<R = $crate::auth::Researcher> {
            pub caller: $crate::caller::Caller<R>,
            pub $field: $row,
        }

        impl<R> std::ops::Deref for $name<R> {
            type Target = $crate::caller::Caller<R>;

            fn deref(&self) -> &Self::Target {
                &self.caller
            }
        }

        impl<R> actix_web::FromRequest for $name<R>
        where
            R: actix_web::FromRequest<Error = $crate::error::AppError> + 'static,
        {
            type Error = actix_web::Error;
            type Future = futures_util::future::LocalBoxFuture<'static, Result<Self, actix_web::Error>>;

            fn from_request(req: &actix_web::HttpRequest, payload: &mut actix_web::dev::Payload) -> Self::Future {
                use futures_util::FutureExt;
                let caller = $crate::caller::Caller::<R>::from_request(req, payload);
                let path = actix_web::web::Path::<$path>::from_request(req, &mut actix_web::dev::Payload::None);
                async move {
                    let caller = caller.await?;
                    let path = path.await?.into_inner();
                    let $field = $load(&caller.pool, path).await?;
                    Ok($name { caller, $field })
                }
                .boxed_local()
            }
        }
    };
}
pub(crate) use caller_at;

caller_at!(
    /// A [`Caller`] at a project's page or API: the project that the path's `{id}` names.
    InProject { project: Project },
    ProjectPath,
    load_project
);

/// The project's part of a path (`/projects/{id}/…`); the route may name more.
#[derive(serde::Deserialize)]
pub struct ProjectPath {
    id: i64,
}

async fn load_project(pool: &PgPool, path: ProjectPath) -> Result<Project, AppError> {
    Ok(projects::get_project(pool, path.id).await?)
}

/// A form's error that its page draws again beside the form (input that was refused);
/// any other error passes up as `Err`, to be answered as an error page.
pub fn redrawable(e: AppError) -> Result<AppError, AppError> {
    match e {
        e @ AppError::Invalid { .. } => Ok(e),
        e => Err(e),
    }
}

/// As [`redrawable`], and also a 404 for what the form named in `field` (a user, a
/// version): on the form that named it, it is that field's problem.
pub fn redrawable_naming(e: AppError, field: &str) -> Result<AppError, AppError> {
    match e {
        AppError::NotFound(reason) => Ok(AppError::Invalid { field: field.into(), reason }),
        e => redrawable(e),
    }
}
