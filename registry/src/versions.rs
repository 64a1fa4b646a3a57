//! The model registry: each trained model is an immutable, numbered version of a named
//! model, with the run that made it, its parents (lineage), the dataset snapshots it was
//! trained on, its config and metrics, and its artifact's location and sha256. Only tags
//! change, and aliases (such as `champion`) move between a model's versions.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sqlx::{PgConnection, PgPool};

use crate::artifacts::{check_digest, digest_of_uri, StoredArtifact};
use crate::error::{violated, RegistryError, Result, FOREIGN_KEY_VIOLATION, UNIQUE_VIOLATION};

pub use spec::ModelKind;

/// A version this one was trained from, and in which role (`base`, `sft`, `reward`,
/// `reference`, ...).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Parent {
    pub version_id: i64,
    pub role: String,
}

/// A version to register.
#[derive(Clone, Debug)]
pub struct NewVersion {
    /// The model's name; the model is created with its first version.
    pub model: String,
    pub kind: ModelKind,
    /// The run that trained it; a run registers at most one version.
    pub run_id: Option<i64>,
    pub parents: Vec<Parent>,
    /// The dataset snapshots it was trained on.
    pub snapshots: Vec<i64>,
    /// The stage's config; a JSON object.
    pub config: serde_json::Value,
    /// Final metrics; a JSON object.
    pub metrics: serde_json::Value,
    pub artifact: StoredArtifact,
    pub created_by: Option<i64>,
}

/// A dataset snapshot that a version was trained on, with the hash of its content.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SnapshotRef {
    pub id: i64,
    pub content_sha256: String,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ModelVersion {
    pub id: i64,
    /// The model's name.
    pub model: String,
    /// 1, 2, ... within the model.
    pub version: i32,
    pub kind: ModelKind,
    pub run_id: Option<i64>,
    pub config: serde_json::Value,
    pub metrics: serde_json::Value,
    pub artifact_uri: String,
    pub artifact_sha256: String,
    pub artifact_size: i64,
    pub tags: Vec<String>,
    pub created_by: Option<i64>,
    pub created_at: DateTime<Utc>,
    pub parents: Vec<Parent>,
    pub snapshots: Vec<SnapshotRef>,
    /// The model's aliases that name this version.
    pub aliases: Vec<String>,
}

/// An alias of a model and the version it names.
#[derive(Clone, Debug, PartialEq, Serialize, sqlx::FromRow)]
pub struct Alias {
    pub alias: String,
    pub version_id: i64,
    pub version: i32,
    pub updated_at: DateTime<Utc>,
}

/// A model with its latest version and its aliases.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ModelSummary {
    pub id: i64,
    pub name: String,
    pub created_at: DateTime<Utc>,
    pub latest: Option<ModelVersion>,
    pub aliases: Vec<Alias>,
}

/// A version in another's lineage.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct LineageEntry {
    pub version: ModelVersion,
    /// The role of the link that reaches this version.
    pub role: String,
    /// The other end of that link: among ancestors, the version that this one is a
    /// `role` parent of; among descendants, the parent that this one was trained from.
    pub via: i64,
    /// 1 for a direct parent (or child), 2 for a grandparent, ...; the shortest path.
    pub depth: i32,
}

/// How a researcher names a version: `name` (its latest), `name:3` or `name@alias`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ModelRef {
    Latest(String),
    Number(String, i32),
    Alias(String, String),
}

impl ModelRef {
    pub fn parse(reference: &str) -> Result<ModelRef> {
        let bad = || RegistryError::BadReference(reference.to_string());
        let parsed = if let Some((model, alias)) = reference.split_once('@') {
            check_alias(alias).map_err(|_| bad())?;
            ModelRef::Alias(model.to_string(), alias.to_string())
        } else if let Some((model, number)) = reference.split_once(':') {
            let number: i32 = number.parse().ok().filter(|n| *n >= 1).ok_or_else(bad)?;
            ModelRef::Number(model.to_string(), number)
        } else {
            ModelRef::Latest(reference.to_string())
        };
        let (ModelRef::Latest(model) | ModelRef::Number(model, _) | ModelRef::Alias(model, _)) = &parsed;
        check_model_name(model).map_err(|_| bad())?;
        Ok(parsed)
    }
}

