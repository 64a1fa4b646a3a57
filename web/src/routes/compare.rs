//! Compare (researchers): pick model versions, then see them side by side: kind, lineage,
//! snapshots, final metrics (the best marked where "best" means something), configs
//! (differing keys marked, or only those shown) and the training curves of the runs that
//! made them, overlaid. The same under `/api/compare`. Versions are named in the query as
//! `?v=policy:1&v=sft:1` (a version id works too). Generations, reward-model scores and human A/B votes are an eval run's
//! (`routes/evals.rs`): the page lists the eval runs of the versions it shows and links
//! to a launch form pre-filled with an eval run of them.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use actix_web::web::ServiceConfig;
use actix_web::{get, HttpResponse};
use askama::Template;
use registry::runs::{self, MetricSeries};
use registry::versions::{self, ModelKind, ModelRef, ModelVersion};
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

/// A final metric across the versions; `best` is the index of the best value, for the
/// metrics whose better direction is known (`lower_is_better` is then not null).
#[derive(Serialize)]
pub struct MetricRow {
    pub name: String,
    pub values: Vec<Option<Value>>,
    pub lower_is_better: Option<bool>,
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

/// How a `?v=` names a version: `name:n` (as the app's links do), or its id.
#[derive(Debug, PartialEq)]
enum Pick {
    Id(i64),
    Named(ModelRef),
}

/// `?v=…&v=…`: the versions asked for, in order; a malformed one is refused naming it.
fn picks(query: &[(String, String)]) -> Result<Vec<(String, Pick)>, AppError> {
    let picks = query
        .iter()
        .filter(|(name, _)| name == "v")
        .map(|(_, value)| {
            let value = value.trim();
            let pick = match value.parse::<i64>() {
                Ok(id) => Pick::Id(id),
                Err(_) => Pick::Named(ModelRef::parse(value).map_err(|_| AppError::Invalid {
                    field: "v".into(),
                    reason: format!("{value:?} is not a version: write model:n, e.g. sft:1"),
                })?),
            };
            Ok((value.to_owned(), pick))
        })
        .collect::<Result<Vec<_>, AppError>>()?;
    if picks.len() > MAX_VERSIONS {
        return Err(AppError::Invalid {
            field: "v".into(),
            reason: format!("compare at most {MAX_VERSIONS} versions"),
        });
    }
    Ok(picks)
}

/// The ids of the versions that `?v=` names, in order, without repeats; one that does not
/// exist is a 404 naming it.
async fn selected(pool: &PgPool, query: &[(String, String)]) -> Result<Vec<i64>, AppError> {
    let mut ids = Vec::new();
    for (value, pick) in picks(query)? {
        let found = match pick {
            Pick::Id(id) => versions::get(pool, id).await,
            Pick::Named(_) => versions::resolve(pool, &value).await,
        };
        let id = found.map_err(|e| match AppError::from(e) {
            AppError::NotFound(why) => AppError::NotFound(format!("v={value}: {why}")),
            other => other,
        })?;
        if !ids.contains(&id.id) {
            ids.push(id.id);
        }
    }
    Ok(ids)
}

/// Whether lower values of a metric are better (losses, perplexity, KL), higher ones
/// (accuracy, reward, win rate, score), or neither is known (learning rate, clip
/// fraction, tokens per second …): None, and no value is marked best.
fn lower_is_better(name: &str) -> Option<bool> {
    let name = name.to_ascii_lowercase();
    let words: Vec<&str> = name.split(|c: char| !c.is_ascii_alphanumeric()).collect();
    let has = |list: &[&str]| words.iter().any(|w| list.contains(w));
    if has(&["loss", "perplexity", "kl"]) {
        Some(true)
    } else if has(&["accuracy", "reward", "score", "winrate"])
        || words.windows(2).any(|w| w == ["win", "rate"])
    {
        Some(false)
    } else {
        None
    }
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
            let direction = lower_is_better(&name);
            let numbers: Vec<(usize, f64)> =
                values.iter().enumerate().filter_map(|(i, v)| Some((i, v.as_ref()?.as_f64()?))).collect();
            let best = if let (Some(lower), true) = (direction, numbers.len() >= 2) {
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
            MetricRow { name, values, lower_is_better: direction, best }
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

/// One chart of the compare page's curves for charts.js: one series per version, in its
/// colour.
#[derive(Serialize)]
struct ChartData<'a> {
    name: &'a str,
    series: Vec<SeriesData<'a>>,
}

#[derive(Serialize)]
struct SeriesData<'a> {
    label: &'a str,
    color: &'static str,
    steps: &'a [i64],
    values: &'a [f64],
}

#[derive(Template)]
#[template(path = "compare.html")]
struct ComparePage {
    nav: Nav,
    /// The picker: each model with its versions, newest first.
    models: Vec<(String, Vec<ModelVersion>)>,
    selected: Vec<i64>,
    comparison: Option<Comparison>,
    /// The server-drawn curves, shown without script.
    charts: Vec<Chart>,
    /// Show only the config keys whose values differ (`?only=differences`).
    only_differences: bool,
}

impl ComparePage {
    /// The curves as charts.js draws them (the `data-curves` of `#compare-curves`).
    fn curves_json(&self) -> Result<String, AppError> {
        let Some(c) = &self.comparison else { return Ok("[]".into()) };
        let color_of =
            |id: i64| c.versions.iter().find(|v| v.version.id == id).map_or(PALETTE[0], |v| v.color);
        let charts: Vec<ChartData> = c
            .curves
            .iter()
            .map(|curve| ChartData {
                name: &curve.name,
                series: curve
                    .series
                    .iter()
                    .map(|s| SeriesData {
                        label: &s.label,
                        color: color_of(s.version_id),
                        steps: &s.steps,
                        values: &s.values,
                    })
                    .collect(),
            })
            .collect();
        serde_json::to_string(&charts).map_err(AppError::internal)
    }

