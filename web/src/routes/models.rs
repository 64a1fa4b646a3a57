//! The registry (researchers): models, versions, lineage, config and metrics, aliases,
//! tags and checkpoint download. The same as JSON under /api.
//!
//! A version's address is its model's name and number: `/models/{name}/versions/{n}`.

use std::collections::{BTreeMap, BTreeSet};

use actix_web::body::SizedStream;
use actix_web::http::header::{ContentDisposition, DispositionParam, DispositionType};
use actix_web::{delete, get, post, put, routes, web, HttpResponse};
use askama::Template;
use labeling::audit::{self, Action};
use registry::artifacts::{ArtifactFile, ArtifactStore};
use registry::error::RegistryError;
use registry::versions::{self, LineageEntry, ModelSummary, ModelVersion};
use serde::{Deserialize, Serialize};
use sqlx::PgPool;
use tokio::io::AsyncReadExt;

use super::{page, page_showing, see_other, Nav};
use crate::auth::{csrf_field, Csrf, CsrfForm, CsrfHeader, CsrfJson, CsrfOnly, Researcher};
use crate::caller::{caller_at, redrawable, redrawable_naming, Caller, Reply};
use crate::error::AppError;

#[derive(Template)]
#[template(path = "models.html")]
struct ModelsPage {
    nav: Nav,
    models: Vec<ModelRow>,
}

struct ModelRow {
    summary: ModelSummary,
    latest: Option<VersionRow>,
}

#[derive(Template)]
#[template(path = "model.html")]
struct ModelPage {
    nav: Nav,
    name: String,
    /// Each version with the versions it was trained from.
    versions: Vec<(VersionRow, Vec<LinkRow>)>,
    /// [`LineageGraph`] of the versions, their parents and their children, as JSON.
    graph: String,
    aliases: Vec<versions::Alias>,
    error: Option<String>,
}

/// A version as a line of a table.
struct VersionRow {
    version: ModelVersion,
    label: String,
    url: String,
    kind: &'static str,
    /// The first few final metrics, `name value`.
    metrics: String,
}

#[derive(Template)]
#[template(path = "version.html")]
struct VersionPage {
    nav: Nav,
    version: ModelVersion,
    label: String,
    url: String,
    kind: &'static str,
    config: String,
    metrics: Vec<(String, String)>,
    ancestors: Vec<LinkRow>,
    descendants: Vec<LinkRow>,
    /// [`LineageGraph`] as JSON, for lineage.js to lay out and draw.
    graph: String,
    snapshots: Vec<SnapshotRow>,
    /// The artifact's files, or why they cannot be listed.
    files: Result<Vec<FileRow>, String>,
    error: Option<String>,
}

/// A version in another's lineage, as a line of a table: once, however many paths reach
/// it (a policy's SFT parent is also its reward model's parent).
struct LinkRow {
    label: String,
    url: String,
    /// The roles of the links that reach it, `sft, reference`.
    role: String,
    /// Generations away along the shortest path.
    depth: i32,
}

struct SnapshotRow {
    id: i64,
    content_sha256: String,
    /// The snapshot's project and name, when the snapshot can still be read.
    project_id: Option<i64>,
    name: String,
}

struct FileRow {
    path: String,
    size: String,
    url: String,
}

/// The lineage as a graph for lineage.js: the version, its ancestors and descendants
/// (each once), and one edge from each parent to each child it was trained into, with
/// the roles it played (a version may be a `sft` and a `reference` parent of one child).
#[derive(Serialize, Debug, PartialEq)]
struct LineageGraph {
    nodes: Vec<GraphNode>,
    edges: Vec<GraphEdge>,
}

#[derive(Serialize, Debug, PartialEq)]
struct GraphNode {
    id: i64,
    label: String,
    url: String,
    current: bool,
}

#[derive(Serialize, Debug, PartialEq)]
struct GraphEdge {
    from: i64,
    to: i64,
    roles: Vec<String>,
}

/// A version with its lineage and files, as the API returns it.
#[derive(Serialize)]
struct VersionDetail {
    version: ModelVersion,
    ancestors: Vec<LineageEntry>,
    descendants: Vec<LineageEntry>,
    /// `null` when the artifact cannot be read; `files_error` says why.
    files: Option<Vec<ArtifactFile>>,
    files_error: Option<String>,
}

