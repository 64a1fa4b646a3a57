//! The artifact store: checkpoint directories in object storage, content-addressed by
//! sha256, so that a registered version's bytes can always be checked against its record.
//! The store is a local directory (`file://` URIs, the default) or a prefix of a bucket on
//! any S3-compatible service (`s3://` URIs), both through the `object_store` crate, so
//! that workers on machines without a shared disk share one bucket.
//!
//! Layout under the store's root (the directory, or `bucket/prefix/`):
//! - `sha256/<hex>/<path>`: the checkpoint's files;
//! - `sha256/<hex>.manifest`: its manifest, whose sha256 is `<hex>`. It is written last:
//!   an artifact exists once its manifest does;
//! - `tmp/<id>/<path>` and `tmp/<id>.<hex>.manifest`: a staged copy, uploaded but not yet
//!   promoted into `sha256/`.
//!
//! The digest of a directory is the sha256 of its manifest, a text that lists each regular
//! file, sorted by relative path (`/`-separated, compared as bytes):
//!
//! ```text
//! plumb artifact manifest 1
//! <sha256 of the file's contents, hex> <size in bytes> <relative path>
//! ...
//! ```
//!
//! Directories themselves are not listed, so empty ones are not stored. Storing hashes
//! the very bytes it uploads; every read recomputes the files' digests as they stream in:
//! a mismatch is an error that names the file, never a silent load. A bucket's artifacts
//! are read through a local cache (a directory store of the same layout) that is itself
//! verified on every read.
//!
//! A worker stores what it is about to record (a run's checkpoint, a version) with
//! [`ArtifactStore::store_recorded`]: staged, recorded, then promoted, or the staged copy
//! deleted when the record is refused (a lost lease), so that no artifact is left that
//! nothing refers to. A copy that was recorded but not promoted (the worker died in
//! between) is promoted by the first read that looks for it.
//!
//! The functions block on I/O (run them with `spawn_blocking` from async code).

use std::collections::BTreeSet;
use std::fmt;
use std::fs::{self, File};
use std::future::Future;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use futures::{StreamExt, TryStreamExt};
use object_store::aws::AmazonS3Builder;
use object_store::local::LocalFileSystem;
use object_store::path::Path as Key;
use object_store::prefix::PrefixStore;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload, WriteMultipart};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::{RegistryError, Result};

const MANIFEST_HEADER: &str = "plumb artifact manifest 1\n";
const FILE_SCHEME: &str = "file://";
const S3_SCHEME: &str = "s3://";
/// Files larger than this go up as a multipart upload, in parts of this size (S3 wants at
/// least 5 MiB per part but the last).
const PART_SIZE: usize = 16 << 20;
/// Parts of one file in flight at once.
const PARTS_IN_FLIGHT: usize = 4;
/// What a file is read in.
const CHUNK: usize = 1 << 20;

/// A directory in the store.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredArtifact {
    /// `file://<absolute path of the stored directory>` or
    /// `s3://<bucket>/<prefix>/sha256/<hex>`.
    pub uri: String,
    /// The manifest's sha256, 64 hexadecimal digits.
    pub sha256: String,
    /// The total size of the files, in bytes.
    pub size: u64,
}

/// A checkpoint uploaded under a staging key: `artifact` is what it will be once
/// promoted (its URI is the final one, so it can be recorded first).
#[derive(Clone, Debug)]
pub struct StagedArtifact {
    pub artifact: StoredArtifact,
    id: String,
}

#[derive(Clone, Debug)]
pub struct ArtifactStore {
    objects: Arc<dyn ObjectStore>,
    place: Place,
}

#[derive(Clone, Debug)]
enum Place {
    /// A local directory: its files are read where they are.
    Directory(PathBuf),
    /// A prefix of a bucket; `cache` is the local store that its artifacts are read from.
    Bucket { bucket: String, prefix: String, cache: Box<ArtifactStore> },
}

/// Where the artifact store is and how to reach it: the one declaration of the store's
/// settings, read by `plumb worker`, `plumb import`, `plumb demo` and the web app.
#[derive(Clone, Debug)]
pub struct StoreSettings {
    /// A directory, `file:///<directory>` or `s3://<bucket>/<prefix>` (PLUMB_ARTIFACTS).
    pub location: String,
    /// Where a bucket's artifacts are kept on this machine once fetched.
    pub cache: PathBuf,
    pub s3: S3Settings,
}

/// How to reach an S3-compatible service (AWS, MinIO, Ceph, moto...), read from the
/// variables that the AWS tools read, plus plumb's own for the endpoint.
#[derive(Clone, Default)]
pub struct S3Settings {
    /// PLUMB_S3_ENDPOINT, e.g. `http://127.0.0.1:9000`; None: AWS itself.
    pub endpoint: Option<String>,
    /// AWS_REGION (or AWS_DEFAULT_REGION); `us-east-1` when neither is set.
    pub region: Option<String>,
    /// AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (and AWS_SESSION_TOKEN). None: the
    /// machine's instance credentials.
    pub access_key_id: Option<String>,
    pub secret_access_key: Option<String>,
    pub session_token: Option<String>,
    /// PLUMB_S3_ALLOW_HTTP=true: talk plain HTTP to the endpoint (a server on loopback);
    /// off, an `http://` endpoint is refused, since credentials would cross unencrypted.
    pub allow_http: bool,
}

