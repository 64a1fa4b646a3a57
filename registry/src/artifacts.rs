//! The artifact store: checkpoint directories in a local directory, content-addressed by
//! sha256, so that a registered version's bytes can always be checked against its record.
//!
//! Layout under the store's root:
//! - `sha256/<hex>/`: the checkpoint's files, read-only;
//! - `sha256/<hex>.manifest`: its manifest, whose sha256 is `<hex>`;
//! - `tmp/`: directories being written, renamed into `sha256/` when complete.
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
//! Directories themselves are not listed, so empty ones are not stored. Every read
//! recomputes the files' digests: a mismatch is an error that names the file, never a
//! silent load. The functions block on file I/O (run them with `spawn_blocking` from
//! async code).

use std::collections::BTreeSet;
use std::fs::{self, File};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::{RegistryError, Result};

const MANIFEST_HEADER: &str = "plumb artifact manifest 1\n";
const URI_SCHEME: &str = "file://";

/// A directory in the store.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredArtifact {
    /// `file://<absolute path of the stored directory>`.
    pub uri: String,
    /// The manifest's sha256, 64 hexadecimal digits.
    pub sha256: String,
    /// The total size of the files, in bytes.
    pub size: u64,
}

#[derive(Clone, Debug)]
pub struct ArtifactStore {
    root: PathBuf,
}

/// One file of a manifest.
#[derive(Clone, Debug, PartialEq, Eq)]
struct FileEntry {
    path: String,
    size: u64,
    sha256: String,
}