#[derive(Serialize)]
struct ModelDetail {
    name: String,
    versions: Vec<ModelVersion>,
    aliases: Vec<versions::Alias>,
}

#[derive(Serialize)]
struct Tags {
    tags: Vec<String>,
}

/// Pointing an alias at a version, from the model page's form.
#[derive(Deserialize)]
pub struct AliasForm {
    alias: String,
    version: String,
    #[serde(default)]
    csrf: String,
}
csrf_field!(AliasForm);

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AliasBody {
    version: i32,
    #[serde(default)]
    csrf: String,
}
csrf_field!(AliasBody);

#[derive(Deserialize)]
pub struct TagForm {
    tag: String,
    #[serde(default)]
    csrf: String,
}
csrf_field!(TagForm);

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(list)
        .service(show_model)
        .service(set_alias)
        .service(remove_alias)
        .service(show_version)
        .service(add_tag)
        .service(remove_tag)
        .service(download)
        .service(api_list)
        .service(api_model)
        .service(api_version)
        .service(api_set_alias)
        .service(api_remove_alias)
        .service(api_add_tag)
        .service(api_remove_tag)
        .service(api_files);
}

#[get("/models")]
#[tracing::instrument(skip_all)]
pub async fn list(me: Caller<Researcher>) -> Reply {
    let models = versions::list_models(&me.pool)
        .await?
        .into_iter()
        .map(|summary| ModelRow { latest: summary.latest.clone().map(version_row), summary })
        .collect();
    page(&ModelsPage { nav: me.nav()?, models })
}

#[get("/models/{name}")]
#[tracing::instrument(skip_all, fields(model = %path))]
pub async fn show_model(me: Caller<Researcher>, path: web::Path<String>) -> Reply {
    render_model(&me, &path, None).await
}

#[post("/models/{name}/aliases")]
#[tracing::instrument(skip_all, fields(model = %path))]
pub async fn set_alias(me: Caller<Researcher>, path: web::Path<String>, form: CsrfForm<AliasForm>) -> Reply {
    let number = form.version.trim().parse::<i32>().map_err(|_| AppError::Invalid {
        field: "version".into(),
        reason: format!("{:?} is not a version number", form.version),
    });
    let set = match number {
        Ok(number) => alias_version(&me, &path, form.alias.trim(), number).await,
        Err(e) => Err(e),
    };
    match set {
        Ok(_) => Ok(see_other(&format!("/models/{path}"))),
        Err(e) => render_model(&me, &path, Some(redrawable_naming(e, "version")?)).await,
    }
}

#[post("/models/{name}/aliases/{alias}/remove")]
#[tracing::instrument(skip_all, fields(model = %path.name, alias = %path.alias))]
pub async fn remove_alias(me: Caller<Researcher>, path: web::Path<Alias>, _: CsrfForm<CsrfOnly>) -> Reply {
    unalias(&me, &path.name, &path.alias).await?;
    Ok(see_other(&format!("/models/{}", path.name)))
}

#[get("/models/{name}/versions/{n}")]
#[tracing::instrument(skip_all, fields(version = at.version.id))]
pub async fn show_version(at: AtVersion, store: web::Data<ArtifactStore>) -> Reply {
    render_version(&at, &store, None).await
}

#[post("/models/{name}/versions/{n}/tags")]
#[tracing::instrument(skip_all, fields(version = at.version.id))]
pub async fn add_tag(at: AtVersion, store: web::Data<ArtifactStore>, form: CsrfForm<TagForm>) -> Reply {
    match versions::add_tag(&at.pool, at.version.id, form.tag.trim()).await {
        Ok(_) => Ok(see_other(&version_url(&at.version))),
        Err(e) => render_version(&at, &store, Some(redrawable(e.into())?)).await,
    }
}

#[post("/models/{name}/versions/{n}/tags/remove")]
#[tracing::instrument(skip_all, fields(version = at.version.id))]
pub async fn remove_tag(at: AtVersion, form: CsrfForm<TagForm>) -> Reply {
    versions::remove_tag(&at.pool, at.version.id, &form.tag).await?;
    Ok(see_other(&version_url(&at.version)))
}