impl fmt::Debug for S3Settings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let hidden = |s: &Option<String>| s.as_ref().map(|_| "***");
        f.debug_struct("S3Settings")
            .field("endpoint", &self.endpoint)
            .field("region", &self.region)
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &hidden(&self.secret_access_key))
            .field("session_token", &hidden(&self.session_token))
            .field("allow_http", &self.allow_http)
            .finish()
    }
}

impl S3Settings {
    /// The settings from the environment (`env` reads a variable).
    pub fn from_env(env: impl Fn(&str) -> Option<String>) -> Result<S3Settings> {
        let allow_http = match env("PLUMB_S3_ALLOW_HTTP").as_deref() {
            None | Some("") | Some("false") | Some("0") => false,
            Some("true") | Some("1") => true,
            Some(other) => {
                return Err(RegistryError::StoreSetting {
                    setting: "PLUMB_S3_ALLOW_HTTP",
                    problem: format!("{other:?} is neither true nor false"),
                })
            }
        };
        let set = |name: &str| env(name).filter(|v| !v.is_empty());
        Ok(S3Settings {
            endpoint: set("PLUMB_S3_ENDPOINT"),
            region: set("AWS_REGION").or_else(|| set("AWS_DEFAULT_REGION")),
            access_key_id: set("AWS_ACCESS_KEY_ID"),
            secret_access_key: set("AWS_SECRET_ACCESS_KEY"),
            session_token: set("AWS_SESSION_TOKEN"),
            allow_http,
        })
    }
}

impl StoreSettings {
    /// The store of plumb's state directory `home`: PLUMB_ARTIFACTS, else `<home>/artifacts`;
    /// a bucket's cache in `<home>/cache/artifacts`.
    pub fn from_env(home: &Path, env: impl Fn(&str) -> Option<String>) -> Result<StoreSettings> {
        let location = env("PLUMB_ARTIFACTS")
            .filter(|l| !l.is_empty())
            .unwrap_or_else(|| home.join("artifacts").display().to_string());
        Ok(StoreSettings {
            location,
            cache: home.join("cache").join("artifacts"),
            s3: S3Settings::from_env(env)?,
        })
    }
}

impl ArtifactStore {
    /// A store in the local directory `root`, created if missing.
    pub fn new(root: impl AsRef<Path>) -> Result<Self> {
        let root = root.as_ref();
        for dir in [root.join("sha256"), root.join("tmp")] {
            fs::create_dir_all(&dir).map_err(io_at(&dir))?;
        }
        let root = fs::canonicalize(root).map_err(io_at(root))?;
        let objects = LocalFileSystem::new_with_prefix(&root)
            .map_err(|source| RegistryError::ObjectStore { key: root.display().to_string(), source })?;
        Ok(ArtifactStore { objects: Arc::new(objects), place: Place::Directory(root) })
    }

    /// The store that `settings` name: a local directory, or a bucket read through a
    /// cache in `settings.cache`.
    pub fn open(settings: &StoreSettings) -> Result<Self> {
        let location = settings.location.as_str();
        let Some(bucket_and_prefix) = location.strip_prefix(S3_SCHEME) else {
            return ArtifactStore::new(location.strip_prefix(FILE_SCHEME).unwrap_or(location));
        };
        let (bucket, prefix) = bucket_and_prefix.split_once('/').unwrap_or((bucket_and_prefix, ""));
        let prefix = prefix.trim_matches('/').to_string();
        if bucket.is_empty() {
            return Err(RegistryError::StoreSetting {
                setting: "PLUMB_ARTIFACTS",
                problem: format!("{location:?} names no bucket: write s3://<bucket>/<prefix>"),
            });
        }
        let s3 = &settings.s3;
        if s3.endpoint.as_deref().is_some_and(|e| e.starts_with("http://")) && !s3.allow_http {
            return Err(RegistryError::StoreSetting {
                setting: "PLUMB_S3_ENDPOINT",
                problem: "is http://: set PLUMB_S3_ALLOW_HTTP=true to send requests unencrypted (a \
                          server on loopback), or use https://"
                    .into(),
            });
        }
        let mut builder = AmazonS3Builder::new()
            .with_bucket_name(bucket)
            .with_region(s3.region.as_deref().unwrap_or("us-east-1"))
            .with_allow_http(s3.allow_http);
        if let Some(endpoint) = &s3.endpoint {
            builder = builder.with_endpoint(endpoint);
        }
        if let Some(key) = &s3.access_key_id {
            builder = builder.with_access_key_id(key);
        }
        if let Some(secret) = &s3.secret_access_key {
            builder = builder.with_secret_access_key(secret);
        }
        if let Some(token) = &s3.session_token {
            builder = builder.with_token(token);
        }
        let client = builder
            .build()
            .map_err(|source| RegistryError::ObjectStore { key: location.to_string(), source })?;
        let objects: Arc<dyn ObjectStore> = if prefix.is_empty() {
            Arc::new(client)
        } else {
            Arc::new(PrefixStore::new(client, prefix.as_str()))
        };
        let cache = Box::new(ArtifactStore::new(&settings.cache)?);
        Ok(ArtifactStore { objects, place: Place::Bucket { bucket: bucket.to_string(), prefix, cache } })
    }

