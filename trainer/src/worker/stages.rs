//! A run's three parts: `prepare` (async: resolve the versions it names, fetch their
//! checkpoints from the artifact store, freeze or check its dataset snapshot and read it
//! into the trainer's types), `execute` (blocking: the stage itself) and `publish`
//! (async: store the model and register the version with its lineage, or write samples
//! and ranking tasks).

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use labeling::domain::Split;
use labeling::samples::{NewSample, PromptSamples};
use labeling::snapshots::{self, ExportFormat, Snapshot, SnapshotFilter, SnapshotKind};
use registry::artifacts::ArtifactStore;
use registry::runs::ClaimedRun;
use registry::versions::{self, ModelKind, NewVersion, Parent};
use serde_json::json;
use sqlx::PgPool;
use tch::Device;

use super::resolve::{resolve, Resolved};
use super::spec::{EvalRun, PpoRun, PretrainRun, PromptSet, RlRun, RunSpec, SampleRun, TrainRun};
use super::Stop;
use crate::data::{self, Demonstration, Ranking};
use crate::heldout::{train_with_heldout, HeldOutSettings, SelectionRecord};
use crate::rollout::{EvalFn, Reward};
use crate::train::{RunDir, TrainError, CHECKPOINTS};
use crate::{
    default_sparse, dpo, grpo, ppo, pretrain, reward, rloo, sft, world, AttentionLayers, GptConfig,
    LanguageModel, Precision, Preset, Tokenizer, TokenizerKind,
};
use spec::StageSettings;

// One per run, moved once into the stage's thread: its size does not matter.
#[allow(clippy::large_enum_variant)]
pub(super) enum Prepared {
    Pretrain {
        spec: PretrainRun,
        base: Option<Resolved>,
        snapshot: Option<Snapshot>,
        documents: Vec<String>,
    },
    Sft {
        spec: TrainRun<sft::SftConfig>,
        base: Resolved,
        snapshot: Snapshot,
        demonstrations: Vec<Demonstration>,
    },
    Reward {
        spec: TrainRun<reward::RewardConfig>,
        base: Resolved,
        /// The rankings snapshot, then the votes' and the centring demonstrations' if any.
        snapshots: Vec<Snapshot>,
        rankings: Vec<Ranking>,
        /// The demonstrations whose mean reward is set to 0 (InstructGPT); none: the
        /// best-ranked samples.
        demonstrations: Vec<Demonstration>,
    },
    Dpo {
        spec: TrainRun<dpo::DpoConfig>,
        policy: Resolved,
        /// The rankings snapshot, then the votes' if any.
        snapshots: Vec<Snapshot>,
        rankings: Vec<Ranking>,
    },
    Ppo {
        spec: PpoRun,
        inputs: RlInputs,
    },
    Rloo {
        spec: RlRun<rloo::RlooConfig>,
        inputs: RlInputs,
    },
    Grpo {
        spec: RlRun<grpo::GrpoConfig>,
        inputs: RlInputs,
    },
    Sample {
        spec: SampleRun,
        /// The versions that write each prompt's samples, with how many each: the run's
        /// version first, then the mixed-in ones.
        writers: Vec<(Resolved, usize)>,
        project_id: i64,
        k: usize,
        prompts: Vec<(i64, String)>,
    },
    Eval {
        spec: EvalRun,
        versions: Vec<Resolved>,
        reward: Option<Resolved>,
        reference: Option<Resolved>,
        prompts: Vec<(i64, String)>,
    },
}

/// What an RL run (PPO, RLOO, GRPO) trains from: the SFT policy, the reward model that
/// scores its samples, and the prompts snapshot, read.
pub(super) struct RlInputs {
    policy: Resolved,
    reward: Resolved,
    snapshot: Snapshot,
    prompts: Vec<String>,
    /// PPO-ptx's corpus snapshot and its documents.
    ptx: Option<(Snapshot, Vec<String>)>,
}

/// A prompt's id and its K samples.
pub(super) type PromptSamplesOut = (i64, Vec<NewSample>);

pub(super) enum Output {
    Eval {
        samples: Vec<registry::evals::EvalSample>,
        /// Empty when the run did not ask for them.
        skills: Vec<registry::evals::SkillScore>,
        probes: Vec<registry::evals::ProbeWord>,
        probe_counts: Vec<registry::probe_stats::ProbeCount>,
    },
    Model {
        model: String,
        kind: ModelKind,
        parents: Vec<Parent>,
        snapshots: Vec<i64>,
        config: serde_json::Value,
        metrics: serde_json::Value,
    },
    Samples {
        project_id: i64,
        /// The writers' version ids, which each sample's `writer` indexes.
        version_ids: Vec<i64>,
        settings: serde_json::Value,
        /// Per prompt: its id and K samples.
        samples: Vec<PromptSamplesOut>,
    },
}

