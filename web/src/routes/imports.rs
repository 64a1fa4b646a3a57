//! Importing annotated files into a project (researchers): preference pairs and K-wise
//! rankings (`trl`, `hh`, `kwise`) and demonstrations (`messages`), from the data page's
//! form or as JSON under /api, with a report line by line (`labeling::imports`).

use std::collections::HashMap;

use actix_web::{get, post, HttpResponse};
use askama::Template;
use labeling::formats::Format;
use labeling::imports::{self, ImportFile, ImportReport, ImportSource};
use labeling::projects::Project;
use labeling::prompts::ImportLimits;
use serde::Deserialize;

use super::prompts::{FileUpload, FromMultipart};
use super::{page, Nav};
use crate::auth::{csrf_field, Csrf, CsrfJson};
use crate::caller::{InProject, Reply};
use crate::error::AppError;

/// What one upload may hold; more is refused as a whole (a 400).
const LIMITS: ImportLimits = ImportLimits { max_bytes: 10 * 1024 * 1024, max_lines: 100_000 };

#[derive(Template)]
#[template(path = "import_report.html")]
struct ImportPage {
    nav: Nav,
    project: Project,
    name: String,
    format: &'static str,
    report: ImportReport,
}

/// An import, from the API's JSON or the page's multipart form (`file`'s name is the
/// import's name there).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImportForm {
    format: String,
    /// The import source's name, shown as the origin of its rows: the file's name.
    name: String,
    data: String,
    #[serde(default)]
    csrf: String,
}
csrf_field!(ImportForm);

impl FromMultipart for ImportForm {
    fn from_fields(mut fields: HashMap<String, String>, file_name: String) -> Result<Self, AppError> {
        Ok(ImportForm {
            format: fields.remove("format").unwrap_or_default(),
            name: file_name,
            data: fields.remove("file").unwrap_or_default(),
            csrf: fields.remove("csrf").unwrap_or_default(),
        })
    }
}

/// A file imported from the data page: the page shows the report.
#[post("/projects/{id}/imports")]
#[tracing::instrument(skip_all, fields(project = at.project.id))]
pub async fn upload(at: InProject, form: Csrf<FileUpload<ImportForm>>) -> Reply {
    let (format, report) = import(&at, &form).await?;
    page(&ImportPage {
        nav: at.nav()?,
        project: at.project.clone(),
        name: form.name.clone(),
        format: format.as_str(),
        report,
    })
}

/// The same as JSON: 200 with the report, as a prompt import answers: each refused line
/// with its field (a file none of whose lines can be imported stores nothing), and a file
/// imported before adds nothing and says so.
#[post("/api/projects/{id}/imports")]
#[tracing::instrument(skip_all, fields(project = at.project.id))]
pub async fn api_import(at: InProject, body: CsrfJson<ImportForm>) -> Reply {
    let (_, report) = import(&at, &body).await?;
    Ok(HttpResponse::Ok().json(report))
}

/// The project's imports, newest first.
#[get("/api/projects/{id}/imports")]
#[tracing::instrument(skip_all, fields(project = at.project.id))]
pub async fn api_sources(at: InProject) -> Reply {
    let sources: Vec<ImportSource> = imports::sources(&at.pool, at.project.id).await?;
    Ok(HttpResponse::Ok().json(sources))
}

async fn import(at: &InProject, form: &ImportForm) -> Result<(Format, ImportReport), AppError> {
    let format = Format::parse(&form.format)?;
    let file = ImportFile { name: &form.name, format, bytes: form.data.as_bytes() };
    Ok((format, imports::import(&at.pool, at.project.id, file, Some(at.user_id()), &LIMITS).await?))
}
