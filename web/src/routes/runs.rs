//! Runs (researchers): launch forms pre-filled with each stage's defaults (or with a run
//! to clone), the queue with each run's model, headline metrics and tags, and a run's
//! page with live progress, curves (an RL run's over-optimisation curve among them), logs,
//! its name and notes, and cancel. The same under `/api/runs`. After an action the page
//! it lands on says what happened (`?done=`), and a queued run says when no worker is
//! online to take it.

pub mod chart;
mod launch;
pub mod overoptimisation;

use std::collections::{BTreeMap, HashMap};

use actix_session::Session;
use actix_web::http::StatusCode;
use actix_web::web::{self, ServiceConfig};
use actix_web::{get, patch, post, HttpResponse};
use askama::Template;
use chrono::{DateTime, Utc};
use labeling::audit::{self, Action};
use labeling::projects::{self, Project};
use registry::artifacts::ArtifactStore;
use registry::gangs;
use registry::runs::{self, LogLine, Run, RunFilter, RunKind, RunName, RunNotes, RunOutcome, RunStatus};
use registry::versions::{self, ModelVersion};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sqlx::PgPool;

use self::chart::Chart;
use self::launch::{Control, Problem};
use self::overoptimisation::{Curve, Overoptimisation};
use super::{list_limit, page, page_showing, see_other, Nav};
use crate::auth::{csrf_field, CsrfForm, CsrfJson, CsrfOnly, CsrfOnlyJson, CurrentUser, Researcher};
use crate::caller::{Caller, Reply};
use crate::error::{urlencode, AppError};

const STATUSES: [RunStatus; 5] =
    [RunStatus::Queued, RunStatus::Running, RunStatus::Succeeded, RunStatus::Failed, RunStatus::Cancelled];
/// Log lines a run page starts with (the tail); the API's most per request.
const LOG_TAIL: i64 = 200;
const MAX_LOG_LINES: i64 = 1000;

pub fn configure(cfg: &mut ServiceConfig) {
    cfg.service(queue)
        .service(new_form)
        .service(launch_run)
        .service(show)
        .service(cancel)
        .service(describe)
        .service(api_list)
        .service(api_launch)
        .service(api_show)
        .service(api_describe)
        .service(api_metrics)
        .service(api_logs)
        .service(api_cancel)
        .service(api_defaults);
}

fn parse_kind(field: &str, text: &str) -> Result<RunKind, AppError> {
    text.parse()
        .map_err(|e: spec::UnknownKind| AppError::Invalid { field: field.into(), reason: e.to_string() })
}

/// Form text that may be left empty: empty (or blank) is None, anything else is parsed
/// (an empty filter means "any").
pub(crate) fn optional<T>(
    text: &str,
    parse: impl FnOnce(&str) -> Result<T, AppError>,
) -> Result<Option<T>, AppError> {
    let text = text.trim();
    if text.is_empty() {
        Ok(None)
    } else {
        parse(text).map(Some)
    }
}

fn parse_status(text: &str) -> Result<RunStatus, AppError> {
    STATUSES.into_iter().find(|s| s.as_str() == text).ok_or_else(|| AppError::Invalid {
        field: "status".into(),
        reason: format!("{text:?} is not a run status (queued, running, succeeded, failed or cancelled)"),
    })
}

fn parse_id(field: &str, text: &str) -> Result<i64, AppError> {
    text.parse()
        .map_err(|_| AppError::Invalid { field: field.into(), reason: format!("{text:?} is not an id") })
}

fn time(t: &DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M:%S").to_string()
}

fn when(t: &Option<DateTime<Utc>>) -> String {
    t.as_ref().map(time).unwrap_or_default()
}

/// `1h 02m`, `3m 20s`, `12s`.
fn duration(seconds: i64) -> String {
    let s = seconds.max(0);
    match s {
        0..=59 => format!("{s}s"),
        60..=3599 => format!("{}m {:02}s", s / 60, s % 60),
        _ => format!("{}h {:02}m", s / 3600, (s % 3600) / 60),
    }
}

/// How long the run has run (so far, while it runs).
fn run_duration(run: &Run, now: DateTime<Utc>) -> Option<i64> {
    let start = run.started_at?;
    Some((run.finished_at.unwrap_or(now) - start).num_seconds())
}

/// Seconds left, from the time per step so far.
fn eta_seconds(run: &Run, now: DateTime<Utc>) -> Option<f64> {
    let p = f64::from(run.progress);
    if run.status != RunStatus::Running || p <= 0.0 || p >= 1.0 {
        return None;
    }
    let elapsed = (now - run.started_at?).num_milliseconds() as f64 / 1000.0;
    Some(elapsed * (1.0 - p) / p)
}

