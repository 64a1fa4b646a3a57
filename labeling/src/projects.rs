//! Labeling projects: their guidelines, overlap N and K, and the annotators who work on them.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::PgPool;

use crate::domain::{Guidelines, Overlap, ProjectName, SamplesPerTask, Split};
use crate::error::{foreign_key_violation, is_unique_violation, row_by, LabelingError, Result};
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
    /// Whether annotators may revise their answers (each revision a new row).
    pub revisions_allowed: bool,
    /// Whether each annotator sees a ranking task's samples in an order of their own.
    pub shuffle_samples: bool,
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

const PROJECT_COLUMNS: &str =
    "id, name, guidelines, overlap, samples_per_task, revisions_allowed, shuffle_samples, created_by, created_at";

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
    row_by(pool, &format!("SELECT {PROJECT_COLUMNS} FROM projects WHERE id = $1"), "project", project_id)
        .await
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
    update(pool, project_id, "UPDATE projects SET guidelines = $2 WHERE id = $1", guidelines.as_str()).await
}

/// Sets how many annotators see each task. Tasks already handed out keep their
/// assignments; the new N applies from the next assignment on.
pub async fn set_overlap(pool: &PgPool, project_id: i64, overlap: Overlap) -> Result<()> {
    update(pool, project_id, "UPDATE projects SET overlap = $2 WHERE id = $1", overlap.get()).await
}

/// Sets K for ranking tasks created from now on; existing tasks keep their own K.
pub async fn set_samples_per_task(pool: &PgPool, project_id: i64, k: SamplesPerTask) -> Result<()> {
    update(pool, project_id, "UPDATE projects SET samples_per_task = $2 WHERE id = $1", k.get()).await
}

/// Runs an `UPDATE projects` whose `$1` is the project and `$2` the new value; a missing
/// project is not found.
async fn update<'v, T>(pool: &PgPool, project_id: i64, sql: &'static str, value: T) -> Result<()>
where
    T: 'v + Send + sqlx::Encode<'v, sqlx::Postgres> + sqlx::Type<sqlx::Postgres>,
{
    let done = sqlx::query(sql).bind(project_id).bind(value).execute(pool).await?;
    LabelingError::unless_touched(done.rows_affected(), "project", project_id)
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

/// A project's prompts in each split.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct PromptCounts {
    pub train: i64,
    pub val: i64,
    pub test: i64,
}

/// A project's tasks of one kind by state: `open` (no live assignment and nothing
/// submitted), `in_progress` (leased or submitted, but fewer than the project's overlap
/// submissions), `done` (at least `overlap` submissions).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct TaskCounts {
    pub kind: crate::tasks::TaskKind,
    pub open: i64,
    pub in_progress: i64,
    pub done: i64,
}

/// How much a project holds: prompts, tasks, submissions and the people submitting them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ProjectCounts {
    pub prompts: PromptCounts,
    /// One entry per task kind (demonstration, ranking, comparison), zeros included.
    pub tasks: Vec<TaskCounts>,
    pub demonstrations: i64,
    pub rankings: i64,
    pub votes: i64,
    /// Distinct annotators who submitted anything in the project.
    pub annotators_submitted: i64,
    /// Of those, the ones who submitted in the last 7 days.
    pub annotators_active_7d: i64,
}

