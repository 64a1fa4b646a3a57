//! Annotators' pages and API: the next task, demonstrations, rankings, blind A/B votes, their own history and agreement.
//!
//! An annotator works in the projects they are a member of; researchers and admins may
//! take tasks in any project (to pilot it). "Next task" leases a task and shows it at
//! `/assignments/{id}`; a submit stores the work (once per idempotency key: every form
//! carries a fresh one) and goes on to the next task. The JSON API under `/api` shares
//! every function with the pages: it is what the simulated annotator drives.

mod form;
mod history;

use std::time::Duration;

use actix_web::http::StatusCode;
use actix_web::web::{self, ServiceConfig};
use actix_web::{get, post, HttpResponse};
use askama::Template;
use chrono::{DateTime, SecondsFormat, Utc};
use labeling::annotation::IdempotencyKey;
use labeling::domain::Role;
use labeling::projects::{self, Project};
use labeling::submit::{self, CurrentAnswer, DemonstrationFor, Submitted};
use labeling::tasks::{self, Assignment, AssignmentState, TaskKind, TaskPrompt, TaskSample};
use serde::{Deserialize, Serialize};
use spec::chat::{Message, Role as Speaker};

use self::form::{DemonstrationBody, DemonstrationForm, RankingBody, RankingForm, VoteBody, VoteForm};
use super::home::ProjectWork;
use super::{page, see_other, Nav};
use crate::auth::{Annotator, CsrfForm, CsrfJson, CsrfOnly, CsrfOnlyJson, CurrentUser};
use crate::caller::{Caller, Reply};
use crate::error::AppError;
use crate::markdown;

/// How long a task stays leased to the annotator who took it; after that it returns to
/// the queue (a submit is still accepted while no one else has taken it).
pub const LEASE: Duration = Duration::from_secs(60 * 60);

/// The annotators' pages (`/tasks`, `/projects/{id}/guidelines`, `/projects/{id}/next`,
/// `/assignments/...`, `/history`) and their JSON API (`/api/me/...`, `/api/projects/{id}/tasks/next`,
/// `/api/assignments/...`).
pub fn configure(cfg: &mut ServiceConfig) {
    cfg.service(tasks_page)
        .service(guidelines_page)
        .service(next_page)
        .service(assignment_page)
        .service(skip_page)
        .service(demonstration_page)
        .service(ranking_page)
        .service(vote_page)
        .service(history::history_page)
        .service(api_projects)
        .service(api_next)
        .service(api_assignment)
        .service(api_skip)
        .service(api_demonstration)
        .service(api_ranking)
        .service(api_vote)
        .service(history::api_history)
        .service(history::api_agreement);
}

// ---------------------------------------------------------------------------------
// Who may work where.

fn is_researcher(me: &CurrentUser) -> bool {
    matches!(me.user.role, Role::Researcher | Role::Admin)
}

/// The project, if `me` may read its guidelines and take its tasks: its annotators, and
/// researchers and admins. Others get a 403; an unknown project a 404.
async fn project_to_work_on(me: &Caller<Annotator>, project_id: i64) -> Result<Project, AppError> {
    let project = projects::get_project(&me.pool, project_id).await?;
    if !is_researcher(me) && !projects::is_member(&me.pool, project_id, me.user.id).await? {
        return Err(AppError::Forbidden(format!(
            "you are not an annotator of the project {:?}",
            project.name
        )));
    }
    Ok(project)
}

/// The projects whose tasks `me` may take (a researcher: all).
async fn projects_to_work_on(me: &Caller<Annotator>) -> Result<Vec<Project>, AppError> {
    Ok(if is_researcher(me) {
        projects::list_projects(&me.pool).await?
    } else {
        projects::projects_of_member(&me.pool, me.user.id).await?
    })
}

/// Leases `me` the next task of the project (the one they already hold, if any).
async fn lease_next(me: &Caller<Annotator>, project_id: i64) -> Result<Option<Assignment>, AppError> {
    project_to_work_on(me, project_id).await?;
    Ok(tasks::next_task(&me.pool, project_id, me.user.id, LEASE).await?)
}