/// Names of users and projects, for the tables.
struct Names {
    users: HashMap<i64, String>,
    projects: HashMap<i64, String>,
}

impl Names {
    async fn load(pool: &PgPool) -> Result<Names, AppError> {
        let users =
            labeling::users::list_users(pool).await?.into_iter().map(|u| (u.id, u.username)).collect();
        let projects = projects::list_projects(pool).await?.into_iter().map(|p| (p.id, p.name)).collect();
        Ok(Names { users, projects })
    }

    fn user(&self, id: Option<i64>) -> String {
        id.and_then(|id| self.users.get(&id).cloned()).unwrap_or_default()
    }

    fn project(&self, id: Option<i64>) -> String {
        id.and_then(|id| self.projects.get(&id).cloned()).unwrap_or_default()
    }
}

// The queue.

/// `?project=&kind=&status=&q=` (empty: any; `q` is text in the name or notes) and, for
/// the API, `limit` (default 100, at most 500).
#[derive(Deserialize, Default)]
pub struct QueueQuery {
    #[serde(default)]
    project: String,
    #[serde(default)]
    kind: String,
    #[serde(default)]
    status: String,
    #[serde(default)]
    q: String,
    limit: Option<i64>,
}

impl QueueQuery {
    fn parse(&self) -> Result<(RunFilter, Option<RunKind>), AppError> {
        let filter = RunFilter {
            project_id: optional(&self.project, |t| parse_id("project", t))?,
            status: optional(&self.status, parse_status)?,
            limit: list_limit(self.limit, 100, 500)?,
        };
        Ok((filter, optional(&self.kind, |t| parse_kind("kind", t))?))
    }
}

/// What pages call a run: its name, or `run #id` when it has none.
fn title(run: &Run) -> String {
    if run.name.is_empty() {
        format!("run #{}", run.id)
    } else {
        run.name.clone()
    }
}

/// A run as the queue lists it, and as its own page heads it.
struct RunRow {
    run: Run,
    title: String,
    kind: &'static str,
    /// The version it starts from (a reference, as launched); empty when none.
    starts_from: String,
    /// The version it registered (`model:n`) and that version's tags.
    registered: Option<(String, Vec<String>)>,
    /// Its headline metrics' latest values, as (name, text).
    headline: Vec<(String, String)>,
    project: String,
    created_by: String,
    created: String,
    started: String,
    finished: String,
    duration: String,
}

impl RunRow {
    fn new(run: Run, outcome: RunOutcome, names: &Names, now: DateTime<Utc>) -> RunRow {
        RunRow {
            title: title(&run),
            starts_from: launch::starts_from(run.kind, &run.config).unwrap_or_default(),
            registered: outcome.registered,
            headline: outcome.headline.into_iter().map(|(name, value)| (name, metric_text(value))).collect(),
            kind: run.kind.as_str(),
            project: names.project(run.project_id),
            created_by: names.user(run.created_by),
            created: time(&run.created_at),
            started: when(&run.started_at),
            finished: when(&run.finished_at),
            duration: run_duration(&run, now).map(duration).unwrap_or_default(),
            run,
        }
    }
}

/// A metric's value in four significant digits.
fn metric_text(value: f64) -> String {
    let magnitude = value.abs();
    if magnitude == 0.0 {
        return "0".into();
    }
    if !(1e-3..1e5).contains(&magnitude) {
        return format!("{value:.3e}");
    }
    let decimals = (3 - magnitude.log10().floor() as i32).max(0) as usize;
    format!("{value:.decimals$}")
}

/// The queue's rows for `found`, each with its outcome.
async fn rows(pool: &PgPool, found: Vec<Run>) -> Result<Vec<RunRow>, AppError> {
    let ids: Vec<i64> = found.iter().map(|r| r.id).collect();
    let mut outcomes = runs::outcomes(pool, &ids).await?;
    let names = Names::load(pool).await?;
    let now = Utc::now();
    Ok(found
        .into_iter()
        .map(|run| {
            let outcome = outcomes.remove(&run.id).unwrap_or_default();
            RunRow::new(run, outcome, &names, now)
        })
        .collect())
}

/// A menu of the queue's filters: its options as (value, text), and the one chosen.
struct Filter {
    name: &'static str,
    label: &'static str,
    options: Vec<(String, String)>,
    selected: String,
}

impl Filter {
    fn new(
        name: &'static str,
        label: &'static str,
        selected: &str,
        options: impl Iterator<Item = (String, String)>,
    ) -> Filter {
        Filter { name, label, options: options.collect(), selected: selected.trim().to_owned() }
    }
}