    /// This comparison's page with the config table showing all keys or only differing ones.
    fn link(&self, only_differences: bool) -> String {
        let Some(c) = &self.comparison else { return "/compare".into() };
        let mut query: Vec<(&str, &str)> = c.versions.iter().map(|v| ("v", v.label.as_str())).collect();
        if only_differences {
            query.push(("only", "differences"));
        }
        format!("/compare?{}", serde_urlencoded::to_string(&query).unwrap_or_default())
    }

    /// How the picker names a version: `model:n`.
    fn pick(&self, v: &ModelVersion) -> String {
        format!("{}:{}", v.model, v.version)
    }

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

/// `?only=differences`: the config table shows only the keys whose values differ.
fn only_differences(query: &[(String, String)]) -> Result<bool, AppError> {
    match query.iter().find(|(name, _)| name == "only").map(|(_, value)| value.as_str()) {
        None | Some("") => Ok(false),
        Some("differences") => Ok(true),
        Some(other) => Err(AppError::Invalid {
            field: "only".into(),
            reason: format!("{other:?} is not a choice: only=differences"),
        }),
    }
}

#[get("/compare")]
pub async fn compare(me: Caller<Researcher>, query: crate::query::Query<Vec<(String, String)>>) -> Reply {
    let ids = selected(&me.pool, &query).await?;
    let only_differences = only_differences(&query)?;
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
        only_differences,
    })
}

#[get("/api/compare")]
pub async fn api_compare(me: Caller<Researcher>, query: crate::query::Query<Vec<(String, String)>>) -> Reply {
    let ids = selected(&me.pool, &query).await?;
    if ids.len() < 2 {
        return Err(AppError::Invalid {
            field: "v".into(),
            reason: "pick at least two versions: ?v=sft:1&v=policy:1".into(),
        });
    }
    Ok(HttpResponse::Ok().json(comparison(&me.pool, &ids).await?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn losses_are_better_low_accuracies_high_and_other_metrics_neither() {
        for lower in ["val/loss", "objective/kl", "val/perplexity", "loss/reward"] {
            assert_eq!(lower_is_better(lower), Some(true), "{lower}");
        }
        for higher in ["val/accuracy", "objective/reward", "eval/win_rate", "oracle_score"] {
            assert_eq!(lower_is_better(higher), Some(false), "{higher}");
        }
        for neither in ["lr", "grad_norm", "ppo/clipfrac", "tokens_per_second", "skill"] {
            assert_eq!(lower_is_better(neither), None, "{neither}");
        }
    }

    #[test]
    fn nested_objects_flatten_to_dotted_keys() {
        let mut out = BTreeMap::new();
        flatten("", &json!({"stage": {"lr": 0.1, "steps": null}, "base": "b"}), &mut out);
        let keys: Vec<&str> = out.keys().map(String::as_str).collect();
        assert_eq!(keys, ["base", "stage.lr", "stage.steps"]);
    }

    #[test]
    fn a_version_is_picked_by_name_or_id_and_a_malformed_one_is_refused() {
        let q = vec![("v".to_string(), "policy:2".to_string()), ("v".into(), "5".into())];
        let picked: Vec<Pick> = picks(&q).unwrap().into_iter().map(|(_, p)| p).collect();
        assert_eq!(picked, [Pick::Named(ModelRef::Number("policy".into(), 2)), Pick::Id(5)]);
        for bad in ["sft:zero", "sft:0", ":1", "a b"] {
            match picks(&[("v".into(), bad.into())]) {
                Err(AppError::Invalid { field, reason }) => assert!(field == "v" && reason.contains(bad)),
                other => panic!("{bad}: {:?}", other.map(|p| p.len())),
            }
        }
    }
}