/// The columns of a `ModelVersion`, from `model_versions v JOIN models m`.
const VERSION_COLUMNS: &str = "v.id, m.name AS model, v.version, v.kind, v.run_id, v.config, v.metrics,
    v.artifact_uri, encode(v.artifact_sha256, 'hex') AS artifact_sha256, v.artifact_size, v.tags,
    v.created_by, v.created_at,
    ARRAY(SELECT p.parent_id FROM version_parents p WHERE p.version_id = v.id ORDER BY p.role, p.parent_id) AS parent_ids,
    ARRAY(SELECT p.role FROM version_parents p WHERE p.version_id = v.id ORDER BY p.role, p.parent_id) AS parent_roles,
    ARRAY(SELECT s.snapshot_id FROM version_snapshots s WHERE s.version_id = v.id ORDER BY s.snapshot_id) AS snapshot_ids,
    ARRAY(SELECT encode(d.content_sha256, 'hex') FROM version_snapshots s
          JOIN dataset_snapshots d ON d.id = s.snapshot_id WHERE s.version_id = v.id ORDER BY s.snapshot_id) AS snapshot_sha256,
    ARRAY(SELECT a.alias FROM model_aliases a WHERE a.version_id = v.id ORDER BY a.alias) AS aliases";

#[derive(sqlx::FromRow)]
struct VersionRow {
    id: i64,
    model: String,
    version: i32,
    kind: ModelKind,
    run_id: Option<i64>,
    config: serde_json::Value,
    metrics: serde_json::Value,
    artifact_uri: String,
    artifact_sha256: String,
    artifact_size: i64,
    tags: Vec<String>,
    created_by: Option<i64>,
    created_at: DateTime<Utc>,
    parent_ids: Vec<i64>,
    parent_roles: Vec<String>,
    snapshot_ids: Vec<i64>,
    snapshot_sha256: Vec<String>,
    aliases: Vec<String>,
}

impl From<VersionRow> for ModelVersion {
    fn from(r: VersionRow) -> Self {
        ModelVersion {
            id: r.id,
            model: r.model,
            version: r.version,
            kind: r.kind,
            run_id: r.run_id,
            config: r.config,
            metrics: r.metrics,
            artifact_uri: r.artifact_uri,
            artifact_sha256: r.artifact_sha256,
            artifact_size: r.artifact_size,
            tags: r.tags,
            created_by: r.created_by,
            created_at: r.created_at,
            parents: r
                .parent_ids
                .into_iter()
                .zip(r.parent_roles)
                .map(|(version_id, role)| Parent { version_id, role })
                .collect(),
            snapshots: r
                .snapshot_ids
                .into_iter()
                .zip(r.snapshot_sha256)
                .map(|(id, content_sha256)| SnapshotRef { id, content_sha256 })
                .collect(),
            aliases: r.aliases,
        }
    }
}

#[derive(sqlx::FromRow)]
struct LineageRow {
    role: String,
    via: i64,
    depth: i32,
    #[sqlx(flatten)]
    version: VersionRow,
}

