//! `plumb annotate --simulate`: the simulated annotator. It takes tasks through the same
//! JSON API as people (an API token, `tasks/next`, the submit routes) and answers them
//! with the demo world's oracle, so that a researcher can pilot a whole loop without
//! people, and tests and the demo drive the real platform.
//!
//! stdout: one JSON line per submission, then a summary line; stderr: progress, and why a
//! task was skipped.

use std::fmt;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::Args;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use reqwest::{Method, StatusCode};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use uuid::Uuid;
use world::{self, Demonstration, Oracle};

#[derive(Args)]
pub struct AnnotateArgs {
    /// Answer with the demo world's oracle. Required: the simulated annotator is the only
    /// one plumb runs from the command line.
    #[arg(long)]
    simulate: bool,
    /// The address of `plumb serve`, e.g. http://127.0.0.1:8080.
    #[arg(long)]
    url: String,
    /// An API token (`plumb_…`) of the user to annotate as.
    #[arg(long, env = "PLUMB_TOKEN", hide_env_values = true)]
    token: String,
    /// Scale of the Gumbel noise on the oracle's scores, 0 to 1: two samples come out in
    /// the oracle's order with probability σ(score gap / noise); 0 ranks by score exactly.
    #[arg(long, default_value_t = 0.0, allow_negative_numbers = true, value_parser = parse_noise)]
    noise: f64,
    /// Seed of the oracle's noise.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Share of demonstrations, 0 to 1, that a sloppy demonstrator pads after the answer
    /// with filler ("0345 ok ok ok"), which the oracle scores lower. The demo world's
    /// recipe relies on it: SFT imitates the padding, the rankings say it is worse, and
    /// the reward model and PPO learn to drop it.
    #[arg(long, default_value_t = 0.0, allow_negative_numbers = true, value_parser = parse_share)]
    sloppy: f64,
    /// Work only in this project (default: every project the token's user works in).
    #[arg(long)]
    project: Option<i64>,
    /// Stop after this many tasks (submitted or skipped).
    #[arg(long)]
    max_tasks: Option<usize>,
    /// Once no task is left, keep asking for new ones for this many seconds (0: stop).
    #[arg(long, default_value_t = 0)]
    wait: u64,
}

/// A share in [0, 1] (`--sloppy`).
fn parse_share(text: &str) -> Result<f64, String> {
    parse_unit(text, "a share")
}

fn parse_unit(text: &str, what: &str) -> Result<f64, String> {
    let value: f64 = text.trim().parse().map_err(|_| format!("{text:?} is not a number"))?;
    if !(0.0..=1.0).contains(&value) {
        return Err(format!("{what} must be between 0 and 1, got {value}"));
    }
    Ok(value)
}

/// The oracle takes any finite noise ≥ 0, but its scores lie in [-1, 1]: beyond a noise of
/// 1 the rankings are close to random, which no pilot wants by mistake.
pub(crate) fn parse_noise(text: &str) -> Result<f64, String> {
    parse_unit(text, "the oracle's noise")
}

pub fn run(args: AnnotateArgs) -> Result<()> {
    if !args.simulate {
        bail!("plumb annotate only simulates annotators for now: pass --simulate");
    }
    let oracle = Oracle::new(args.noise).context("--noise")?;
    let api = Api::new(&args.url, &args.token)?;
    let annotator =
        Annotator { oracle, rng: StdRng::seed_from_u64(args.seed), sloppy: args.sloppy, print: true };
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let tally = runtime.block_on(annotate(&api, annotator, &args))?;
    eprintln!(
        "annotate: done: {} demonstrations, {} rankings, {} votes, {} skipped",
        tally.demonstrations, tally.rankings, tally.votes, tally.skipped
    );
    println!("{}", serde_json::to_string(&tally)?);
    Ok(())
}