/// Where a page goes after a submit or a skip (POST/redirect/GET): the project's next
/// task, or the task list saying that none is left.
async fn go_on(me: &Caller<Annotator>, project_id: i64, note: &str) -> Reply {
    match lease_next(me, project_id).await {
        Ok(Some(next)) => Ok(see_other(&format!("/assignments/{}?note={note}", next.id))),
        Ok(None) => Ok(see_other(&format!("/tasks?note={note}&done={project_id}"))),
        // Removed from the project meanwhile: the work is saved, the queue is closed.
        Err(AppError::Forbidden(_)) => Ok(see_other(&format!("/tasks?note={note}"))),
        Err(e) => Err(e),
    }
}

fn now_ms() -> i64 {
    Utc::now().timestamp_millis()
}

// ---------------------------------------------------------------------------------
// The task list and the guidelines.

#[derive(Template)]
#[template(path = "tasks.html")]
struct TasksPage {
    nav: Nav,
    /// The projects the person may take tasks in, each with its open tasks.
    work: Vec<ProjectWork>,
    researcher: bool,
    note: Option<&'static str>,
    /// The project that has no task left for this person, after "Next task" or a submit.
    done: Option<Project>,
}

/// `?note=saved|skipped` after a submit or a skip; `&done={project}` when that
/// project had no task left.
#[derive(Deserialize, Default)]
pub struct NoteQuery {
    #[serde(default)]
    note: String,
    done: Option<i64>,
    /// On an answered task: show its form again, filled in with the answer, to revise it.
    #[serde(default)]
    revise: bool,
}

fn note_text(note: &str) -> Option<&'static str> {
    match note {
        "saved" => Some("Saved. Thank you!"),
        "skipped" => Some("Skipped: the task goes to someone else."),
        "revised" => Some("Your revised answer is saved; the earlier one is kept beside it."),
        _ => None,
    }
}

#[get("/tasks")]
async fn tasks_page(me: Caller<Annotator>, query: crate::query::Query<NoteQuery>) -> Reply {
    let researcher = is_researcher(&me);
    let projects = projects_to_work_on(&me).await?;
    let done = query.done.and_then(|id| projects.iter().find(|p| p.id == id).cloned());
    let work = super::home::work_in(&me.pool, me.user.id, projects).await?;
    page(&TasksPage { nav: me.nav()?, work, researcher, note: note_text(&query.note), done })
}

#[derive(Template)]
#[template(path = "task_guidelines.html")]
struct GuidelinesPage {
    nav: Nav,
    project: Project,
    /// Sanitised by `markdown::render`.
    guidelines_html: String,
}

#[get("/projects/{id}/guidelines")]
async fn guidelines_page(me: Caller<Annotator>, path: web::Path<i64>) -> Reply {
    let project = project_to_work_on(&me, path.into_inner()).await?;
    let guidelines_html = markdown::render(&project.guidelines);
    page(&GuidelinesPage { nav: me.nav()?, project, guidelines_html })
}

/// `GET /api/me/projects`: the projects whose tasks `me` may take (a researcher: all).
#[get("/api/me/projects")]
async fn api_projects(me: Caller<Annotator>) -> Reply {
    Ok(HttpResponse::Ok().json(projects_to_work_on(&me).await?))
}

// ---------------------------------------------------------------------------------
// The next task.

#[derive(Template)]
#[template(path = "task_none.html")]
struct NoTaskPage {
    nav: Nav,
    project: Project,
}

#[post("/projects/{id}/next")]
async fn next_page(me: Caller<Annotator>, path: web::Path<i64>, _: CsrfForm<CsrfOnly>) -> Reply {
    let project_id = path.into_inner();
    match lease_next(&me, project_id).await? {
        Some(assignment) => Ok(see_other(&format!("/assignments/{}", assignment.id))),
        None => {
            let project = projects::get_project(&me.pool, project_id).await?;
            page(&NoTaskPage { nav: me.nav()?, project })
        }
    }
}

/// An assignment as the API shows it: the task, its prompt and its samples by position
/// (for a comparison, position 0 is side A), never the models behind them.
#[derive(Serialize)]
struct AssignmentJson<'a> {
    assignment_id: i64,
    task_id: i64,
    kind: TaskKind,
    project_id: i64,
    prompt: &'a TaskPrompt,
    samples: &'a [TaskSample],
    k: usize,
    lease_until: DateTime<Utc>,
    lease_expired: bool,
    state: AssignmentState,
}