/// Registers a version in one transaction: the model is created with its first version,
/// the version takes the model's next number, and parents and snapshots are linked. A run
/// registers once: registering a run's output again returns the version it already has.
pub async fn register(pool: &PgPool, new: &NewVersion) -> Result<ModelVersion> {
    check_model_name(&new.model)?;
    if !new.config.is_object() {
        return Err(RegistryError::NotAnObject("config"));
    }
    if !new.metrics.is_object() {
        return Err(RegistryError::NotAnObject("metrics"));
    }
    let mut seen = HashSet::new();
    for parent in &new.parents {
        check_role(&parent.role)?;
        if !seen.insert((parent.version_id, parent.role.as_str())) {
            return Err(RegistryError::DuplicateParent(parent.version_id));
        }
    }
    check_digest(&new.artifact.sha256)?;
    if digest_of_uri(&new.artifact.uri).ok().as_deref() != Some(new.artifact.sha256.as_str()) {
        return Err(RegistryError::BadUri(new.artifact.uri.clone()));
    }
    let sha256 = hex::decode(&new.artifact.sha256)
        .map_err(|_| RegistryError::BadDigest(new.artifact.sha256.clone()))?;
    let size = i64::try_from(new.artifact.size).expect("an artifact smaller than 8 EiB");

    if let Some(run_id) = new.run_id {
        if let Some(existing) = version_of_run(pool, run_id).await? {
            return Ok(existing);
        }
    }
    let mut tx = pool.begin().await?;
    check_references(&mut tx, new).await?;
    let (model_id, number): (i64, i32) = sqlx::query_as(
        "INSERT INTO models (name, latest_version) VALUES ($1, 1)
         ON CONFLICT (name) DO UPDATE SET latest_version = models.latest_version + 1
         RETURNING id, latest_version",
    )
    .bind(&new.model)
    .fetch_one(&mut *tx)
    .await?;
    let inserted: Result<i64, sqlx::Error> = sqlx::query_scalar(
        "INSERT INTO model_versions (model_id, version, kind, run_id, config, metrics, artifact_uri,
             artifact_sha256, artifact_size, created_by)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) RETURNING id",
    )
    .bind(model_id)
    .bind(number)
    .bind(new.kind)
    .bind(new.run_id)
    .bind(&new.config)
    .bind(&new.metrics)
    .bind(&new.artifact.uri)
    .bind(&sha256)
    .bind(size)
    .bind(new.created_by)
    .fetch_one(&mut *tx)
    .await;
    let id = match inserted {
        Ok(id) => id,
        Err(e) => {
            return match (violated(&e), new.run_id) {
                // Another registration of the same run committed first: rolling back
                // gives the number back, and the run's version is that one.
                (Some((code, c)), Some(run_id))
                    if code == UNIQUE_VIOLATION && c == "model_versions_run_id_key" =>
                {
                    tx.rollback().await?;
                    version_of_run(pool, run_id).await?.ok_or(e.into())
                }
                (Some((code, c)), _)
                    if code == FOREIGN_KEY_VIOLATION && c == "model_versions_created_by_fkey" =>
                {
                    Err(RegistryError::UserNotFound(new.created_by.unwrap_or_default()))
                }
                _ => Err(e.into()),
            };
        }
    };
    let (parent_ids, roles): (Vec<i64>, Vec<&str>) =
        new.parents.iter().map(|p| (p.version_id, p.role.as_str())).unzip();
    sqlx::query("INSERT INTO version_parents (version_id, parent_id, role) SELECT $1, p, r FROM unnest($2::bigint[], $3::text[]) AS u (p, r)")
        .bind(id)
        .bind(&parent_ids)
        .bind(&roles)
        .execute(&mut *tx)
        .await?;
    sqlx::query("INSERT INTO version_snapshots (version_id, snapshot_id) SELECT DISTINCT $1, s FROM unnest($2::bigint[]) AS s")
        .bind(id)
        .bind(&new.snapshots)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    get(pool, id).await
}

/// Clear errors for the references that foreign keys would refuse.
async fn check_references(tx: &mut PgConnection, new: &NewVersion) -> Result<()> {
    if let Some(run_id) = new.run_id {
        let exists: bool = sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM runs WHERE id = $1)")
            .bind(run_id)
            .fetch_one(&mut *tx)
            .await?;
        if !exists {
            return Err(RegistryError::RunNotFound(run_id));
        }
    }
    let parent_ids: Vec<i64> = new.parents.iter().map(|p| p.version_id).collect();
    let missing: Option<i64> = sqlx::query_scalar(
        "SELECT p FROM unnest($1::bigint[]) AS p WHERE NOT EXISTS (SELECT 1 FROM model_versions WHERE id = p) LIMIT 1",
    )
    .bind(&parent_ids)
    .fetch_optional(&mut *tx)
    .await?;
    if let Some(id) = missing {
        return Err(RegistryError::VersionNotFound(id));
    }
    let missing: Option<i64> = sqlx::query_scalar(
        "SELECT s FROM unnest($1::bigint[]) AS s WHERE NOT EXISTS (SELECT 1 FROM dataset_snapshots WHERE id = s) LIMIT 1",
    )
    .bind(&new.snapshots)
    .fetch_optional(&mut *tx)
    .await?;
    if let Some(id) = missing {
        return Err(RegistryError::SnapshotNotFound(id));
    }
    Ok(())
}