#[derive(Template)]
#[template(path = "runs.html")]
struct QueuePage {
    nav: Nav,
    rows: Vec<RunRow>,
    /// The project, kind and status menus.
    filters: [Filter; 3],
    project: String,
    kind: String,
    status: String,
    /// The text filter (name or notes).
    q: String,
    /// The filters as a query string, for the refreshing script.
    query: String,
    /// Whether any row is queued or running (then the page refreshes them).
    active: bool,
    /// A row is queued and no worker is online to take it.
    no_worker: bool,
}

#[get("/runs")]
pub async fn queue(me: Caller<Researcher>, query: crate::query::Query<QueueQuery>) -> Reply {
    let (filter, kind) = query.parse()?;
    let found = runs::search(&me.pool, &filter, kind, &query.q).await?;
    let rows = rows(&me.pool, found).await?;
    let q = query.into_inner();
    let projects = projects::list_projects(&me.pool).await?;
    let named = |name: &str| (name.to_owned(), name.to_owned());
    let any_queued = rows.iter().any(|r| r.run.status == RunStatus::Queued);
    page(&QueuePage {
        nav: me.nav()?,
        active: rows.iter().any(|r| !r.run.status.is_finished()),
        no_worker: any_queued && !runs::worker_online(&me.pool).await?,
        rows,
        filters: [
            Filter::new(
                "project",
                "Project",
                &q.project,
                projects.into_iter().map(|p| (p.id.to_string(), p.name)),
            ),
            Filter::new("kind", "Kind", &q.kind, RunKind::ALL.iter().map(|k| k.as_str()).map(named)),
            Filter::new("status", "Status", &q.status, STATUSES.iter().map(|s| s.as_str()).map(named)),
        ],
        query: format!(
            "project={}&kind={}&status={}&q={}",
            urlencode(q.project.trim()),
            urlencode(q.kind.trim()),
            urlencode(q.status.trim()),
            urlencode(q.q.trim())
        ),
        project: q.project.trim().to_owned(),
        kind: q.kind.trim().to_owned(),
        status: q.status.trim().to_owned(),
        q: q.q.trim().to_owned(),
    })
}

#[get("/api/runs")]
pub async fn api_list(me: Caller<Researcher>, query: crate::query::Query<QueueQuery>) -> Reply {
    let (filter, kind) = query.parse()?;
    Ok(HttpResponse::Ok().json(runs::search(&me.pool, &filter, kind, &query.q).await?))
}

// Launching.

#[derive(Template)]
#[template(path = "run_new.html")]
struct LaunchPage {
    nav: Nav,
    kinds: Vec<&'static str>,
    kind: &'static str,
    projects: Vec<Project>,
    project: Option<Project>,
    /// Shown first: the name, the required fields and the versions the run starts from,
    /// the stage's key settings, and the notes.
    essentials: Vec<Control>,
    /// Folded under "Advanced settings": the other fields and stage settings, each
    /// pre-filled with its default.
    advanced: Vec<Control>,
    /// Problems with no field of their own on the form (an unknown stage setting …).
    problems: Vec<Problem>,
    /// Whether a field shows a problem of its own.
    any_field_error: bool,
    /// Whether a folded field does (then the fold opens).
    advanced_error: bool,
}

/// `?kind=sft&project=3`; without a project, the first one.
/// `GET /runs/new?kind=eval&project=3&versions=sft:1,policy:1`: `kind` and `project`
/// choose the form; any other parameter pre-fills the field of that name (the compare
/// page links to an eval run of the versions it shows this way, and a run page's "Clone
/// this run" to its kind, config and name).
#[get("/runs/new")]
pub async fn new_form(me: Caller<Researcher>, query: crate::query::Query<Vec<(String, String)>>) -> Reply {
    let value_of = |name: &str| query.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str());
    let kind = parse_kind("kind", value_of("kind").unwrap_or("sft"))?;
    let project_id = optional(value_of("project").unwrap_or(""), |t| parse_id("project", t))?;
    let all = projects::list_projects(&me.pool).await?;
    let project = match project_id {
        Some(id) => Some(projects::get_project(&me.pool, id).await?),
        None => all.first().cloned(),
    };
    let prefill: Vec<(String, String)> =
        query.iter().filter(|(n, _)| n != "kind" && n != "project").cloned().collect();
    let input = (!prefill.is_empty()).then_some(prefill.as_slice());
    let page = launch_page(&me, &me.pool, &me.session, kind, all, project, input, Vec::new()).await?;
    super::page(&page)
}