#[cfg(feature = "trainer")]
/// The simulated annotator of `plumb demo`: the oracle with `noise` (0: exact) through
/// the API at `url` until no task is left in the token's projects, `sloppy` of its
/// demonstrations padded, its choices drawn from `seed`; nothing printed per
/// submission. Blocks (it runs a runtime of its own).
pub(crate) fn simulate_quietly(url: &str, token: &str, sloppy: f64, noise: f64, seed: u64) -> Result<Tally> {
    let args = AnnotateArgs {
        simulate: true,
        url: url.to_owned(),
        token: token.to_owned(),
        noise,
        seed,
        sloppy,
        project: None,
        max_tasks: None,
        wait: 0,
    };
    let api = Api::new(&args.url, &args.token)?;
    let annotator = Annotator {
        oracle: Oracle::new(noise).context("noise")?,
        rng: StdRng::seed_from_u64(0),
        sloppy,
        print: false,
    };
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    runtime.block_on(annotate(&api, annotator, &args))
}

/// How often to ask for new tasks while `--wait` lasts.
const POLL: Duration = Duration::from_secs(1);

/// Works through every project's queue until no task is left (and `--wait` has passed
/// without a new one) or `--max-tasks` are done.
async fn annotate(api: &Api, mut annotator: Annotator, args: &AnnotateArgs) -> Result<Tally> {
    let projects = match args.project {
        Some(id) => vec![id],
        None => api.my_projects().await?,
    };
    if projects.is_empty() {
        eprintln!("annotate: the token's user works in no project: nothing to do");
    } else {
        eprintln!(
            "annotate: simulated annotator (noise {}, seed {}) at {} in projects {projects:?}",
            args.noise, args.seed, api.base
        );
    }
    let wait = Duration::from_secs(args.wait);
    let mut tally = Tally::default();
    let mut idle_since: Option<Instant> = None;
    loop {
        let mut worked = false;
        for &project in &projects {
            loop {
                if args.max_tasks.is_some_and(|max| tally.tasks() >= max) {
                    eprintln!("annotate: stopping after {} tasks (--max-tasks)", tally.tasks());
                    return Ok(tally);
                }
                let Some(assignment) = api.next_task(project).await? else { break };
                worked = true;
                work_on(api, &mut annotator, &assignment, &mut tally).await?;
                if tally.tasks() % 25 == 0 {
                    eprintln!("annotate: {} tasks done", tally.tasks());
                }
            }
        }
        if worked {
            idle_since = None;
            continue;
        }
        let first_idle = idle_since.is_none();
        let left = wait.saturating_sub(idle_since.get_or_insert_with(Instant::now).elapsed());
        if left.is_zero() {
            return Ok(tally);
        }
        if first_idle {
            eprintln!("annotate: no task left; waiting up to {} s for new ones", args.wait);
        }
        tokio::time::sleep(POLL.min(left)).await;
    }
}

/// Submissions and skips so far; serialised, the summary line.
#[derive(Default, Serialize)]
pub(crate) struct Tally {
    pub(crate) demonstrations: usize,
    pub(crate) rankings: usize,
    pub(crate) votes: usize,
    pub(crate) skipped: usize,
}

impl Tally {
    fn tasks(&self) -> usize {
        self.demonstrations + self.rankings + self.votes + self.skipped
    }
}

/// Answers one assignment and submits the answer, or skips the task when the oracle has
/// no answer or the API refuses the one it gave (left leased, the task would come back
/// on every `tasks/next`).
async fn work_on(api: &Api, annotator: &mut Annotator, a: &Assignment, tally: &mut Tally) -> Result<()> {
    let answer = match annotator.answer(a) {
        Ok(answer) => answer,
        Err(why) => return skip(api, a, &why, tally).await,
    };
    let submitted = match api.submit(a.assignment_id, &answer).await {
        Ok(submitted) => submitted,
        Err(e) => match e.downcast_ref::<Refusal>() {
            Some(refusal) if refusal.status != StatusCode::UNAUTHORIZED => {
                let why = format!("the API refused the {}: {refusal}", answer.kind());
                return skip(api, a, &why, tally).await;
            }
            _ => return Err(e),
        },
    };
    let (field, value) = match &answer {
        Answer::Demonstration(text) => {
            tally.demonstrations += 1;
            ("text", json!(text))
        }
        Answer::Ranking(groups) => {
            tally.rankings += 1;
            ("ranking", json!(groups))
        }
        Answer::Vote(vote) => {
            tally.votes += 1;
            ("vote", json!(vote))
        }
    };
    let mut line = json!({
        "kind": answer.kind(),
        "task_id": a.task_id,
        "assignment_id": a.assignment_id,
        "project_id": a.project_id,
        "id": submitted.id,
        "stored": submitted.stored,
    });
    line[field] = value;
    if annotator.print {
        println!("{line}");
    }
    Ok(())
}