impl ArtifactStore {
    /// A store in `root`, created if missing.
    pub fn new(root: impl AsRef<Path>) -> Result<Self> {
        let root = root.as_ref();
        for dir in [root.join("sha256"), root.join("tmp")] {
            fs::create_dir_all(&dir).map_err(io_at(&dir))?;
        }
        let root = fs::canonicalize(root).map_err(io_at(root))?;
        Ok(ArtifactStore { root })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Copies the checkpoint directory `src` into the store (or finds it already there)
    /// and returns where it is. Symbolic links and special files are refused.
    pub fn put_dir(&self, src: &Path) -> Result<StoredArtifact> {
        let files = walk(src)?;
        let staging = Staging::new(self.root.join("tmp").join(uuid::Uuid::new_v4().simple().to_string()));
        fs::create_dir(&staging.path).map_err(io_at(&staging.path))?;
        let mut entries = Vec::with_capacity(files.len());
        for path in files {
            let to = staging.path.join(&path);
            if let Some(parent) = to.parent() {
                fs::create_dir_all(parent).map_err(io_at(parent))?;
            }
            let (size, sha256) = hash_file(&src.join(&path), Some(&to))?;
            make_read_only(&to)?;
            entries.push(FileEntry { path, size, sha256 });
        }
        let manifest = manifest_text(&entries);
        let sha256 = hex::encode(Sha256::digest(manifest.as_bytes()));
        self.write_manifest(&sha256, &manifest)?;

        let target = self.dir_of(&sha256);
        if target.exists() {
            match self.verify(&sha256) {
                Ok(stored) => return Ok(stored),
                // A damaged copy is replaced by the good one just written.
                Err(RegistryError::ArtifactCorrupt { .. }) => {
                    let aside = Staging::new(
                        self.root.join("tmp").join(format!("{}-corrupt", uuid::Uuid::new_v4().simple())),
                    );
                    fs::rename(&target, &aside.path).map_err(io_at(&target))?;
                }
                Err(e) => return Err(e),
            }
        }
        match fs::rename(&staging.path, &target) {
            Ok(()) => staging.keep(),
            // Another put of the same contents won the race: use its copy.
            Err(_) if target.is_dir() => return self.verify(&sha256),
            Err(e) => return Err(io_at(&target)(e)),
        }
        sync_dir(&self.root.join("sha256"))?;
        Ok(StoredArtifact { uri: self.uri(&sha256), sha256, size: entries.iter().map(|e| e.size).sum() })
    }

    /// Recomputes the digests of the stored artifact's files and compares them with its
    /// manifest; `ArtifactCorrupt` names the first file that differs.
    pub fn verify(&self, sha256: &str) -> Result<StoredArtifact> {
        self.check(sha256, None)
    }

    /// The verified directory of the artifact, to read from (not to write into: its
    /// files are read-only).
    pub fn get(&self, sha256: &str) -> Result<PathBuf> {
        self.verify(sha256)?;
        Ok(self.dir_of(sha256))
    }

    /// Copies the artifact into `dest`, which must not exist yet, checking each file's
    /// digest as it is copied.
    pub fn fetch_to(&self, sha256: &str, dest: &Path) -> Result<StoredArtifact> {
        if let Some(parent) = dest.parent() {
            fs::create_dir_all(parent).map_err(io_at(parent))?;
        }
        fs::create_dir(dest).map_err(io_at(dest))?;
        let copy = Staging::new(dest.to_path_buf());
        let stored = self.check(sha256, Some(dest))?;
        copy.keep();
        Ok(stored)
    }

    /// Deletes an artifact that nothing refers to any more (a run's superseded
    /// checkpoint). Deleting one that is not there does nothing. The directory is first
    /// renamed out of `sha256/`, so a reader never sees it half deleted.
    pub fn remove(&self, sha256: &str) -> Result<()> {
        check_digest(sha256)?;
        let dir = self.dir_of(sha256);
        let aside = self.root.join("tmp").join(format!("{}-removed", uuid::Uuid::new_v4().simple()));
        match fs::rename(&dir, &aside) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_at(&dir)(e)),
        }
        let manifest = self.manifest_path(sha256);
        match fs::remove_file(&manifest) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_at(&manifest)(e)),
        }
        // Its files are read-only, but removing them needs only the directories' write
        // permission.
        if aside.exists() {
            fs::remove_dir_all(&aside).map_err(io_at(&aside))?;
        }
        Ok(())
    }

    /// The URI of an artifact in this store.
    pub fn uri(&self, sha256: &str) -> String {
        format!("{URI_SCHEME}{}", self.dir_of(sha256).display())
    }

    /// The verified directory of the artifact that `uri` names. The URI names it by its
    /// digest, which is looked up in this store: a store mounted elsewhere on another
    /// machine still resolves it.
    pub fn open_uri(&self, uri: &str) -> Result<PathBuf> {
        self.get(&digest_of_uri(uri)?)
    }

    fn dir_of(&self, sha256: &str) -> PathBuf {
        self.root.join("sha256").join(sha256)
    }

    fn manifest_path(&self, sha256: &str) -> PathBuf {
        self.root.join("sha256").join(format!("{sha256}.manifest"))
    }

    fn write_manifest(&self, sha256: &str, manifest: &str) -> Result<()> {
        let staged = self.root.join("tmp").join(format!("{}.manifest", uuid::Uuid::new_v4().simple()));
        let mut file = File::create(&staged).map_err(io_at(&staged))?;
        file.write_all(manifest.as_bytes()).and_then(|()| file.sync_all()).map_err(io_at(&staged))?;
        let path = self.manifest_path(sha256);
        fs::rename(&staged, &path).map_err(io_at(&path))
    }

    /// Verifies the artifact, copying its files into `copy_to` (an existing directory)
    /// when given.
    fn check(&self, sha256: &str, copy_to: Option<&Path>) -> Result<StoredArtifact> {
        check_digest(sha256)?;
        let dir = self.dir_of(sha256);
        if !dir.is_dir() {
            return Err(RegistryError::ArtifactNotFound(sha256.to_string()));
        }
        let corrupt = |file: &str, problem: String| RegistryError::ArtifactCorrupt {
            sha256: sha256.to_string(),
            file: file.to_string(),
            problem,
        };
        let entries = self.manifest(sha256)?;

        let present: BTreeSet<String> = walk(&dir)?.into_iter().collect();
        let listed: BTreeSet<&str> = entries.iter().map(|e| e.path.as_str()).collect();
        if let Some(extra) = present.iter().find(|p| !listed.contains(p.as_str())) {
            return Err(corrupt(extra, "is not part of the artifact".into()));
        }
        for entry in &entries {
            if !present.contains(&entry.path) {
                return Err(corrupt(&entry.path, "is missing".into()));
            }
            let to = copy_to.map(|d| d.join(&entry.path));
            if let Some(parent) = to.as_deref().and_then(Path::parent) {
                fs::create_dir_all(parent).map_err(io_at(parent))?;
            }
            let (size, digest) = hash_file(&dir.join(&entry.path), to.as_deref())?;
            if size != entry.size {
                return Err(corrupt(
                    &entry.path,
                    format!("has {size} bytes where the manifest says {}", entry.size),
                ));
            }
            if digest != entry.sha256 {
                return Err(corrupt(
                    &entry.path,
                    format!("has sha256 {digest} where the manifest says {}", entry.sha256),
                ));
            }
        }
        Ok(StoredArtifact {
            uri: self.uri(sha256),
            sha256: sha256.to_string(),
            size: entries.iter().map(|e| e.size).sum(),
        })
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

impl ArtifactStore {
    /// The artifact's files as its manifest lists them, by path. Checks the manifest
    /// against the digest but not the files (that is [`ArtifactStore::file`]'s job), so
    /// that listing a large checkpoint stays cheap.
    pub fn files(&self, sha256: &str) -> Result<Vec<ArtifactFile>> {
        check_digest(sha256)?;
        if !self.dir_of(sha256).is_dir() {
            return Err(RegistryError::ArtifactNotFound(sha256.to_string()));
        }
        Ok(self
            .manifest(sha256)?
            .into_iter()
            .map(|e| ArtifactFile { path: e.path, size: e.size, sha256: e.sha256 })
            .collect())
    }

    /// The verified location of one file of the artifact, to read from; `None` when the
    /// manifest lists no file at `path` (so a path that climbs out of the artifact, such
    /// as `../x`, is never found). The file's size and sha256 are checked first.
    pub fn file(&self, sha256: &str, path: &str) -> Result<Option<PathBuf>> {
        let Some(entry) = self.files(sha256)?.into_iter().find(|e| e.path == path) else {
            return Ok(None);
        };
        let location = self.dir_of(sha256).join(&entry.path);
        let corrupt = |problem: String| RegistryError::ArtifactCorrupt {
            sha256: sha256.to_string(),
            file: entry.path.clone(),
            problem,
        };
        if !location.is_file() {
            return Err(corrupt("is missing".into()));
        }
        let (size, digest) = hash_file(&location, None)?;
        if size != entry.size {
            return Err(corrupt(format!("has {size} bytes where the manifest says {}", entry.size)));
        }
        if digest != entry.sha256 {
            return Err(corrupt(format!("has sha256 {digest} where the manifest says {}", entry.sha256)));
        }
        Ok(Some(location))
    }

    /// The artifact's manifest entries, after checking that the manifest hashes to `sha256`.
    fn manifest(&self, sha256: &str) -> Result<Vec<FileEntry>> {
        let corrupt = |file: &str, problem: String| RegistryError::ArtifactCorrupt {
            sha256: sha256.to_string(),
            file: file.to_string(),
            problem,
        };
        let manifest_path = self.manifest_path(sha256);
        let manifest = match fs::read_to_string(&manifest_path) {
            Ok(manifest) => manifest,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(corrupt(&manifest_path.display().to_string(), "is missing".into()))
            }
            Err(e) => return Err(io_at(&manifest_path)(e)),
        };
        if hex::encode(Sha256::digest(manifest.as_bytes())) != sha256 {
            return Err(corrupt(
                &manifest_path.display().to_string(),
                "does not match the artifact's digest".into(),
            ));
        }
        parse_manifest(&manifest)
            .ok_or_else(|| corrupt(&manifest_path.display().to_string(), "is not a manifest".into()))
    }
}