/// The snapshot the run names (checked to be the project's and of the right kind), or one
/// frozen now and named after the run, so that a resumed run finds the same one.
async fn snapshot_for(
    pool: &PgPool,
    run: &ClaimedRun,
    snapshot_id: Option<i64>,
    kind: SnapshotKind,
    split: Option<Split>,
) -> Result<Snapshot, Stop> {
    let snapshot = match snapshot_id {
        Some(id) => {
            let snapshot = snapshots::snapshot(pool, id)
                .await
                .map_err(|e| Stop::Failed(format!("snapshot_id {id}: {e}")))?;
            if let Some(project) = run.project_id.filter(|p| *p != snapshot.project_id) {
                return Err(Stop::Failed(format!(
                    "snapshot {id} belongs to project {}, not this run's project {project}",
                    snapshot.project_id
                )));
            }
            if snapshot.kind != kind {
                return Err(Stop::Failed(format!(
                    "snapshot {id} holds {:?}, and this run needs {kind:?}",
                    snapshot.kind
                )));
            }
            snapshot
        }
        None => {
            let project = run.project_id.ok_or_else(|| {
                Stop::Failed("the run has no project to freeze a snapshot from: give snapshot_id".into())
            })?;
            let name = format!("run {} {kind:?}", run.id).to_lowercase();
            let existing = snapshots::snapshots(pool, project).await?.into_iter().find(|s| s.name == name);
            match existing {
                Some(snapshot) => snapshot,
                None => {
                    snapshots::freeze(
                        pool,
                        project,
                        kind,
                        &SnapshotFilter { split, ..SnapshotFilter::default() },
                        &name,
                        None,
                    )
                    .await?
                }
            }
        }
    };
    if snapshot.item_count == 0 {
        return Err(Stop::Failed(format!(
            "snapshot {} ({}) is empty: there is nothing to train on",
            snapshot.id, snapshot.name
        )));
    }
    Ok(snapshot)
}

/// The rankings of the snapshot `snapshot_id` (frozen from the project when None), then,
/// when `votes_snapshot_id` names one, the A/B votes of that comparisons snapshot as
/// K = 2 rankings; with the snapshots they came from.
async fn rankings_and_votes(
    pool: &PgPool,
    run: &ClaimedRun,
    snapshot_id: Option<i64>,
    votes_snapshot_id: Option<i64>,
    dir: &Path,
) -> Result<(Vec<Snapshot>, Vec<Ranking>), Stop> {
    let snapshot = snapshot_for(pool, run, snapshot_id, SnapshotKind::Rankings, None).await?;
    let path = export_to(pool, &snapshot, ExportFormat::KWise, dir, "rankings.jsonl").await?;
    let mut rankings = data::read_rankings(&path)?;
    let mut snapshots = vec![snapshot];
    if let Some(id) = votes_snapshot_id {
        let votes = snapshot_for(pool, run, Some(id), SnapshotKind::Comparisons, None).await?;
        let path = export_to(pool, &votes, ExportFormat::KWise, dir, "votes.jsonl").await?;
        // Ties and "both bad" votes order nothing: the export leaves them out.
        let as_rankings = data::read_rankings(&path)?;
        if as_rankings.is_empty() {
            return Err(Stop::Failed(format!(
                "votes_snapshot_id {id}: none of its votes prefers one sample (all ties or both bad)"
            )));
        }
        rankings.extend(as_rankings);
        snapshots.push(votes);
    }
    Ok((snapshots, rankings))
}

/// The demonstrations a reward model's zero is centred on: those of the snapshot named,
/// else the project's, frozen now; none (and no snapshot) when the project has none.
async fn centring_demonstrations(
    pool: &PgPool,
    run: &ClaimedRun,
    snapshot_id: Option<i64>,
    dir: &Path,
) -> Result<(Option<Snapshot>, Vec<Demonstration>), Stop> {
    let snapshot = match snapshot_id {
        Some(id) => snapshot_for(pool, run, Some(id), SnapshotKind::Demonstrations, None).await?,
        None => {
            let Some(project) = run.project_id else { return Ok((None, Vec::new())) };
            let held: i64 = sqlx::query_scalar(
                "SELECT count(*) FROM demonstrations d JOIN prompts p ON p.id = d.prompt_id WHERE p.project_id = $1",
            )
                .bind(project)
                .fetch_one(pool)
                .await
                .map_err(|e| Stop::Failed(format!("counting the project's demonstrations: {e}")))?;
            if held == 0 {
                return Ok((None, Vec::new()));
            }
            snapshot_for(pool, run, None, SnapshotKind::Demonstrations, None).await?
        }
    };
    let path = export_to(pool, &snapshot, ExportFormat::Sft, dir, "centre.jsonl").await?;
    Ok((Some(snapshot), data::read_demonstrations(&path)?))
}