    /// The store's local directory: its root, or a bucket's cache.
    pub fn root(&self) -> &Path {
        match &self.place {
            Place::Directory(root) => root,
            Place::Bucket { cache, .. } => cache.root(),
        }
    }

    /// Copies the checkpoint directory `src` into the store (or finds it already there)
    /// and returns where it is. Symbolic links and special files are refused.
    pub fn put_dir(&self, src: &Path) -> Result<StoredArtifact> {
        let staged = self.stage(src)?;
        self.promote(&staged)
    }

    /// Uploads the checkpoint directory `src` under a staging key, each file in parts when
    /// large, hashing the bytes as they go up. Nothing refers to it until it is promoted.
    pub fn stage(&self, src: &Path) -> Result<StagedArtifact> {
        let files = walk(src)?;
        let id = uuid::Uuid::new_v4().simple().to_string();
        block_on(async {
            let mut entries = Vec::with_capacity(files.len());
            for path in files {
                match self.upload(&src.join(&path), &key(&["tmp", &id], &path)).await {
                    Ok((size, sha256)) => entries.push(FileEntry { path, size, sha256 }),
                    Err(e) => {
                        // The upload failed: what went up of it is of no use.
                        let _ = self.delete_staged(&id, None).await;
                        return Err(e);
                    }
                }
            }
            let manifest = manifest_text(&entries);
            let sha256 = hex::encode(Sha256::digest(manifest.as_bytes()));
            let manifest_key = staged_manifest_key(&id, &sha256);
            if let Err(source) = self.objects.put(&manifest_key, manifest.into_bytes().into()).await {
                let _ = self.delete_staged(&id, None).await;
                return Err(RegistryError::ObjectStore { key: manifest_key.to_string(), source });
            }
            let size = entries.iter().map(|e| e.size).sum();
            Ok(StagedArtifact { artifact: StoredArtifact { uri: self.uri(&sha256), sha256, size }, id })
        })
    }

    /// Moves a staged copy into `sha256/`, its manifest last, and returns the artifact. A
    /// damaged copy already there is replaced.
    pub fn promote(&self, staged: &StagedArtifact) -> Result<StoredArtifact> {
        block_on(self.promote_staged(&staged.id, &staged.artifact.sha256))
    }

    /// Deletes a staged copy that is not to be promoted.
    pub fn discard(&self, staged: StagedArtifact) -> Result<()> {
        block_on(self.delete_staged(&staged.id, Some(&staged.artifact.sha256)))
    }

    /// Stores `src` for `record`, which writes the reference to it (a run's checkpoint, a
    /// version) and says whether the reference is to this artifact: the artifact is then
    /// promoted, and otherwise, or when `record` fails (the worker's lease was lost
    /// meanwhile), its staged copy is deleted, so that the store keeps nothing that
    /// nothing refers to. `record`'s error is returned as it is.
    pub async fn store_recorded<T, Fut>(
        &self,
        src: PathBuf,
        record: impl FnOnce(StoredArtifact) -> Fut,
    ) -> Result<T>
    where
        Fut: Future<Output = Result<(T, bool)>>,
    {
        let store = self.clone();
        let staged = blocking(move || store.stage(&src)).await?;
        let recorded = record(staged.artifact.clone()).await;
        let store = self.clone();
        match recorded {
            Ok((value, true)) => {
                blocking(move || store.promote(&staged)).await?;
                Ok(value)
            }
            Ok((value, false)) => {
                blocking(move || store.discard(staged)).await?;
                Ok(value)
            }
            Err(refused) => {
                // The record's error is the one to report; a copy that cannot be deleted
                // either stays in `tmp/`, never referred to.
                let _ = blocking(move || store.discard(staged)).await;
                Err(refused)
            }
        }
    }

    /// Recomputes the digests of the stored artifact's files and compares them with its
    /// manifest; `ArtifactCorrupt` names the first file that differs.
    pub fn verify(&self, sha256: &str) -> Result<StoredArtifact> {
        block_on(self.check(sha256, None))
    }

    /// The verified directory of the artifact on this machine, to read from (a bucket's
    /// artifact is fetched into the cache first, or its cached copy verified).
    pub fn get(&self, sha256: &str) -> Result<PathBuf> {
        match &self.place {
            Place::Directory(_) => {
                self.verify(sha256)?;
                Ok(self.dir_of(sha256))
            }
            Place::Bucket { cache, .. } => match cache.get(sha256) {
                Ok(dir) => Ok(dir),
                Err(RegistryError::ArtifactNotFound(_) | RegistryError::ArtifactCorrupt { .. }) => {
                    self.fetch_into_cache(cache, sha256)?;
                    cache.get(sha256)
                }
                Err(e) => Err(e),
            },
        }
    }

    /// Copies the artifact into `dest`, which must not exist yet, checking each file's
    /// digest as it streams in. A failed fetch leaves nothing at `dest`.
    pub fn fetch_to(&self, sha256: &str, dest: &Path) -> Result<StoredArtifact> {
        if let Some(parent) = dest.parent() {
            fs::create_dir_all(parent).map_err(io_at(parent))?;
        }
        fs::create_dir(dest).map_err(io_at(dest))?;
        let copy = Staging::new(dest.to_path_buf());
        let stored = block_on(self.check(sha256, Some(dest)))?;
        copy.keep();
        Ok(stored)
    }