/// The digest that an artifact URI names: its last path component, under `sha256/`.
pub fn digest_of_uri(uri: &str) -> Result<String> {
    let bad = || RegistryError::BadUri(uri.to_string());
    let path = Path::new(uri.strip_prefix(URI_SCHEME).ok_or_else(bad)?);
    let digest = path.file_name().and_then(|n| n.to_str()).ok_or_else(bad)?;
    let under = path.parent().and_then(Path::file_name).and_then(|n| n.to_str());
    if !path.is_absolute() || under != Some("sha256") || check_digest(digest).is_err() {
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
/// special files and names that a manifest line cannot hold.
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

/// Size and sha256 (hex) of a file, read once; copied into `copy_to` on the way.
fn hash_file(path: &Path, copy_to: Option<&Path>) -> Result<(u64, String)> {
    let mut file = File::open(path).map_err(io_at(path))?;
    let mut copy = match copy_to {
        Some(to) => Some(File::create_new(to).map_err(io_at(to))?),
        None => None,
    };
    let mut hasher = Sha256::new();
    let mut buffer = vec![0u8; 1 << 20];
    let mut size = 0u64;
    loop {
        let n = file.read(&mut buffer).map_err(io_at(path))?;
        if n == 0 {
            break;
        }
        hasher.update(&buffer[..n]);
        size += n as u64;
        if let (Some(copy), Some(to)) = (copy.as_mut(), copy_to) {
            copy.write_all(&buffer[..n]).map_err(io_at(to))?;
        }
    }
    if let (Some(copy), Some(to)) = (copy, copy_to) {
        copy.sync_all().map_err(io_at(to))?;
    }
    Ok((size, hex::encode(hasher.finalize())))
}

/// Stored files are read-only, so that a loader cannot write into the store by mistake.
fn make_read_only(path: &Path) -> Result<()> {
    let mut permissions = fs::metadata(path).map_err(io_at(path))?.permissions();
    permissions.set_readonly(true);
    fs::set_permissions(path, permissions).map_err(io_at(path))
}

/// Makes a rename in `dir` durable.
fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir).and_then(|d| d.sync_all()).map_err(io_at(dir))
}

fn io_at(path: &Path) -> impl FnOnce(std::io::Error) -> RegistryError + '_ {
    move |source| RegistryError::Io { path: path.to_path_buf(), source }
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
