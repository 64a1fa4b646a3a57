//! Prompts (researchers): a project's prompts, searched, filtered by split and paged;
//! and importing JSON lines or CSV with a per-line report. The same as JSON under /api.

use actix_multipart::Multipart;
use actix_web::dev::Payload;
use actix_web::{get, post, web, FromRequest, HttpRequest, HttpResponse};
use askama::Template;
use futures_util::future::{FutureExt, LocalBoxFuture, TryFutureExt};
use futures_util::StreamExt;
use labeling::domain::{PromptSource, Split};
use labeling::projects::Project;
use labeling::prompts::{self, ImportLimits, ImportReport, Prompt, PromptFile};
use serde::Deserialize;

use super::{list_limit, list_offset, page, Nav};
use crate::auth::{csrf_field, Csrf, CsrfBody, CsrfForm, CsrfJson};
use crate::caller::{InProject, Reply};
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
    /// How many demonstration tasks the researcher's request just created.
    requested: Option<usize>,
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

/// A request for demonstrations: of prompts of `split` (empty: any) without a
/// demonstration task yet, at most `limit` (default: all of them).
#[derive(Deserialize)]
pub struct DemonstrationsForm {
    #[serde(default)]
    split: String,
    limit: Option<i64>,
    #[serde(default)]
    csrf: String,
}
csrf_field!(DemonstrationsForm);

/// An upload, from the page's form (with `csrf`) or the API's JSON.
#[derive(Deserialize)]
pub struct UploadForm {
    format: String,
    data: String,
    #[serde(default)]
    csrf: String,
}
csrf_field!(UploadForm);

#[get("/projects/{id}/prompts")]
pub async fn list(at: InProject, query: web::Query<PageQuery>) -> Reply {
    render(&at, query.into_inner(), None, None).await
}

#[post("/projects/{id}/prompts/upload")]
pub async fn upload(at: InProject, form: CsrfForm<UploadForm>) -> Reply {
    import_and_render(&at, &form).await
}

/// Asks annotators for demonstrations of the project's prompts (from the page).
#[post("/projects/{id}/prompts/demonstration-tasks")]
pub async fn request_demonstrations(at: InProject, form: CsrfForm<DemonstrationsForm>) -> Reply {
    let created = demonstration_tasks(&at, &form).await?;
    render(&at, PageQuery::default(), None, Some(created.len())).await
}

/// The same as JSON: 201 with `{"task_ids": [...]}` (empty when every prompt has one).
#[post("/api/projects/{id}/demonstration-tasks")]
pub async fn api_request_demonstrations(at: InProject, body: CsrfJson<DemonstrationsForm>) -> Reply {
    let task_ids = demonstration_tasks(&at, &body).await?;
    Ok(HttpResponse::Created().json(serde_json::json!({ "task_ids": task_ids })))
}

async fn demonstration_tasks(at: &InProject, form: &DemonstrationsForm) -> Result<Vec<i64>, AppError> {
    let split = parse_split(&form.split)?;
    let limit = form.limit.unwrap_or(i64::MAX);
    Ok(labeling::tasks::request_demonstrations(&at.pool, at.project.id, split, limit).await?)
}

/// A prompt file uploaded from the page (`multipart/form-data`: `csrf`, `format` and
/// `file`). The format `auto` is taken from the file name: `.csv` is CSV, anything else
/// JSON lines.
#[post("/projects/{id}/prompts/file")]
pub async fn upload_file(at: InProject, form: Csrf<FileUpload>) -> Reply {
    import_and_render(&at, &form).await
}

/// A file upload's fields, read from its multipart body; its `csrf` field is checked by
/// [`Csrf`].
pub struct FileUpload(UploadForm);

impl FromRequest for FileUpload {
    type Error = AppError;
    type Future = LocalBoxFuture<'static, Result<Self, AppError>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        read_file_upload(Multipart::new(req.headers(), payload.take())).map_ok(FileUpload).boxed_local()
    }
}

impl CsrfBody for FileUpload {
    type Inner = UploadForm;

    fn csrf(&self) -> &str {
        &self.0.csrf
    }

    fn into_inner(self) -> UploadForm {
        self.0
    }
}