async fn skip(api: &Api, a: &Assignment, why: &str, tally: &mut Tally) -> Result<()> {
    eprintln!(
        "annotate: skipping task {} (assignment {}, project {}): {why}",
        a.task_id, a.assignment_id, a.project_id
    );
    api.skip(a.assignment_id).await?;
    tally.skipped += 1;
    Ok(())
}

// ---------------------------------------------------------------------------------
// The oracle's answers.

/// The demo world's oracle with its own generator for the noise.
struct Annotator {
    oracle: Oracle,
    rng: StdRng,
    /// Share of demonstrations padded with filler.
    sloppy: f64,
    /// Print a line per submission on stdout.
    print: bool,
}

/// What the oracle submits for a task, in the API's terms.
enum Answer {
    Demonstration(String),
    /// Groups of sample positions, best first; a group of several is a tie.
    Ranking(Vec<Vec<usize>>),
    /// "a", "b" or "tie".
    Vote(&'static str),
}

impl Answer {
    /// The submission's name, which is also its route under `/api/assignments/{id}/`.
    fn kind(&self) -> &'static str {
        match self {
            Answer::Demonstration(_) => "demonstration",
            Answer::Ranking(_) => "ranking",
            Answer::Vote(_) => "vote",
        }
    }

    fn body(&self, key: Uuid) -> Value {
        match self {
            Answer::Demonstration(text) => json!({ "text": text, "idempotency_key": key }),
            Answer::Ranking(groups) => json!({ "ranking": groups, "idempotency_key": key }),
            Answer::Vote(vote) => json!({ "vote": vote, "idempotency_key": key }),
        }
    }
}

impl Annotator {
    /// The oracle's answer to an assignment, or why it has none.
    fn answer(&mut self, a: &Assignment) -> Result<Answer, String> {
        let task = world::parse_task(&a.prompt.text)
            .ok_or_else(|| format!("the prompt {:?} is not a demo-world task", a.prompt.text))?;
        match a.kind {
            TaskKind::Demonstration => {
                let answer = Demonstration::from(&task).response;
                if self.sloppy > 0.0 && self.rng.random_bool(self.sloppy) {
                    let filler = world::FILLER[self.rng.random_range(0..world::FILLER.len())];
                    return Ok(Answer::Demonstration(format!("{answer}{filler}")));
                }
                Ok(Answer::Demonstration(answer))
            }
            TaskKind::Ranking => {
                let texts: Vec<&str> = a.samples.iter().map(|s| s.text.as_str()).collect();
                let groups = self.oracle.rank(&task, &texts, &mut self.rng);
                // The oracle ranks indices into `texts`; the API takes sample positions.
                let positions = groups
                    .into_iter()
                    .map(|group| group.into_iter().map(|i| a.samples[i].position).collect())
                    .collect();
                Ok(Answer::Ranking(positions))
            }
            TaskKind::Comparison => {
                let side = |position| a.samples.iter().find(|s| s.position == position);
                let (Some(side_a), Some(side_b)) = (side(0), side(1)) else {
                    return Err(format!(
                        "the comparison shows {} samples, not sides A and B",
                        a.samples.len()
                    ));
                };
                let vote = match self.oracle.prefers(&task, &side_a.text, &side_b.text, &mut self.rng) {
                    Some(true) => "a",
                    Some(false) => "b",
                    None => "tie",
                };
                Ok(Answer::Vote(vote))
            }
            TaskKind::Unknown => Err("plumb annotate does not know this kind of task".into()),
        }
    }
}