    /// Deletes an artifact that nothing refers to any more (a run's superseded
    /// checkpoint), and a bucket's cached copy of it. Deleting one that is not there does
    /// nothing. The manifest goes first, so a reader never sees it half deleted.
    pub fn remove(&self, sha256: &str) -> Result<()> {
        check_digest(sha256)?;
        match &self.place {
            Place::Directory(root) => {
                let manifest = self.manifest_path(sha256);
                match fs::remove_file(&manifest) {
                    Ok(()) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => return Err(io_at(&manifest)(e)),
                }
                remove_dir_aside(root, &self.dir_of(sha256))
            }
            Place::Bucket { cache, .. } => {
                block_on(async {
                    self.delete(&manifest_key(sha256)).await?;
                    self.delete_under(&key(&["sha256", sha256], "")).await
                })?;
                cache.remove(sha256)
            }
        }
    }

    /// The URI of an artifact in this store.
    pub fn uri(&self, sha256: &str) -> String {
        match &self.place {
            Place::Directory(_) => format!("{FILE_SCHEME}{}", self.dir_of(sha256).display()),
            Place::Bucket { bucket, prefix, .. } if prefix.is_empty() => {
                format!("{S3_SCHEME}{bucket}/sha256/{sha256}")
            }
            Place::Bucket { bucket, prefix, .. } => format!("{S3_SCHEME}{bucket}/{prefix}/sha256/{sha256}"),
        }
    }

    /// The verified directory of the artifact that `uri` names. The URI names it by its
    /// digest, which is looked up in this store: a store mounted elsewhere on another
    /// machine, or a bucket that a local store was copied into, still resolves it.
    pub fn open_uri(&self, uri: &str) -> Result<PathBuf> {
        self.get(&digest_of_uri(uri)?)
    }

    /// The artifact's files as its manifest lists them, by path. Checks the manifest
    /// against the digest but not the files (that is [`ArtifactStore::file`]'s job), so
    /// that listing a large checkpoint stays cheap.
    pub fn files(&self, sha256: &str) -> Result<Vec<ArtifactFile>> {
        Ok(block_on(self.manifest(sha256))?
            .into_iter()
            .map(|e| ArtifactFile { path: e.path, size: e.size, sha256: e.sha256 })
            .collect())
    }

    /// The verified location of one file of the artifact on this machine, to read from;
    /// `None` when the manifest lists no file at `path` (so a path that climbs out of the
    /// artifact, such as `../x`, is never found). The file's size and sha256 are checked
    /// first (a bucket's artifact is fetched into the cache whole).
    pub fn file(&self, sha256: &str, path: &str) -> Result<Option<PathBuf>> {
        if let Place::Bucket { cache, .. } = &self.place {
            if !self.files(sha256)?.iter().any(|e| e.path == path) {
                return Ok(None);
            }
            self.get(sha256)?;
            return cache.file(sha256, path);
        }
        let Some(entry) = block_on(self.manifest(sha256))?.into_iter().find(|e| e.path == path) else {
            return Ok(None);
        };
        block_on(self.read_verified(sha256, &key(&["sha256", sha256], &entry.path), &entry, None))?;
        Ok(Some(self.dir_of(sha256).join(&entry.path)))
    }

    fn dir_of(&self, sha256: &str) -> PathBuf {
        self.root().join("sha256").join(sha256)
    }

    fn manifest_path(&self, sha256: &str) -> PathBuf {
        self.root().join("sha256").join(format!("{sha256}.manifest"))
    }

    /// Uploads one file to `key`: in one request when small, else in parts, several in
    /// flight while the next is read. Returns its size and sha256.
    async fn upload(&self, path: &Path, key: &Key) -> Result<(u64, String)> {
        let mut file = File::open(path).map_err(io_at(path))?;
        let length = file.metadata().map_err(io_at(path))?.len();
        let failed = |source| RegistryError::ObjectStore { key: key.to_string(), source };
        let mut hasher = Sha256::new();
        if length <= PART_SIZE as u64 {
            let mut bytes = Vec::with_capacity(length as usize);
            file.read_to_end(&mut bytes).map_err(io_at(path))?;
            hasher.update(&bytes);
            let size = bytes.len() as u64;
            self.objects.put(key, PutPayload::from(bytes)).await.map_err(failed)?;
            return Ok((size, hex::encode(hasher.finalize())));
        }
        let upload = self.objects.put_multipart(key).await.map_err(failed)?;
        let mut parts = WriteMultipart::new_with_chunk_size(upload, PART_SIZE);
        let mut buffer = vec![0u8; CHUNK];
        let mut size = 0u64;
        loop {
            let n = match file.read(&mut buffer) {
                Ok(n) => n,
                Err(e) => {
                    let _ = parts.abort().await;
                    return Err(io_at(path)(e));
                }
            };
            if n == 0 {
                break;
            }
            hasher.update(&buffer[..n]);
            size += n as u64;
            parts.write(&buffer[..n]);
            if let Err(source) = parts.wait_for_capacity(PARTS_IN_FLIGHT).await {
                return Err(failed(source));
            }
        }
        parts.finish().await.map_err(failed)?;
        Ok((size, hex::encode(hasher.finalize())))
    }

