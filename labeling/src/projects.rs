//! Labeling projects: their guidelines, overlap N and K, and the annotators who work on them.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::PgPool;

use crate::domain::{Guidelines, Overlap, ProjectName, SamplesPerTask};
use crate::error::{foreign_key_violation, is_unique_violation, LabelingError, Result};
use crate::users::User;

/// A project as stored. `overlap` and `samples_per_task` hold values that the schema has
/// checked (1..=20 and 2..=9).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, sqlx::FromRow)]
pub struct Project {
    pub id: i64,
    pub name: String,
    pub guidelines: String,
    pub overlap: i32,
    pub samples_per_task: i32,
    pub created_by: Option<i64>,
    pub created_at: DateTime<Utc>,
}

/// What it takes to create a project.
#[derive(Debug, Clone)]
pub struct NewProject {
    pub name: ProjectName,
    pub guidelines: Guidelines,
    pub overlap: Overlap,
    pub samples_per_task: SamplesPerTask,
    pub created_by: Option<i64>,
}

const PROJECT_COLUMNS: &str = "id, name, guidelines, overlap, samples_per_task, created_by, created_at";

/// Creates a project. A taken name is a `Conflict`; an unknown creator is `NotFound`.
pub async fn create_project(pool: &PgPool, new: &NewProject) -> Result<Project> {
    let sql = format!(
        "INSERT INTO projects (name, guidelines, overlap, samples_per_task, created_by)
         VALUES ($1, $2, $3, $4, $5) RETURNING {PROJECT_COLUMNS}"
    );
    sqlx::query_as::<_, Project>(&sql)
        .bind(new.name.as_str())
        .bind(new.guidelines.as_str())
        .bind(new.overlap.get())
        .bind(new.samples_per_task.get())
        .bind(new.created_by)
        .fetch_one(pool)
        .await
        .map_err(|e| {
            if is_unique_violation(&e, Some("projects_name_key")) {
                LabelingError::Conflict(format!("a project named {:?} exists", new.name.as_str()))
            } else if foreign_key_violation(&e).is_some() {
                LabelingError::not_found("user", new.created_by.unwrap_or_default())
            } else {
                e.into()
            }
        })
}

pub async fn get_project(pool: &PgPool, project_id: i64) -> Result<Project> {
    let sql = format!("SELECT {PROJECT_COLUMNS} FROM projects WHERE id = $1");
    sqlx::query_as::<_, Project>(&sql)
        .bind(project_id)
        .fetch_optional(pool)
        .await?
        .ok_or_else(|| LabelingError::not_found("project", project_id))
}

/// All projects, by name.
pub async fn list_projects(pool: &PgPool) -> Result<Vec<Project>> {
    let sql = format!("SELECT {PROJECT_COLUMNS} FROM projects ORDER BY name");
    Ok(sqlx::query_as::<_, Project>(&sql).fetch_all(pool).await?)
}

/// The projects a user is a member of, by name.
pub async fn projects_of_member(pool: &PgPool, user_id: i64) -> Result<Vec<Project>> {
    let sql = format!(
        "SELECT {PROJECT_COLUMNS} FROM projects
         WHERE id IN (SELECT project_id FROM project_members WHERE user_id = $1)
         ORDER BY name"
    );
    Ok(sqlx::query_as::<_, Project>(&sql).bind(user_id).fetch_all(pool).await?)
}

pub async fn update_guidelines(pool: &PgPool, project_id: i64, guidelines: &Guidelines) -> Result<()> {
    let done = sqlx::query("UPDATE projects SET guidelines = $2 WHERE id = $1")
        .bind(project_id)
        .bind(guidelines.as_str())
        .execute(pool)
        .await?;
    found(done.rows_affected(), project_id)
}

/// Sets how many annotators see each task. Tasks already handed out keep their
/// assignments; the new N applies from the next assignment on.
pub async fn set_overlap(pool: &PgPool, project_id: i64, overlap: Overlap) -> Result<()> {
    let done = sqlx::query("UPDATE projects SET overlap = $2 WHERE id = $1")
        .bind(project_id)
        .bind(overlap.get())
        .execute(pool)
        .await?;
    found(done.rows_affected(), project_id)
}

/// Sets K for ranking tasks created from now on; existing tasks keep their own K.
pub async fn set_samples_per_task(pool: &PgPool, project_id: i64, k: SamplesPerTask) -> Result<()> {
    let done = sqlx::query("UPDATE projects SET samples_per_task = $2 WHERE id = $1")
        .bind(project_id)
        .bind(k.get())
        .execute(pool)
        .await?;
    found(done.rows_affected(), project_id)
}

/// Makes a user a member of a project; adding a member twice is not an error.
pub async fn add_member(pool: &PgPool, project_id: i64, user_id: i64) -> Result<()> {
    sqlx::query(
        "INSERT INTO project_members (project_id, user_id) VALUES ($1, $2)
         ON CONFLICT (project_id, user_id) DO NOTHING",
    )
    .bind(project_id)
    .bind(user_id)
    .execute(pool)
    .await
    .map_err(|e| match foreign_key_violation(&e) {
        Some("project_members_project_id_fkey") => LabelingError::not_found("project", project_id),
        Some("project_members_user_id_fkey") => LabelingError::not_found("user", user_id),
        _ => e.into(),
    })?;
    Ok(())
}

/// Removes a user from a project; returns whether they were a member. Their submitted
/// work stays.
pub async fn remove_member(pool: &PgPool, project_id: i64, user_id: i64) -> Result<bool> {
    let done = sqlx::query("DELETE FROM project_members WHERE project_id = $1 AND user_id = $2")
        .bind(project_id)
        .bind(user_id)
        .execute(pool)
        .await?;
    Ok(done.rows_affected() > 0)
}

/// A project's members, by username.
pub async fn members(pool: &PgPool, project_id: i64) -> Result<Vec<User>> {
    Ok(sqlx::query_as::<_, User>(
        "SELECT u.id, u.username, u.display_name, u.role, u.disabled, u.created_at
         FROM project_members m JOIN users u ON u.id = m.user_id
         WHERE m.project_id = $1 ORDER BY u.username",
    )
    .bind(project_id)
    .fetch_all(pool)
    .await?)
}

/// Whether a user is a member of a project.
pub async fn is_member(pool: &PgPool, project_id: i64, user_id: i64) -> Result<bool> {
    Ok(sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM project_members WHERE project_id = $1 AND user_id = $2)",
    )
    .bind(project_id)
    .bind(user_id)
    .fetch_one(pool)
    .await?)
}

/// The projects a user works in: those they are a member of, and those where they were
/// given a task or wrote a demonstration (a researcher piloting, a former member); by name.
pub async fn projects_worked_in(pool: &PgPool, user_id: i64) -> Result<Vec<Project>> {
    let sql = format!(
        "SELECT {PROJECT_COLUMNS} FROM projects
         WHERE id IN (SELECT project_id FROM project_members WHERE user_id = $1
                      UNION SELECT t.project_id FROM assignments a JOIN tasks t ON t.id = a.task_id
                            WHERE a.annotator_id = $1
                      UNION SELECT p.project_id FROM demonstrations d JOIN prompts p ON p.id = d.prompt_id
                            WHERE d.annotator_id = $1)
         ORDER BY name"
    );
    Ok(sqlx::query_as::<_, Project>(&sql).bind(user_id).fetch_all(pool).await?)
}

fn found(rows: u64, project_id: i64) -> Result<()> {
    if rows == 0 {
        Err(LabelingError::not_found("project", project_id))
    } else {
        Ok(())
    }
}