// ---------------------------------------------------------------------------------
// The JSON API, as the token's user.

/// An assignment as `tasks/next` answers it (the fields the simulator reads).
#[derive(Debug, Deserialize)]
struct Assignment {
    assignment_id: i64,
    task_id: i64,
    kind: TaskKind,
    project_id: i64,
    prompt: Prompt,
    samples: Vec<Sample>,
}

#[derive(Clone, Copy, Debug, Deserialize, PartialEq)]
#[serde(rename_all = "lowercase")]
enum TaskKind {
    Demonstration,
    Ranking,
    Comparison,
    /// A kind added to the API after this simulator: skipped, not a crash.
    #[serde(other)]
    Unknown,
}

#[derive(Debug, Deserialize)]
struct Prompt {
    text: String,
}

#[derive(Debug, Deserialize)]
struct Sample {
    /// For a comparison, position 0 is side A.
    position: usize,
    text: String,
}

#[derive(Deserialize)]
struct ProjectRef {
    id: i64,
}

/// A submit's answer: the stored row, and whether this request stored it (false: a
/// retry found what its first attempt stored).
#[derive(Deserialize)]
struct Submitted {
    id: i64,
    stored: bool,
}

/// Tries per request when plumb serve does not answer or fails (5xx).
const ATTEMPTS: u32 = 4;
/// The pause before the first retry; it doubles with each.
const FIRST_PAUSE: Duration = Duration::from_millis(250);
/// A request that takes longer has lost its server.
const TIMEOUT: Duration = Duration::from_secs(30);

/// plumb serve's JSON API, called with one user's token.
struct Api {
    client: reqwest::Client,
    /// The address without a trailing slash.
    base: String,
    token: String,
}

impl Api {
    fn new(url: &str, token: &str) -> Result<Api> {
        let parsed = reqwest::Url::parse(url.trim()).with_context(|| {
            format!("--url {url:?} is not a URL (expected plumb serve's address, e.g. http://127.0.0.1:8080)")
        })?;
        // This plumb is built without TLS; plumb serve itself speaks plain HTTP.
        if parsed.scheme() != "http" {
            bail!("--url {url:?} must be an http:// address (plumb serve's, e.g. http://127.0.0.1:8080)");
        }
        if token.trim().is_empty() {
            bail!("--token is empty: pass an API token (plumb_…) or set PLUMB_TOKEN");
        }
        let client = reqwest::Client::builder()
            .timeout(TIMEOUT)
            .user_agent(concat!("plumb-annotate/", env!("CARGO_PKG_VERSION")))
            .build()
            .context("building the HTTP client")?;
        let base = parsed.as_str().trim_end_matches('/').to_string();
        Ok(Api { client, base, token: token.trim().to_string() })
    }

    /// The ids of the projects whose tasks the token's user may take.
    async fn my_projects(&self) -> Result<Vec<i64>> {
        let projects: Vec<ProjectRef> = self.call_for(Method::GET, "/api/me/projects", None).await?;
        Ok(projects.into_iter().map(|p| p.id).collect())
    }

    /// Leases the project's next task (the one already held, if any); `None` when no task
    /// is left for this user.
    async fn next_task(&self, project: i64) -> Result<Option<Assignment>> {
        let path = format!("/api/projects/{project}/tasks/next");
        match self.call(Method::POST, &path, None).await? {
            Some(value) => Ok(Some(decode(value, &path)?)),
            None => Ok(None),
        }
    }

    /// Submits an answer under a fresh idempotency key, the same for every retry.
    async fn submit(&self, assignment_id: i64, answer: &Answer) -> Result<Submitted> {
        let path = format!("/api/assignments/{assignment_id}/{}", answer.kind());
        self.call_for(Method::POST, &path, Some(&answer.body(Uuid::new_v4()))).await
    }