/// The snapshot exported in `format`, written to `dir/<name>` for the trainer's readers
/// (whose errors name the line).
async fn export_to(
    pool: &PgPool,
    snapshot: &Snapshot,
    format: ExportFormat,
    dir: &Path,
    name: &str,
) -> Result<PathBuf, Stop> {
    let lines = snapshots::export(pool, snapshot.id, format).await?;
    let path = dir.join(name);
    let mut text = lines.join("\n");
    text.push('\n');
    tokio::fs::write(&path, text).await.map_err(|e| Stop::Failed(format!("{}: {e}", path.display())))?;
    Ok(path)
}

pub(super) async fn prepare(
    pool: &PgPool,
    store: &ArtifactStore,
    run: &ClaimedRun,
    spec: &RunSpec,
    dir: &Path,
) -> Result<Prepared, Stop> {
    Ok(match spec.clone() {
        RunSpec::Pretrain(spec) => {
            let base = match &spec.base {
                Some(reference) => Some(resolve(pool, store, "base", reference).await?),
                None => None,
            };
            let (snapshot, documents) = match spec.snapshot_id {
                Some(id) => {
                    let snapshot = snapshot_for(pool, run, Some(id), SnapshotKind::Prompts, None).await?;
                    let path = export_to(pool, &snapshot, ExportFormat::Prompts, dir, "corpus.jsonl").await?;
                    (Some(snapshot), data::read_prompts(&path)?)
                }
                None => (None, world::corpus(spec.corpus_documents, spec.stage.seed)),
            };
            Prepared::Pretrain { spec, base, snapshot, documents }
        }
        RunSpec::Sft(spec) => {
            let base = resolve(pool, store, "base", &spec.base).await?;
            let snapshot =
                snapshot_for(pool, run, spec.snapshot_id, SnapshotKind::Demonstrations, None).await?;
            let path = export_to(pool, &snapshot, ExportFormat::Sft, dir, "demonstrations.jsonl").await?;
            let demonstrations = data::read_demonstrations(&path)?;
            Prepared::Sft { spec, base, snapshot, demonstrations }
        }
        RunSpec::Reward(spec) => {
            let base = resolve(pool, store, "base", &spec.base).await?;
            let (mut snapshots, rankings) =
                rankings_and_votes(pool, run, spec.snapshot_id, spec.votes_snapshot_id, dir).await?;
            let (centre, demonstrations) =
                centring_demonstrations(pool, run, spec.demonstrations_snapshot_id, dir).await?;
            snapshots.extend(centre);
            Prepared::Reward { spec, base, snapshots, rankings, demonstrations }
        }
        RunSpec::Dpo(spec) => {
            let policy = resolve(pool, store, "policy", &spec.base).await?;
            if policy.version.kind != ModelKind::Sft {
                return Err(Stop::Failed(format!(
                    "policy {:?} is a {:?} model, not an SFT model",
                    spec.base, policy.version.kind
                )));
            }
            let (snapshots, rankings) =
                rankings_and_votes(pool, run, spec.snapshot_id, spec.votes_snapshot_id, dir).await?;
            Prepared::Dpo { spec, policy, snapshots, rankings }
        }
        RunSpec::Ppo(spec) => {
            let inputs = rl_inputs(pool, store, run, &spec, dir).await?;
            Prepared::Ppo { spec, inputs }
        }
        RunSpec::Rloo(spec) => {
            let inputs = rl_inputs(pool, store, run, &spec, dir).await?;
            Prepared::Rloo { spec, inputs }
        }
        RunSpec::Grpo(spec) => {
            let inputs = rl_inputs(pool, store, run, &spec, dir).await?;
            Prepared::Grpo { spec, inputs }
        }
        RunSpec::Sample(spec) => {
            let project_id =
                run.project_id.ok_or_else(|| Stop::Failed("a sample run needs a project".into()))?;
            let project = labeling::projects::get_project(pool, project_id).await?;
            let k = spec.k.unwrap_or(project.samples_per_task as usize);
            let mut writers = Vec::new();
            for (i, (reference, count)) in
                spec.writers(k).map_err(|e| Stop::Failed(format!("mix_k: {e}")))?.into_iter().enumerate()
            {
                let field = if i == 0 { "version" } else { "mix" };
                let version = resolve(pool, store, field, reference).await?;
                if version.version.kind == ModelKind::Reward {
                    return Err(Stop::Failed(format!(
                        "{field}: {reference:?} is a reward model, which does not write text"
                    )));
                }
                writers.push((version, count));
            }
            let prompts = prompts_of(pool, project_id, &spec.prompts, true).await?;
            if prompts.is_empty() {
                return Err(Stop::Failed("no prompts to sample for: the project has none that match (split, or all already have ranking tasks)".into()));
            }
            Prepared::Sample { spec, writers, project_id, k, prompts }
        }
        RunSpec::Eval(spec) => {
            let project_id =
                run.project_id.ok_or_else(|| Stop::Failed("an eval run needs a project".into()))?;
            let mut versions = Vec::with_capacity(spec.versions.len());
            for reference in &spec.versions {
                let version = resolve(pool, store, "versions", reference).await?;
                if version.version.kind == ModelKind::Reward {
                    return Err(Stop::Failed(format!(
                        "versions: {reference:?} is a reward model, which does not write text"
                    )));
                }
                versions.push(version);
            }
            let reward = match &spec.reward {
                Some(reference) => {
                    let reward = resolve(pool, store, "reward", reference).await?;
                    if reward.version.kind != ModelKind::Reward {
                        return Err(Stop::Failed(format!(
                            "reward {reference:?} is a {:?} model, not a reward model",
                            reward.version.kind
                        )));
                    }
                    Some(reward)
                }
                None => None,
            };
            let reference = match &spec.reference {
                Some(reference) => Some(resolve(pool, store, "reference", reference).await?),
                None => None,
            };
            let prompts = prompts_of(pool, project_id, &spec.prompts, false).await?;
            if prompts.is_empty() {
                return Err(Stop::Failed(
                    "no prompts to evaluate on: the project has none in that split".into(),
                ));
            }
            Prepared::Eval { spec, versions, reward, reference, prompts }
        }
    })
}

