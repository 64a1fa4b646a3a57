//! Prompts (researchers): a project's prompts, searched, filtered by split and paged;
//! and importing JSON lines or CSV with a per-line report. The same as JSON under /api.

use actix_session::Session;
use actix_web::{get, post, web, HttpResponse};
use askama::Template;
use labeling::domain::{PromptSource, Split};
use labeling::projects::{self, Project};
use labeling::prompts::{self, ImportLimits, ImportReport, Prompt};
use serde::Deserialize;
use sqlx::PgPool;

use super::{page, Nav};
use crate::auth::{self, CurrentUser};
use crate::error::{urlencode, AppError};

const PER_PAGE: i64 = 50;

/// What one upload may hold; more is refused as a whole (a 400).
const LIMITS: ImportLimits = ImportLimits { max_bytes: 10 * 1024 * 1024, max_lines: 100_000 };

#[derive(Template)]
#[template(path = "prompts.html")]
struct PromptsPage {
    nav: Nav,
    project: Project,
    prompts: Vec<Prompt>,
    total: i64,
    q: String,
    split: String,
    page: i64,
    pages: i64,
    /// `q=…&split=…`, URL-encoded, for the paging links.
    filters: String,
    report: Option<ImportReport>,
}

/// The page's filters: `?q=&split=&page=` (empty means "any").
#[derive(Deserialize, Default)]
pub struct PageQuery {
    #[serde(default)]
    q: String,
    #[serde(default)]
    split: String,
    page: Option<i64>,
}

/// The API's filters: `?q=&split=&limit=&offset=`.
#[derive(Deserialize)]
pub struct ApiQuery {
    #[serde(default)]
    q: String,
    #[serde(default)]
    split: String,
    limit: Option<i64>,
    offset: Option<i64>,
}

/// An upload, from the page's form (with `csrf`) or the API's JSON.
#[derive(Deserialize)]
pub struct UploadForm {
    format: String,
    data: String,
    #[serde(default)]
    csrf: String,
}

#[get("/projects/{id}/prompts")]
pub async fn list(
    me: CurrentUser,
    pool: web::Data<PgPool>,
    session: Session,
    path: web::Path<i64>,
    query: web::Query<PageQuery>,
) -> Result<HttpResponse, AppError> {
    me.require_researcher()?;
    let project = projects::get_project(&pool, path.into_inner()).await?;
    render(me, &pool, &session, project, query.into_inner(), None).await
}

#[post("/projects/{id}/prompts/upload")]
pub async fn upload(
    me: CurrentUser,
    pool: web::Data<PgPool>,
    session: Session,
    path: web::Path<i64>,
    form: web::Form<UploadForm>,
) -> Result<HttpResponse, AppError> {
    me.require_researcher()?;
    auth::check_csrf(&session, &form.csrf, me.by_token)?;
    let project = projects::get_project(&pool, path.into_inner()).await?;
    let report = import(&pool, project.id, &form, me.user.id).await?;
    render(me, &pool, &session, project, PageQuery::default(), Some(report)).await
}

#[get("/api/projects/{id}/prompts")]
pub async fn api_list(
    me: CurrentUser,
    pool: web::Data<PgPool>,
    path: web::Path<i64>,
    query: web::Query<ApiQuery>,
) -> Result<HttpResponse, AppError> {
    me.require_researcher()?;
    let project = projects::get_project(&pool, path.into_inner()).await?;
    let split = parse_split(&query.split)?;
    let limit = query.limit.unwrap_or(PER_PAGE);
    let offset = query.offset.unwrap_or(0);
    let found = prompts::list_prompts(&pool, project.id, Some(&query.q), split, limit, offset).await?;
    Ok(HttpResponse::Ok().json(found))
}

#[post("/api/projects/{id}/prompts")]
pub async fn api_import(
    me: CurrentUser,
    pool: web::Data<PgPool>,
    session: Session,
    path: web::Path<i64>,
    body: web::Json<UploadForm>,
) -> Result<HttpResponse, AppError> {
    me.require_researcher()?;
    auth::check_csrf(&session, &body.csrf, me.by_token)?;
    let project = projects::get_project(&pool, path.into_inner()).await?;
    let report = import(&pool, project.id, &body, me.user.id).await?;
    Ok(HttpResponse::Ok().json(report))
}

/// Imports an upload in its format; a whole-upload refusal becomes a 400.
async fn import(
    pool: &PgPool,
    project_id: i64,
    form: &UploadForm,
    user_id: i64,
) -> Result<ImportReport, AppError> {
    let source = PromptSource::parse("upload")?;
    let bytes = form.data.as_bytes();
    let report = match form.format.as_str() {
        "jsonl" => prompts::import_jsonl(pool, project_id, bytes, &source, Some(user_id), &LIMITS).await?,
        "csv" => prompts::import_csv(pool, project_id, bytes, &source, Some(user_id), &LIMITS).await?,
        other => {
            return Err(AppError::Invalid {
                field: "format".into(),
                reason: format!("{other:?} is not jsonl or csv"),
            })
        }
    };
    Ok(report)
}

/// An empty split means "any split".
fn parse_split(split: &str) -> Result<Option<Split>, AppError> {
    Ok(if split.trim().is_empty() { None } else { Some(Split::parse(split)?) })
}

/// The prompts page for `query`, with an import's report when there was one.
async fn render(
    me: CurrentUser,
    pool: &PgPool,
    session: &Session,
    project: Project,
    query: PageQuery,
    report: Option<ImportReport>,
) -> Result<HttpResponse, AppError> {
    let split = parse_split(&query.split)?;
    let total = prompts::count_prompts(pool, project.id, Some(&query.q), split).await?;
    let pages = ((total + PER_PAGE - 1) / PER_PAGE).max(1);
    let current = query.page.unwrap_or(1).clamp(1, pages);
    let offset = (current - 1) * PER_PAGE;
    let found = prompts::list_prompts(pool, project.id, Some(&query.q), split, PER_PAGE, offset).await?;
    page(&PromptsPage {
        nav: Nav::new(&me, session)?,
        project,
        prompts: found,
        total,
        filters: format!("q={}&split={}", urlencode(&query.q), split.map(Split::as_str).unwrap_or("")),
        q: query.q,
        split: split.map(|s| s.as_str().to_owned()).unwrap_or_default(),
        page: current,
        pages,
        report,
    })
}