#[allow(clippy::too_many_arguments)]
async fn launch_page(
    me: &CurrentUser,
    pool: &PgPool,
    session: &Session,
    kind: RunKind,
    projects: Vec<Project>,
    project: Option<Project>,
    input: Option<&[(String, String)]>,
    problems: Vec<Problem>,
) -> Result<LaunchPage, AppError> {
    let (fields, stage) = match &project {
        Some(project) => launch::controls(pool, project, kind, input, &problems).await?,
        None => (Vec::new(), Vec::new()),
    };
    let typed = |name: &str| {
        input.and_then(|pairs| pairs.iter().find(|(n, _)| n == name)).map_or("", |(_, v)| v.as_str())
    };
    let error = |name: &str| problems.iter().find(|p| p.field == name).map(|p| p.message.clone());
    let name = launch::text_control(
        "name",
        "Name",
        "What the run is called on its page and in the run list: one line, at most 200 characters. \
         Empty: the kind and the version it starts from (\"sft of base:1\").",
        false,
        typed("name"),
        error("name"),
    );
    let notes = launch::text_control(
        "notes",
        "Notes",
        "Why this run, what to look at: at most 10000 characters; editable on the run page later.",
        true,
        typed("notes"),
        error("notes"),
    );
    let (key, other): (Vec<Control>, Vec<Control>) =
        fields.into_iter().chain(stage).partition(|c| c.essential);
    let essentials: Vec<Control> = std::iter::once(name).chain(key).chain(std::iter::once(notes)).collect();
    let shown: Vec<&str> = essentials.iter().chain(&other).map(|c| c.name.as_str()).collect();
    let problems = problems.iter().filter(|p| !shown.contains(&p.field.as_str())).cloned().collect();
    Ok(LaunchPage {
        any_field_error: essentials.iter().chain(&other).any(|c| c.error.is_some()),
        advanced_error: other.iter().any(|c| c.error.is_some()),
        nav: Nav::new(me, session)?.at("/runs/new"),
        kinds: RunKind::ALL.iter().map(|k| k.as_str()).collect(),
        kind: kind.as_str(),
        projects,
        project,
        essentials,
        advanced: other,
        problems,
    })
}

#[post("/runs")]
pub async fn launch_run(me: Caller<Researcher>, form: CsrfForm<Vec<(String, String)>>) -> Reply {
    let pairs = form.into_inner();
    let value_of = |name: &str| pairs.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str()).unwrap_or("");
    let kind = parse_kind("kind", value_of("kind"))?;
    let project = project_of(&me.pool, &parse_id("project_id", value_of("project_id"))?).await?;
    let (config, mut problems) = launch::config_from_form(kind, &pairs);
    let about = described(value_of("name"), value_of("notes"));
    problems.extend(about.as_ref().err().into_iter().flatten().cloned());
    for problem in launch::check(&me.pool, &project, kind, &config).await?.all() {
        if !problems.iter().any(|p| p.field == problem.field) {
            problems.push(problem);
        }
    }
    if let (true, Ok((name, notes))) = (problems.is_empty(), about) {
        let id = enqueue(&me.pool, &me, &project, kind, config, name, notes).await?;
        return Ok(see_other(&format!("/runs/{id}?done=launched")));
    }
    let all = projects::list_projects(&me.pool).await?;
    let page =
        launch_page(&me, &me.pool, &me.session, kind, all, Some(project), Some(&pairs), problems).await?;
    Ok(HttpResponse::build(StatusCode::UNPROCESSABLE_ENTITY)
        .content_type("text/html; charset=utf-8")
        .body(page.render()?))
}

/// A project named in the launch form: a missing one is the field's problem (422), shown
/// on the form.
async fn project_of(pool: &PgPool, id: &i64) -> Result<Project, AppError> {
    match projects::get_project(pool, *id).await {
        Err(labeling::error::LabelingError::NotFound { .. }) => Err(AppError::Invalid {
            field: "project_id".into(),
            reason: format!("project {id} does not exist"),
        }),
        other => Ok(other?),
    }
}

/// A run's name and notes as typed, or the problems with them (each naming its field).
fn described(name: &str, notes: &str) -> Result<(RunName, RunNotes), Vec<Problem>> {
    let name = RunName::parse(name).map_err(|e| Problem::new("name", e.to_string()));
    let notes = RunNotes::parse(notes).map_err(|e| Problem::new("notes", e.to_string()));
    match (name, notes) {
        (Ok(name), Ok(notes)) => Ok((name, notes)),
        (name, notes) => Err(name.err().into_iter().chain(notes.err()).collect()),
    }
}

/// The name of a run launched without one: its kind and the version it starts from
/// ("sft of base:1"); none when it starts from no version.
fn default_name(kind: RunKind, config: &Value) -> RunName {
    let Some(reference) = launch::starts_from(kind, config) else { return RunName::default() };
    let name: String = format!("{kind} of {reference}").chars().take(RunName::MAX_CHARS).collect();
    RunName::parse(&name).unwrap_or_default()
}