/// The policy and reward model an RL run names (the reward checked to be a reward
/// model), and its prompts snapshot (frozen from the project's train prompts when the run
/// names none) read.
async fn rl_inputs<C>(
    pool: &PgPool,
    store: &ArtifactStore,
    run: &ClaimedRun,
    spec: &RlRun<C>,
    dir: &Path,
) -> Result<RlInputs, Stop> {
    let policy = resolve(pool, store, "policy", &spec.policy).await?;
    let reward = resolve(pool, store, "reward", &spec.reward).await?;
    if reward.version.kind != ModelKind::Reward {
        return Err(Stop::Failed(format!(
            "reward {:?} is a {:?} model, not a reward model",
            spec.reward, reward.version.kind
        )));
    }
    let snapshot =
        snapshot_for(pool, run, spec.snapshot_id, SnapshotKind::Prompts, Some(Split::Train)).await?;
    let path = export_to(pool, &snapshot, ExportFormat::Prompts, dir, "prompts.jsonl").await?;
    let prompts = data::read_prompts(&path)?;
    let ptx = match spec.ptx_snapshot_id {
        Some(id) => {
            let corpus = snapshot_for(pool, run, Some(id), SnapshotKind::Prompts, None).await?;
            let path = export_to(pool, &corpus, ExportFormat::Prompts, dir, "ptx-corpus.jsonl").await?;
            let documents = data::read_prompts(&path)?;
            Some((corpus, documents))
        }
        None => None,
    };
    Ok(RlInputs { policy, reward, snapshot, prompts, ptx })
}

/// The project's prompts that a run's prompt set picks; `untasked_only` unless the set
/// says otherwise.
async fn prompts_of(
    pool: &PgPool,
    project_id: i64,
    set: &PromptSet,
    untasked_only: bool,
) -> Result<Vec<(i64, String)>, Stop> {
    let split = set.split.as_deref().map(Split::parse).transpose()?;
    let limit = set.limit.map(|l| l as i64).unwrap_or(i64::MAX);
    let untasked_only = set.untasked_only.unwrap_or(untasked_only);
    Ok(labeling::samples::prompts_for_sampling(pool, project_id, split, untasked_only, limit).await?)
}

/// The role a model a run starts from plays in the new version's lineage: named by its
/// kind (an RM trained from an SFT model has parent `sft`), so that the registry reads
/// base → SFT → RM.
fn start_role(start: &Resolved) -> &'static str {
    start.version.kind.as_str()
}

