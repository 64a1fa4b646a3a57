//! A project's settings (researchers): guidelines (Markdown, rendered safely), annotators
//! and overlap. The same as JSON under /api.

use actix_web::{delete, get, post, put, web, HttpResponse};
use askama::Template;
use labeling::domain::{Guidelines, Overlap, SamplesPerTask};
use labeling::error::LabelingError;
use labeling::projects::{self, Project, SettingsChange};
use labeling::users::{self, User};
use serde::{Deserialize, Serialize};
use sqlx::PgPool;

use super::{page_showing, see_other, Nav};
use crate::auth::{csrf_field, Csrf, CsrfForm, CsrfHeader, CsrfJson, CsrfOnly, Researcher};
use crate::caller::{redrawable, redrawable_naming, Caller, InProject, Reply};
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
    /// The checkboxes: present ("on") when ticked.
    #[serde(default)]
    revisions_allowed: Option<String>,
    #[serde(default)]
    shuffle_samples: Option<String>,
    #[serde(default)]
    csrf: String,
}
csrf_field!(SettingsForm);

/// The API's settings change: any subset of the fields.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SettingsBody {
    guidelines: Option<String>,
    overlap: Option<i64>,
    samples_per_task: Option<i64>,
    revisions_allowed: Option<bool>,
    shuffle_samples: Option<bool>,
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

/// A member named in a page's path, by user id.
#[derive(Deserialize)]
pub struct MemberId {
    user_id: i64,
}

/// A member named in an API path, by username.
#[derive(Deserialize)]
pub struct MemberName {
    username: String,
}

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
#[tracing::instrument(skip_all, fields(project = at.project.id))]
pub async fn show(at: InProject) -> Reply {
    render(&at, None, None).await
}

#[post("/projects/{id}/guidelines")]
#[tracing::instrument(skip_all, fields(project = at.project.id))]
pub async fn save_guidelines(at: InProject, form: CsrfForm<GuidelinesForm>) -> Reply {
    let form = form.into_inner();
    if form.action == "preview" {
        return render(&at, Some(form.guidelines), None).await;
    }
    let saved = match Guidelines::parse(form.guidelines.clone()) {
        Ok(guidelines) => projects::update_guidelines(&at.pool, at.project.id, &guidelines).await,
        Err(e) => Err(e),
    };
    match saved {
        Ok(()) => Ok(see_other(&format!("/projects/{}", at.project.id))),
        Err(e) => render(&at, Some(form.guidelines), Some(redrawable(e.into())?)).await,
    }
}

#[post("/projects/{id}/settings")]
#[tracing::instrument(skip_all, fields(project = at.project.id))]
pub async fn save_settings(at: InProject, form: CsrfForm<SettingsForm>) -> Reply {
    let saved = match parse_settings(&form.overlap, &form.samples_per_task) {
        Ok((overlap, k)) => {
            let change = SettingsChange {
                overlap: Some(overlap),
                samples_per_task: Some(k),
                revisions_allowed: Some(form.revisions_allowed.is_some()),
                shuffle_samples: Some(form.shuffle_samples.is_some()),
                ..Default::default()
            };
            projects::update_settings(&at.pool, at.project.id, &change).await.map_err(AppError::from)
        }
        Err(e) => Err(e),
    };
    match saved {
        Ok(_) => Ok(see_other(&format!("/projects/{}", at.project.id))),
        Err(e) => render(&at, None, Some(redrawable(e)?)).await,
    }
}

#[post("/projects/{id}/members")]
#[tracing::instrument(skip_all, fields(project = at.project.id))]
pub async fn add_member(at: InProject, form: CsrfForm<MemberForm>) -> Reply {
    match add_by_username(&at.pool, at.project.id, &form.username).await {
        Ok(()) => Ok(see_other(&format!("/projects/{}#members", at.project.id))),
        Err(e) => render(&at, None, Some(redrawable_naming(e, "username")?)).await,
    }
}

#[post("/projects/{id}/members/{user_id}/remove")]
#[tracing::instrument(skip_all, fields(project = at.project.id, user = member.user_id))]
pub async fn remove_member(at: InProject, member: web::Path<MemberId>, _: CsrfForm<CsrfOnly>) -> Reply {
    let (project_id, user_id) = (at.project.id, member.user_id);
    if !projects::remove_member(&at.pool, project_id, user_id).await? {
        return Err(AppError::NotFound(format!("user {user_id} is not a member of project {project_id}")));
    }
    Ok(see_other(&format!("/projects/{}#members", at.project.id)))
}

#[get("/api/projects/{id}")]
#[tracing::instrument(skip_all, fields(project = at.project.id))]
pub async fn api_show(at: InProject) -> Reply {
    Ok(HttpResponse::Ok().json(settings(&at.pool, at.project.clone()).await?))
}

#[put("/api/projects/{id}")]
#[tracing::instrument(skip_all, fields(project = *path))]
pub async fn api_update(me: Caller<Researcher>, path: web::Path<i64>, body: CsrfJson<SettingsBody>) -> Reply {
    let body = body.into_inner();
    let change = SettingsChange {
        guidelines: body.guidelines.map(Guidelines::parse).transpose()?,
        overlap: body.overlap.map(Overlap::parse).transpose()?,
        samples_per_task: body.samples_per_task.map(SamplesPerTask::parse).transpose()?,
        revisions_allowed: body.revisions_allowed,
        shuffle_samples: body.shuffle_samples,
    };
    let project = projects::update_settings(&me.pool, *path, &change).await?;
    Ok(HttpResponse::Ok().json(settings(&me.pool, project).await?))
}

#[post("/api/projects/{id}/members")]
#[tracing::instrument(skip_all, fields(project = at.project.id))]
pub async fn api_add_member(at: InProject, body: CsrfJson<MemberForm>) -> Reply {
    add_by_username(&at.pool, at.project.id, &body.username).await?;
    Ok(HttpResponse::Created().json(projects::members(&at.pool, at.project.id).await?))
}

#[delete("/api/projects/{id}/members/{username}")]
#[tracing::instrument(skip_all, fields(project = at.project.id))]
pub async fn api_remove_member(at: InProject, member: web::Path<MemberName>, _: Csrf<CsrfHeader>) -> Reply {
    let (project_id, username) = (at.project.id, &member.username);
    let user = user_named(&at.pool, username).await?;
    if !projects::remove_member(&at.pool, project_id, user.id).await? {
        return Err(AppError::NotFound(format!("{username} is not a member of project {project_id}")));
    }
    Ok(HttpResponse::Ok().json(projects::members(&at.pool, project_id).await?))
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
        Err(LabelingError::NotFound { .. }) => {
            Err(AppError::NotFound(format!("username: there is no user named {:?}", username.trim())))
        }
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
async fn render(at: &InProject, draft: Option<String>, error: Option<AppError>) -> Reply {
    let members = projects::members(&at.pool, at.project.id).await?;
    let previewing = draft.is_some() && error.is_none();
    let draft = draft.unwrap_or_else(|| at.project.guidelines.clone());
    let page = ProjectPage {
        nav: at.nav()?,
        preview_html: markdown::render(&draft),
        draft,
        previewing,
        project: at.project.clone(),
        members,
        error: error.as_ref().map(ToString::to_string),
    };
    page_showing(&page, error.as_ref())
}