fn assignment_json(a: &Assignment, state: AssignmentState, expired: bool) -> AssignmentJson<'_> {
    AssignmentJson {
        assignment_id: a.id,
        task_id: a.task_id,
        kind: a.kind,
        project_id: a.project_id,
        prompt: &a.prompt,
        samples: &a.samples,
        k: a.k(),
        lease_until: a.lease_until,
        lease_expired: expired,
        state,
    }
}

/// `POST /api/projects/{id}/tasks/next`: 200 with the assignment, or 204 when no task
/// is left for this annotator.
#[post("/api/projects/{id}/tasks/next")]
async fn api_next(me: Caller<Annotator>, path: web::Path<i64>, _: CsrfOnlyJson) -> Reply {
    match lease_next(&me, path.into_inner()).await? {
        Some(a) => Ok(HttpResponse::Ok().json(assignment_json(&a, AssignmentState::Leased, false))),
        None => Ok(HttpResponse::NoContent().finish()),
    }
}

/// `GET /api/assignments/{id}`: the assignment (only its own annotator's).
#[get("/api/assignments/{id}")]
async fn api_assignment(me: Caller<Annotator>, path: web::Path<i64>) -> Reply {
    let id = path.into_inner();
    let a = tasks::assignment(&me.pool, id, me.user.id).await?;
    let (state, expired) = tasks::assignment_state(&me.pool, id, me.user.id).await?;
    Ok(HttpResponse::Ok().json(assignment_json(&a, state, expired)))
}

// ---------------------------------------------------------------------------------
// The task page, by kind.

/// What every task page shows around its form.
struct TaskView {
    assignment_id: i64,
    project: Project,
    prompt: String,
    /// A conversation's turns (role, words): shown one by one instead of `prompt`.
    turns: Vec<(&'static str, String)>,
    /// Sanitised by `markdown::render`.
    guidelines_html: String,
    lease_until: DateTime<Utc>,
    lease_expired: bool,
    note: Option<&'static str>,
    /// Why the last submit was refused (the form keeps what was typed).
    error: Option<String>,
    /// A fresh key per render: a double click or a retry of this form stores once.
    idempotency_key: String,
    /// When the page was rendered (Unix ms): the time spent when the page sends none.
    rendered_at: i64,
    /// The id of the answer the form revises ("" for a first answer).
    revises: String,
}

/// A conversation's turns as the task page labels them.
fn turns(messages: Option<&[Message]>) -> Vec<(&'static str, String)> {
    let label = |role: Speaker| match role {
        Speaker::System => "System",
        Speaker::User => "User",
        Speaker::Assistant => "Assistant",
    };
    messages.unwrap_or_default().iter().map(|m| (label(m.role), m.content.clone())).collect()
}

impl TaskView {
    /// The lease's end in UTC: what the page says when its script does not run.
    fn lease_until_utc(&self) -> String {
        self.lease_until.format("%Y-%m-%d %H:%M UTC").to_string()
    }

    /// The lease's end for `<time datetime>`, which task.js shows in the reader's time zone.
    fn lease_until_rfc3339(&self) -> String {
        self.lease_until.to_rfc3339_opts(SecondsFormat::Secs, true)
    }
}

#[derive(Template)]
#[template(path = "task_demonstration.html")]
struct DemonstrationPage {
    nav: Nav,
    task: TaskView,
    text: String,
}

/// The content flags offered on every sample: (value, label).
const FLAGS: [(&str, &str); 5] = [
    ("fails_task", "Fails the task"),
    ("harmful", "Harmful"),
    ("hallucination", "Makes things up"),
    ("not_followed", "Ignores an instruction"),
    ("other", "Other problem"),
];

/// One sample of a ranking, with what the form holds for it.
struct SampleCard {
    position: usize,
    letter: char,
    /// The letters of samples with the very same text, shown only as this card.
    twins: String,
    sample_id: i64,
    text: String,
    rank: String,
    likert: String,
    flags: Vec<String>,
}

impl SampleCard {
    fn rank_is(&self, rank: &usize) -> bool {
        self.rank == rank.to_string()
    }

    fn likert_is(&self, value: &usize) -> bool {
        self.likert == value.to_string()
    }