async fn enqueue(
    pool: &PgPool,
    me: &CurrentUser,
    project: &Project,
    kind: RunKind,
    config: Value,
    name: RunName,
    notes: RunNotes,
) -> Result<i64, AppError> {
    let name = if name.as_str().is_empty() { default_name(kind, &config) } else { name };
    let new = runs::NewRun { project_id: Some(project.id), kind, config, created_by: Some(me.user.id) };
    let id = runs::enqueue_named(pool, &new, &name, &notes).await?;
    let details = serde_json::json!({ "kind": kind.as_str(), "name": name.as_str(), "project": project.id });
    audit::record(pool, Some(me.user.id), Action::RunLaunch, &audit::run_subject(id), details).await?;
    Ok(id)
}

/// Asks run `id` to stop, and writes it in the audit log; the run's status after.
async fn cancel_run(me: &Caller<Researcher>, id: i64) -> Result<RunStatus, AppError> {
    let status = runs::cancel(&me.pool, id).await?;
    let details = serde_json::json!({ "status": status });
    audit::record(me.pool.get_ref(), Some(me.user_id()), Action::RunCancel, &audit::run_subject(id), details)
        .await?;
    Ok(status)
}

/// `POST /api/runs`: `{"project_id", "kind", "config", "name"?, "notes"?, "csrf"?}`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LaunchBody {
    project_id: i64,
    kind: String,
    #[serde(default = "empty_object")]
    config: Value,
    #[serde(default)]
    name: String,
    #[serde(default)]
    notes: String,
    #[serde(default)]
    csrf: String,
}
csrf_field!(LaunchBody);

fn empty_object() -> Value {
    Value::Object(Default::default())
}

#[post("/api/runs")]
pub async fn api_launch(me: Caller<Researcher>, body: CsrfJson<LaunchBody>) -> Reply {
    let kind = parse_kind("kind", &body.kind)?;
    let (name, notes) = (RunName::parse(&body.name)?, RunNotes::parse(&body.notes)?);
    let project = projects::get_project(&me.pool, body.project_id).await?;
    let checked = launch::check(&me.pool, &project, kind, &body.config).await?;
    // Every problem at once; a config whose only fault is naming what does not exist is a 404.
    if !checked.problems.is_empty() {
        return Err(AppError::Problems(checked.all()));
    }
    if let Some(missing) = checked.missing.first() {
        return Err(AppError::NotFound(format!("{}: {}", missing.field, missing.message)));
    }
    let body = body.into_inner();
    let id = enqueue(&me.pool, &me, &project, kind, body.config, name, notes).await?;
    Ok(HttpResponse::Created().json(runs::get(&me.pool, id).await?))
}

/// `?from=REFERENCE`: the version a run would start from.
#[derive(Deserialize)]
pub struct DefaultsQuery {
    from: Option<String>,
}

/// A kind's contract: its stage settings' defaults and help, and the declarations of
/// its fields and settings (type, range, whether essential) that the form is made from.
/// With `?from=REFERENCE`, also `resolved`: the version's width (`n_embd`) and the stage
/// defaults a run from it would use, every setting that follows the model's width filled in.
#[get("/api/run-defaults/{kind}")]
pub async fn api_defaults(
    _: Researcher,
    pool: web::Data<PgPool>,
    store: web::Data<ArtifactStore>,
    path: web::Path<String>,
    query: crate::query::Query<DefaultsQuery>,
) -> Result<HttpResponse, AppError> {
    let kind: RunKind = path.parse().map_err(|e: spec::UnknownKind| AppError::NotFound(e.to_string()))?;
    let settings = spec::settings(kind);
    let help: BTreeMap<&str, &str> = settings.iter().map(|s| (s.name, s.help)).collect();
    let fields: Vec<Value> = spec::inputs(kind)
        .iter()
        .map(|i| {
            serde_json::json!({ "name": i.name, "label": i.label, "help": i.help,
                                "required": i.required, "absent": i.absent })
        })
        .collect();
    let resolved = match query.into_inner().from.filter(|r| !r.trim().is_empty()) {
        Some(reference) => {
            let n_embd = width_of(&pool, &store, reference.trim()).await?;
            Some(serde_json::json!({
                "from": reference.trim(),
                "n_embd": n_embd,
                "stage": spec::stage_defaults_at(kind, n_embd),
            }))
        }
        None => None,
    };
    Ok(HttpResponse::Ok().json(serde_json::json!({
        "kind": kind,
        "stage": spec::stage_defaults(kind),
        "help": help,
        "settings": settings,
        "fields": fields,
        "resolved": resolved,
    })))
}

