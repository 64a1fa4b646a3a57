//! A project's settings (researchers): guidelines (Markdown, rendered safely), annotators
//! and overlap. The same as JSON under /api.

use actix_session::Session;
use actix_web::http::StatusCode;
use actix_web::{delete, get, post, put, web, HttpResponse};
use askama::Template;
use labeling::domain::{Guidelines, Overlap, SamplesPerTask};
use labeling::error::LabelingError;
use labeling::projects::{self, Project};
use labeling::users::{self, User};
use serde::{Deserialize, Serialize};
use sqlx::PgPool;

use super::{page, see_other, Nav};
use crate::auth::{csrf_field, Csrf, CsrfForm, CsrfHeader, CsrfJson, CsrfOnly, CurrentUser, Researcher};
use crate::error::AppError;
use crate::markdown;

#[derive(Template)]
#[template(path = "project.html")]
struct ProjectPage {
    nav: Nav,
    project: Project,
    /// The textarea's Markdown: the saved guidelines, or a draft being previewed.
    draft: String,
    /// `draft` rendered and sanitised by `markdown::render`.
    preview_html: String,
    previewing: bool,
    members: Vec<User>,
    error: Option<String>,
}

/// A project's settings and members, as the API returns them.
#[derive(Serialize)]
struct ProjectSettings {
    project: Project,
    /// The guidelines as sanitised HTML.
    guidelines_html: String,
    members: Vec<User>,
}

#[derive(Deserialize)]
pub struct GuidelinesForm {
    #[serde(default)]
    guidelines: String,
    /// `preview` shows the draft rendered without saving it; anything else saves.
    #[serde(default)]
    action: String,
    #[serde(default)]
    csrf: String,
}
csrf_field!(GuidelinesForm);

/// Overlap and K from the page's form, as typed (parsed with field names).
#[derive(Deserialize)]
pub struct SettingsForm {
    overlap: String,
    samples_per_task: String,
    #[serde(default)]
    csrf: String,
}
csrf_field!(SettingsForm);

/// The API's settings change: any subset of the fields.
#[derive(Deserialize)]
pub struct SettingsBody {
    guidelines: Option<String>,
    overlap: Option<i64>,
    samples_per_task: Option<i64>,
    #[serde(default)]
    csrf: String,
}
csrf_field!(SettingsBody);

#[derive(Deserialize)]
pub struct MemberForm {
    username: String,
    #[serde(default)]
    csrf: String,
}
csrf_field!(MemberForm);

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(show)
        .service(save_guidelines)
        .service(save_settings)
        .service(add_member)
        .service(remove_member)
        .service(api_show)
        .service(api_update)
        .service(api_add_member)
        .service(api_remove_member);
}

#[get("/projects/{id}")]
#[tracing::instrument(skip_all, fields(project = *path))]
pub async fn show(
    me: Researcher,
    pool: web::Data<PgPool>,
    session: Session,
    path: web::Path<i64>,
) -> Result<HttpResponse, AppError> {
    let project = projects::get_project(&pool, *path).await?;
    render(&me, &pool, &session, project, None, None).await
}

#[post("/projects/{id}/guidelines")]
#[tracing::instrument(skip_all, fields(project = *path))]
pub async fn save_guidelines(
    me: Researcher,
    pool: web::Data<PgPool>,
    session: Session,
    path: web::Path<i64>,
    form: CsrfForm<GuidelinesForm>,
) -> Result<HttpResponse, AppError> {
    let project = projects::get_project(&pool, *path).await?;
    let form = form.into_inner();
    if form.action == "preview" {
        return render(&me, &pool, &session, project, Some(form.guidelines), None).await;
    }
    let saved = match Guidelines::parse(form.guidelines.clone()) {
        Ok(guidelines) => projects::update_guidelines(&pool, project.id, &guidelines).await,
        Err(e) => Err(e),
    };
    match saved.map_err(AppError::from) {
        Ok(()) => Ok(see_other(&format!("/projects/{}", project.id))),
        Err(e @ AppError::Invalid { .. }) => {
            render(&me, &pool, &session, project, Some(form.guidelines), Some(e)).await
        }
        Err(e) => Err(e),
    }
}

