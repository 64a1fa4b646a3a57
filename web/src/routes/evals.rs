//! The automatic comparison (researchers): what an eval run measured. A summary per
//! version (reward-model score, KL to the reference, oracle score, length, EOS rate,
//! repetition), each version's win rate against a baseline by the reward model and by
//! the oracle with bootstrap 95% intervals (drawn as bars with error bars), and every
//! prompt's samples side by side, the best score per prompt and the samples that differ
//! from the baseline's marked. The same as JSON at `/api/evals/{id}` for export.

use std::collections::HashMap;

use actix_session::Session;
use actix_web::web::{self, ServiceConfig};
use actix_web::{get, HttpResponse};
use askama::Template;
use registry::evals::{self, EvalSample, EvalSummary, WinRate};
use registry::runs::{self, Run, RunKind, RunStatus};
use registry::versions;
use serde::{Deserialize, Serialize};
use sqlx::PgPool;

use super::runs::chart::PALETTE;
use super::{page, Nav};
use crate::auth::CurrentUser;
use crate::error::AppError;

pub fn configure(cfg: &mut ServiceConfig) {
    cfg.service(show).service(api_show);
}

#[derive(Deserialize)]
pub struct Query {
    /// The version the others are measured against (default: the run's first).
    baseline: Option<i64>,
}

/// One evaluated version: its summary and its win rates against the baseline.
#[derive(Serialize)]
pub struct VersionResult {
    pub version_id: i64,
    /// `model:n`.
    pub label: String,
    pub color: &'static str,
    pub summary: EvalSummary,
    /// None for the baseline itself, or without scores.
    pub win_rate_reward: Option<WinRate>,
    pub win_rate_oracle: Option<WinRate>,
}

/// One prompt with each version's sample (None where a version has none).
#[derive(Serialize)]
pub struct PromptRow {
    pub prompt_id: i64,
    pub prompt: String,
    pub samples: Vec<Option<EvalSample>>,
    /// Index of the best reward-model score of the row.
    pub best: Option<usize>,
}

#[derive(Serialize)]
pub struct EvalReport {
    pub run: Run,
    pub baseline: i64,
    pub versions: Vec<VersionResult>,
    pub prompts: Vec<PromptRow>,
}

async fn report(pool: &PgPool, run_id: i64, baseline: Option<i64>) -> Result<EvalReport, AppError> {
    let run = runs::get(pool, run_id).await?;
    if run.kind != RunKind::Eval {
        return Err(AppError::Invalid {
            field: "run".into(),
            reason: format!("run {run_id} is not an eval run"),
        });
    }
    let summaries = evals::summary(pool, run_id).await?;
    let samples = evals::samples(pool, run_id).await?;
    let ids: Vec<i64> = summaries.iter().map(|s| s.version_id).collect();
    let baseline = match baseline {
        Some(b) if ids.contains(&b) => b,
        Some(b) => {
            return Err(AppError::Invalid {
                field: "baseline".into(),
                reason: format!("version {b} is not one of this run's versions"),
            })
        }
        None => first_listed(&run, pool, &ids).await.unwrap_or_else(|| ids.first().copied().unwrap_or(0)),
    };
    let by_reward: HashMap<i64, Option<WinRate>> =
        evals::win_rates(&samples, baseline, |s| s.reward).into_iter().collect();
    let by_oracle: HashMap<i64, Option<WinRate>> =
        evals::win_rates(&samples, baseline, |s| s.oracle).into_iter().collect();
    let mut versions = Vec::with_capacity(summaries.len());
    for (i, summary) in summaries.into_iter().enumerate() {
        let v = versions::get(pool, summary.version_id).await?;
        versions.push(VersionResult {
            version_id: v.id,
            label: format!("{}:{}", v.model, v.version),
            color: PALETTE[i % PALETTE.len()],
            win_rate_reward: by_reward.get(&v.id).cloned().flatten(),
            win_rate_oracle: by_oracle.get(&v.id).cloned().flatten(),
            summary,
        });
    }
    let mut prompt_ids: Vec<i64> = samples.iter().map(|s| s.prompt_id).collect();
    prompt_ids.sort_unstable();
    prompt_ids.dedup();
    let texts = labeling::prompts::texts(pool, &prompt_ids).await?;
    let mut by_key: HashMap<(i64, i64), EvalSample> =
        samples.into_iter().map(|s| ((s.prompt_id, s.version_id), s)).collect();
    let prompts = prompt_ids
        .into_iter()
        .map(|prompt_id| {
            let samples: Vec<Option<EvalSample>> =
                versions.iter().map(|v| by_key.remove(&(prompt_id, v.version_id))).collect();
            let best = samples
                .iter()
                .enumerate()
                .filter_map(|(i, s)| Some((i, s.as_ref()?.reward?)))
                .max_by(|a, b| a.1.total_cmp(&b.1))
                .map(|(i, _)| i);
            PromptRow { prompt_id, prompt: texts.get(&prompt_id).cloned().unwrap_or_default(), samples, best }
        })
        .collect();
    Ok(EvalReport { run, baseline, versions, prompts })
}