    async fn promote_staged(&self, id: &str, sha256: &str) -> Result<StoredArtifact> {
        let staged_manifest = staged_manifest_key(id, sha256);
        let entries = match self.read_manifest(&staged_manifest, sha256).await {
            Ok(entries) => entries,
            // Promoted meanwhile by a reader that looked for it.
            Err(RegistryError::ArtifactNotFound(_)) => return self.check(sha256, None).await,
            Err(e) => return Err(e),
        };
        let size = entries.iter().map(|e| e.size).sum();
        let stored = StoredArtifact { uri: self.uri(sha256), sha256: sha256.to_string(), size };
        match &self.place {
            Place::Directory(root) => {
                let target = self.dir_of(sha256);
                if target.exists() {
                    match self.check(sha256, None).await {
                        Ok(stored) => {
                            self.delete_staged(id, Some(sha256)).await?;
                            return Ok(stored);
                        }
                        // A damaged or half-written copy is replaced by the good one staged.
                        Err(RegistryError::ArtifactCorrupt { .. } | RegistryError::ArtifactNotFound(_)) => {
                            remove_dir_aside(root, &target)?
                        }
                        Err(e) => return Err(e),
                    }
                }
                let staged_dir = root.join("tmp").join(id);
                fs::create_dir_all(&staged_dir).map_err(io_at(&staged_dir))?;
                match fs::rename(&staged_dir, &target) {
                    Ok(()) => {}
                    // Another promotion of the same contents won the race: use its copy.
                    Err(_) if target.is_dir() => {
                        self.delete_staged(id, Some(sha256)).await?;
                        return self.check(sha256, None).await;
                    }
                    Err(e) => return Err(io_at(&target)(e)),
                }
                make_read_only(&target)?;
                let from = root.join(staged_manifest.as_ref());
                let manifest = self.manifest_path(sha256);
                fs::rename(&from, &manifest).map_err(io_at(&manifest))?;
                sync_dir(&root.join("sha256"))?;
            }
            Place::Bucket { .. } => {
                // A bucket has no rename: each object is copied on the server, then the
                // manifest, then the staged copy deleted. Copying again is harmless, and
                // repairs a damaged object.
                for entry in &entries {
                    let from = key(&["tmp", id], &entry.path);
                    let to = key(&["sha256", sha256], &entry.path);
                    self.objects
                        .copy(&from, &to)
                        .await
                        .map_err(|source| RegistryError::ObjectStore { key: from.to_string(), source })?;
                }
                let listed: BTreeSet<&str> = entries.iter().map(|e| e.path.as_str()).collect();
                for extra in self.list_files(sha256).await?.iter().filter(|p| !listed.contains(p.as_str())) {
                    self.delete(&key(&["sha256", sha256], extra)).await?;
                }
                let to = manifest_key(sha256);
                self.objects
                    .copy(&staged_manifest, &to)
                    .await
                    .map_err(|source| RegistryError::ObjectStore { key: to.to_string(), source })?;
                self.delete_staged(id, Some(sha256)).await?;
            }
        }
        Ok(stored)
    }

    /// Deletes the staged copy `id` (its manifest first, when its digest is known).
    async fn delete_staged(&self, id: &str, sha256: Option<&str>) -> Result<()> {
        if let Some(sha256) = sha256 {
            self.delete(&staged_manifest_key(id, sha256)).await?;
        }
        match &self.place {
            Place::Directory(root) => {
                let dir = root.join("tmp").join(id);
                match fs::remove_dir_all(&dir) {
                    Ok(()) => Ok(()),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
                    Err(e) => Err(io_at(&dir)(e)),
                }
            }
            Place::Bucket { .. } => self.delete_under(&key(&["tmp", id], "")).await,
        }
    }

    /// Promotes a staged copy of the artifact, if there is one: its record was written
    /// but its worker died before promoting it. False when there is none.
    async fn promote_any_staged(&self, sha256: &str) -> Result<bool> {
        let tmp = Key::from("tmp");
        let listed = self
            .objects
            .list_with_delimiter(Some(&tmp))
            .await
            .map_err(|source| RegistryError::ObjectStore { key: tmp.to_string(), source })?;
        let suffix = format!(".{sha256}.manifest");
        let staged = listed.objects.iter().find_map(|o| o.location.filename()?.strip_suffix(&suffix));
        match staged {
            Some(id) => {
                // Boxed: promoting reads the artifact, which may look here again.
                Box::pin(self.promote_staged(id, sha256)).await?;
                Ok(true)
            }
            None => Ok(false),
        }
    }

    /// Fetches a bucket's artifact into the local `cache`: verified into its `tmp/`, then
    /// promoted there.
    fn fetch_into_cache(&self, cache: &ArtifactStore, sha256: &str) -> Result<()> {
        let id = uuid::Uuid::new_v4().simple().to_string();
        let dest = cache.root().join("tmp").join(&id);
        let manifest = block_on(async {
            self.check(sha256, Some(&dest)).await?;
            self.read_manifest(&manifest_key(sha256), sha256).await
        });
        if let Err(e) = manifest {
            let _ = fs::remove_dir_all(&dest);
            return Err(e);
        }
        let staged_manifest = cache.root().join(staged_manifest_key(&id, sha256).as_ref());
        let text = manifest_text(&manifest?);
        fs::write(&staged_manifest, text).map_err(io_at(&staged_manifest))?;
        block_on(cache.promote_staged(&id, sha256)).map(|_| ())
    }

