//! Compare (researchers): pick model versions, then see them side by side: kind, lineage,
//! snapshots, final metrics (best per row marked), configs (differing keys marked) and
//! the training curves of the runs that made them, overlaid. The same under
//! `/api/compare`. Generations, reward-model scores and human A/B votes are an eval run's
//! (`routes/evals.rs`): the page lists the eval runs of the versions it shows and links
//! to a launch form pre-filled with an eval run of them.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use actix_web::web::{self, ServiceConfig};
use actix_web::{get, HttpResponse};
use askama::Template;
use registry::runs::{self, MetricSeries};
use registry::versions::{self, ModelKind, ModelVersion};
use serde::Serialize;
use serde_json::Value;
use sqlx::PgPool;

use super::runs::chart::{self, Chart, PALETTE};
use super::{page, Nav};
use crate::auth::Researcher;
use crate::caller::{Caller, Reply};
use crate::error::AppError;

/// The most versions one comparison shows (one colour each).
const MAX_VERSIONS: usize = PALETTE.len();

pub fn configure(cfg: &mut ServiceConfig) {
    cfg.service(compare).service(api_compare);
}

/// One compared version and how the page names it.
#[derive(Serialize)]
pub struct Compared {
    #[serde(flatten)]
    pub version: ModelVersion,
    /// `name:n`.
    pub label: String,
    /// Its colour in the overlaid curves.
    pub color: &'static str,
    /// Its parents as `role: name:n`.
    pub parent_labels: Vec<String>,
}

/// A final metric across the versions; `best` is the index of the best value.
#[derive(Serialize)]
pub struct MetricRow {
    pub name: String,
    pub values: Vec<Option<Value>>,
    pub lower_is_better: bool,
    pub best: Option<usize>,
}

/// A config key (dotted path) across the versions.
#[derive(Serialize)]
pub struct ConfigRow {
    pub key: String,
    pub values: Vec<Option<Value>>,
    pub differs: bool,
}

/// One metric's training curve of each version whose run reported it.
#[derive(Serialize)]
pub struct Curve {
    pub name: String,
    pub series: Vec<CurveSeries>,
}

#[derive(Serialize)]
pub struct CurveSeries {
    pub version_id: i64,
    pub label: String,
    pub steps: Vec<i64>,
    pub values: Vec<f64>,
}

/// Versions side by side; `GET /api/compare` answers this as JSON.
#[derive(Serialize)]
pub struct Comparison {
    pub versions: Vec<Compared>,
    pub metrics: Vec<MetricRow>,
    pub config: Vec<ConfigRow>,
    pub curves: Vec<Curve>,
    /// Eval runs that evaluated any of these versions, newest first.
    pub evals: Vec<EvalOfVersions>,
    /// The launch form of an eval run of these versions, pre-filled.
    pub launch_eval: String,
}

/// An eval run and the versions it evaluated (`model:n`).
#[derive(Serialize)]
pub struct EvalOfVersions {
    pub run_id: i64,
    pub versions: Vec<String>,
    /// How many of the compared versions it covers.
    pub covers: usize,
}

/// How many eval runs the page lists.
const EVALS_LISTED: i64 = 10;

impl Comparison {
    /// The curves as charts, one colour per version.
    fn charts(&self) -> Vec<Chart> {
        let colour_of = |id: i64| self.versions.iter().position(|v| v.version.id == id).unwrap_or(0);
        self.curves
            .iter()
            .map(|curve| {
                let series: Vec<(String, MetricSeries, usize)> = curve
                    .series
                    .iter()
                    .map(|s| {
                        let m = MetricSeries {
                            name: curve.name.clone(),
                            steps: s.steps.clone(),
                            values: s.values.clone(),
                        };
                        (s.label.clone(), m, colour_of(s.version_id))
                    })
                    .collect();
                let refs: Vec<(String, &MetricSeries)> =
                    series.iter().map(|(l, m, _)| (l.clone(), m)).collect();
                let mut c = chart::chart(&curve.name, &refs, true);
                for (line, (_, _, colour)) in c.lines.iter_mut().zip(&series) {
                    line.color = PALETTE[colour % PALETTE.len()];
                }
                c
            })
            .collect()
    }
}

/// `?v=ID&v=ID…`: the version ids, in order, without repeats.
fn selected(query: &[(String, String)]) -> Result<Vec<i64>, AppError> {
    let mut ids = Vec::new();
    for (name, value) in query.iter().filter(|(n, _)| n == "v") {
        let id: i64 = value.trim().parse().map_err(|_| AppError::Invalid {
            field: name.clone(),
            reason: format!("{value:?} is not a version id"),
        })?;
        if !ids.contains(&id) {
            ids.push(id);
        }
    }
    if ids.len() > MAX_VERSIONS {
        return Err(AppError::Invalid {
            field: "v".into(),
            reason: format!("compare at most {MAX_VERSIONS} versions"),
        });
    }
    Ok(ids)
}