/// The first version the run's config lists, when it resolved to one of `ids`.
async fn first_listed(run: &Run, pool: &PgPool, ids: &[i64]) -> Option<i64> {
    let first = run.config["versions"].as_array()?.first()?.as_str()?;
    let version = versions::resolve(pool, first).await.ok()?;
    ids.contains(&version.id).then_some(version.id)
}

#[derive(Template)]
#[template(path = "eval.html")]
struct EvalPage {
    nav: Nav,
    report: EvalReport,
    finished: bool,
}

impl EvalPage {
    fn baseline_label(&self) -> &str {
        self.report.versions.iter().find(|v| v.version_id == self.report.baseline).map_or("", |v| &v.label)
    }

    fn mean(&self, value: &Option<f64>) -> String {
        value.map_or("—".to_owned(), |v| format!("{v:.3}"))
    }

    fn score(&self, value: &Option<f32>) -> String {
        value.map_or("—".to_owned(), |v| format!("{v:.3}"))
    }

    fn rate(&self, w: &Option<WinRate>) -> String {
        w.as_ref().map_or("—".to_owned(), |w| {
            format!("{:.0}% [{:.0}%, {:.0}%] of {}", 100.0 * w.rate, 100.0 * w.low, 100.0 * w.high, w.prompts)
        })
    }

    /// Whether a sample's text differs from the baseline's on the same prompt.
    fn differs(&self, row: &PromptRow, sample: &EvalSample) -> bool {
        let at = self.report.versions.iter().position(|v| v.version_id == self.report.baseline);
        match at.and_then(|i| row.samples[i].as_ref()) {
            Some(base) => base.version_id != sample.version_id && base.text != sample.text,
            None => false,
        }
    }

    /// Bars of the win rates by `which` ("reward" or "oracle"), with their intervals, as
    /// an SVG of `(label, colour, x, width, low x, high x)` in a 0..400 wide plot.
    fn bars(&self, which: &str) -> Vec<(String, &'static str, f64, f64, f64)> {
        self.report
            .versions
            .iter()
            .filter_map(|v| {
                let w =
                    if which == "reward" { v.win_rate_reward.as_ref() } else { v.win_rate_oracle.as_ref() }?;
                Some((v.label.clone(), v.color, 400.0 * w.rate, 400.0 * w.low, 400.0 * w.high))
            })
            .collect()
    }
}

#[get("/evals/{id}")]
pub async fn show(
    me: CurrentUser,
    pool: web::Data<PgPool>,
    session: Session,
    path: web::Path<i64>,
    query: web::Query<Query>,
) -> Result<HttpResponse, AppError> {
    me.require_researcher()?;
    let report = report(&pool, path.into_inner(), query.baseline).await?;
    let finished = report.run.status == RunStatus::Succeeded;
    page(&EvalPage { nav: Nav::new(&me, &session)?, report, finished })
}

#[get("/api/evals/{id}")]
pub async fn api_show(
    me: CurrentUser,
    pool: web::Data<PgPool>,
    path: web::Path<i64>,
    query: web::Query<Query>,
) -> Result<HttpResponse, AppError> {
    me.require_researcher()?;
    Ok(HttpResponse::Ok().json(report(&pool, path.into_inner(), query.baseline).await?))
}