/// One file of a version's checkpoint, checked against its manifest, then streamed (to
/// the page's link or the API alike).
#[routes]
#[get("/models/{name}/versions/{n}/files/{path:.*}")]
#[get("/api/models/{name}/versions/{n}/files/{path:.*}")]
#[tracing::instrument(skip_all, fields(model = %path.0, version = path.1, file = %path.2))]
pub async fn download(
    me: Caller<Researcher>,
    store: web::Data<ArtifactStore>,
    path: web::Path<(String, i32, String)>,
) -> Reply {
    let (name, number, file) = path.into_inner();
    send_file(&me.pool, &store, &name, number, file).await
}

#[get("/api/models")]
#[tracing::instrument(skip_all)]
pub async fn api_list(me: Caller<Researcher>) -> Reply {
    Ok(HttpResponse::Ok().json(versions::list_models(&me.pool).await?))
}

#[get("/api/models/{name}")]
#[tracing::instrument(skip_all, fields(model = %path))]
pub async fn api_model(me: Caller<Researcher>, path: web::Path<String>) -> Reply {
    let name = path.into_inner();
    let versions = versions::list_versions(&me.pool, &name).await?;
    let aliases = versions::aliases(&me.pool, &name).await?;
    Ok(HttpResponse::Ok().json(ModelDetail { name, versions, aliases }))
}

#[get("/api/models/{name}/versions/{n}")]
#[tracing::instrument(skip_all, fields(version = at.version.id))]
pub async fn api_version(at: AtVersion, store: web::Data<ArtifactStore>) -> Reply {
    let AtVersion { caller, version } = at;
    let ancestors = versions::ancestors(&caller.pool, version.id).await?;
    let descendants = versions::descendants(&caller.pool, version.id).await?;
    let (files, files_error) = match files_of(&store, &version).await {
        Ok(files) => (Some(files), None),
        Err(e) => (None, Some(e.to_string())),
    };
    Ok(HttpResponse::Ok().json(VersionDetail { version, ancestors, descendants, files, files_error }))
}

#[put("/api/models/{name}/aliases/{alias}")]
#[tracing::instrument(skip_all, fields(model = %path.name, alias = %path.alias))]
pub async fn api_set_alias(
    me: Caller<Researcher>,
    path: web::Path<Alias>,
    body: CsrfJson<AliasBody>,
) -> Reply {
    Ok(HttpResponse::Ok().json(alias_version(&me, &path.name, &path.alias, body.version).await?))
}

#[delete("/api/models/{name}/aliases/{alias}")]
#[tracing::instrument(skip_all, fields(model = %path.name, alias = %path.alias))]
pub async fn api_remove_alias(me: Caller<Researcher>, path: web::Path<Alias>, _: Csrf<CsrfHeader>) -> Reply {
    unalias(&me, &path.name, &path.alias).await?;
    Ok(HttpResponse::NoContent().finish())
}

#[post("/api/models/{name}/versions/{n}/tags")]
#[tracing::instrument(skip_all, fields(version = at.version.id))]
pub async fn api_add_tag(at: AtVersion, body: CsrfJson<TagForm>) -> Reply {
    let tags = versions::add_tag(&at.pool, at.version.id, body.tag.trim()).await?;
    Ok(HttpResponse::Ok().json(Tags { tags }))
}

#[delete("/api/models/{name}/versions/{n}/tags/{tag:.*}")]
#[tracing::instrument(skip_all, fields(version = at.version.id, tag = %tag))]
pub async fn api_remove_tag(at: AtVersion, tag: web::Path<TagPath>, _: Csrf<CsrfHeader>) -> Reply {
    let tags = versions::remove_tag(&at.pool, at.version.id, &tag.tag).await?;
    Ok(HttpResponse::Ok().json(Tags { tags }))
}

#[get("/api/models/{name}/versions/{n}/files")]
#[tracing::instrument(skip_all, fields(version = at.version.id))]
pub async fn api_files(at: AtVersion, store: web::Data<ArtifactStore>) -> Reply {
    Ok(HttpResponse::Ok().json(files_of(&store, &at.version).await?))
}

caller_at!(
    /// A [`Caller`] at a model version's page or API: the version that the path's `{name}`
    /// and `{n}` name.
    AtVersion { version: ModelVersion },
    VersionPath,
    load_version
);

async fn load_version(pool: &PgPool, path: VersionPath) -> Result<ModelVersion, AppError> {
    version_of(pool, &path.name, path.n).await
}

/// The parts of a version's path, by name (its route may go on, to a tag or a file).
#[derive(Deserialize)]
pub struct VersionPath {
    name: String,
    n: i32,
}