    async fn skip(&self, assignment_id: i64) -> Result<()> {
        let path = format!("/api/assignments/{assignment_id}/skip");
        match self.call(Method::POST, &path, None).await {
            Ok(_) => Ok(()),
            // A retry after a first attempt that skipped it but whose answer was lost.
            Err(e) if e.downcast_ref::<Refusal>().is_some_and(|r| r.status == StatusCode::CONFLICT) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// [`Api::call`] for a request that must answer a JSON body of type `T`.
    async fn call_for<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<T> {
        match self.call(method.clone(), path, body).await? {
            Some(value) => decode(value, path),
            None => {
                bail!("{method} {}{path} answered 204 No Content, where it should answer JSON", self.base)
            }
        }
    }

    /// Sends a request and reads its JSON answer (`None` for a 204). No answer or a 5xx is
    /// tried again, with doubling pauses, sending the same body: a submission's
    /// idempotency key makes its retries store it at most once. A 4xx is a [`Refusal`].
    async fn call(&self, method: Method, path: &str, body: Option<&Value>) -> Result<Option<Value>> {
        let url = format!("{}{path}", self.base);
        let mut pause = FIRST_PAUSE;
        let mut attempt = 1;
        loop {
            let mut request = self.client.request(method.clone(), &url).bearer_auth(&self.token);
            if let Some(body) = body {
                request = request.json(body);
            }
            let failure: anyhow::Error = match request.send().await {
                Ok(response) if response.status().is_server_error() => Refusal::read(response).await.into(),
                Ok(response) if response.status() == StatusCode::NO_CONTENT => return Ok(None),
                Ok(response) if response.status().is_success() => {
                    let value = response
                        .json()
                        .await
                        .with_context(|| format!("{method} {url}: the answer is not JSON"))?;
                    return Ok(Some(value));
                }
                Ok(response) => {
                    return Err(
                        anyhow::Error::new(Refusal::read(response).await).context(format!("{method} {url}"))
                    )
                }
                // reqwest's message names the URL; the cause says why (refused, timed out).
                Err(e) => e.into(),
            };
            if attempt == ATTEMPTS {
                return Err(failure.context(format!("{method} {url} failed {ATTEMPTS} times")));
            }
            eprintln!("annotate: {failure:#}; trying again in {} ms", pause.as_millis());
            tokio::time::sleep(pause).await;
            pause *= 2;
            attempt += 1;
        }
    }
}

fn decode<T: DeserializeOwned>(value: Value, path: &str) -> Result<T> {
    serde_json::from_value(value).with_context(|| {
        format!("the answer to {path} is not what plumb's API sends (is --url plumb serve?)")
    })
}

/// An error answer: its status and the API's `{"error": {"message", "field"}}`, or the
/// start of the body from a server that is not plumb's API.
#[derive(Debug)]
struct Refusal {
    status: StatusCode,
    message: String,
    field: Option<String>,
}

#[derive(Deserialize)]
struct ErrorEnvelope {
    error: ErrorBody,
}

#[derive(Deserialize)]
struct ErrorBody {
    message: String,
    field: Option<String>,
}

impl Refusal {
    async fn read(response: reqwest::Response) -> Refusal {
        let status = response.status();
        let body = response.text().await.unwrap_or_default();
        match serde_json::from_str::<ErrorEnvelope>(&body) {
            Ok(envelope) => Refusal { status, message: envelope.error.message, field: envelope.error.field },
            Err(_) => {
                let start: String = body.trim().chars().take(200).collect();
                Refusal { status, message: start, field: None }
            }
        }
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.status == StatusCode::UNAUTHORIZED {
            return write!(
                f,
                "the token was refused (401: {}): it is unknown or revoked, or its user is disabled; \
                 pass a valid API token with --token or PLUMB_TOKEN",
                self.message
            );
        }
        write!(f, "{}: {}", self.status, self.message)?;
        match &self.field {
            Some(field) => write!(f, " (field `{field}`)"),
            None => Ok(()),
        }
    }
}

impl std::error::Error for Refusal {}

#[cfg(test)]
mod tests {
    use super::*;

    fn assignment(kind: TaskKind, prompt: &str, samples: &[(usize, &str)]) -> Assignment {
        Assignment {
            assignment_id: 1,
            task_id: 2,
            kind,
            project_id: 3,
            prompt: Prompt { text: prompt.into() },
            samples: samples.iter().map(|&(position, text)| Sample { position, text: text.into() }).collect(),
        }
    }

    fn exact() -> Annotator {
        Annotator { oracle: Oracle::exact(), rng: StdRng::seed_from_u64(0), sloppy: 0.0, print: false }
    }

    #[test]
    fn a_sloppy_demonstrator_pads_the_share_asked_for_with_filler_the_oracle_dislikes() {
        let a = assignment(TaskKind::Demonstration, "Reverse the word cat.\n", &[]);
        let task = world::parse_task("Reverse the word cat.\n").unwrap();
        let mut sloppy = Annotator { sloppy: 0.5, ..exact() };
        let texts: Vec<String> = (0..400)
            .map(|_| match sloppy.answer(&a) {
                Ok(Answer::Demonstration(text)) => text,
                _ => panic!("no demonstration"),
            })
            .collect();
        let padded: Vec<&String> = texts.iter().filter(|t| t.as_str() != "tac").collect();
        assert!((160..240).contains(&padded.len()), "{} of 400 padded", padded.len());
        for text in padded {
            let filler = &text["tac".len()..];
            assert!(text.starts_with("tac") && world::FILLER.contains(&filler), "{text:?}");
            assert!(
                world::score(&task, text, world::Finish::Eos)
                    < world::score(&task, "tac", world::Finish::Eos)
            );
        }
        assert!(parse_share("1.5").is_err() && parse_share("0.5") == Ok(0.5));
    }

    #[test]
    fn a_demonstration_is_the_reference_answer() {
        let a = assignment(TaskKind::Demonstration, "Reverse the word cat.\n", &[]);
        assert!(matches!(exact().answer(&a), Ok(Answer::Demonstration(text)) if text == "tac"));
    }

    #[test]
    fn a_ranking_names_sample_positions_not_list_indices() {
        let a = assignment(TaskKind::Ranking, "Add 3 and 4.\n", &[(2, "8"), (0, "7"), (1, "7 ok ok")]);
        let Ok(Answer::Ranking(groups)) = exact().answer(&a) else { panic!("no ranking") };
        assert_eq!(groups[0], vec![0], "the correct sample is at position 0");
        assert_eq!(groups.concat().len(), 3);
    }

    #[test]
    fn a_vote_picks_the_side_with_the_answer_and_identical_sides_tie() {
        let vote = |a_text, b_text| {
            let a = assignment(TaskKind::Comparison, "Add 3 and 4.\n", &[(1, b_text), (0, a_text)]);
            match exact().answer(&a) {
                Ok(Answer::Vote(vote)) => vote,
                _ => panic!("no vote"),
            }
        };
        assert_eq!(vote("7", "8"), "a");
        assert_eq!(vote("8", "7"), "b");
        assert_eq!(vote("7", "7"), "tie");
    }

    #[test]
    fn a_prompt_outside_the_demo_world_has_no_answer() {
        let a = assignment(TaskKind::Demonstration, "Tell me a joke.\n", &[]);
        let why = exact().answer(&a).err().expect("no answer");
        assert!(why.contains("not a demo-world task"), "{why}");
    }

    #[test]
    fn a_task_of_a_kind_added_later_reads_and_is_not_answered() {
        let a: Assignment = serde_json::from_value(json!({
            "assignment_id": 1, "task_id": 2, "kind": "essay", "project_id": 3,
            "prompt": { "id": 4, "text": "Add 3 and 4.\n" }, "samples": [], "k": 0,
        }))
        .expect("an assignment");
        assert_eq!(a.kind, TaskKind::Unknown);
        assert!(exact().answer(&a).is_err());
    }

    #[test]
    fn noise_outside_zero_to_one_is_refused() {
        assert_eq!(parse_noise("0.25"), Ok(0.25));
        assert!(parse_noise("2").unwrap_err().contains("between 0 and 1"));
        assert!(parse_noise("-0.1").is_err());
        assert!(parse_noise("NaN").is_err());
        assert!(parse_noise("lots").unwrap_err().contains("not a number"));
    }
}