/// Counts a project's prompts, tasks and submissions, read in one consistent view.
pub async fn project_counts(pool: &PgPool, project_id: i64) -> Result<ProjectCounts> {
    use crate::tasks::TaskKind;

    let mut tx = pool.begin().await?;
    sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY").execute(&mut *tx).await?;
    let overlap: Option<i32> = sqlx::query_scalar("SELECT overlap FROM projects WHERE id = $1")
        .bind(project_id)
        .fetch_optional(&mut *tx)
        .await?;
    let overlap = overlap.ok_or_else(|| LabelingError::not_found("project", project_id))?;

    let splits: Vec<(Split, i64)> =
        sqlx::query_as("SELECT split, count(*) FROM prompts WHERE project_id = $1 GROUP BY split")
            .bind(project_id)
            .fetch_all(&mut *tx)
            .await?;
    let mut prompts = PromptCounts::default();
    for (split, n) in splits {
        match split {
            Split::Train => prompts.train = n,
            Split::Val => prompts.val = n,
            Split::Test => prompts.test = n,
        }
    }

    let by_kind: Vec<(TaskKind, i64, i64, i64)> = sqlx::query_as(
        "WITH per_task AS (
             SELECT t.kind,
                 count(a.id) FILTER (WHERE a.state = 'submitted') AS submitted,
                 count(a.id) FILTER (WHERE a.state = 'leased' AND a.lease_until > now()) AS leased
             FROM tasks t LEFT JOIN assignments a ON a.task_id = t.id
             WHERE t.project_id = $1 AND t.import_source_id IS NULL GROUP BY t.id, t.kind
         )
         SELECT kind,
             count(*) FILTER (WHERE submitted = 0 AND leased = 0),
             count(*) FILTER (WHERE submitted < $2 AND (submitted > 0 OR leased > 0)),
             count(*) FILTER (WHERE submitted >= $2)
         FROM per_task GROUP BY kind",
    )
    .bind(project_id)
    .bind(i64::from(overlap))
    .fetch_all(&mut *tx)
    .await?;
    let tasks = [TaskKind::Demonstration, TaskKind::Ranking, TaskKind::Comparison]
        .into_iter()
        .map(|kind| {
            let found = by_kind.iter().find(|row| row.0 == kind);
            let (open, in_progress, done) = found.map(|r| (r.1, r.2, r.3)).unwrap_or_default();
            TaskCounts { kind, open, in_progress, done }
        })
        .collect();

    let (demonstrations, rankings, votes, annotators_submitted, annotators_active_7d): (
        i64,
        i64,
        i64,
        i64,
        i64,
    ) = sqlx::query_as(
        "WITH work AS (
                 SELECT 'demonstration' AS what, d.annotator_id, d.created_at
                 FROM current_demonstrations d JOIN prompts p ON p.id = d.prompt_id WHERE p.project_id = $1
                 UNION ALL
                 SELECT 'ranking', r.annotator_id, r.created_at
                 FROM current_rankings r JOIN tasks t ON t.id = r.task_id WHERE t.project_id = $1
                 UNION ALL
                 SELECT 'vote', v.annotator_id, v.created_at
                 FROM current_comparison_votes v JOIN tasks t ON t.id = v.task_id WHERE t.project_id = $1
             )
             SELECT count(*) FILTER (WHERE what = 'demonstration'),
                 count(*) FILTER (WHERE what = 'ranking'),
                 count(*) FILTER (WHERE what = 'vote'),
                 count(DISTINCT annotator_id),
                 count(DISTINCT annotator_id) FILTER (WHERE created_at > now() - interval '7 days')
             FROM work",
    )
    .bind(project_id)
    .fetch_one(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(ProjectCounts {
        prompts,
        tasks,
        demonstrations,
        rankings,
        votes,
        annotators_submitted,
        annotators_active_7d,
    })
}

/// Changes any of a project's settings in one statement; those `change` leaves out
/// keep their value. Returns the project as updated.
pub async fn update_settings(pool: &PgPool, project_id: i64, change: &SettingsChange) -> Result<Project> {
    let sql = format!(
        "UPDATE projects SET guidelines = COALESCE($2, guidelines), overlap = COALESCE($3, overlap),
             samples_per_task = COALESCE($4, samples_per_task),
             revisions_allowed = COALESCE($5, revisions_allowed), shuffle_samples = COALESCE($6, shuffle_samples)
         WHERE id = $1 RETURNING {PROJECT_COLUMNS}"
    );
    sqlx::query_as::<_, Project>(&sql)
        .bind(project_id)
        .bind(change.guidelines.as_ref().map(Guidelines::as_str))
        .bind(change.overlap.map(Overlap::get))
        .bind(change.samples_per_task.map(SamplesPerTask::get))
        .bind(change.revisions_allowed)
        .bind(change.shuffle_samples)
        .fetch_optional(pool)
        .await?
        .ok_or_else(|| LabelingError::not_found("project", project_id))
}

/// A change to a project's settings: the ones given change, the others stay.
#[derive(Debug, Clone, Default)]
pub struct SettingsChange {
    pub guidelines: Option<Guidelines>,
    pub overlap: Option<Overlap>,
    pub samples_per_task: Option<SamplesPerTask>,
    pub revisions_allowed: Option<bool>,
    pub shuffle_samples: Option<bool>,
}
