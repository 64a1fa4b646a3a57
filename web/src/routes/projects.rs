//! Projects (researchers): the list, and creating one; and the same as JSON under /api.

use actix_web::{get, post, HttpResponse};
use askama::Template;
use labeling::domain::{Guidelines, Overlap, ProjectName, SamplesPerTask};
use labeling::projects::{self, NewProject, Project};
use serde::Deserialize;

use super::{page, see_other, Nav};
use crate::auth::{csrf_field, CsrfForm, CsrfJson, Researcher};
use crate::caller::{Caller, Reply};
use crate::error::AppError;

#[derive(Template)]
#[template(path = "projects.html")]
struct ProjectsPage {
    nav: Nav,
    projects: Vec<Project>,
    error: Option<String>,
}

#[get("/projects")]
pub async fn list(me: Caller<Researcher>) -> Reply {
    let projects = projects::list_projects(&me.pool).await?;
    page(&ProjectsPage { nav: me.nav()?, projects, error: None })
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
pub async fn create(me: Caller<Researcher>, form: CsrfForm<ProjectForm>) -> Reply {
    let new = form.into_inner().parse(me.user.id)?;
    projects::create_project(&me.pool, &new).await?;
    Ok(see_other("/projects"))
}

#[get("/api/projects")]
pub async fn api_list(me: Caller<Researcher>) -> Reply {
    Ok(HttpResponse::Ok().json(projects::list_projects(&me.pool).await?))
}

#[post("/api/projects")]
pub async fn api_create(me: Caller<Researcher>, body: CsrfJson<ProjectForm>) -> Reply {
    let new = body.into_inner().parse(me.user.id)?;
    let project = projects::create_project(&me.pool, &new).await?;
    Ok(HttpResponse::Created().json(project))
}