/// The width (`n_embd`) of version `reference`, from its checkpoint's `config.json`.
async fn width_of(pool: &PgPool, store: &web::Data<ArtifactStore>, reference: &str) -> Result<i64, AppError> {
    use registry::error::RegistryError as R;
    let version = match versions::resolve(pool, reference).await {
        Err(e @ R::BadReference(_)) => {
            return Err(AppError::Invalid { field: "from".into(), reason: e.to_string() })
        }
        Err(
            e @ (R::ModelNotFound(_)
            | R::NoSuchVersion { .. }
            | R::AliasNotFound { .. }
            | R::VersionNotFound(_)),
        ) => return Err(AppError::NotFound(format!("from: {e}"))),
        other => other?,
    };
    let (store, sha256) = (store.clone(), version.artifact_sha256.clone());
    let config =
        web::block(move || store.file(&sha256, "config.json")).await.map_err(AppError::internal)??;
    let width = match config {
        Some(path) => tokio::fs::read(&path)
            .await
            .ok()
            .and_then(|bytes| serde_json::from_slice::<Value>(&bytes).ok())
            .and_then(|config| config["n_embd"].as_i64()),
        None => None,
    };
    width.filter(|n| *n > 0).ok_or_else(|| AppError::Invalid {
        field: "from".into(),
        reason: format!("{reference}: its checkpoint has no config.json with a positive n_embd"),
    })
}

// One run.

/// The version a run registered, as a link.
#[derive(Serialize)]
pub struct VersionLink {
    pub id: i64,
    pub model: String,
    pub version: i32,
    pub url: String,
}

impl From<&ModelVersion> for VersionLink {
    fn from(v: &ModelVersion) -> Self {
        VersionLink {
            id: v.id,
            model: v.model.clone(),
            version: v.version,
            url: format!("/models/{}/versions/{}", urlencode(&v.model), v.version),
        }
    }
}

/// `GET /api/runs/{id}`: the run with its ETA and registered version.
#[derive(Serialize)]
struct RunDetail {
    #[serde(flatten)]
    run: Run,
    eta_seconds: Option<f64>,
    version: Option<VersionLink>,
    /// A gang run's ranks (its current or last attempt); empty for a run on one worker.
    ranks: Vec<gangs::Rank>,
}

/// Charts under one heading (`loss`, `objective`, `ppo`, `val`, …).
pub struct ChartGroup {
    pub name: String,
    pub charts: Vec<Chart>,
}

/// The metric series as charts, one per series, grouped by their prefix.
fn chart_groups(series: &[runs::MetricSeries]) -> Vec<ChartGroup> {
    let mut groups: BTreeMap<&str, Vec<Chart>> = BTreeMap::new();
    for s in series {
        groups.entry(chart::group_of(&s.name)).or_default().push(chart::chart(
            &s.name,
            &[(s.name.clone(), s)],
            false,
        ));
    }
    groups.into_iter().map(|(name, charts)| ChartGroup { name: name.to_owned(), charts }).collect()
}

/// The run's over-optimisation curve, with the checkpoint its version was chosen at.
fn overoptimisation_of(
    series: &[runs::MetricSeries],
    version: Option<&ModelVersion>,
) -> Option<Overoptimisation> {
    let curve =
        Curve { label: String::new(), color: chart::PALETTE[0], evals: overoptimisation::held_out(series) };
    let mut section = overoptimisation::section(&[curve])?;
    if let Some(chosen) = version.and_then(|v| overoptimisation::selection_sentence(&v.config)) {
        section.peaks.push((String::new(), chosen));
    }
    Some(section)
}

#[derive(Template)]
#[template(path = "run.html")]
struct RunPage {
    nav: Nav,
    /// What the queue shows of the run; the template reads its fields as the page's own.
    row: RunRow,
    eta: String,
    config: String,
    groups: Vec<ChartGroup>,
    logs: Vec<(i64, String, String)>,
    last_log_id: i64,
    version: Option<VersionLink>,
    active: bool,
    /// What the action that led here did (launch, cancel, save), said at the top.
    notice: Option<String>,
    /// The run is queued and no worker is online to take it.
    no_worker: bool,
    /// The launch form pre-filled with this run's kind, project, config and name.
    clone_url: String,
    /// What the cancel button asks before it cancels.
    cancel_question: String,
    /// The name and notes form as refused (what was typed, and why), if it was.
    refused: Option<Refused>,
    /// A gang run's ranks: rank, worker, state, last heartbeat.
    ranks: Vec<RankRow>,
    /// An RL run's held-out scores against its KL to the reference, if it logged them.
    overoptimisation: Option<Overoptimisation>,
}

/// One rank of a gang run, as its page lists it.
struct RankRow {
    rank: i32,
    worker: String,
    /// "training", "done", "lost", "waiting for its worker", "lost (no heartbeat)".
    state: String,
    heartbeat: String,
}

