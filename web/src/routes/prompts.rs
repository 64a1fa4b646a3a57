//! Prompts (researchers): a project's prompts, searched, filtered by split, sorted and
//! paged by number; and importing JSON lines or CSV with a per-line report. The same as
//! JSON under /api.

use std::collections::HashMap;

use actix_multipart::Multipart;
use actix_web::dev::Payload;
use actix_web::{get, post, FromRequest, HttpRequest, HttpResponse};
use askama::Template;
use futures_util::future::{FutureExt, LocalBoxFuture, TryFutureExt};
use futures_util::StreamExt;
use labeling::domain::{PromptSource, Split};
use labeling::projects::Project;
use labeling::prompts::{self, ImportLimits, ImportReport, ListedPrompt, PromptFile, PromptOrder};
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
    prompts: Vec<ListedPrompt>,
    total: i64,
    q: String,
    split: String,
    sort: &'static str,
    /// (name in URLs, what the menu says).
    sorts: [(&'static str, &'static str); 5],
    page: i64,
    pages: i64,
    /// The page numbers to link, `None` for a gap (`…`).
    links: Vec<Option<i64>>,
    /// `q=…&split=…&sort=…`, URL-encoded, for the paging links.
    filters: String,
    report: Option<ImportReport>,
    /// How many demonstration tasks the researcher's request just created.
    requested: Option<usize>,
}

/// The page's filters: `?q=&split=&sort=&page=` (empty means "any", the oldest first,
/// page 1). The page is read as text so that a bad one is refused naming `page`.
#[derive(Deserialize, Default)]
pub struct PageQuery {
    #[serde(default)]
    q: String,
    #[serde(default)]
    split: String,
    #[serde(default)]
    sort: String,
    page: Option<String>,
}

/// The API's filters: `?q=&split=&sort=&limit=&offset=`.
#[derive(Deserialize)]
pub struct ApiQuery {
    #[serde(default)]
    q: String,
    #[serde(default)]
    split: String,
    #[serde(default)]
    sort: String,
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
pub async fn list(at: InProject, query: crate::query::Query<PageQuery>) -> Reply {
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
/// `file`).
#[post("/projects/{id}/prompts/file")]
pub async fn upload_file(at: InProject, form: Csrf<FileUpload<UploadForm>>) -> Reply {
    import_and_render(&at, &form).await
}

/// A form posted as `multipart/form-data` with a file, read into `T`; its `csrf` field is
/// checked by [`Csrf`].
pub struct FileUpload<T>(T);

/// A form that a multipart body with a file fills in.
pub trait FromMultipart: crate::auth::HasCsrf + Sized + 'static {
    /// The form from its text fields by name (the file's content under `file`) and the
    /// uploaded file's name.
    fn from_fields(fields: HashMap<String, String>, file_name: String) -> Result<Self, AppError>;
}

impl<T: FromMultipart> FromRequest for FileUpload<T> {
    type Error = AppError;
    type Future = LocalBoxFuture<'static, Result<Self, AppError>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        read_multipart(Multipart::new(req.headers(), payload.take()))
            .and_then(|(fields, file_name)| async move { T::from_fields(fields, file_name) })
            .map_ok(FileUpload)
            .boxed_local()
    }
}

impl<T: FromMultipart> CsrfBody for FileUpload<T> {
    type Inner = T;

    fn csrf(&self) -> &str {
        self.0.csrf()
    }

    fn into_inner(self) -> T {
        self.0
    }
}

impl FromMultipart for UploadForm {
    /// The format `auto` is taken from the file name: `.csv` is CSV, anything else JSON lines.
    fn from_fields(mut fields: HashMap<String, String>, file_name: String) -> Result<Self, AppError> {
        let mut form = UploadForm {
            format: fields.remove("format").unwrap_or_else(|| "auto".into()),
            data: fields.remove("file").unwrap_or_default(),
            csrf: fields.remove("csrf").unwrap_or_default(),
        };
        if form.format == "auto" {
            let csv = file_name.to_ascii_lowercase().ends_with(".csv");
            form.format = if csv { "csv" } else { "jsonl" }.into();
        }
        Ok(form)
    }
}

/// A multipart body's fields as text by name (each UTF-8 and within the upload limit),
/// and the name of its `file`, which must be there.
async fn read_multipart(mut payload: Multipart) -> Result<(HashMap<String, String>, String), AppError> {
    let mut fields = HashMap::new();
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
        fields.insert(name, text);
    }
    let Some(file_name) = file_name.filter(|n| !n.is_empty()) else {
        return Err(AppError::Invalid { field: "file".into(), reason: "choose a file to upload".into() });
    };
    Ok((fields, file_name))
}

