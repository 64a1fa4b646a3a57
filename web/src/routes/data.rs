//! A project's data (researchers): counts, statistics per annotator (work done, median
//! time, agreement with the others' consensus, outliers), agreement per annotator,
//! consensus per task, snapshots and their exports as training files. The same as JSON
//! under /api.

use std::collections::HashMap;

use actix_web::http::header::{ContentDisposition, DispositionParam, DispositionType};
use actix_web::{get, post, routes, web, HttpResponse};
use askama::Template;
use labeling::agreement::{self, AgreementReport};
use labeling::annotation::SampleFlag;
use labeling::annotator_stats::{self, AnnotatorStats, Outlier};
use labeling::consensus::{self, TaskConsensus};
use labeling::domain::Split;
use labeling::projects::{self, Project, ProjectCounts};
use labeling::snapshots::{self, ExportFormat, Snapshot, SnapshotFilter, SnapshotKind};
use labeling::tasks::TaskKind;
use labeling::users;
use serde::{Deserialize, Serialize};
use sqlx::PgPool;

use super::{list_limit, list_offset, page_showing, see_other, Nav};
use crate::auth::{csrf_field, CsrfForm, CsrfJson, Researcher};
use crate::caller::{redrawable, Caller, InProject, Reply};
use crate::error::AppError;

const CONSENSUS_PER_PAGE: usize = 25;

#[derive(Template)]
#[template(path = "data.html")]
struct DataPage {
    nav: Nav,
    project: Project,
    counts: ProjectCounts,
    tasks: Vec<TaskRow>,
    agreement: AgreementReport,
    rows: Vec<AgreementRow>,
    chart: BarChart,
    annotators: Vec<AnnotatorRow>,
    consensus: Vec<ConsensusRow>,
    consensus_total: usize,
    page: usize,
    pages: usize,
    snapshots: Vec<SnapshotRow>,
    error: Option<String>,
}

/// One annotator's line of the agreement table.
struct AgreementRow {
    username: String,
    partners: usize,
    tasks_shared: usize,
    agreed: usize,
    compared: usize,
    rate: String,
    tau: String,
}

/// One annotator's line of the statistics table.
struct AnnotatorRow {
    username: String,
    demonstrations: usize,
    rankings: usize,
    votes: usize,
    /// Median time per demonstration, ranking and vote: `12.5 s`, or `–` when untimed.
    median_times: [String; 3],
    /// `agreed / compared (rate)` with the others' consensus, or `n/a`.
    consensus: String,
    /// What makes the annotator an outlier, in words; empty when nothing does.
    outliers: Vec<String>,
}

/// One task's line of the consensus table.
struct ConsensusRow {
    task_id: i64,
    prompt_id: i64,
    /// `2 > 0 = 1 > 3`: sample indices best first, `=` between tied ones.
    order: String,
    mean_positions: String,
    rankings: usize,
    all_bad_without_order: usize,
}

/// One task kind's line of the task counts.
struct TaskRow {
    kind: &'static str,
    open: i64,
    in_progress: i64,
    done: i64,
}

struct SnapshotRow {
    snapshot: Snapshot,
    kind: &'static str,
    /// (format name, download URL).
    downloads: Vec<(&'static str, String)>,
}

/// A horizontal bar chart laid out for the template (SVG user units).
struct BarChart {
    width: u32,
    height: u32,
    plot_left: u32,
    plot_width: u32,
    /// Where the x axis runs.
    axis_y: u32,
    bars: Vec<Bar>,
    ticks: Vec<Tick>,
    x_label: &'static str,
}

struct Bar {
    label: String,
    /// Top of the bar's row.
    y: u32,
    width: u32,
    value: String,
}

struct Tick {
    x: u32,
    label: String,
}

#[derive(Deserialize)]
pub struct PageQuery {
    page: Option<usize>,
}

#[derive(Deserialize)]
pub struct ApiPaging {
    limit: Option<i64>,
    offset: Option<i64>,
}

/// Freezing a snapshot, from the page's form or the API's JSON.
#[derive(Deserialize)]
pub struct FreezeForm {
    kind: String,
    name: String,
    /// Empty (or absent) means every split.
    #[serde(default)]
    split: String,
    /// Rankings only: leave out those that flag a sample with one of these, comma-separated
    /// (`harmful,hallucination`); empty or absent: none.
    #[serde(default)]
    drop_flags: String,
    /// Rankings only: leave out those whose best samples' highest Likert rating is below
    /// this (1 to 7) or missing; empty or absent: no such filter.
    #[serde(default)]
    min_best_likert: String,
    #[serde(default)]
    csrf: String,
}
csrf_field!(FreezeForm);

#[derive(Deserialize)]
pub struct ExportQuery {
    format: String,
}

/// The counts, agreement and annotator statistics, as the API returns them.
#[derive(Serialize)]
struct DataSummary {
    counts: ProjectCounts,
    agreement: AgreementReport,
    annotators: Vec<AnnotatorStats>,
    /// Usernames of the annotators the agreement report and the statistics name, by
    /// user id.
    usernames: HashMap<i64, String>,
}

#[derive(Serialize)]
struct ConsensusPage {
    total: usize,
    tasks: Vec<TaskConsensus>,
}

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(show)
        .service(freeze)
        .service(export)
        .service(api_data)
        .service(api_consensus)
        .service(api_snapshots)
        .service(api_freeze);
}