#[post("/projects/{id}/settings")]
#[tracing::instrument(skip_all, fields(project = *path))]
pub async fn save_settings(
    me: Researcher,
    pool: web::Data<PgPool>,
    session: Session,
    path: web::Path<i64>,
    form: CsrfForm<SettingsForm>,
) -> Result<HttpResponse, AppError> {
    let project = projects::get_project(&pool, *path).await?;
    let parsed = parse_settings(&form.overlap, &form.samples_per_task);
    let saved = match parsed {
        Ok((overlap, k)) => projects::update_settings(&pool, project.id, None, Some(overlap), Some(k))
            .await
            .map_err(AppError::from),
        Err(e) => Err(e),
    };
    match saved {
        Ok(_) => Ok(see_other(&format!("/projects/{}", project.id))),
        Err(e @ AppError::Invalid { .. }) => render(&me, &pool, &session, project, None, Some(e)).await,
        Err(e) => Err(e),
    }
}

#[post("/projects/{id}/members")]
#[tracing::instrument(skip_all, fields(project = *path))]
pub async fn add_member(
    me: Researcher,
    pool: web::Data<PgPool>,
    session: Session,
    path: web::Path<i64>,
    form: CsrfForm<MemberForm>,
) -> Result<HttpResponse, AppError> {
    let project = projects::get_project(&pool, *path).await?;
    match add_by_username(&pool, project.id, &form.username).await {
        Ok(()) => Ok(see_other(&format!("/projects/{}#members", project.id))),
        Err(e @ AppError::Invalid { .. }) => render(&me, &pool, &session, project, None, Some(e)).await,
        Err(e) => Err(e),
    }
}

#[post("/projects/{id}/members/{user_id}/remove")]
#[tracing::instrument(skip_all, fields(project = path.0, user = path.1))]
pub async fn remove_member(
    _: Researcher,
    pool: web::Data<PgPool>,
    path: web::Path<(i64, i64)>,
    _: CsrfForm<CsrfOnly>,
) -> Result<HttpResponse, AppError> {
    let (project_id, user_id) = path.into_inner();
    let project = projects::get_project(&pool, project_id).await?;
    if !projects::remove_member(&pool, project.id, user_id).await? {
        return Err(AppError::NotFound(format!("user {user_id} is not a member of project {project_id}")));
    }
    Ok(see_other(&format!("/projects/{}#members", project.id)))
}

#[get("/api/projects/{id}")]
#[tracing::instrument(skip_all, fields(project = *path))]
pub async fn api_show(
    _: Researcher,
    pool: web::Data<PgPool>,
    path: web::Path<i64>,
) -> Result<HttpResponse, AppError> {
    let project = projects::get_project(&pool, *path).await?;
    Ok(HttpResponse::Ok().json(settings(&pool, project).await?))
}

#[put("/api/projects/{id}")]
#[tracing::instrument(skip_all, fields(project = *path))]
pub async fn api_update(
    _: Researcher,
    pool: web::Data<PgPool>,
    path: web::Path<i64>,
    body: CsrfJson<SettingsBody>,
) -> Result<HttpResponse, AppError> {
    let body = body.into_inner();
    let guidelines = body.guidelines.map(Guidelines::parse).transpose()?;
    let overlap = body.overlap.map(Overlap::parse).transpose()?;
    let k = body.samples_per_task.map(SamplesPerTask::parse).transpose()?;
    let project = projects::update_settings(&pool, *path, guidelines.as_ref(), overlap, k).await?;
    Ok(HttpResponse::Ok().json(settings(&pool, project).await?))
}