#[get("/api/projects/{id}/prompts")]
pub async fn api_list(at: InProject, query: crate::query::Query<ApiQuery>) -> Reply {
    let split = parse_split(&query.split)?;
    let order = parse_order(&query.sort)?;
    let limit = list_limit(query.limit, PER_PAGE, 1000)?;
    let offset = list_offset(query.offset)?;
    let found =
        prompts::list_prompts_by(&at.pool, at.project.id, Some(&query.q), split, order, limit, offset)
            .await?;
    Ok(HttpResponse::Ok().json(found.into_iter().map(|l| l.prompt).collect::<Vec<_>>()))
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

/// An empty sort means the oldest first.
fn parse_order(sort: &str) -> Result<PromptOrder, AppError> {
    Ok(if sort.trim().is_empty() { PromptOrder::default() } else { PromptOrder::parse(sort)? })
}

/// The page asked for, 1 when none: a whole number from 1 to `pages`, else a 422 naming
/// `page` (a page past the end is a mistake to say, not to hide by showing another).
fn parse_page(page: Option<&str>, pages: i64) -> Result<i64, AppError> {
    let Some(page) = page.map(str::trim).filter(|p| !p.is_empty()) else { return Ok(1) };
    match page.parse::<i64>() {
        Ok(n) if (1..=pages).contains(&n) => Ok(n),
        _ => Err(AppError::Invalid {
            field: "page".into(),
            reason: format!("{page:?} is not a page: there are pages 1 to {pages}"),
        }),
    }
}

/// The page numbers a pager links: the first and last, and two either side of the
/// current one; `None` where numbers are left out.
fn page_links(current: i64, pages: i64) -> Vec<Option<i64>> {
    let mut links = Vec::new();
    for n in 1..=pages {
        if n == 1 || n == pages || (n - current).abs() <= 2 {
            links.push(Some(n));
        } else if links.last() != Some(&None) {
            links.push(None);
        }
    }
    links
}

/// What the sort menu says for an order.
fn sort_label(order: PromptOrder) -> &'static str {
    match order {
        PromptOrder::Oldest => "oldest first",
        PromptOrder::Newest => "newest first",
        PromptOrder::Text => "text A–Z",
        PromptOrder::MostTasks => "most tasks",
        PromptOrder::MostDemonstrations => "most demonstrations",
    }
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
    let order = parse_order(&query.sort)?;
    let total = prompts::count_prompts(pool, project.id, Some(&query.q), split).await?;
    let pages = ((total + PER_PAGE - 1) / PER_PAGE).max(1);
    let current = parse_page(query.page.as_deref(), pages)?;
    let offset = (current - 1) * PER_PAGE;
    let found =
        prompts::list_prompts_by(pool, project.id, Some(&query.q), split, order, PER_PAGE, offset).await?;
    let split_name = split.map(Split::as_str).unwrap_or("");
    page(&PromptsPage {
        nav: at.nav()?,
        project: project.clone(),
        prompts: found,
        total,
        filters: format!("q={}&split={split_name}&sort={}", urlencode(&query.q), order.as_str()),
        q: query.q,
        split: split_name.to_owned(),
        sort: order.as_str(),
        sorts: PromptOrder::ALL.map(|o| (o.as_str(), sort_label(o))),
        page: current,
        pages,
        links: page_links(current, pages),
        report,
        requested,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pager_links_the_ends_and_two_pages_either_side() {
        assert_eq!(page_links(1, 1), [Some(1)]);
        assert_eq!(page_links(1, 4), [Some(1), Some(2), Some(3), Some(4)]);
        assert_eq!(
            page_links(6, 12),
            [Some(1), None, Some(4), Some(5), Some(6), Some(7), Some(8), None, Some(12)]
        );
    }

    #[test]
    fn a_page_that_is_not_a_whole_number_in_range_is_refused_naming_page() {
        assert_eq!(parse_page(None, 3).unwrap(), 1);
        assert_eq!(parse_page(Some("3"), 3).unwrap(), 3);
        for bad in ["0", "-1", "4", "two", "1.5"] {
            let err = parse_page(Some(bad), 3).unwrap_err();
            assert!(matches!(&err, AppError::Invalid { field, .. } if field == "page"), "{bad}: {err}");
        }
    }
}