    /// Verifies the artifact, copying its files into `copy_to` (an existing directory)
    /// when given.
    async fn check(&self, sha256: &str, copy_to: Option<&Path>) -> Result<StoredArtifact> {
        let entries = self.manifest(sha256).await?;
        let present: BTreeSet<String> = self.list_files(sha256).await?.into_iter().collect();
        let listed: BTreeSet<&str> = entries.iter().map(|e| e.path.as_str()).collect();
        if let Some(extra) = present.iter().find(|p| !listed.contains(p.as_str())) {
            return Err(corrupt(sha256, extra, "is not part of the artifact".into()));
        }
        for entry in &entries {
            if !present.contains(&entry.path) {
                return Err(corrupt(sha256, &entry.path, "is missing".into()));
            }
            let to = copy_to.map(|d| d.join(&entry.path));
            if let Some(parent) = to.as_deref().and_then(Path::parent) {
                fs::create_dir_all(parent).map_err(io_at(parent))?;
            }
            self.read_verified(sha256, &key(&["sha256", sha256], &entry.path), entry, to.as_deref()).await?;
        }
        Ok(StoredArtifact {
            uri: self.uri(sha256),
            sha256: sha256.to_string(),
            size: entries.iter().map(|e| e.size).sum(),
        })
    }

    /// Streams the object at `key`, hashing it (and writing it to `copy_to`), and compares
    /// its size and sha256 with the manifest's `entry`.
    async fn read_verified(
        &self,
        sha256: &str,
        key: &Key,
        entry: &FileEntry,
        copy_to: Option<&Path>,
    ) -> Result<()> {
        let object = match self.objects.get(key).await {
            Ok(object) => object,
            Err(object_store::Error::NotFound { .. }) => {
                return Err(corrupt(sha256, &entry.path, "is missing".into()))
            }
            Err(source) => return Err(RegistryError::ObjectStore { key: key.to_string(), source }),
        };
        let mut copy = match copy_to {
            Some(to) => Some((File::create_new(to).map_err(io_at(to))?, to)),
            None => None,
        };
        let mut hasher = Sha256::new();
        let mut size = 0u64;
        let mut chunks = object.into_stream();
        while let Some(chunk) = chunks.next().await {
            let chunk =
                chunk.map_err(|source| RegistryError::ObjectStore { key: key.to_string(), source })?;
            hasher.update(&chunk);
            size += chunk.len() as u64;
            if let Some((file, to)) = copy.as_mut() {
                file.write_all(&chunk).map_err(io_at(to))?;
            }
        }
        if let Some((file, to)) = copy {
            file.sync_all().map_err(io_at(to))?;
        }
        let digest = hex::encode(hasher.finalize());
        if size != entry.size {
            return Err(corrupt(
                sha256,
                &entry.path,
                format!("has {size} bytes where the manifest says {}", entry.size),
            ));
        }
        if digest != entry.sha256 {
            return Err(corrupt(
                sha256,
                &entry.path,
                format!("has sha256 {digest} where the manifest says {}", entry.sha256),
            ));
        }
        Ok(())
    }

    /// The artifact's manifest entries, after checking that the manifest hashes to
    /// `sha256`; a staged copy that was recorded but never promoted is promoted first.
    async fn manifest(&self, sha256: &str) -> Result<Vec<FileEntry>> {
        check_digest(sha256)?;
        match self.read_manifest(&manifest_key(sha256), sha256).await {
            Err(RegistryError::ArtifactNotFound(_)) if self.promote_any_staged(sha256).await? => {
                self.read_manifest(&manifest_key(sha256), sha256).await
            }
            read => read,
        }
    }

    /// The manifest at `key`, checked to hash to `sha256`; `ArtifactNotFound` when absent.
    async fn read_manifest(&self, key: &Key, sha256: &str) -> Result<Vec<FileEntry>> {
        let text = match self.objects.get(key).await {
            Ok(object) => object.bytes().await,
            Err(e) => Err(e),
        };
        let text = match text {
            Ok(text) => text,
            Err(object_store::Error::NotFound { .. }) => {
                return Err(RegistryError::ArtifactNotFound(sha256.to_string()))
            }
            Err(source) => return Err(RegistryError::ObjectStore { key: key.to_string(), source }),
        };
        if hex::encode(Sha256::digest(&text)) != sha256 {
            return Err(corrupt(sha256, key.as_ref(), "does not match the artifact's digest".into()));
        }
        std::str::from_utf8(&text)
            .ok()
            .and_then(parse_manifest)
            .ok_or_else(|| corrupt(sha256, key.as_ref(), "is not a manifest".into()))
    }

    /// The relative paths of the objects under `sha256/<hex>/`.
    async fn list_files(&self, sha256: &str) -> Result<Vec<String>> {
        let dir = key(&["sha256", sha256], "");
        let listed: Vec<_> = self
            .objects
            .list(Some(&dir))
            .try_collect()
            .await
            .map_err(|source| RegistryError::ObjectStore { key: dir.to_string(), source })?;
        let under = format!("{dir}/");
        Ok(listed
            .into_iter()
            .filter_map(|o| o.location.as_ref().strip_prefix(&under).map(String::from))
            .collect())
    }