fn lineage(parents: &[(&Resolved, &str)]) -> Vec<Parent> {
    parents.iter().map(|(r, role)| Parent { version_id: r.version.id, role: (*role).to_owned() }).collect()
}

fn report_json(report: &impl serde::Serialize) -> serde_json::Value {
    serde_json::to_value(report).unwrap_or_else(|_| json!({}))
}

/// The version an SFT or RM run registers: trained from `base` (`width` wide) on
/// `snapshot`; its config records the settings used, those that depend on the model's
/// size resolved.
fn trained_from<C: StageSettings>(
    spec: &TrainRun<C>,
    kind: ModelKind,
    base: &Resolved,
    width: i64,
    snapshots: &[Snapshot],
    report: &impl serde::Serialize,
) -> Output {
    Output::Model {
        model: spec.model_name.clone(),
        kind,
        parents: lineage(&[(base, start_role(base))]),
        snapshots: snapshots.iter().map(|s| s.id).collect(),
        config: json!({
            "stage": spec.stage.scaled_to(width),
            "base": spec.base,
            "snapshot_id": snapshots.first().map(|s| s.id),
            "votes_snapshot_id": spec.votes_snapshot_id,
            "demonstrations_snapshot_id": spec.demonstrations_snapshot_id,
        }),
        metrics: report_json(report),
    }
}

/// An RL run's policy and reward model on `device`, the reward model frozen and under
/// bf16 held in bf16 (PPO's value model starts from its rounded weights).
fn rl_models(
    inputs: &RlInputs,
    device: Device,
    precision: Precision,
) -> Result<(LanguageModel, LanguageModel), TrainError> {
    let policy = LanguageModel::load(&inputs.policy.dir, device)?;
    let mut reward = LanguageModel::load(&inputs.reward.dir, device)?;
    reward.freeze_in(precision);
    Ok((policy, reward))
}

/// The policy version an RL run registers: its lineage the SFT version and the reward
/// model, trained on the prompts snapshot.
fn rl_version<C: StageSettings>(
    spec: &RlRun<C>,
    inputs: &RlInputs,
    width: i64,
    report: &impl serde::Serialize,
    selection: Option<SelectionRecord>,
) -> Output {
    let RlInputs { policy, reward, snapshot, ptx, .. } = inputs;
    Output::Model {
        model: spec.model_name.clone(),
        kind: ModelKind::Policy,
        parents: lineage(&[(policy, "sft"), (reward, "reward")]),
        snapshots: std::iter::once(snapshot.id).chain(ptx.as_ref().map(|(s, _)| s.id)).collect(),
        config: json!({ "stage": spec.stage.scaled_to(width), "policy": spec.policy, "reward": spec.reward,
                        "snapshot_id": snapshot.id, "ptx_snapshot_id": ptx.as_ref().map(|(s, _)| s.id),
                        "selection": selection }),
        metrics: report_json(report),
    }
}

/// An RL stage's run (PPO, RLOO, GRPO): `train` from the SFT policy against the reward
/// model on the prompts not held out, evaluated on the held-out ones (`heldout`), and
/// the policy version it registers.
fn rl_stage<C, R: serde::Serialize>(
    spec: &RlRun<C>,
    inputs: &RlInputs,
    device: Device,
    precision: Precision,
    run: &mut RunDir,
    train: impl FnOnce(
        LanguageModel,
        Reward,
        &[String],
        &mut RunDir,
        &mut EvalFn,
    ) -> Result<(LanguageModel, R), TrainError>,
) -> Result<Output, TrainError>
where
    C: StageSettings,
    for<'c> &'c C: Into<HeldOutSettings>,
{
    let (policy, reward) = rl_models(inputs, device, precision)?;
    let width = policy.config.n_embd;
    let reward = Reward::Model(&reward);
    let heldout = (&spec.stage).into();
    let (_, report, selection) =
        train_with_heldout(heldout, &inputs.prompts, reward, run, |prompts, run, eval| {
            train(policy, reward, prompts, run, eval)
        })?;
    Ok(rl_version(spec, inputs, width, &report, selection))
}