    fn has_flag(&self, flag: &str) -> bool {
        self.flags.iter().any(|f| f == flag)
    }

    /// The rank badge: the rank picked, or a dash.
    fn badge(&self) -> &str {
        if self.rank.is_empty() {
            "–"
        } else {
            &self.rank
        }
    }
}

#[derive(Template)]
#[template(path = "task_ranking.html")]
struct RankingPage {
    nav: Nav,
    task: TaskView,
    cards: Vec<SampleCard>,
    k: usize,
    ranks: Vec<usize>,
    likert: [(usize, &'static str); 7],
    flags: [(&'static str, &'static str); 5],
    all_bad: bool,
    comment: String,
}

const LIKERT: [(usize, &str); 7] = [
    (1, "1 · very bad"),
    (2, "2"),
    (3, "3"),
    (4, "4 · acceptable"),
    (5, "5"),
    (6, "6"),
    (7, "7 · excellent"),
];

#[derive(Template)]
#[template(path = "task_comparison.html")]
struct ComparisonPage {
    nav: Nav,
    task: TaskView,
    a: String,
    b: String,
    comment: String,
}

#[derive(Template)]
#[template(path = "task_done.html")]
struct DonePage {
    nav: Nav,
    assignment_id: i64,
    project: Project,
    prompt: String,
    submitted: bool,
    /// The answer that stands, as words ("B > A = C", "A better", the demonstration).
    answer: Option<String>,
    /// Whether the page offers to revise the answer.
    revisable: bool,
    note: Option<&'static str>,
    csrf: String,
}

/// What the form shows: nothing yet, the stored answer (to revise it), or what a
/// refused form held (to show it again with the reason).
enum Kept {
    Nothing,
    Stored,
    Demonstration(DemonstrationForm),
    Ranking(RankingForm),
    Vote(VoteForm),
}

#[get("/assignments/{id}")]
async fn assignment_page(
    me: Caller<Annotator>,
    path: web::Path<i64>,
    query: crate::query::Query<NoteQuery>,
) -> Reply {
    let id = path.into_inner();
    let assignment = tasks::assignment(&me.pool, id, me.user.id).await?;
    let note = note_text(&query.note);
    let kept = if query.revise { Kept::Stored } else { Kept::Nothing };
    render_task(&me, assignment, note, kept, None).await
}

/// The task page for `assignment`, with a refused form's content and reason when there
/// was one (then with status 422). Once the task is answered, a page showing the answer
/// (and offering to revise it while the project allows), or with `Kept::Stored` the
/// form again, filled in with the answer that stands.
async fn render_task(
    me: &Caller<Annotator>,
    assignment: Assignment,
    note: Option<&'static str>,
    kept: Kept,
    error: Option<String>,
) -> Reply {
    let nav = me.nav()?;
    let project = projects::get_project(&me.pool, assignment.project_id).await?;
    let (state, lease_expired) = tasks::assignment_state(&me.pool, assignment.id, me.user.id).await?;
    let mut kept = kept;
    if state != AssignmentState::Leased {
        let answer = match state {
            AssignmentState::Submitted => {
                submit::current_answer(&me.pool, assignment.id, assignment.kind).await?
            }
            _ => None,
        };
        let revisable = project.revisions_allowed && answer.is_some();
        match (&kept, answer) {
            (Kept::Stored, Some(answer)) if revisable => kept = stored_form(&answer),
            (Kept::Nothing | Kept::Stored, answer) => {
                let csrf = nav.csrf.clone();
                return page(&DonePage {
                    nav,
                    assignment_id: assignment.id,
                    answer: answer.map(|a| answer_text(&a, &assignment.samples)),
                    project,
                    prompt: assignment.prompt.text,
                    submitted: state == AssignmentState::Submitted,
                    revisable,
                    note,
                    csrf,
                });
            }
            // A refused revision: its form again, with the reason.
            _ => {}
        }
    }
    let status = if error.is_some() { StatusCode::UNPROCESSABLE_ENTITY } else { StatusCode::OK };
    let task = TaskView {
        assignment_id: assignment.id,
        guidelines_html: markdown::render(&project.guidelines),
        project,
        prompt: assignment.prompt.text.clone(),
        turns: turns(assignment.prompt.messages.as_deref()),
        lease_until: assignment.lease_until,
        lease_expired,
        note,
        error,
        idempotency_key: IdempotencyKey::new().to_string(),
        rendered_at: now_ms(),
        revises: kept.revises().to_owned(),
    };
    let html = match assignment.kind {
        TaskKind::Demonstration => {
            let text = match kept {
                Kept::Demonstration(f) => f.text,
                _ => String::new(),
            };
            DemonstrationPage { nav, task, text }.render()?
        }
        TaskKind::Ranking => {
            let kept = match kept {
                Kept::Ranking(f) => f,
                _ => RankingForm::default(),
            };
            ranking_view(nav, task, assignment.samples, kept).render()?
        }
        TaskKind::Comparison => {
            let comment = match kept {
                Kept::Vote(f) => f.comment,
                _ => String::new(),
            };
            let mut texts = assignment.samples.into_iter().map(|s| s.text);
            let (a, b) = (texts.next().unwrap_or_default(), texts.next().unwrap_or_default());
            ComparisonPage { nav, task, a, b, comment }.render()?
        }
    };
    Ok(HttpResponse::build(status).content_type("text/html; charset=utf-8").body(html))
}

/// The ranking page: one card per distinct text, in the order the assignment shows its
/// samples, each lettered by its place in that order. A sample with the very text of
/// one shown before it has no card of its own: its twin's card names it, and the submit
/// gives it the twin's rank.
fn ranking_view(nav: Nav, task: TaskView, samples: Vec<TaskSample>, kept: RankingForm) -> RankingPage {
    let letters: Vec<(usize, char)> =
        samples.iter().enumerate().map(|(slot, s)| (s.position, form::letter(slot))).collect();
    let twins_of = |position: usize| -> String {
        let twins = samples.iter().filter(|t| t.same_as == Some(position));
        twins
            .filter_map(|t| letters.iter().find(|l| l.0 == t.position))
            .map(|l| l.1.to_string())
            .collect::<Vec<_>>()
            .join(", ")
    };
    let cards: Vec<SampleCard> = samples
        .iter()
        .zip(&letters)
        .filter(|(s, _)| s.same_as.is_none())
        .map(|(s, &(_, letter))| SampleCard {
            letter,
            twins: twins_of(s.position),
            rank: kept.rank(s.position).to_string(),
            likert: kept.likert_of(s.position).to_string(),
            flags: kept.flags_of(s.position),
            position: s.position,
            sample_id: s.id,
            text: s.text.clone(),
        })
        .collect();
    let k = cards.len();
    RankingPage {
        nav,
        task,
        cards,
        k,
        ranks: (1..=k).collect(),
        likert: LIKERT,
        flags: FLAGS,
        all_bad: kept.all_bad,
        comment: kept.comment,
    }
}

/// A refused form is shown again with its content and the reason; any other error is
/// the error page.
async fn refused_or(result: Reply, me: &Caller<Annotator>, assignment: Assignment, kept: Kept) -> Reply {
    match result {
        Err(AppError::Invalid { field, reason }) => {
            let error = format!("{field}: {reason}");
            render_task(me, assignment, None, kept, Some(error)).await
        }
        other => other,
    }
}

impl Kept {
    /// The id of the answer a kept form revises ("" for none).
    fn revises(&self) -> &str {
        match self {
            Kept::Nothing | Kept::Stored => "",
            Kept::Demonstration(f) => &f.revises,
            Kept::Ranking(f) => &f.revises,
            Kept::Vote(f) => &f.revises,
        }
    }
}

/// The form of an answered task, filled in with its `answer`, to revise it.
fn stored_form(answer: &CurrentAnswer) -> Kept {
    let revises = answer.id().to_string();
    match answer {
        CurrentAnswer::Demonstration { response, .. } => {
            Kept::Demonstration(DemonstrationForm { text: response.clone(), revises, ..Default::default() })
        }
        CurrentAnswer::Vote { comment, .. } => {
            Kept::Vote(VoteForm { comment: comment.clone(), revises, ..Default::default() })
        }
        CurrentAnswer::Ranking { ranks, all_bad, likert, flags, comment, .. } => {
            let numbered = |values: &[i16], offset: i16| -> std::collections::BTreeMap<usize, String> {
                values.iter().enumerate().map(|(i, v)| (i, (v + offset).to_string())).collect()
            };
            let rated: Vec<i16> = likert.iter().map(|l| l.unwrap_or(0)).collect();
            let mut rated = numbered(&rated, 0);
            rated.retain(|_, v| v != "0");
            Kept::Ranking(RankingForm {
                ranks: ranks.as_deref().map(|r| numbered(r, 1)).unwrap_or_default(),
                likert: rated,
                flags: flags.iter().map(|(p, f)| (*p as usize, f.as_str().to_owned())).collect(),
                all_bad: *all_bad,
                comment: comment.clone(),
                revises,
                ..Default::default()
            })
        }
    }
}

/// An answer in words, with a ranking's samples in the letters they were shown with.
fn answer_text(answer: &CurrentAnswer, shown: &[TaskSample]) -> String {
    match answer {
        CurrentAnswer::Demonstration { response, .. } => response.clone(),
        CurrentAnswer::Vote { vote, .. } => history::vote_text(*vote).to_owned(),
        CurrentAnswer::Ranking { ranks, all_bad, .. } => {
            let order: Vec<i16> = shown.iter().map(|s| s.position as i16).collect();
            history::ranking_text(ranks.as_deref(), *all_bad, Some(&order))
        }
    }
}

// ---------------------------------------------------------------------------------
// Submits and skips: one function per kind, shared by the page and the API.

/// The API's answer to a submit: the stored row's id, and whether this request stored
/// it (false: a retry found the row its first attempt stored).
#[derive(Serialize)]
struct SubmittedJson {
    id: i64,
    stored: bool,
}

impl From<Submitted> for SubmittedJson {
    fn from(s: Submitted) -> Self {
        SubmittedJson { id: s.id(), stored: matches!(s, Submitted::Stored(_)) }
    }
}

async fn store_demonstration(
    me: &Caller<Annotator>,
    id: i64,
    d: form::Demonstration,
) -> Result<Submitted, AppError> {
    let (pool, me) = (&me.pool, me.user.id);
    Ok(match d.revises {
        None => {
            let target = DemonstrationFor::Assignment(id);
            submit::submit_demonstration(pool, me, target, &d.response, d.time_spent_ms, d.key).await?
        }
        Some(previous) => {
            submit::revise_demonstration(pool, me, id, previous, &d.response, d.time_spent_ms, d.key).await?
        }
    })
}

async fn store_vote(me: &Caller<Annotator>, id: i64, b: form::Ballot) -> Result<Submitted, AppError> {
    let (pool, me, spent) = (&me.pool, me.user.id, b.time_spent_ms);
    Ok(match b.revises {
        None => submit::submit_vote(pool, me, id, b.vote, &b.comment, spent, b.key).await?,
        Some(previous) => {
            submit::revise_vote(pool, me, id, previous, (b.vote, &b.comment), spent, b.key).await?
        }
    })
}

async fn store_ranking(
    me: &Caller<Annotator>,
    id: i64,
    (submission, key): (labeling::annotation::RankingSubmission, IdempotencyKey),
    revises: Option<i64>,
) -> Result<Submitted, AppError> {
    let (pool, me) = (&me.pool, me.user.id);
    Ok(match revises {
        None => submit::submit_ranking(pool, me, id, &submission, key).await?,
        Some(previous) => submit::revise_ranking(pool, me, id, previous, &submission, key).await?,
    })
}

#[post("/assignments/{id}/demonstration")]
async fn demonstration_page(
    me: Caller<Annotator>,
    id: web::Path<i64>,
    form: CsrfForm<DemonstrationForm>,
) -> Reply {
    let form = form.into_inner();
    let demonstration = form.demonstration(now_ms());
    let store = async |a: &Assignment| store_demonstration(&me, a.id, demonstration?).await.map(drop);
    answer(&me, *id, store, Kept::Demonstration(form)).await
}

#[post("/assignments/{id}/ranking")]
async fn ranking_page(
    me: Caller<Annotator>,
    id: web::Path<i64>,
    form: CsrfForm<Vec<(String, String)>>,
) -> Reply {
    let mut form = RankingForm::read(form.into_inner())?;
    let kept = Kept::Ranking(form.clone());
    let store = async |a: &Assignment| {
        form.tie_twins(&a.samples.iter().map(|s| (s.position, s.same_as)).collect::<Vec<_>>());
        let submission = form.submission(a.k(), now_ms())?;
        store_ranking(&me, a.id, submission, form.revises()?).await.map(drop)
    };
    answer(&me, *id, store, kept).await
}

#[post("/assignments/{id}/vote")]
async fn vote_page(me: Caller<Annotator>, id: web::Path<i64>, form: CsrfForm<VoteForm>) -> Reply {
    let form = form.into_inner();
    let ballot = form.ballot(now_ms());
    let store = async |a: &Assignment| store_vote(&me, a.id, ballot?).await.map(drop);
    answer(&me, *id, store, Kept::Vote(form)).await
}

/// Stores a page's answer to the caller's assignment `id`, then goes on to the project's
/// next task; a refused answer is drawn again with what was typed (`kept`) and why.
async fn answer(
    me: &Caller<Annotator>,
    id: i64,
    store: impl AsyncFnOnce(&Assignment) -> Result<(), AppError>,
    kept: Kept,
) -> Reply {
    let assignment = tasks::assignment(&me.pool, id, me.user.id).await?;
    let result = match store(&assignment).await {
        // A revision stays on its task, which now shows the revised answer.
        Ok(()) if !kept.revises().is_empty() => Ok(see_other(&format!("/assignments/{id}?note=revised"))),
        Ok(()) => go_on(me, assignment.project_id, "saved").await,
        Err(e) => Err(e),
    };
    refused_or(result, me, assignment, kept).await
}

#[post("/assignments/{id}/skip")]
async fn skip_page(me: Caller<Annotator>, path: web::Path<i64>, _: CsrfForm<CsrfOnly>) -> Reply {
    let assignment = tasks::assignment(&me.pool, path.into_inner(), me.user.id).await?;
    tasks::skip(&me.pool, assignment.id, me.user.id).await?;
    go_on(&me, assignment.project_id, "skipped").await
}

#[post("/api/assignments/{id}/demonstration")]
async fn api_demonstration(
    me: Caller<Annotator>,
    path: web::Path<i64>,
    body: CsrfJson<DemonstrationBody>,
) -> Reply {
    let d = body.demonstration()?;
    let submitted = store_demonstration(&me, path.into_inner(), d).await?;
    Ok(HttpResponse::Ok().json(SubmittedJson::from(submitted)))
}

#[post("/api/assignments/{id}/ranking")]
async fn api_ranking(me: Caller<Annotator>, path: web::Path<i64>, body: CsrfJson<RankingBody>) -> Reply {
    // K comes from the task, so the assignment is read (and its owner checked) first.
    let assignment = tasks::assignment(&me.pool, path.into_inner(), me.user.id).await?;
    // A ranking sent to another kind of task conflicts with that task.
    if assignment.kind != TaskKind::Ranking {
        return Err(AppError::Conflict(
            format!("assignment {} is a {:?} task, not a ranking task", assignment.id, assignment.kind)
                .to_lowercase(),
        ));
    }
    let body = body.into_inner();
    let revises = body.revises;
    let submitted = store_ranking(&me, assignment.id, body.submission(assignment.k())?, revises).await?;
    Ok(HttpResponse::Ok().json(SubmittedJson::from(submitted)))
}

#[post("/api/assignments/{id}/vote")]
async fn api_vote(me: Caller<Annotator>, path: web::Path<i64>, body: CsrfJson<VoteBody>) -> Reply {
    let ballot = body.ballot()?;
    let submitted = store_vote(&me, path.into_inner(), ballot).await?;
    Ok(HttpResponse::Ok().json(SubmittedJson::from(submitted)))
}

/// `POST /api/assignments/{id}/skip`: `{assignment_id, state: "skipped"}`.
#[post("/api/assignments/{id}/skip")]
async fn api_skip(me: Caller<Annotator>, path: web::Path<i64>, _: CsrfOnlyJson) -> Reply {
    let id = path.into_inner();
    tasks::skip(&me.pool, id, me.user.id).await?;
    Ok(HttpResponse::Ok().json(serde_json::json!({ "assignment_id": id, "state": AssignmentState::Skipped })))
}