/// The fields of a file upload; the file's bytes become `data` (it must be UTF-8).
async fn read_file_upload(mut payload: Multipart) -> Result<UploadForm, AppError> {
    let mut form = UploadForm { format: "auto".into(), data: String::new(), csrf: String::new() };
    let mut file_name = None;
    while let Some(field) = payload.next().await {
        let mut field =
            field.map_err(|e| AppError::BadRequest(format!("the upload could not be read: {e}")))?;
        let name = field.name().unwrap_or_default().to_owned();
        if name == "file" {
            file_name = field.content_disposition().and_then(|d| d.get_filename()).map(str::to_owned);
        }
        let mut bytes = Vec::new();
        while let Some(chunk) = field.next().await {
            let chunk =
                chunk.map_err(|e| AppError::BadRequest(format!("the upload could not be read: {e}")))?;
            if bytes.len() + chunk.len() > LIMITS.max_bytes {
                return Err(AppError::BadRequest(format!(
                    "the field {name:?} is over the limit of {} bytes",
                    LIMITS.max_bytes
                )));
            }
            bytes.extend_from_slice(&chunk);
        }
        let text = String::from_utf8(bytes).map_err(|e| AppError::Invalid {
            field: name.clone(),
            reason: format!("not UTF-8 text (byte {})", e.utf8_error().valid_up_to()),
        })?;
        match name.as_str() {
            "csrf" => form.csrf = text,
            "format" => form.format = text,
            "file" => form.data = text,
            _ => {}
        }
    }
    let Some(file_name) = file_name.filter(|n| !n.is_empty()) else {
        return Err(AppError::Invalid { field: "file".into(), reason: "choose a file to upload".into() });
    };
    if form.format == "auto" {
        let csv = file_name.to_ascii_lowercase().ends_with(".csv");
        form.format = if csv { "csv" } else { "jsonl" }.into();
    }
    Ok(form)
}

#[get("/api/projects/{id}/prompts")]
pub async fn api_list(at: InProject, query: web::Query<ApiQuery>) -> Reply {
    let split = parse_split(&query.split)?;
    let limit = list_limit(query.limit, PER_PAGE, 1000)?;
    let offset = list_offset(query.offset)?;
    let found = prompts::list_prompts(&at.pool, at.project.id, Some(&query.q), split, limit, offset).await?;
    Ok(HttpResponse::Ok().json(found))
}

#[post("/api/projects/{id}/prompts")]
pub async fn api_import(at: InProject, body: CsrfJson<UploadForm>) -> Reply {
    Ok(HttpResponse::Ok().json(import(&at, &body).await?))
}

/// Imports an upload posted from the page, then shows the page with the import's report.
async fn import_and_render(at: &InProject, form: &UploadForm) -> Reply {
    let report = import(at, form).await?;
    render(at, PageQuery::default(), Some(report), None).await
}

/// Imports an upload in its format; a whole-upload refusal becomes a 400.
async fn import(at: &InProject, form: &UploadForm) -> Result<ImportReport, AppError> {
    let source = PromptSource::parse("upload")?;
    let bytes = form.data.as_bytes();
    let file = match form.format.as_str() {
        "jsonl" => PromptFile::Jsonl(bytes),
        "csv" => PromptFile::Csv(bytes),
        other => {
            return Err(AppError::Invalid {
                field: "format".into(),
                reason: format!("{other:?} is not jsonl or csv"),
            })
        }
    };
    Ok(prompts::import(&at.pool, at.project.id, file, &source, Some(at.user_id()), &LIMITS).await?)
}

/// An empty split means "any split".
fn parse_split(split: &str) -> Result<Option<Split>, AppError> {
    Ok(if split.trim().is_empty() { None } else { Some(Split::parse(split)?) })
}

/// The prompts page for `query`, with an import's report when there was one, or how many
/// demonstration tasks a request just created.
async fn render(
    at: &InProject,
    query: PageQuery,
    report: Option<ImportReport>,
    requested: Option<usize>,
) -> Reply {
    let (pool, project) = (&at.pool, &at.project);
    let split = parse_split(&query.split)?;
    let total = prompts::count_prompts(pool, project.id, Some(&query.q), split).await?;
    let pages = ((total + PER_PAGE - 1) / PER_PAGE).max(1);
    let current = query.page.unwrap_or(1).clamp(1, pages);
    let offset = (current - 1) * PER_PAGE;
    let found = prompts::list_prompts(pool, project.id, Some(&query.q), split, PER_PAGE, offset).await?;
    page(&PromptsPage {
        nav: at.nav()?,
        project: project.clone(),
        prompts: found,
        total,
        filters: format!("q={}&split={}", urlencode(&query.q), split.map(Split::as_str).unwrap_or("")),
        q: query.q,
        split: split.map(|s| s.as_str().to_owned()).unwrap_or_default(),
        page: current,
        pages,
        report,
        requested,
    })
}
