//! Projects (researchers): the list, and creating one; and the same as JSON under /api.

use actix_session::Session;
use actix_web::{get, post, web, HttpResponse};
use askama::Template;
use labeling::domain::{Guidelines, Overlap, ProjectName, SamplesPerTask};
use labeling::projects::{self, NewProject, Project};
use serde::Deserialize;
use sqlx::PgPool;

use super::{page, see_other, Nav};
use crate::auth::{csrf_field, CsrfForm, CsrfJson, Researcher};
use crate::error::AppError;

#[derive(Template)]
#[template(path = "projects.html")]
struct ProjectsPage {
    nav: Nav,
    projects: Vec<Project>,
    error: Option<String>,
}

#[get("/projects")]
pub async fn list(
    me: Researcher,
    pool: web::Data<PgPool>,
    session: Session,
) -> Result<HttpResponse, AppError> {
    let projects = projects::list_projects(&pool).await?;
    page(&ProjectsPage { nav: Nav::new(&me, &session)?, projects, error: None })
}

/// The fields of "create a project", from the page's form or the API's JSON.
#[derive(Deserialize)]
pub struct ProjectForm {
    name: String,
    #[serde(default)]
    guidelines: String,
    overlap: Option<i64>,
    samples_per_task: Option<i64>,
    #[serde(default)]
    csrf: String,
}
csrf_field!(ProjectForm);

impl ProjectForm {
    fn parse(self, created_by: i64) -> Result<NewProject, AppError> {
        Ok(NewProject {
            name: ProjectName::parse(self.name)?,
            guidelines: Guidelines::parse(self.guidelines)?,
            overlap: self.overlap.map(Overlap::parse).transpose()?.unwrap_or_default(),
            samples_per_task: self
                .samples_per_task
                .map(SamplesPerTask::parse)
                .transpose()?
                .unwrap_or_default(),
            created_by: Some(created_by),
        })
    }
}

#[post("/projects")]
pub async fn create(
    me: Researcher,
    pool: web::Data<PgPool>,
    form: CsrfForm<ProjectForm>,
) -> Result<HttpResponse, AppError> {
    let new = form.into_inner().parse(me.user.id)?;
    projects::create_project(&pool, &new).await?;
    Ok(see_other("/projects"))
}

#[get("/api/projects")]
pub async fn api_list(_: Researcher, pool: web::Data<PgPool>) -> Result<HttpResponse, AppError> {
    Ok(HttpResponse::Ok().json(projects::list_projects(&pool).await?))
}

#[post("/api/projects")]
pub async fn api_create(
    me: Researcher,
    pool: web::Data<PgPool>,
    body: CsrfJson<ProjectForm>,
) -> Result<HttpResponse, AppError> {
    let new = body.into_inner().parse(me.user.id)?;
    let project = projects::create_project(&pool, &new).await?;
    Ok(HttpResponse::Created().json(project))
}