impl From<gangs::Rank> for RankRow {
    fn from(r: gangs::Rank) -> Self {
        let state = match (r.state.as_str(), r.expired) {
            (_, true) => "lost (no heartbeat)".to_owned(),
            ("assigned", false) => "waiting for its worker".to_owned(),
            (state, false) => state.to_owned(),
        };
        RankRow {
            rank: r.rank,
            worker: r.worker,
            state,
            heartbeat: r.heartbeat_at.as_ref().map(time).unwrap_or_default(),
        }
    }
}

/// A refused name and notes form: what was typed, and the problems with it.
struct Refused {
    name: String,
    notes: String,
    problems: Vec<Problem>,
}

impl std::ops::Deref for RunPage {
    type Target = RunRow;

    fn deref(&self) -> &RunRow {
        &self.row
    }
}

/// `?done=launched|cancelled|saved`: the action that led to a run's page.
#[derive(Deserialize)]
pub struct RunQuery {
    #[serde(default)]
    done: String,
}

/// What a run's page says at its top after `done`.
fn notice(done: &str, run: &Run) -> Option<String> {
    let title = title(run);
    match done {
        "launched" => Some(format!("Launched {title}: it is {}.", run.status)),
        "cancelled" if run.status == RunStatus::Running => {
            Some(format!("Cancel requested: the worker stops {title} at its next heartbeat."))
        }
        "cancelled" => Some(format!("Cancelled {title}.")),
        "saved" => Some("Saved the name and notes.".to_owned()),
        _ => None,
    }
}

/// "Cancel run #12 (sft, step 40 of 100)?"
fn cancel_question(run: &Run) -> String {
    let name = if run.name.is_empty() { String::new() } else { format!(", {}", run.name) };
    let steps = match run.total_steps {
        Some(total) => format!("step {} of {total}", run.step),
        None => format!("step {}", run.step),
    };
    format!("Cancel run #{}{name} ({}, {steps})?", run.id, run.kind)
}

/// The launch form pre-filled as `run` was launched, named "<name> (copy)".
fn clone_url(run: &Run) -> String {
    let base: String = title(run).chars().take(RunName::MAX_CHARS - " (copy)".len()).collect();
    let mut url =
        format!("/runs/new?kind={}&name={}", run.kind, urlencode(&format!("{} (copy)", base.trim())));
    if let Some(project) = run.project_id {
        url.push_str(&format!("&project={project}"));
    }
    for (name, value) in launch::form_of_config(run.kind, &run.config) {
        url.push_str(&format!("&{}={}", urlencode(&name), urlencode(&value)));
    }
    url
}

#[get("/runs/{id}")]
pub async fn show(
    me: Caller<Researcher>,
    path: web::Path<i64>,
    query: crate::query::Query<RunQuery>,
) -> Reply {
    page(&run_page(&me, path.into_inner(), &query.done, None).await?)
}

/// Run `id`'s page, after the action `done`, with the name and notes form as `refused`.
async fn run_page(
    me: &Caller<Researcher>,
    id: i64,
    done: &str,
    refused: Option<Refused>,
) -> Result<RunPage, AppError> {
    let run = runs::get(&me.pool, id).await?;
    let series = runs::metrics(&me.pool, run.id).await?;
    let logs = runs::log_tail(&me.pool, run.id, LOG_TAIL).await?;
    let version = versions::of_run(&me.pool, run.id).await?;
    let no_worker = run.status == RunStatus::Queued && !runs::worker_online(&me.pool).await?;
    let ranks = gangs::ranks(&me.pool, run.id).await?.into_iter().map(RankRow::from).collect();
    let row = rows(&me.pool, vec![run]).await?.remove(0);
    let run = &row.run;
    Ok(RunPage {
        nav: me.nav()?,
        eta: eta_seconds(run, Utc::now()).map(|s| duration(s.round() as i64)).unwrap_or_default(),
        config: serde_json::to_string_pretty(&run.config).map_err(AppError::internal)?,
        groups: chart_groups(&series),
        overoptimisation: overoptimisation_of(&series, version.as_ref()),
        last_log_id: logs.last().map(|l| l.id).unwrap_or(0),
        logs: logs.into_iter().map(|l: LogLine| (l.id, time(&l.at), l.line)).collect(),
        version: version.as_ref().map(VersionLink::from),
        active: !run.status.is_finished(),
        notice: notice(done, run),
        no_worker,
        clone_url: clone_url(run),
        cancel_question: cancel_question(run),
        refused,
        ranks,
        row,
    })
}