async fn version_of_run(pool: &PgPool, run_id: i64) -> Result<Option<ModelVersion>> {
    let row: Option<VersionRow> = sqlx::query_as(&format!(
        "SELECT {VERSION_COLUMNS} FROM model_versions v JOIN models m ON m.id = v.model_id WHERE v.run_id = $1"
    ))
    .bind(run_id)
    .fetch_optional(pool)
    .await?;
    Ok(row.map(ModelVersion::from))
}

pub async fn get(pool: &PgPool, id: i64) -> Result<ModelVersion> {
    let row: Option<VersionRow> = sqlx::query_as(&format!(
        "SELECT {VERSION_COLUMNS} FROM model_versions v JOIN models m ON m.id = v.model_id WHERE v.id = $1"
    ))
    .bind(id)
    .fetch_optional(pool)
    .await?;
    row.map(ModelVersion::from).ok_or(RegistryError::VersionNotFound(id))
}

/// How researchers name each of `ids`: `model:n`, looked up in one query. An id that is
/// no version is [`RegistryError::VersionNotFound`].
pub async fn labels(pool: &PgPool, ids: &[i64]) -> Result<HashMap<i64, String>> {
    if ids.is_empty() {
        return Ok(HashMap::new());
    }
    let rows: Vec<(i64, String)> = sqlx::query_as(
        "SELECT v.id, m.name || ':' || v.version FROM model_versions v JOIN models m ON m.id = v.model_id
         WHERE v.id = ANY($1)",
    )
    .bind(ids)
    .fetch_all(pool)
    .await?;
    let labels: HashMap<i64, String> = rows.into_iter().collect();
    match ids.iter().find(|id| !labels.contains_key(id)) {
        Some(&missing) => Err(RegistryError::VersionNotFound(missing)),
        None => Ok(labels),
    }
}

/// The version that `reference` names: `name` (the latest), `name:3` or `name@alias`.
pub async fn resolve(pool: &PgPool, reference: &str) -> Result<ModelVersion> {
    let reference = ModelRef::parse(reference)?;
    let id: Option<i64> = match &reference {
        ModelRef::Latest(model) => sqlx::query_scalar(
            "SELECT v.id FROM models m
             JOIN model_versions v ON v.model_id = m.id AND v.version = m.latest_version
             WHERE m.name = $1",
        )
        .bind(model),
        ModelRef::Number(model, number) => sqlx::query_scalar(
            "SELECT v.id FROM models m JOIN model_versions v ON v.model_id = m.id
             WHERE m.name = $1 AND v.version = $2",
        )
        .bind(model)
        .bind(number),
        ModelRef::Alias(model, alias) => sqlx::query_scalar(
            "SELECT a.version_id FROM models m JOIN model_aliases a ON a.model_id = m.id
             WHERE m.name = $1 AND a.alias = $2",
        )
        .bind(model)
        .bind(alias),
    }
    .fetch_optional(pool)
    .await?;
    let (ModelRef::Latest(model) | ModelRef::Number(model, _) | ModelRef::Alias(model, _)) = &reference;
    match id {
        Some(id) => get(pool, id).await,
        None => {
            model_id(pool, model).await?;
            Err(match reference {
                ModelRef::Latest(model) => RegistryError::ModelNotFound(model),
                ModelRef::Number(model, version) => RegistryError::NoSuchVersion { model, version },
                ModelRef::Alias(model, alias) => RegistryError::AliasNotFound { model, alias },
            })
        }
    }
}