/// The stage, on this thread, into `out` (resuming from its newest checkpoint when
/// `resume`: see [`RunDir::resume`]).
pub(super) fn execute(
    prepared: Prepared,
    out: &Path,
    device: Device,
    stop: Arc<AtomicBool>,
    resume: bool,
) -> Result<Output, TrainError> {
    let mut run = RunDir::open(out, resume)?.stop_when(stop);
    Ok(match prepared {
        Prepared::Pretrain { spec, base, snapshot, documents } => {
            let model = match &base {
                Some(base) => LanguageModel::load(&base.dir, device)?,
                None => {
                    let kind: TokenizerKind = spec.tokenizer.parse().map_err(TrainError::Config)?;
                    let preset: Preset = spec.preset.parse().map_err(TrainError::Config)?;
                    let mut config = GptConfig::preset(preset, Tokenizer::new(kind).vocab_size());
                    let sparse = default_sparse(config.n_ctx, spec.sparse_window, spec.sparse_stride);
                    config.attention = AttentionLayers::from_words(&spec.attention, config.n_layer, sparse)
                        .map_err(|e| TrainError::Config(format!("attention: {e}")))?;
                    tch::manual_seed(spec.stage.seed as i64);
                    LanguageModel::new(config, kind, device).map_err(TrainError::Config)?
                }
            };
            let (_, report) = pretrain::train(&spec.stage, model, &documents, &mut run)?;
            Output::Model {
                model: spec.model_name.clone(),
                kind: ModelKind::Base,
                parents: base.as_ref().map(|b| lineage(&[(b, start_role(b))])).unwrap_or_default(),
                snapshots: snapshot.iter().map(|s| s.id).collect(),
                config: match &snapshot {
                    Some(s) => json!({ "stage": spec.stage, "base": spec.base, "snapshot_id": s.id }),
                    None => {
                        json!({ "stage": spec.stage, "base": spec.base, "preset": spec.preset, "tokenizer": spec.tokenizer,
                                    "corpus": "demo_world", "corpus_documents": spec.corpus_documents,
                                    "attention": spec.attention.to_string() })
                    }
                },
                metrics: report_json(&report),
            }
        }
        Prepared::Sft { spec, base, snapshot, demonstrations } => {
            let model = LanguageModel::load(&base.dir, device)?;
            let width = model.config.n_embd;
            let (_, report) = sft::train(&spec.stage, model, &demonstrations, &[], &mut run)?;
            trained_from(&spec, ModelKind::Sft, &base, width, std::slice::from_ref(&snapshot), &report)
        }
        Prepared::Reward { spec, base, snapshots, rankings, demonstrations } => {
            let model = LanguageModel::load(&base.dir, device)?;
            let width = model.config.n_embd;
            let (_, report) = reward::train(&spec.stage, model, &rankings, &[], &demonstrations, &mut run)?;
            trained_from(&spec, ModelKind::Reward, &base, width, &snapshots, &report)
        }
        Prepared::Dpo { spec, policy, snapshots, rankings } => {
            let model = LanguageModel::load(&policy.dir, device)?;
            let width = model.config.n_embd;
            let (_, report) = dpo::train(&spec.stage, model, &rankings, &[], &mut run)?;
            Output::Model {
                model: spec.model_name.clone(),
                kind: ModelKind::Policy,
                parents: lineage(&[(&policy, "sft")]),
                snapshots: snapshots.iter().map(|s| s.id).collect(),
                config: json!({
                    "stage": spec.stage.scaled_to(width),
                    "policy": spec.base,
                    "snapshot_id": snapshots.first().map(|s| s.id),
                    "votes_snapshot_id": spec.votes_snapshot_id,
                }),
                metrics: report_json(&report),
            }
        }
        Prepared::Ppo { spec, inputs } => {
            let ptx = inputs.ptx.as_ref().map(|(_, documents)| documents.as_slice());
            rl_stage(
                &spec,
                &inputs,
                device,
                spec.stage.precision,
                &mut run,
                |policy, reward, prompts, run, eval| {
                    let data = ppo::PpoData { prompts, ptx_corpus: ptx };
                    ppo::train_with_eval(&spec.stage, policy, reward, data, run, eval)
                },
            )?
        }
        Prepared::Rloo { spec, inputs } => rl_stage(
            &spec,
            &inputs,
            device,
            spec.stage.precision,
            &mut run,
            |policy, reward, prompts, run, eval| rloo::train(&spec.stage, policy, reward, prompts, run, eval),
        )?,
        Prepared::Grpo { spec, inputs } => rl_stage(
            &spec,
            &inputs,
            device,
            spec.stage.precision,
            &mut run,
            |policy, reward, prompts, run, eval| grpo::train(&spec.stage, policy, reward, prompts, run, eval),
        )?,
        Prepared::Eval { spec, versions, reward, reference, prompts } => {
            let measured = super::eval::evaluate(
                &spec,
                &versions,
                reward.as_ref(),
                reference.as_ref(),
                &prompts,
                device,
                &mut run,
            )?;
            Output::Eval {
                samples: measured.samples,
                skills: measured.skills,
                probes: measured.probes,
                probe_counts: measured.probe_counts,
            }
        }
        Prepared::Sample { spec, writers, project_id, k, prompts } => {
            let mut models = Vec::with_capacity(writers.len());
            for (version, count) in &writers {
                models.push((LanguageModel::load(&version.dir, device)?, *count));
            }
            let samples = sample(&models, &spec, &prompts, &mut run)?;
            let mut settings = json!({ "stage": spec.stage, "version": spec.version, "k": k });
            if !spec.mix.is_empty() {
                settings["mix"] = json!(spec.mix);
                settings["mix_k"] = json!(spec.mix_k);
            }
            Output::Samples {
                project_id,
                version_ids: writers.iter().map(|(v, _)| v.version.id).collect(),
                settings,
                samples,
            }
        }
    })
}