    /// Deletes the object at `key`; one that is not there is no error.
    async fn delete(&self, key: &Key) -> Result<()> {
        match self.objects.delete(key).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(source) => Err(RegistryError::ObjectStore { key: key.to_string(), source }),
        }
    }

    /// Deletes every object under `dir`.
    async fn delete_under(&self, dir: &Key) -> Result<()> {
        let listed: Vec<_> = self
            .objects
            .list(Some(dir))
            .try_collect()
            .await
            .map_err(|source| RegistryError::ObjectStore { key: dir.to_string(), source })?;
        for object in listed {
            self.delete(&object.location).await?;
        }
        Ok(())
    }
}

/// A file of a stored artifact, as its manifest lists it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ArtifactFile {
    /// Relative, `/`-separated.
    pub path: String,
    pub size: u64,
    pub sha256: String,
}

/// One file of a manifest.
#[derive(Clone, Debug, PartialEq, Eq)]
struct FileEntry {
    path: String,
    size: u64,
    sha256: String,
}

/// The digest that an artifact URI names: its last path component, under `sha256/`.
pub fn digest_of_uri(uri: &str) -> Result<String> {
    let bad = || RegistryError::BadUri(uri.to_string());
    let (path, absolute) = match (uri.strip_prefix(FILE_SCHEME), uri.strip_prefix(S3_SCHEME)) {
        (Some(path), _) => (path, path.starts_with('/')),
        // `s3://<bucket>/...`: a bucket must be named.
        (_, Some(path)) => (path, !path.starts_with('/')),
        _ => return Err(bad()),
    };
    let mut components = path.rsplit('/');
    let digest = components.next().ok_or_else(bad)?;
    let under = components.next();
    if !absolute || under != Some("sha256") || check_digest(digest).is_err() {
        return Err(bad());
    }
    Ok(digest.to_string())
}

pub(crate) fn check_digest(sha256: &str) -> Result<()> {
    if sha256.len() == 64 && sha256.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
        Ok(())
    } else {
        Err(RegistryError::BadDigest(sha256.to_string()))
    }
}

fn corrupt(sha256: &str, file: &str, problem: String) -> RegistryError {
    RegistryError::ArtifactCorrupt { sha256: sha256.to_string(), file: file.to_string(), problem }
}

/// The key of `path` (relative, `/`-separated; empty for the directory itself) under the
/// directory `dir`.
fn key(dir: &[&str], path: &str) -> Key {
    Key::from_iter(dir.iter().copied().chain(path.split('/').filter(|p| !p.is_empty())))
}

fn manifest_key(sha256: &str) -> Key {
    key(&["sha256", &format!("{sha256}.manifest")], "")
}

fn staged_manifest_key(id: &str, sha256: &str) -> Key {
    key(&["tmp", &format!("{id}.{sha256}.manifest")], "")
}

fn manifest_text(entries: &[FileEntry]) -> String {
    let mut text = String::from(MANIFEST_HEADER);
    for e in entries {
        text.push_str(&format!("{} {} {}\n", e.sha256, e.size, e.path));
    }
    text
}

fn parse_manifest(text: &str) -> Option<Vec<FileEntry>> {
    let body = text.strip_prefix(MANIFEST_HEADER)?;
    body.lines()
        .map(|line| {
            let mut fields = line.splitn(3, ' ');
            let sha256 = fields.next()?.to_string();
            let size = fields.next()?.parse().ok()?;
            let path = fields.next()?.to_string();
            Some(FileEntry { path, size, sha256 })
        })
        .collect()
}

/// The relative paths of the regular files under `root`, sorted. Refuses symbolic links,
/// special files and names that a manifest line or an object key cannot hold.
fn walk(root: &Path) -> Result<Vec<String>> {
    let mut files = Vec::new();
    let mut pending = vec![root.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in fs::read_dir(&dir).map_err(io_at(&dir))? {
            let path = entry.map_err(io_at(&dir))?.path();
            let kind = fs::symlink_metadata(&path).map_err(io_at(&path))?.file_type();
            if kind.is_dir() {
                pending.push(path);
            } else if kind.is_file() {
                let relative = path.strip_prefix(root).expect("a walked path is under its root");
                let name = relative.to_str().filter(|n| !n.chars().any(char::is_control));
                let name = name.ok_or_else(|| RegistryError::NonUtf8Path(path.clone()))?;
                files.push(name.replace(std::path::MAIN_SEPARATOR, "/"));
            } else {
                let what = if kind.is_symlink() { "a symbolic link" } else { "not a regular file" };
                return Err(RegistryError::NotRegularFile { path, what });
            }
        }
    }
    files.sort();
    Ok(files)
}

/// Stored files are read-only, so that a loader cannot write into the store by mistake.
fn make_read_only(dir: &Path) -> Result<()> {
    for path in walk(dir)? {
        let path = dir.join(path);
        let mut permissions = fs::metadata(&path).map_err(io_at(&path))?.permissions();
        permissions.set_readonly(true);
        fs::set_permissions(&path, permissions).map_err(io_at(&path))?;
    }
    Ok(())
}