#[post("/api/projects/{id}/members")]
#[tracing::instrument(skip_all, fields(project = *path))]
pub async fn api_add_member(
    _: Researcher,
    pool: web::Data<PgPool>,
    path: web::Path<i64>,
    body: CsrfJson<MemberForm>,
) -> Result<HttpResponse, AppError> {
    let project = projects::get_project(&pool, *path).await?;
    add_by_username(&pool, project.id, &body.username).await?;
    Ok(HttpResponse::Created().json(projects::members(&pool, project.id).await?))
}

#[delete("/api/projects/{id}/members/{username}")]
#[tracing::instrument(skip_all, fields(project = path.0))]
pub async fn api_remove_member(
    _: Researcher,
    pool: web::Data<PgPool>,
    path: web::Path<(i64, String)>,
    _: Csrf<CsrfHeader>,
) -> Result<HttpResponse, AppError> {
    let (project_id, username) = path.into_inner();
    let project = projects::get_project(&pool, project_id).await?;
    let user = user_named(&pool, &username).await?;
    if !projects::remove_member(&pool, project.id, user.id).await? {
        return Err(AppError::NotFound(format!("{username} is not a member of project {project_id}")));
    }
    Ok(HttpResponse::Ok().json(projects::members(&pool, project.id).await?))
}

/// Overlap and K as typed in the form, each checked with its field's name.
fn parse_settings(overlap: &str, k: &str) -> Result<(Overlap, SamplesPerTask), AppError> {
    let number = |field: &str, text: &str| {
        text.trim().parse::<i64>().map_err(|_| AppError::Invalid {
            field: field.into(),
            reason: format!("{text:?} is not a whole number"),
        })
    };
    let overlap = Overlap::parse(number("overlap", overlap)?)?;
    let k = SamplesPerTask::parse(number("samples per task", k)?)?;
    Ok((overlap, k))
}

/// The user with this username; an unknown one is an invalid `username` (the field the
/// researcher typed it into), not a missing page.
async fn user_named(pool: &PgPool, username: &str) -> Result<User, AppError> {
    match users::get_user_by_username(pool, username.trim()).await {
        Ok(user) => Ok(user),
        Err(LabelingError::NotFound { .. }) => Err(AppError::Invalid {
            field: "username".into(),
            reason: format!("there is no user named {:?}", username.trim()),
        }),
        Err(e) => Err(e.into()),
    }
}

async fn add_by_username(pool: &PgPool, project_id: i64, username: &str) -> Result<(), AppError> {
    let user = user_named(pool, username).await?;
    if user.disabled {
        return Err(AppError::Invalid {
            field: "username".into(),
            reason: format!("{} is disabled", user.username),
        });
    }
    projects::add_member(pool, project_id, user.id).await?;
    Ok(())
}

async fn settings(pool: &PgPool, project: Project) -> Result<ProjectSettings, AppError> {
    let members = projects::members(pool, project.id).await?;
    Ok(ProjectSettings { guidelines_html: markdown::render(&project.guidelines), project, members })
}

/// The project page; with `draft`, the guidelines form shows that text and its preview;
/// with `error`, the page says what was wrong, with the error's status.
async fn render(
    me: &CurrentUser,
    pool: &PgPool,
    session: &Session,
    project: Project,
    draft: Option<String>,
    error: Option<AppError>,
) -> Result<HttpResponse, AppError> {
    let members = projects::members(pool, project.id).await?;
    let previewing = draft.is_some() && error.is_none();
    let draft = draft.unwrap_or_else(|| project.guidelines.clone());
    let status = error.as_ref().map(actix_web::ResponseError::status_code).unwrap_or(StatusCode::OK);
    let mut response = page(&ProjectPage {
        nav: Nav::new(me, session)?,
        preview_html: markdown::render(&draft),
        draft,
        previewing,
        project,
        members,
        error: error.map(|e| e.to_string()),
    })?;
    *response.status_mut() = status;
    Ok(response)
}