/// A model's alias as a path names it: the model and the alias.
#[derive(Deserialize)]
pub struct Alias {
    name: String,
    alias: String,
}

/// The tag a path ends with.
#[derive(Deserialize)]
pub struct TagPath {
    tag: String,
}

impl std::fmt::Display for TagPath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.tag)
    }
}

/// The version `name:number`; a malformed name is simply not found.
async fn version_of(pool: &PgPool, name: &str, number: i32) -> Result<ModelVersion, AppError> {
    match versions::resolve(pool, &format!("{name}:{number}")).await {
        Err(RegistryError::BadReference(_)) => {
            Err(AppError::NotFound(format!("there is no version {number} of a model named {name:?}")))
        }
        other => Ok(other?),
    }
}

/// Points `alias` of model `name` at its version `number`, in the audit log as the
/// caller's; a missing version is an invalid `version` field.
async fn alias_version(
    me: &Caller<Researcher>,
    name: &str,
    alias: &str,
    number: i32,
) -> Result<versions::Alias, AppError> {
    if number < 1 {
        let reason = format!("versions are numbered from 1, not {number}");
        return Err(AppError::Invalid { field: "version".into(), reason });
    }
    let pool = me.pool.get_ref();
    let version = match versions::resolve(pool, &format!("{name}:{number}")).await {
        Ok(version) => version,
        Err(RegistryError::NoSuchVersion { model, version }) => {
            return Err(AppError::NotFound(format!("version: model `{model}` has no version {version}")))
        }
        Err(RegistryError::BadReference(_)) => {
            return Err(AppError::NotFound(format!("there is no model named {name:?}")))
        }
        Err(e) => return Err(e.into()),
    };
    let set = versions::set_alias(pool, name, alias, version.id).await?;
    let (subject, details) = (audit::alias_subject(name, alias), serde_json::json!({ "version": number }));
    audit::record(pool, Some(me.user_id()), Action::AliasSet, &subject, details).await?;
    Ok(set)
}

/// Removes `alias` of model `name`, in the audit log as the caller's.
async fn unalias(me: &Caller<Researcher>, name: &str, alias: &str) -> Result<(), AppError> {
    if !versions::remove_alias(&me.pool, name, alias).await? {
        return Err(RegistryError::AliasNotFound { model: name.into(), alias: alias.into() }.into());
    }
    let (subject, details) = (audit::alias_subject(name, alias), serde_json::json!({}));
    audit::record(me.pool.get_ref(), Some(me.user_id()), Action::AliasDelete, &subject, details).await?;
    Ok(())
}

/// The files of the version's artifact, read off the blocking file I/O threads.
async fn files_of(
    store: &web::Data<ArtifactStore>,
    version: &ModelVersion,
) -> Result<Vec<ArtifactFile>, AppError> {
    let store = store.clone();
    let sha256 = version.artifact_sha256.clone();
    Ok(web::block(move || store.files(&sha256)).await.map_err(AppError::internal)??)
}

/// A relative path inside an artifact, or a 400: no empty, `.` or `..` components, no
/// leading `/`, no backslash or NUL. (Only paths that the manifest lists are served in
/// any case; this names the mistake.)
fn check_file_path(path: &str) -> Result<(), AppError> {
    let climbs = path.split('/').any(|part| matches!(part, "" | "." | ".."));
    if path.is_empty() || climbs || path.contains(['\\', '\0']) {
        return Err(AppError::BadRequest(format!(
            "{path:?} is not a file path inside the checkpoint: use the names that the version page lists"
        )));
    }
    Ok(())
}

