//! The landing page: what the logged-in person can do next.

use actix_session::Session;
use actix_web::{get, web, HttpResponse};
use askama::Template;
use labeling::domain::Role;
use labeling::projects::{self, Project};
use sqlx::PgPool;

use super::{page, Nav};
use crate::auth::CurrentUser;
use crate::error::AppError;

#[derive(Template)]
#[template(path = "home.html")]
struct HomePage {
    nav: Nav,
    role: Role,
    projects: Vec<Project>,
}

#[get("/")]
pub async fn home(
    me: CurrentUser,
    pool: web::Data<PgPool>,
    session: Session,
) -> Result<HttpResponse, AppError> {
    let projects = match me.user.role {
        Role::Annotator => projects::projects_of_member(&pool, me.user.id).await?,
        Role::Researcher | Role::Admin => projects::list_projects(&pool).await?,
    };
    page(&HomePage { nav: Nav::new(&me, &session)?, role: me.user.role, projects })
}