/// Each prompt's samples from their writers, `count` from each, so that a sample does not
/// depend on the batch it was drawn in: prompt i's r-th sample by the writer whose
/// samples start at slot o comes from random stream P·o + i·count + r, for P prompts
/// (i·K + r when one version writes them all). With several writers, each prompt's
/// samples are shuffled by the run's seed, so that a position does not tell who wrote
/// it. Logs progress per batch.
fn sample(
    writers: &[(LanguageModel, usize)],
    spec: &SampleRun,
    prompts: &[(i64, String)],
    run: &mut RunDir,
) -> Result<Vec<PromptSamplesOut>, TrainError> {
    use rand::seq::SliceRandom;
    use rand::SeedableRng;
    const PROMPTS_PER_BATCH: usize = 8;
    let batches = prompts.len().div_ceil(PROMPTS_PER_BATCH);
    run.set_total_steps(batches as i64)?;
    let mut out: Vec<PromptSamplesOut> = prompts.iter().map(|(id, _)| (*id, Vec::new())).collect();
    for (batch, chunk) in prompts.chunks(PROMPTS_PER_BATCH).enumerate() {
        let first_prompt = batch * PROMPTS_PER_BATCH;
        let (mut eos, mut n) = (0usize, 0usize);
        let mut slot = 0;
        for (writer, (model, count)) in writers.iter().enumerate() {
            let ids: Vec<Vec<i64>> = chunk
                .iter()
                .flat_map(|(_, text)| std::iter::repeat_n(model.tokenizer.encode(text), *count))
                .collect();
            let first_stream = (prompts.len() * slot + first_prompt * count) as u64;
            let generations = crate::generate_streams(model, &ids, &spec.stage, first_stream)?;
            n += generations.len();
            for (j, g) in generations.into_iter().enumerate() {
                eos += g.stopped_at_eos as usize;
                let ids: Vec<i64> =
                    g.ids.iter().copied().filter(|&t| t != model.tokenizer.eos_id()).collect();
                // Postgres text cannot hold NUL, which a byte-level model may sample: it is
                // shown as U+FFFD, the log-probs still those of the tokens.
                let text = model.tokenizer.decode(&ids).replace('\0', "\u{FFFD}");
                out[first_prompt + j / count].1.push(NewSample { writer, text, logprobs: g.logprobs });
            }
            slot += count;
        }
        if writers.len() > 1 {
            for (prompt_id, samples) in &mut out[first_prompt..first_prompt + chunk.len()] {
                let seed = spec.stage.seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ *prompt_id as u64;
                samples.shuffle(&mut rand_chacha::ChaCha8Rng::seed_from_u64(seed));
            }
        }
        run.log(batch as i64, &[("samples", n as f64), ("sample/eos_rate", eos as f64 / n.max(1) as f64)])?;
        run.stop_if_requested(batch as i64)?;
    }
    Ok(out)
}