/// A run page's name and notes form.
#[derive(Deserialize)]
pub struct DescribeForm {
    #[serde(default)]
    name: String,
    #[serde(default)]
    notes: String,
    #[serde(default)]
    csrf: String,
}
csrf_field!(DescribeForm);

#[post("/runs/{id}/describe")]
pub async fn describe(me: Caller<Researcher>, path: web::Path<i64>, form: CsrfForm<DescribeForm>) -> Reply {
    let id = path.into_inner();
    match described(&form.name, &form.notes) {
        Ok((name, notes)) => {
            runs::describe(&me.pool, id, &name, &notes).await?;
            Ok(see_other(&format!("/runs/{id}?done=saved")))
        }
        Err(problems) => {
            let error = AppError::Problems(problems.clone());
            let form = form.into_inner();
            let refused = Refused { name: form.name, notes: form.notes, problems };
            page_showing(&run_page(&me, id, "", Some(refused)).await?, Some(&error))
        }
    }
}

/// `PATCH /api/runs/{id}`: `{"name"?, "notes"?, "csrf"?}`; what is left out stays.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DescribeBody {
    name: Option<String>,
    notes: Option<String>,
    #[serde(default)]
    csrf: String,
}
csrf_field!(DescribeBody);

#[patch("/api/runs/{id}")]
pub async fn api_describe(
    me: Caller<Researcher>,
    path: web::Path<i64>,
    body: CsrfJson<DescribeBody>,
) -> Reply {
    let run = runs::get(&me.pool, path.into_inner()).await?;
    let name = RunName::parse(body.name.as_deref().unwrap_or(&run.name))?;
    let notes = RunNotes::parse(body.notes.as_deref().unwrap_or(&run.notes))?;
    Ok(HttpResponse::Ok().json(runs::describe(&me.pool, run.id, &name, &notes).await?))
}

#[get("/api/runs/{id}")]
pub async fn api_show(me: Caller<Researcher>, path: web::Path<i64>) -> Reply {
    let run = runs::get(&me.pool, path.into_inner()).await?;
    let version = versions::of_run(&me.pool, run.id).await?;
    Ok(HttpResponse::Ok().json(RunDetail {
        eta_seconds: eta_seconds(&run, Utc::now()),
        version: version.as_ref().map(VersionLink::from),
        ranks: gangs::ranks(&me.pool, run.id).await?,
        run,
    }))
}

#[get("/api/runs/{id}/metrics")]
pub async fn api_metrics(me: Caller<Researcher>, path: web::Path<i64>) -> Reply {
    Ok(HttpResponse::Ok().json(runs::metrics(&me.pool, path.into_inner()).await?))
}

/// `?after=<log line id>&limit=` (default 200, at most 1000).
#[derive(Deserialize)]
pub struct LogsQuery {
    after: Option<i64>,
    limit: Option<i64>,
}

#[get("/api/runs/{id}/logs")]
pub async fn api_logs(
    me: Caller<Researcher>,
    path: web::Path<i64>,
    query: crate::query::Query<LogsQuery>,
) -> Reply {
    let limit = list_limit(query.limit, LOG_TAIL, MAX_LOG_LINES)?;
    Ok(HttpResponse::Ok().json(runs::logs(&me.pool, path.into_inner(), query.after, limit).await?))
}

#[post("/runs/{id}/cancel")]
pub async fn cancel(me: Caller<Researcher>, path: web::Path<i64>, _: CsrfForm<CsrfOnly>) -> Reply {
    let id = path.into_inner();
    cancel_run(&me, id).await?;
    Ok(see_other(&format!("/runs/{id}?done=cancelled")))
}

#[post("/api/runs/{id}/cancel")]
pub async fn api_cancel(me: Caller<Researcher>, path: web::Path<i64>, _: CsrfOnlyJson) -> Reply {
    let id = path.into_inner();
    let status = cancel_run(&me, id).await?;
    Ok(HttpResponse::Ok().json(serde_json::json!({ "id": id, "status": status })))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_at_a_glance() {
        for (seconds, text) in [(12, "12s"), (200, "3m 20s"), (3720, "1h 02m")] {
            assert_eq!(duration(seconds), text);
        }
    }

    #[test]
    fn metric_values_show_four_significant_digits() {
        for (value, text) in [(0.0, "0"), (2.345678, "2.346"), (0.012346, "0.01235"), (-123.456, "-123.5")] {
            assert_eq!(metric_text(value), text);
        }
        assert_eq!(metric_text(1.5e-6), "1.500e-6");
    }

    #[test]
    fn every_kind_parses_back_from_its_name() {
        for kind in RunKind::ALL.iter().copied() {
            assert_eq!(parse_kind("kind", kind.as_str()).unwrap(), kind);
        }
        assert!(parse_kind("kind", "rlhf").is_err());
    }
}
