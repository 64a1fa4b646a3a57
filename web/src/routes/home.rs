//! The landing page: what the logged-in person can do next. An annotator sees each of
//! their projects with how many tasks it has left for them, and a button to start.

use actix_web::get;
use askama::Template;
use labeling::domain::Role;
use labeling::projects::{self, Project};
use labeling::tasks;
use sqlx::PgPool;

use super::{page, Nav};
use crate::auth::CurrentUser;
use crate::caller::{Caller, Reply};
use crate::error::AppError;

/// A project someone may take tasks in, with the number of tasks it has open for them.
pub struct ProjectWork {
    pub project: Project,
    pub open: i64,
}

#[derive(Template)]
#[template(path = "home.html")]
struct HomePage {
    nav: Nav,
    role: Role,
    /// Researchers' and admins' view: every project.
    projects: Vec<Project>,
    /// Annotators' view: their projects, each with its open tasks.
    work: Vec<ProjectWork>,
}

#[get("/")]
pub async fn home(me: Caller<CurrentUser>) -> Reply {
    let nav = me.nav()?;
    let role = me.user.role;
    if role != Role::Annotator {
        let projects = projects::list_projects(&me.pool).await?;
        return page(&HomePage { nav, role, projects, work: Vec::new() });
    }
    let projects = projects::projects_of_member(&me.pool, me.user.id).await?;
    let work = work_in(&me.pool, me.user.id, projects).await?;
    page(&HomePage { nav, role, projects: Vec::new(), work })
}

/// The projects, each with the number of tasks it has open for `annotator_id`.
pub async fn work_in(
    pool: &PgPool,
    annotator_id: i64,
    projects: Vec<Project>,
) -> Result<Vec<ProjectWork>, AppError> {
    let ids: Vec<i64> = projects.iter().map(|p| p.id).collect();
    let open = tasks::open_task_counts(pool, annotator_id, &ids).await?;
    Ok(projects
        .into_iter()
        .map(|project| ProjectWork { open: open.get(&project.id).copied().unwrap_or(0), project })
        .collect())
}