/// Loss-like metrics are better low; the rest (accuracy, reward …) high.
fn lower_is_better(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    ["loss", "kl", "perplexity", "error", "seconds", "time"].iter().any(|w| name.contains(w))
}

/// A JSON object's leaves by dotted path (`{"a": {"b": 1}}` → `a.b`).
fn flatten(prefix: &str, value: &Value, out: &mut BTreeMap<String, Value>) {
    match value {
        Value::Object(map) if !map.is_empty() => {
            for (k, v) in map {
                let key = if prefix.is_empty() { k.clone() } else { format!("{prefix}.{k}") };
                flatten(&key, v, out);
            }
        }
        other => {
            out.insert(prefix.to_owned(), other.clone());
        }
    }
}

/// Rows of one key per leaf of any version's object.
fn rows(objects: &[&Value]) -> (Vec<String>, Vec<BTreeMap<String, Value>>) {
    let flat: Vec<BTreeMap<String, Value>> = objects
        .iter()
        .map(|o| {
            let mut out = BTreeMap::new();
            flatten("", o, &mut out);
            out.remove("");
            out
        })
        .collect();
    let keys: BTreeSet<String> = flat.iter().flat_map(|m| m.keys().cloned()).collect();
    (keys.into_iter().collect(), flat)
}

fn metric_rows(versions: &[ModelVersion]) -> Vec<MetricRow> {
    let (keys, flat) = rows(&versions.iter().map(|v| &v.metrics).collect::<Vec<_>>());
    keys.into_iter()
        .map(|name| {
            let values: Vec<Option<Value>> = flat.iter().map(|m| m.get(&name).cloned()).collect();
            let lower = lower_is_better(&name);
            let numbers: Vec<(usize, f64)> =
                values.iter().enumerate().filter_map(|(i, v)| Some((i, v.as_ref()?.as_f64()?))).collect();
            let best = if numbers.len() >= 2 {
                let pick = numbers.iter().copied().reduce(|a, b| {
                    let better = if lower { b.1 < a.1 } else { b.1 > a.1 };
                    if better {
                        b
                    } else {
                        a
                    }
                });
                pick.map(|(i, _)| i)
            } else {
                None
            };
            MetricRow { name, values, lower_is_better: lower, best }
        })
        .collect()
}

fn config_rows(versions: &[ModelVersion]) -> Vec<ConfigRow> {
    let (keys, flat) = rows(&versions.iter().map(|v| &v.config).collect::<Vec<_>>());
    keys.into_iter()
        .map(|key| {
            let values: Vec<Option<Value>> = flat.iter().map(|m| m.get(&key).cloned()).collect();
            let differs = values.iter().any(|v| v != &values[0]);
            ConfigRow { key, values, differs }
        })
        .collect()
}

/// Loads the versions and their runs' curves.
async fn comparison(pool: &PgPool, ids: &[i64]) -> Result<Comparison, AppError> {
    let mut loaded = Vec::new();
    for &id in ids {
        loaded.push(versions::get(pool, id).await?);
    }
    let mut curves: BTreeMap<String, Vec<CurveSeries>> = BTreeMap::new();
    for v in &loaded {
        let Some(run_id) = v.run_id else { continue };
        for s in runs::metrics(pool, run_id).await? {
            curves.entry(s.name).or_default().push(CurveSeries {
                version_id: v.id,
                label: format!("{}:{}", v.model, v.version),
                steps: s.steps,
                values: s.values,
            });
        }
    }
    let metrics = metric_rows(&loaded);
    let config = config_rows(&loaded);
    let evaluated_by = runs::evals_of_versions(pool, ids, EVALS_LISTED).await?;
    // Each version's label, looked up once however many of the runs evaluated it.
    let mut label_of: HashMap<i64, String> =
        loaded.iter().map(|v| (v.id, format!("{}:{}", v.model, v.version))).collect();
    let mut others: Vec<i64> =
        evaluated_by.iter().flat_map(|(_, e)| e).copied().filter(|id| !label_of.contains_key(id)).collect();
    others.sort_unstable();
    others.dedup();
    label_of.extend(versions::labels(pool, &others).await?);
    let evals = evaluated_by
        .into_iter()
        .map(|(run_id, evaluated)| EvalOfVersions {
            run_id,
            versions: evaluated.iter().map(|id| label_of[id].clone()).collect(),
            covers: evaluated.iter().filter(|id| ids.contains(id)).count(),
        })
        .collect();
    let launch_eval = launch_eval_link(pool, &loaded).await?;
    let mut compared = Vec::new();
    for (i, version) in loaded.into_iter().enumerate() {
        let mut parent_labels = Vec::new();
        for p in &version.parents {
            let parent = versions::get(pool, p.version_id).await?;
            parent_labels.push(format!("{}: {}:{}", p.role, parent.model, parent.version));
        }
        compared.push(Compared {
            label: format!("{}:{}", version.model, version.version),
            color: PALETTE[i % PALETTE.len()],
            parent_labels,
            version,
        });
    }
    Ok(Comparison {
        versions: compared,
        metrics,
        config,
        curves: curves.into_iter().map(|(name, series)| Curve { name, series }).collect(),
        evals,
        launch_eval,
    })
}