async fn send_file(
    pool: &PgPool,
    store: &web::Data<ArtifactStore>,
    name: &str,
    number: i32,
    file: String,
) -> Result<HttpResponse, AppError> {
    check_file_path(&file)?;
    let version = version_of(pool, name, number).await?;
    let (store, sha256, wanted) = (store.clone(), version.artifact_sha256.clone(), file.clone());
    let location = web::block(move || store.file(&sha256, &wanted)).await.map_err(AppError::internal)??;
    let location = location.ok_or_else(|| {
        AppError::NotFound(format!("version {} of `{name}` has no file {file:?}", version.version))
    })?;
    let opened = tokio::fs::File::open(&location).await.map_err(AppError::internal)?;
    let size = opened.metadata().await.map_err(AppError::internal)?.len();
    let chunks = futures_util::stream::unfold(Some(opened), |state| async move {
        let mut file = state?;
        let mut buffer = vec![0u8; 256 * 1024];
        match file.read(&mut buffer).await {
            Ok(0) => None,
            Ok(n) => {
                buffer.truncate(n);
                Some((Ok::<_, std::io::Error>(web::Bytes::from(buffer)), Some(file)))
            }
            Err(e) => Some((Err(e), None)),
        }
    });
    let file_name = file.rsplit('/').next().unwrap_or(&file).to_string();
    Ok(HttpResponse::Ok()
        .content_type("application/octet-stream")
        .insert_header(ContentDisposition {
            disposition: DispositionType::Attachment,
            parameters: vec![DispositionParam::Filename(file_name)],
        })
        .body(SizedStream::new(size, chunks)))
}

async fn render_model(me: &Caller<Researcher>, name: &str, error: Option<AppError>) -> Reply {
    let versions = versions::list_versions(&me.pool, name).await?;
    let aliases = versions::aliases(&me.pool, name).await?;
    // Direct links only: a model's page shows one generation either side of its versions.
    let (mut parents, mut children) = (Vec::new(), Vec::new());
    for version in &versions {
        parents.extend(versions::ancestors(&me.pool, version.id).await?.into_iter().filter(|e| e.depth == 1));
        children
            .extend(versions::descendants(&me.pool, version.id).await?.into_iter().filter(|e| e.depth == 1));
    }
    let graph = lineage_graph(&versions.iter().collect::<Vec<_>>(), &parents, &children);
    let page = ModelPage {
        nav: me.nav()?,
        name: name.to_string(),
        graph: serde_json::to_string(&graph).map_err(AppError::internal)?,
        versions: versions
            .into_iter()
            .map(|v| {
                let trained_from: Vec<LineageEntry> =
                    parents.iter().filter(|e| e.via == v.id).cloned().collect();
                (version_row(v), link_rows(&trained_from))
            })
            .collect(),
        aliases,
        error: error.as_ref().map(ToString::to_string),
    };
    page_showing(&page, error.as_ref())
}

async fn render_version(at: &AtVersion, store: &web::Data<ArtifactStore>, error: Option<AppError>) -> Reply {
    let (pool, version) = (&at.pool, at.version.clone());
    let ancestors = versions::ancestors(pool, version.id).await?;
    let descendants = versions::descendants(pool, version.id).await?;
    let mut snapshots = Vec::with_capacity(version.snapshots.len());
    for s in &version.snapshots {
        let found = labeling::snapshots::snapshot(pool, s.id).await.ok();
        snapshots.push(SnapshotRow {
            id: s.id,
            content_sha256: s.content_sha256.clone(),
            project_id: found.as_ref().map(|f| f.project_id),
            name: found.map(|f| f.name).unwrap_or_default(),
        });
    }
    let url = version_url(&version);
    let files = match files_of(store, &version).await {
        Ok(files) => Ok(files
            .into_iter()
            .map(|f| FileRow {
                url: format!("{url}/files/{}", f.path),
                size: human_size(f.size),
                path: f.path,
            })
            .collect()),
        Err(e) => Err(e.to_string()),
    };
    let page = VersionPage {
        nav: at.nav()?,
        label: label(&version),
        kind: version.kind.as_str(),
        config: serde_json::to_string_pretty(&version.config).map_err(AppError::internal)?,
        metrics: metric_list(&version.metrics),
        graph: serde_json::to_string(&lineage_graph(&[&version], &ancestors, &descendants))
            .map_err(AppError::internal)?,
        ancestors: link_rows(&ancestors),
        descendants: link_rows(&descendants),
        snapshots,
        files,
        url,
        version,
        error: error.as_ref().map(ToString::to_string),
    };
    page_showing(&page, error.as_ref())
}

/// `name:n (kind)`.
fn label(version: &ModelVersion) -> String {
    format!("{}:{} ({})", version.model, version.version, version.kind.as_str())
}

fn version_url(version: &ModelVersion) -> String {
    // Model names are letters, digits, `_`, `.` and `-`: nothing to escape in a path.
    format!("/models/{}/versions/{}", version.model, version.version)
}

