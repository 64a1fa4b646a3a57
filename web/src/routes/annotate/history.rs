//! An annotator's own recent work (demonstrations, rankings, votes), newest first, and
//! how well they agree with the other annotators of each project they worked in.

use actix_web::{get, HttpResponse};
use askama::Template;
use labeling::agreement::{self, PairCounts};
use labeling::annotation::Vote;
use labeling::projects;
use labeling::submit::{self, Work};
use labeling::tasks::TaskKind;
use serde::{Deserialize, Serialize};
use sqlx::PgPool;

use super::form::order_text;
use crate::auth::Annotator;
use crate::caller::{Caller, Reply};
use crate::error::AppError;
use crate::routes::{list_limit, list_offset};
use crate::routes::{page, Nav};

const PER_PAGE: i64 = 25;
const MAX_LIMIT: i64 = 500;

/// One project's agreement of one annotator with the others who ranked the same tasks.
#[derive(Serialize)]
pub struct MyAgreement {
    project_id: i64,
    project_name: String,
    /// Annotators who ranked at least one task that this annotator ranked too.
    partners: usize,
    /// Tasks this annotator ranked that someone else ranked too.
    tasks_shared: usize,
    pairs: PairCounts,
    /// Over the sample pairs both ordered strictly, the fraction ordered the same way.
    agreement_rate: Option<f64>,
    /// Mean Kendall τ-b over the shared tasks where it is defined.
    kendall_tau: Option<f64>,
}

impl MyAgreement {
    fn rate_text(&self) -> String {
        self.agreement_rate.map_or("–".into(), |r| format!("{:.0} %", r * 100.0))
    }

    fn tau_text(&self) -> String {
        self.kendall_tau.map_or("–".into(), |t| format!("{t:.2}"))
    }
}

/// `annotator_id`'s agreement in every project they worked in, by project name.
async fn agreement_of(pool: &PgPool, annotator_id: i64) -> Result<Vec<MyAgreement>, AppError> {
    let mut rows = Vec::new();
    for project in projects::projects_worked_in(pool, annotator_id).await? {
        let report = agreement::project_agreement(pool, project.id).await?;
        let mine = report.per_annotator.into_iter().find(|a| a.annotator_id == annotator_id);
        rows.push(match mine {
            Some(a) => MyAgreement {
                project_id: project.id,
                project_name: project.name,
                partners: a.partners,
                tasks_shared: a.tasks_shared,
                pairs: a.pairs,
                agreement_rate: a.agreement_rate,
                kendall_tau: a.kendall_tau,
            },
            None => MyAgreement {
                project_id: project.id,
                project_name: project.name,
                partners: 0,
                tasks_shared: 0,
                pairs: PairCounts::default(),
                agreement_rate: None,
                kendall_tau: None,
            },
        });
    }
    Ok(rows)
}

/// One line of the history page.
struct WorkLine {
    work: Work,
}

impl WorkLine {
    fn kind(&self) -> &'static str {
        match self.work.kind {
            TaskKind::Demonstration => "Demonstration",
            TaskKind::Ranking => "Ranking",
            TaskKind::Comparison => "A/B vote",
        }
    }

    fn date(&self) -> String {
        self.work.created_at.format("%Y-%m-%d %H:%M").to_string()
    }

    /// What was answered: the order (best first, `=` between ties), the vote, or the
    /// start of the demonstration.
    fn answer(&self) -> String {
        let w = &self.work;
        match w.kind {
            TaskKind::Demonstration => w.response.clone().unwrap_or_default(),
            TaskKind::Ranking => {
                ranking_text(w.ranks.as_deref(), w.all_bad == Some(true), w.sample_order.as_deref())
            }
            TaskKind::Comparison => w.vote.map_or("", vote_text).into(),
        }
    }
}

/// A ranking in words: its order in the letters the samples were shown with (see
/// `order_text`), and whether all were bad.
pub(super) fn ranking_text(ranks: Option<&[i16]>, all_bad: bool, shown: Option<&[i16]>) -> String {
    match (ranks.map(|r| order_text(r, shown)), all_bad) {
        (Some(order), true) => format!("{order} (all bad)"),
        (Some(order), false) => order,
        (None, _) => "all bad".into(),
    }
}

/// An A/B vote in words.
pub(super) fn vote_text(vote: Vote) -> &'static str {
    match vote {
        Vote::A => "A better",
        Vote::B => "B better",
        Vote::Tie => "tie",
        Vote::BothBad => "both bad",
    }
}

#[derive(Template)]
#[template(path = "history.html")]
struct HistoryPage {
    nav: Nav,
    lines: Vec<WorkLine>,
    agreement: Vec<MyAgreement>,
    page: i64,
    more: bool,
}

#[derive(Deserialize)]
pub struct PageQuery {
    page: Option<i64>,
}

/// `GET /history?page=`: 25 items a page.
#[get("/history")]
pub async fn history_page(me: Caller<Annotator>, query: crate::query::Query<PageQuery>) -> Reply {
    let current = query.page.unwrap_or(1).max(1);
    let mut work = submit::work_of(&me.pool, me.user.id, PER_PAGE + 1, (current - 1) * PER_PAGE).await?;
    let more = work.len() as i64 > PER_PAGE;
    work.truncate(PER_PAGE as usize);
    let agreement = agreement_of(&me.pool, me.user.id).await?;
    page(&HistoryPage {
        nav: me.nav()?,
        lines: work.into_iter().map(|work| WorkLine { work }).collect(),
        agreement,
        page: current,
        more,
    })
}

#[derive(Deserialize)]
pub struct ApiQuery {
    limit: Option<i64>,
    offset: Option<i64>,
}

#[derive(Serialize)]
struct HistoryJson {
    items: Vec<Work>,
    limit: i64,
    offset: i64,
}

/// `GET /api/me/history?limit=&offset=`: `{items, limit, offset}`, newest first.
#[get("/api/me/history")]
pub async fn api_history(me: Caller<Annotator>, query: crate::query::Query<ApiQuery>) -> Reply {
    let limit = list_limit(query.limit, 50, MAX_LIMIT)?;
    let offset = list_offset(query.offset)?;
    let items = submit::work_of(&me.pool, me.user.id, limit, offset).await?;
    Ok(HttpResponse::Ok().json(HistoryJson { items, limit, offset }))
}

/// `GET /api/me/agreement`: one entry per project worked in.
#[get("/api/me/agreement")]
pub async fn api_agreement(me: Caller<Annotator>) -> Reply {
    Ok(HttpResponse::Ok().json(agreement_of(&me.pool, me.user.id).await?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ranks_array_reads_best_first_with_ties_joined() {
        assert_eq!(order_text(&[1, 0, 1, 2], None), "B > A = C > D");
        assert_eq!(order_text(&[0, 0], None), "A = B");
    }

    #[test]
    fn a_ranks_array_reads_in_the_letters_the_samples_were_shown_with() {
        // Position 2 was shown first (A), position 0 second (B), position 1 third (C).
        assert_eq!(order_text(&[1, 0, 1], Some(&[2, 0, 1])), "C > A = B");
    }
}