/// Every model, by name, with its latest version and its aliases.
pub async fn list_models(pool: &PgPool) -> Result<Vec<ModelSummary>> {
    let models: Vec<(i64, String, DateTime<Utc>, Option<i64>)> = sqlx::query_as(
        "SELECT m.id, m.name, m.created_at, v.id FROM models m
         LEFT JOIN model_versions v ON v.model_id = m.id AND v.version = m.latest_version
         ORDER BY m.name",
    )
    .fetch_all(pool)
    .await?;
    let latest_ids: Vec<i64> = models.iter().filter_map(|m| m.3).collect();
    let rows: Vec<VersionRow> = sqlx::query_as(&format!(
        "SELECT {VERSION_COLUMNS} FROM model_versions v JOIN models m ON m.id = v.model_id WHERE v.id = ANY($1)"
    ))
    .bind(&latest_ids)
    .fetch_all(pool)
    .await?;
    let mut latest: HashMap<i64, ModelVersion> = rows.into_iter().map(|r| (r.id, r.into())).collect();
    let alias_rows: Vec<(i64, String, i64, i32, DateTime<Utc>)> = sqlx::query_as(
        "SELECT a.model_id, a.alias, a.version_id, v.version, a.updated_at
         FROM model_aliases a JOIN model_versions v ON v.id = a.version_id ORDER BY a.alias",
    )
    .fetch_all(pool)
    .await?;
    let mut aliases: HashMap<i64, Vec<Alias>> = HashMap::new();
    for (model_id, alias, version_id, version, updated_at) in alias_rows {
        aliases.entry(model_id).or_default().push(Alias { alias, version_id, version, updated_at });
    }
    Ok(models
        .into_iter()
        .map(|(id, name, created_at, latest_id)| ModelSummary {
            id,
            name,
            created_at,
            latest: latest_id.and_then(|v| latest.remove(&v)),
            aliases: aliases.remove(&id).unwrap_or_default(),
        })
        .collect())
}

/// The model's versions, newest first.
pub async fn list_versions(pool: &PgPool, model: &str) -> Result<Vec<ModelVersion>> {
    let model_id = model_id(pool, model).await?;
    let rows: Vec<VersionRow> = sqlx::query_as(&format!(
        "SELECT {VERSION_COLUMNS} FROM model_versions v JOIN models m ON m.id = v.model_id
         WHERE v.model_id = $1 ORDER BY v.version DESC"
    ))
    .bind(model_id)
    .fetch_all(pool)
    .await?;
    Ok(rows.into_iter().map(ModelVersion::from).collect())
}

/// The versions that `id` was trained from, directly or not: one entry per link, nearest
/// first.
pub async fn ancestors(pool: &PgPool, id: i64) -> Result<Vec<LineageEntry>> {
    lineage(
        pool,
        id,
        "SELECT parent_id, role, version_id, 1 FROM version_parents WHERE version_id = $1
         UNION
         SELECT p.parent_id, p.role, p.version_id, l.depth + 1
         FROM version_parents p JOIN lineage l ON p.version_id = l.version_id",
    )
    .await
}

/// The versions trained from `id`, directly or not: one entry per link, nearest first.
pub async fn descendants(pool: &PgPool, id: i64) -> Result<Vec<LineageEntry>> {
    lineage(
        pool,
        id,
        "SELECT version_id, role, parent_id, 1 FROM version_parents WHERE parent_id = $1
         UNION
         SELECT p.version_id, p.role, p.parent_id, l.depth + 1
         FROM version_parents p JOIN lineage l ON p.parent_id = l.version_id",
    )
    .await
}