#[get("/projects/{id}/data")]
#[tracing::instrument(skip_all, fields(project = at.project.id))]
pub async fn show(at: InProject, query: crate::query::Query<PageQuery>) -> Reply {
    render(&at, query.page.unwrap_or(1), None).await
}

#[post("/projects/{id}/snapshots")]
#[tracing::instrument(skip_all, fields(project = at.project.id))]
pub async fn freeze(at: InProject, form: CsrfForm<FreezeForm>) -> Reply {
    match freeze_from(&at, &form).await {
        Ok(_) => Ok(see_other(&format!("/projects/{}/data#snapshots", at.project.id))),
        Err(e) => render(&at, 1, Some(redrawable(e)?)).await,
    }
}

/// A snapshot as a training file, downloaded from the page or the API (errors as JSON
/// under /api, as the path decides).
#[routes]
#[get("/snapshots/{id}/export")]
#[get("/api/snapshots/{id}/export")]
#[tracing::instrument(skip_all, fields(snapshot = *path))]
pub async fn export(
    me: Caller<Researcher>,
    path: web::Path<i64>,
    query: crate::query::Query<ExportQuery>,
) -> Reply {
    export_file(&me.pool, *path, &query.format).await
}

#[get("/api/projects/{id}/data")]
#[tracing::instrument(skip_all, fields(project = at.project.id))]
pub async fn api_data(at: InProject) -> Reply {
    let counts = projects::project_counts(&at.pool, at.project.id).await?;
    let agreement = agreement::project_agreement(&at.pool, at.project.id).await?;
    let annotators = annotator_stats::project_annotator_stats(&at.pool, at.project.id).await?;
    let usernames = usernames(&at.pool).await?;
    let named = agreement.per_annotator.iter().map(|a| a.annotator_id);
    let usernames = named
        .chain(annotators.iter().map(|a| a.annotator_id))
        .filter_map(|id| Some((id, usernames.get(&id)?.clone())))
        .collect();
    Ok(HttpResponse::Ok().json(DataSummary { counts, agreement, annotators, usernames }))
}

#[get("/api/projects/{id}/consensus")]
#[tracing::instrument(skip_all, fields(project = at.project.id))]
pub async fn api_consensus(at: InProject, query: crate::query::Query<ApiPaging>) -> Reply {
    let all = consensus::consensus_for_project(&at.pool, at.project.id).await?;
    let total = all.len();
    let limit = list_limit(query.limit, 100, 1000)? as usize;
    let offset = usize::try_from(list_offset(query.offset)?).unwrap_or(usize::MAX);
    let tasks = all.into_iter().skip(offset).take(limit).collect();
    Ok(HttpResponse::Ok().json(ConsensusPage { total, tasks }))
}

#[get("/api/projects/{id}/snapshots")]
#[tracing::instrument(skip_all, fields(project = at.project.id))]
pub async fn api_snapshots(at: InProject) -> Reply {
    Ok(HttpResponse::Ok().json(snapshots::snapshots(&at.pool, at.project.id).await?))
}

#[post("/api/projects/{id}/snapshots")]
#[tracing::instrument(skip_all, fields(project = at.project.id))]
pub async fn api_freeze(at: InProject, body: CsrfJson<FreezeForm>) -> Reply {
    Ok(HttpResponse::Created().json(freeze_from(&at, &body).await?))
}