/// `/runs/new?kind=eval…` with the compared versions that generate text as the versions,
/// a compared reward model (the newest) as the reward, the first SFT version (else the
/// first) as the KL reference, and the project of the first version's run.
async fn launch_eval_link(pool: &PgPool, loaded: &[ModelVersion]) -> Result<String, AppError> {
    let label = |v: &ModelVersion| format!("{}:{}", v.model, v.version);
    let generative: Vec<&ModelVersion> = loaded.iter().filter(|v| v.kind != ModelKind::Reward).collect();
    let mut query: Vec<(&str, String)> = vec![("kind", "eval".into())];
    for v in loaded {
        if let Some(run_id) = v.run_id {
            if let Some(project) = runs::get(pool, run_id).await?.project_id {
                query.push(("project", project.to_string()));
                break;
            }
        }
    }
    query.push(("versions", generative.iter().map(|v| label(v)).collect::<Vec<_>>().join(",")));
    if let Some(rm) = loaded.iter().filter(|v| v.kind == ModelKind::Reward).max_by_key(|v| v.created_at) {
        query.push(("reward", label(rm)));
    }
    if let Some(reference) = generative.iter().find(|v| v.kind == ModelKind::Sft).or(generative.first()) {
        query.push(("reference", label(reference)));
    }
    query.push(("prompts.split", "test".into()));
    let encoded = serde_urlencoded::to_string(&query).map_err(|e| AppError::Internal(Box::new(e)))?;
    Ok(format!("/runs/new?{encoded}"))
}

/// A JSON value as a table cell.
fn cell(value: &Option<Value>) -> String {
    match value {
        None => "—".into(),
        Some(Value::String(s)) => s.clone(),
        Some(Value::Number(n)) => match n.as_f64() {
            Some(x) if n.is_f64() => chart::tick(x),
            _ => n.to_string(),
        },
        Some(other) => other.to_string(),
    }
}

#[derive(Template)]
#[template(path = "compare.html")]
struct ComparePage {
    nav: Nav,
    /// The picker: each model with its versions, newest first.
    models: Vec<(String, Vec<ModelVersion>)>,
    selected: Vec<i64>,
    comparison: Option<Comparison>,
    charts: Vec<Chart>,
}

impl ComparePage {
    fn cell(&self, value: &Option<Value>) -> String {
        cell(value)
    }

    fn kind(&self, kind: &ModelKind) -> &'static str {
        kind.as_str()
    }

    fn is_selected(&self, id: &i64) -> bool {
        self.selected.contains(id)
    }
}

#[get("/compare")]
pub async fn compare(me: Caller<Researcher>, query: web::Query<Vec<(String, String)>>) -> Reply {
    let ids = selected(&query)?;
    let mut models: Vec<(String, Vec<ModelVersion>)> = Vec::new();
    for model in versions::list_models(&me.pool).await? {
        let all = versions::list_versions(&me.pool, &model.name).await?;
        models.push((model.name, all));
    }
    let comparison = if ids.len() >= 2 { Some(comparison(&me.pool, &ids).await?) } else { None };
    page(&ComparePage {
        nav: me.nav()?,
        models,
        selected: ids,
        charts: comparison.as_ref().map(Comparison::charts).unwrap_or_default(),
        comparison,
    })
}

#[get("/api/compare")]
pub async fn api_compare(me: Caller<Researcher>, query: web::Query<Vec<(String, String)>>) -> Reply {
    let ids = selected(&query)?;
    if ids.len() < 2 {
        return Err(AppError::Invalid {
            field: "v".into(),
            reason: "pick at least two versions: ?v=ID&v=ID".into(),
        });
    }
    Ok(HttpResponse::Ok().json(comparison(&me.pool, &ids).await?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn losses_are_better_low_and_accuracies_high() {
        assert!(lower_is_better("val/loss"));
        assert!(lower_is_better("objective/kl"));
        assert!(!lower_is_better("val/accuracy"));
        assert!(!lower_is_better("objective/reward"));
    }

    #[test]
    fn nested_objects_flatten_to_dotted_keys() {
        let mut out = BTreeMap::new();
        flatten("", &json!({"stage": {"lr": 0.1, "steps": null}, "base": "b"}), &mut out);
        let keys: Vec<&str> = out.keys().map(String::as_str).collect();
        assert_eq!(keys, ["base", "stage.lr", "stage.steps"]);
    }

    #[test]
    fn the_query_lists_versions_once_each() {
        let q = vec![("v".to_string(), "3".to_string()), ("v".into(), "5".into()), ("v".into(), "3".into())];
        assert_eq!(selected(&q).unwrap(), [3, 5]);
        assert!(selected(&[("v".into(), "x".into())]).is_err());
    }
}