/// `recursion` yields (version_id, role, via, depth) rows; versions are immutable and
/// their parents existed before them, so the links form no cycle.
async fn lineage(pool: &PgPool, id: i64, recursion: &str) -> Result<Vec<LineageEntry>> {
    get(pool, id).await?;
    let rows: Vec<LineageRow> = sqlx::query_as(&format!(
        "WITH RECURSIVE lineage (version_id, role, via, depth) AS ({recursion}),
         links AS (SELECT version_id, role, via, min(depth) AS depth FROM lineage GROUP BY version_id, role, via)
         SELECT l.role, l.via, l.depth, {VERSION_COLUMNS}
         FROM links l JOIN model_versions v ON v.id = l.version_id JOIN models m ON m.id = v.model_id
         ORDER BY l.depth, v.id, l.role, l.via"
    ))
    .bind(id)
    .fetch_all(pool)
    .await?;
    Ok(rows
        .into_iter()
        .map(|r| LineageEntry { version: r.version.into(), role: r.role, via: r.via, depth: r.depth })
        .collect())
}

/// Points the model's `alias` at `version_id` (one of the model's versions), creating
/// the alias or moving it.
pub async fn set_alias(pool: &PgPool, model: &str, alias: &str, version_id: i64) -> Result<Alias> {
    check_alias(alias)?;
    let model_id = model_id(pool, model).await?;
    let owner: Option<(i64, String)> = sqlx::query_as(
        "SELECT m.id, m.name FROM model_versions v JOIN models m ON m.id = v.model_id WHERE v.id = $1",
    )
    .bind(version_id)
    .fetch_optional(pool)
    .await?;
    match owner {
        None => return Err(RegistryError::VersionNotFound(version_id)),
        Some((owner_id, owner)) if owner_id != model_id => {
            return Err(RegistryError::VersionOfAnotherModel {
                model: model.to_string(),
                alias: alias.to_string(),
                version_id,
                owner,
            })
        }
        Some(_) => {}
    }
    Ok(sqlx::query_as(
        "WITH set AS (
             INSERT INTO model_aliases (model_id, alias, version_id) VALUES ($1, $2, $3)
             ON CONFLICT (model_id, alias) DO UPDATE SET version_id = excluded.version_id, updated_at = now()
             RETURNING alias, version_id, updated_at
         )
         SELECT set.alias, set.version_id, v.version, set.updated_at
         FROM set JOIN model_versions v ON v.id = set.version_id",
    )
    .bind(model_id)
    .bind(alias)
    .bind(version_id)
    .fetch_one(pool)
    .await?)
}

/// Removes the model's alias; false when it had none of that name.
pub async fn remove_alias(pool: &PgPool, model: &str, alias: &str) -> Result<bool> {
    let model_id = model_id(pool, model).await?;
    let removed = sqlx::query("DELETE FROM model_aliases WHERE model_id = $1 AND alias = $2")
        .bind(model_id)
        .bind(alias)
        .execute(pool)
        .await?;
    Ok(removed.rows_affected() == 1)
}

/// The model's aliases, by name.
pub async fn aliases(pool: &PgPool, model: &str) -> Result<Vec<Alias>> {
    let model_id = model_id(pool, model).await?;
    Ok(sqlx::query_as(
        "SELECT a.alias, a.version_id, v.version, a.updated_at
         FROM model_aliases a JOIN model_versions v ON v.id = a.version_id
         WHERE a.model_id = $1 ORDER BY a.alias",
    )
    .bind(model_id)
    .fetch_all(pool)
    .await?)
}

/// Adds a tag to a version (nothing if it has it); returns its tags.
pub async fn add_tag(pool: &PgPool, version_id: i64, tag: &str) -> Result<Vec<String>> {
    check_tag(tag)?;
    let tags: Option<Vec<String>> = sqlx::query_scalar(
        "UPDATE model_versions SET tags = array_append(tags, $2)
         WHERE id = $1 AND NOT ($2 = ANY (tags)) RETURNING tags",
    )
    .bind(version_id)
    .bind(tag)
    .fetch_optional(pool)
    .await?;
    match tags {
        Some(tags) => Ok(tags),
        None => tags_of(pool, version_id).await,
    }
}

/// Removes a tag from a version (nothing if it lacks it); returns its tags.
pub async fn remove_tag(pool: &PgPool, version_id: i64, tag: &str) -> Result<Vec<String>> {
    let tags: Option<Vec<String>> = sqlx::query_scalar(
        "UPDATE model_versions SET tags = array_remove(tags, $2)
         WHERE id = $1 AND $2 = ANY (tags) RETURNING tags",
    )
    .bind(version_id)
    .bind(tag)
    .fetch_optional(pool)
    .await?;
    match tags {
        Some(tags) => Ok(tags),
        None => tags_of(pool, version_id).await,
    }
}