/// Freezes the snapshot the form describes, recording the caller as its author.
async fn freeze_from(at: &InProject, form: &FreezeForm) -> Result<Snapshot, AppError> {
    let kind = parse_kind(&form.kind)?;
    let split = if form.split.trim().is_empty() { None } else { Some(Split::parse(&form.split)?) };
    let drop_flags = form
        .drop_flags
        .split(',')
        .map(str::trim)
        .filter(|f| !f.is_empty())
        .map(|f| {
            SampleFlag::parse(f)
                .map_err(|e| AppError::Invalid { field: "drop_flags".into(), reason: e.to_string() })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let min_best_likert = match form.min_best_likert.trim() {
        "" => None,
        n => Some(n.parse().map_err(|_| AppError::Invalid {
            field: "min_best_likert".into(),
            reason: format!("{n:?} is not on the Likert scale 1 to 7"),
        })?),
    };
    let filter = SnapshotFilter { split, drop_flags, min_best_likert };
    let name = form.name.trim();
    Ok(snapshots::freeze(&at.pool, at.project.id, kind, &filter, name, Some(at.user_id())).await?)
}

fn parse_kind(kind: &str) -> Result<SnapshotKind, AppError> {
    kind.trim()
        .parse()
        .map_err(|e: spec::UnknownKind| AppError::Invalid { field: "kind".into(), reason: e.to_string() })
}

fn parse_format(name: &str) -> Result<ExportFormat, AppError> {
    Ok(ExportFormat::parse(name)?)
}

/// The snapshot's export as a JSON-lines attachment named
/// `project-<p>-snapshot-<s>-<format>.jsonl`.
async fn export_file(pool: &PgPool, snapshot_id: i64, format_name: &str) -> Result<HttpResponse, AppError> {
    let format = parse_format(format_name)?;
    let snapshot = snapshots::snapshot(pool, snapshot_id).await?;
    let lines = snapshots::export(pool, snapshot.id, format).await?;
    let mut body = String::with_capacity(lines.iter().map(|l| l.len() + 1).sum());
    for line in &lines {
        body.push_str(line);
        body.push('\n');
    }
    let file_name = format!("project-{}-snapshot-{}-{format_name}.jsonl", snapshot.project_id, snapshot.id);
    Ok(HttpResponse::Ok()
        .content_type("application/x-ndjson")
        .insert_header(ContentDisposition {
            disposition: DispositionType::Attachment,
            parameters: vec![DispositionParam::Filename(file_name)],
        })
        .body(body))
}

async fn usernames(pool: &PgPool) -> Result<HashMap<i64, String>, AppError> {
    Ok(users::list_users(pool).await?.into_iter().map(|u| (u.id, u.username)).collect())
}

/// The data page at consensus page `page`; with `error`, the page says what was wrong,
/// with the error's status.
async fn render(at: &InProject, page_number: usize, error: Option<AppError>) -> Reply {
    let (pool, project) = (&**at.pool, &at.project);
    let counts = projects::project_counts(pool, project.id).await?;
    let agreement = agreement::project_agreement(pool, project.id).await?;
    let names = usernames(pool).await?;
    let username = |id: i64| names.get(&id).cloned().unwrap_or_else(|| format!("user {id}"));
    let annotators = annotator_stats::project_annotator_stats(pool, project.id)
        .await?
        .iter()
        .map(|a| annotator_row(username(a.annotator_id), a))
        .collect();
    let rows: Vec<AgreementRow> = agreement
        .per_annotator
        .iter()
        .map(|a| AgreementRow {
            username: username(a.annotator_id),
            partners: a.partners,
            tasks_shared: a.tasks_shared,
            agreed: a.pairs.agreed,
            compared: a.pairs.compared,
            rate: fraction(a.agreement_rate),
            tau: fraction(a.kendall_tau),
        })
        .collect();
    let chart = agreement_chart(&rows, &agreement);
    let all = consensus::consensus_for_project(pool, project.id).await?;
    let consensus_total = all.len();
    let pages = consensus_total.div_ceil(CONSENSUS_PER_PAGE).max(1);
    let current = page_number.clamp(1, pages);
    let consensus = all
        .iter()
        .skip((current - 1) * CONSENSUS_PER_PAGE)
        .take(CONSENSUS_PER_PAGE)
        .map(consensus_row)
        .collect();
    let snapshots = snapshots::snapshots(pool, project.id)
        .await?
        .into_iter()
        .map(|snapshot| SnapshotRow {
            kind: snapshot.kind.as_str(),
            downloads: ExportFormat::for_kind(snapshot.kind)
                .into_iter()
                .map(|(name, _)| (name, format!("/snapshots/{}/export?format={name}", snapshot.id)))
                .collect(),
            snapshot,
        })
        .collect();
    let tasks = counts
        .tasks
        .iter()
        .map(|t| TaskRow {
            kind: match t.kind {
                TaskKind::Demonstration => "demonstration",
                TaskKind::Ranking => "ranking",
                TaskKind::Comparison => "comparison",
            },
            open: t.open,
            in_progress: t.in_progress,
            done: t.done,
        })
        .collect();
    let page = DataPage {
        nav: at.nav()?,
        project: project.clone(),
        counts,
        tasks,
        agreement,
        rows,
        chart,
        annotators,
        consensus,
        consensus_total,
        page: current,
        pages,
        snapshots,
        error: error.as_ref().map(ToString::to_string),
    };
    page_showing(&page, error.as_ref())
}

fn fraction(value: Option<f64>) -> String {
    value.map(|v| format!("{v:.3}")).unwrap_or_else(|| "n/a".into())
}

fn annotator_row(username: String, stats: &AnnotatorStats) -> AnnotatorRow {
    let seconds =
        |ms: Option<f64>| ms.map(|ms| format!("{:.1} s", ms / 1000.0)).unwrap_or_else(|| "–".into());
    let times = &stats.median_time_ms;
    let pairs = stats.consensus_pairs;
    AnnotatorRow {
        username,
        demonstrations: stats.done.demonstration,
        rankings: stats.done.ranking,
        votes: stats.done.comparison,
        median_times: [seconds(times.demonstration), seconds(times.ranking), seconds(times.comparison)],
        consensus: match stats.consensus_agreement {
            Some(rate) => format!("{} / {} ({rate:.3})", pairs.agreed, pairs.compared),
            None => "n/a".into(),
        },
        outliers: stats
            .outliers
            .iter()
            .map(|o| match o {
                Outlier::TooFast { kind, median_time_ms, others_median_time_ms } => format!(
                    "too fast on {}: median {} against {} for the others",
                    kind_name(*kind),
                    seconds(Some(*median_time_ms)),
                    seconds(Some(*others_median_time_ms))
                ),
                Outlier::LowAgreement { agreement } => {
                    format!("low agreement with the others' consensus ({agreement:.3})")
                }
            })
            .collect(),
    }
}

/// A task kind as the page names it.
fn kind_name(kind: TaskKind) -> &'static str {
    match kind {
        TaskKind::Demonstration => "demonstrations",
        TaskKind::Ranking => "rankings",
        TaskKind::Comparison => "A/B votes",
    }
}

fn consensus_row(task: &TaskConsensus) -> ConsensusRow {
    let (order, mean_positions, rankings) = match &task.consensus {
        Some(c) => (
            c.ranking
                .groups()
                .iter()
                .map(|g| g.iter().map(usize::to_string).collect::<Vec<_>>().join(" = "))
                .collect::<Vec<_>>()
                .join(" > "),
            c.mean_positions.iter().map(|p| format!("{p:.2}")).collect::<Vec<_>>().join(", "),
            c.rankings,
        ),
        None => ("no order yet".into(), String::new(), 0),
    };
    ConsensusRow {
        task_id: task.task_id,
        prompt_id: task.prompt_id,
        order,
        mean_positions,
        rankings,
        all_bad_without_order: task.all_bad_without_order,
    }
}

/// Each annotator's pairwise agreement rate as a bar (0 to 1), with the project's rate
/// as the last bar.
fn agreement_chart(rows: &[AgreementRow], report: &AgreementReport) -> BarChart {
    const ROW: u32 = 28;
    const TOP: u32 = 8;
    const LEFT: u32 = 130;
    const PLOT: u32 = 400;
    const BOTTOM: u32 = 48;
    let mut entries: Vec<(String, Option<f64>)> = rows
        .iter()
        .zip(&report.per_annotator)
        .map(|(row, a)| (row.username.clone(), a.agreement_rate))
        .collect();
    entries.push(("project".into(), report.project.agreement_rate));
    let bars: Vec<Bar> = entries
        .into_iter()
        .enumerate()
        .map(|(i, (label, rate))| Bar {
            label,
            y: TOP + i as u32 * ROW,
            width: rate.map(|r| (r.clamp(0.0, 1.0) * f64::from(PLOT)).round() as u32).unwrap_or(0),
            value: fraction(rate),
        })
        .collect();
    let axis_y = TOP + bars.len() as u32 * ROW;
    let ticks = (0..=4)
        .map(|i| Tick { x: LEFT + i * PLOT / 4, label: format!("{:.2}", f64::from(i) / 4.0) })
        .collect();
    BarChart {
        width: LEFT + PLOT + 60,
        height: axis_y + BOTTOM,
        plot_left: LEFT,
        plot_width: PLOT,
        axis_y,
        bars,
        ticks,
        x_label: "Pairwise agreement rate",
    }
}