fn version_row(version: ModelVersion) -> VersionRow {
    let metrics = metric_list(&version.metrics)
        .into_iter()
        .take(3)
        .map(|(name, value)| format!("{name} {value}"))
        .collect::<Vec<_>>()
        .join(", ");
    VersionRow {
        label: label(&version),
        url: version_url(&version),
        kind: version.kind.as_str(),
        metrics,
        version,
    }
}

/// One row per version of a lineage list (which has one entry per link), with the
/// roles of its links and its shortest depth; nearest first, then by id.
fn link_rows(entries: &[LineageEntry]) -> Vec<LinkRow> {
    let mut by_version: BTreeMap<i64, (&ModelVersion, BTreeSet<&str>, i32)> = BTreeMap::new();
    for entry in entries {
        let row =
            by_version.entry(entry.version.id).or_insert((&entry.version, BTreeSet::new(), entry.depth));
        row.1.insert(&entry.role);
        row.2 = row.2.min(entry.depth);
    }
    let mut rows: Vec<(i32, i64, LinkRow)> = by_version
        .into_iter()
        .map(|(id, (version, roles, depth))| {
            let role = roles.into_iter().collect::<Vec<_>>().join(", ");
            (depth, id, LinkRow { label: label(version), url: version_url(version), role, depth })
        })
        .collect();
    rows.sort_by_key(|(depth, id, _)| (*depth, *id));
    rows.into_iter().map(|(_, _, row)| row).collect()
}

/// A metrics object as (name, value) pairs by name; numbers to 4 decimals.
fn metric_list(metrics: &serde_json::Value) -> Vec<(String, String)> {
    let Some(object) = metrics.as_object() else { return Vec::new() };
    let sorted: BTreeMap<&String, &serde_json::Value> = object.iter().collect();
    sorted
        .into_iter()
        .map(|(name, value)| {
            let shown = match value {
                serde_json::Value::Number(n) if n.is_f64() => {
                    n.as_f64().map(|x| format!("{x:.4}")).unwrap_or_else(|| n.to_string())
                }
                serde_json::Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            (name.clone(), shown)
        })
        .collect()
}

fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut value = bytes as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

/// The versions `shown` (marked current), their ancestors and their descendants as a
/// graph: each version once (by model name and number), each parent → child link once
/// with all its roles.
fn lineage_graph(
    shown: &[&ModelVersion],
    ancestors: &[LineageEntry],
    descendants: &[LineageEntry],
) -> LineageGraph {
    let mut nodes: BTreeMap<i64, &ModelVersion> = shown.iter().map(|v| (v.id, *v)).collect();
    let mut edges: BTreeMap<(i64, i64), BTreeSet<&str>> = BTreeMap::new();
    for entry in ancestors {
        nodes.insert(entry.version.id, &entry.version);
        edges.entry((entry.version.id, entry.via)).or_default().insert(&entry.role);
    }
    for entry in descendants {
        nodes.insert(entry.version.id, &entry.version);
        edges.entry((entry.via, entry.version.id)).or_default().insert(&entry.role);
    }
    let mut nodes: Vec<&ModelVersion> = nodes.into_values().collect();
    nodes.sort_by(|a, b| (&a.model, a.version).cmp(&(&b.model, b.version)));
    LineageGraph {
        nodes: nodes
            .into_iter()
            .map(|v| GraphNode {
                id: v.id,
                label: label(v),
                url: version_url(v),
                current: shown.iter().any(|s| s.id == v.id),
            })
            .collect(),
        edges: edges
            .into_iter()
            .map(|((from, to), roles)| GraphEdge {
                from,
                to,
                roles: roles.into_iter().map(str::to_owned).collect(),
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_path_that_climbs_or_is_absolute_is_refused() {
        for bad in ["", "../x", "a/../../x", "/etc/passwd", "a//b", "./a", "a\\..\\b", "a/"] {
            assert!(check_file_path(bad).is_err(), "{bad:?}");
        }
        for good in ["config.json", "tokenizer/vocab.json", "model..safetensors"] {
            assert!(check_file_path(good).is_ok(), "{good:?}");
        }
    }

    #[test]
    fn sizes_read_in_binary_units() {
        assert_eq!(human_size(512), "512 B");
        assert_eq!(human_size(1536), "1.5 KiB");
        assert_eq!(human_size(3 * 1024 * 1024), "3.0 MiB");
    }
}