async fn tags_of(pool: &PgPool, version_id: i64) -> Result<Vec<String>> {
    sqlx::query_scalar("SELECT tags FROM model_versions WHERE id = $1")
        .bind(version_id)
        .fetch_optional(pool)
        .await?
        .ok_or(RegistryError::VersionNotFound(version_id))
}

async fn model_id(pool: &PgPool, model: &str) -> Result<i64> {
    sqlx::query_scalar("SELECT id FROM models WHERE name = $1")
        .bind(model)
        .fetch_optional(pool)
        .await?
        .ok_or_else(|| RegistryError::ModelNotFound(model.to_string()))
}

/// The `models.name` CHECK: `^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$`.
fn check_model_name(name: &str) -> Result<()> {
    let mut bytes = name.bytes();
    let valid = bytes.next().is_some_and(|b| b.is_ascii_alphanumeric())
        && name.len() <= 100
        && bytes.all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
    if valid {
        Ok(())
    } else {
        Err(RegistryError::BadModelName(name.to_string()))
    }
}

/// The `model_aliases.alias` CHECK: `^[a-z][a-z0-9_-]{0,63}$`.
fn check_alias(alias: &str) -> Result<()> {
    let mut bytes = alias.bytes();
    let valid = bytes.next().is_some_and(|b| b.is_ascii_lowercase())
        && alias.len() <= 64
        && bytes.all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'_' | b'-'));
    if valid {
        Ok(())
    } else {
        Err(RegistryError::BadAlias(alias.to_string()))
    }
}

/// The `version_parents.role` CHECK: `^[a-z_]{1,32}$`.
fn check_role(role: &str) -> Result<()> {
    if (1..=32).contains(&role.len()) && role.bytes().all(|b| b.is_ascii_lowercase() || b == b'_') {
        Ok(())
    } else {
        Err(RegistryError::BadRole(role.to_string()))
    }
}

fn check_tag(tag: &str) -> Result<()> {
    let length = tag.chars().count();
    if (1..=64).contains(&length) && !tag.chars().any(|c| c.is_whitespace() || c.is_control()) {
        Ok(())
    } else {
        Err(RegistryError::BadTag(tag.to_string()))
    }
}

/// The version that run `run_id` registered, if it has registered one.
pub async fn of_run(pool: &PgPool, run_id: i64) -> Result<Option<ModelVersion>> {
    version_of_run(pool, run_id).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reference_names_the_latest_a_number_or_an_alias() {
        assert_eq!(ModelRef::parse("sft-tiny").unwrap(), ModelRef::Latest("sft-tiny".into()));
        assert_eq!(ModelRef::parse("sft-tiny:3").unwrap(), ModelRef::Number("sft-tiny".into(), 3));
        assert_eq!(
            ModelRef::parse("sft-tiny@champion").unwrap(),
            ModelRef::Alias("sft-tiny".into(), "champion".into())
        );
    }

    #[test]
    fn malformed_references_are_refused() {
        for bad in ["", "a:0", "a:-1", "a:x", "a@", "a@Big", ":3", "@champion", "a b", "a:3@x"] {
            assert!(matches!(ModelRef::parse(bad), Err(RegistryError::BadReference(_))), "{bad}");
        }
    }

    #[test]
    fn names_aliases_roles_and_tags_follow_the_schema() {
        assert!(check_model_name("gpt2-small_v1.0").is_ok());
        assert!(check_model_name("-x").is_err());
        assert!(check_model_name(&"a".repeat(101)).is_err());
        assert!(check_alias("champion-2").is_ok());
        assert!(check_alias("2x").is_err());
        assert!(check_role("reference").is_ok());
        assert!(check_role("Reward").is_err());
        assert!(check_tag("best/2024").is_ok());
        assert!(check_tag("two words").is_err());
    }
}