/// The model's files (not its checkpoints or metrics) into the artifact store, then the
/// version; or the samples and their ranking tasks. Returns the version's id.
pub(super) async fn publish(
    pool: &PgPool,
    store: &ArtifactStore,
    run: &ClaimedRun,
    output: Output,
    dir: &Path,
    patience: std::time::Duration,
) -> Result<Option<i64>, Stop> {
    match output {
        Output::Model { model, kind, parents, snapshots, config, metrics } => {
            let model_dir = dir.join("model");
            let out = dir.join("out");
            let copied = model_dir.clone();
            tokio::task::spawn_blocking(move || copy_model_files(&out, &copied))
                .await
                .map_err(|e| Stop::Failed(e.to_string()))??;
            let config = json!({ "run_kind": run.kind, "run_config": run.config, "resolved": config });
            // Registered before it is promoted: when the run already has a version (another
            // worker registered it), the staged copy is deleted instead.
            let version = store
                .store_recorded(model_dir, |artifact| async move {
                    let new = NewVersion {
                        model,
                        kind,
                        run_id: Some(run.id),
                        parents,
                        snapshots,
                        config,
                        metrics,
                        artifact,
                        created_by: None,
                    };
                    // Registering is idempotent per run, so trying again is safe.
                    let version =
                        super::while_postgres_is_away(patience, || versions::register(pool, &new)).await?;
                    let ours = version.artifact_sha256 == new.artifact.sha256;
                    Ok((version, ours))
                })
                .await?;
            super::log_to_run(pool, run.id, &[format!("registered {}:{}", version.model, version.version)])
                .await;
            Ok(Some(version.id))
        }
        Output::Eval { samples, skills, probes, probe_counts } => {
            // Samples, skill scores and probe words in one transaction: the run's results
            // appear all at once, and a retry stores each kind once.
            let stored = super::while_postgres_is_away(patience, || {
                registry::evals::store_results(pool, run.id, &samples, &skills, &probes, &probe_counts)
            })
            .await?;
            let lines = if stored {
                match registry::evals::report(pool, run.id, None).await {
                    Ok(report) => eval_log(&report),
                    // The results are stored: only the run log's summary of them is missing.
                    Err(e) => {
                        tracing::warn!(run_id = run.id, error = %e, "summing up the eval run's results failed");
                        vec![format!("the results are stored, but summing them up failed: {e}")]
                    }
                }
            } else {
                vec!["the samples of this run were already stored".to_owned()]
            };
            super::log_to_run(pool, run.id, &lines).await;
            Ok(None)
        }
        Output::Samples { project_id, version_ids, settings, samples } => {
            let prompts: Vec<PromptSamples> = samples
                .into_iter()
                .map(|(prompt_id, samples)| PromptSamples { prompt_id, samples })
                .collect();
            // Once per run, so trying again is safe.
            let stored = super::while_postgres_is_away(patience, || {
                labeling::samples::add_ranking_batch(
                    pool,
                    project_id,
                    &version_ids,
                    run.id,
                    &settings,
                    &prompts,
                )
            })
            .await?;
            let line = match stored {
                Some(tasks) => {
                    format!("wrote {} prompts' samples and {} ranking tasks", prompts.len(), tasks.len())
                }
                None => "the samples of this run were already stored".to_owned(),
            };
            super::log_to_run(pool, run.id, &[line]).await;
            Ok(None)
        }
    }
}

/// An eval run's results in its log: each version's means, then its few-shot accuracy
/// when the run measured it.
fn eval_log(report: &registry::evals::Report) -> Vec<String> {
    let mean = |v: Option<f64>| v.map_or("-".to_owned(), |v| format!("{v:.3}"));
    let means = report.versions.iter().map(|v| {
        let s = &v.summary;
        format!(
            "{}: {} prompts, reward {}, kl {}, oracle {}, {:.1} tokens, eos rate {:.2}, repetition {:.2}",
            v.label,
            s.prompts,
            mean(s.reward),
            mean(s.kl),
            mean(s.oracle),
            s.tokens,
            s.eos_rate,
            s.repetition
        )
    });
    let few_shot = report.versions.iter().filter_map(|v| {
        let line = registry::evals::few_shot_line(&report.skills, v.version_id)?;
        Some(format!("{}: few-shot accuracy {line}", v.label))
    });
    means.chain(few_shot).collect()
}

/// The files of a trained model: everything in `out` but its checkpoints and run records.
fn copy_model_files(out: &Path, model_dir: &Path) -> Result<(), Stop> {
    let io = |path: &Path| {
        let path = path.to_owned();
        move |e: std::io::Error| Stop::Failed(format!("{}: {e}", path.display()))
    };
    if model_dir.exists() {
        std::fs::remove_dir_all(model_dir).map_err(io(model_dir))?;
    }
    std::fs::create_dir_all(model_dir).map_err(io(model_dir))?;
    for entry in std::fs::read_dir(out).map_err(io(out))? {
        let entry = entry.map_err(io(out))?;
        let name = entry.file_name();
        let skip = [CHECKPOINTS, crate::train::METRICS, crate::train::PROGRESS];
        if entry.path().is_file() && !skip.iter().any(|s| name == *s) {
            std::fs::copy(entry.path(), model_dir.join(&name)).map_err(io(&entry.path()))?;
        }
    }
    Ok(())
}