/// Removes `dir` (if there) by first renaming it into the store's `tmp/`, so a reader
/// never sees it half deleted. Its files are read-only, but removing them needs only the
/// directories' write permission.
fn remove_dir_aside(root: &Path, dir: &Path) -> Result<()> {
    let aside = root.join("tmp").join(format!("{}-removed", uuid::Uuid::new_v4().simple()));
    match fs::rename(dir, &aside) {
        Ok(()) => fs::remove_dir_all(&aside).map_err(io_at(&aside)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io_at(dir)(e)),
    }
}

/// Makes a rename in `dir` durable.
fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir).and_then(|d| d.sync_all()).map_err(io_at(dir))
}

fn io_at(path: &Path) -> impl FnOnce(std::io::Error) -> RegistryError + '_ {
    move |source| RegistryError::Io { path: path.to_path_buf(), source }
}

/// Runs an object-store future to its end on the calling thread. The store's functions
/// block (callers run them on blocking threads, or in tests plainly); its requests run on
/// a runtime of its own, so that they may be made from any thread, inside another
/// runtime or not. That runtime lives as long as the process, so it is never dropped
/// inside another one.
fn block_on<F: Future>(future: F) -> F::Output {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    let runtime = RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("plumb-artifacts")
            .enable_all()
            .build()
            .expect("the artifact store's runtime starts (it needs only threads)")
    });
    let _inside = runtime.enter();
    // Unconstrained: called from inside another runtime's task (a test's, a web
    // handler's), tokio's cooperative budget is that task's, which this loop never lets
    // yield; once spent, every tokio resource would answer "pending" forever.
    futures::executor::block_on(tokio::task::unconstrained(future))
}

/// A blocking store function, run off the async threads; its panic is said as an error.
async fn blocking<T: Send + 'static>(work: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(work).await.map_err(|e| RegistryError::Io {
        path: PathBuf::from("<artifact store>"),
        source: std::io::Error::other(e.to_string()),
    })?
}

/// A directory that is removed when dropped, unless kept.
struct Staging {
    path: PathBuf,
    kept: bool,
}

impl Staging {
    fn new(path: PathBuf) -> Self {
        Staging { path, kept: false }
    }

    fn keep(mut self) {
        self.kept = true;
    }
}

impl Drop for Staging {
    fn drop(&mut self) {
        if !self.kept {
            let _ = fs::remove_dir_all(&self.path);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_large_file_is_read_back_from_inside_another_runtimes_task() {
        // A file of many chunks, read from inside a task of another runtime (as the web
        // app and the tests do): tokio's cooperative budget must not stall the read.
        let root = tempfile::tempdir().unwrap();
        let src = tempfile::tempdir().unwrap();
        fs::write(src.path().join("model.safetensors"), vec![7u8; 6 << 20]).unwrap();
        let store = ArtifactStore::new(root.path()).unwrap();
        let stored = store.put_dir(src.path()).unwrap();
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let dir = runtime.block_on(async { store.get(&stored.sha256) }).unwrap();
        assert_eq!(fs::metadata(dir.join("model.safetensors")).unwrap().len(), 6 << 20);
    }

    #[test]
    fn file_and_s3_uris_name_their_digest() {
        let digest = "a".repeat(64);
        assert_eq!(digest_of_uri(&format!("file:///store/sha256/{digest}")).unwrap(), digest);
        assert_eq!(digest_of_uri(&format!("s3://bucket/plumb/sha256/{digest}")).unwrap(), digest);
        assert_eq!(digest_of_uri(&format!("s3://bucket/sha256/{digest}")).unwrap(), digest);
        for bad in [
            format!("s3:///sha256/{digest}"),
            format!("s3://bucket/sha1/{digest}"),
            format!("file://relative/sha256/{digest}"),
            format!("http://host/sha256/{digest}"),
        ] {
            assert!(matches!(digest_of_uri(&bad), Err(RegistryError::BadUri(_))), "{bad}");
        }
    }

    #[test]
    fn an_http_endpoint_is_refused_unless_allowed() {
        let settings = |allow_http| StoreSettings {
            location: "s3://bucket/prefix".into(),
            cache: std::env::temp_dir().join(format!("plumb-cache-{}", std::process::id())),
            s3: S3Settings {
                endpoint: Some("http://127.0.0.1:9".into()),
                allow_http,
                ..S3Settings::default()
            },
        };
        let e = ArtifactStore::open(&settings(false)).unwrap_err();
        assert!(e.to_string().contains("PLUMB_S3_ALLOW_HTTP"), "{e}");
        let store = ArtifactStore::open(&settings(true)).unwrap();
        assert_eq!(store.uri(&"b".repeat(64)), format!("s3://bucket/prefix/sha256/{}", "b".repeat(64)));
    }

    #[test]
    fn the_secret_key_is_never_printed() {
        let env = |k: &str| (k == "AWS_SECRET_ACCESS_KEY").then(|| "hunter2".to_string());
        let s3 = S3Settings::from_env(env).unwrap();
        assert!(!format!("{s3:?}").contains("hunter2"));
        let bad = S3Settings::from_env(|k| (k == "PLUMB_S3_ALLOW_HTTP").then(|| "yes".into())).unwrap_err();
        assert!(bad.to_string().contains("PLUMB_S3_ALLOW_HTTP"), "{bad}");
    }
}
