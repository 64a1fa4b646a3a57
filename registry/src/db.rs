//! Where plumb's Postgres is: a server named by `DATABASE_URL`, or a private cluster
//! under `.plumb/pg` that plumb starts with the machine's `initdb` and `pg_ctl` and
//! reaches over a Unix socket. Also the embedded migrations.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::str::FromStr;
use std::time::Duration;

use sqlx::migrate::Migrator;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};

/// The schema: every migration under `migrations/`, compiled in.
pub static MIGRATOR: Migrator = sqlx::migrate!("../migrations");

/// The superuser of a private cluster; it trusts local socket connections only.
const SUPERUSER: &str = "plumb";
/// The socket's file is `.s.PGSQL.<port>` in the socket directory; no TCP is opened.
const PORT: u16 = 5432;
/// A Unix socket path has at most 107 bytes (`sun_path`).
const MAX_SOCKET_PATH: usize = 100;

#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error(
        "`{0}` was not found: install PostgreSQL (Debian: `apt-get install postgresql`) or set DATABASE_URL"
    )]
    MissingBinary(&'static str),
    #[error("initdb refuses to run as root and there is no `postgres` user to run it as: create one or set DATABASE_URL")]
    NoUnprivilegedUser,
    #[error("`{command}` failed ({status}): {output}")]
    Command { command: String, status: String, output: String },
    #[error("the `postgres` user cannot reach {0}: a parent directory is not searchable by others (chmod o+x it), or keep plumb's home elsewhere, or set DATABASE_URL")]
    Unreachable(PathBuf),
    #[error("{0}: {1}")]
    Io(PathBuf, #[source] std::io::Error),
    #[error("DATABASE_URL is not a valid Postgres URL: {0}")]
    BadUrl(#[source] sqlx::Error),
    #[error("cannot connect to Postgres at {target}: {source}")]
    Connect { target: String, source: sqlx::Error },
    #[error("migrating the database failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error(transparent)]
    Sql(#[from] sqlx::Error),
}

/// Server-side settings of a private cluster.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Durability {
    /// Every commit is on disk before it returns: the cluster that holds real data.
    Durable,
    /// fsync off: for throwaway test clusters only, where a crash loses nothing of value.
    Throwaway,
}

/// A private Postgres cluster in a directory of its own.
#[derive(Clone, Debug)]
pub struct Cluster {
    dir: PathBuf,
    durability: Durability,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClusterStatus {
    /// No `initdb` has run in the directory yet.
    Uninitialised,
    Stopped,
    Running {
        pid: u32,
    },
}

impl Cluster {
    pub fn new(dir: impl Into<PathBuf>, durability: Durability) -> Self {
        Self { dir: absolute(dir.into()), durability }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.join("data")
    }

    fn log_file(&self) -> PathBuf {
        self.dir.join("postgres.log")
    }

    /// The directory of the server's socket: inside the cluster's directory, unless that
    /// path is too long for a socket, then a directory in /tmp named by a hash of it.
    pub fn socket_dir(&self) -> PathBuf {
        let inside = self.dir.join("run");
        if inside.join(format!(".s.PGSQL.{PORT}")).as_os_str().len() <= MAX_SOCKET_PATH {
            return inside;
        }
        use sha2::Digest;
        let digest = sha2::Sha256::digest(self.dir.as_os_str().as_encoded_bytes());
        PathBuf::from(format!("/tmp/plumb-pg-{}", &hex::encode(digest)[..16]))
    }

    pub fn status(&self) -> Result<ClusterStatus, DbError> {
        if !self.data_dir().join("PG_VERSION").exists() {
            return Ok(ClusterStatus::Uninitialised);
        }
        // postmaster.pid's first line is the pid; the server removes it on a clean stop.
        let pid_file = self.data_dir().join("postmaster.pid");
        let Ok(text) = std::fs::read_to_string(&pid_file) else { return Ok(ClusterStatus::Stopped) };
        let pid = text.lines().next().and_then(|l| l.trim().parse::<u32>().ok());
        match pid {
            Some(pid) if Path::new(&format!("/proc/{pid}")).exists() => Ok(ClusterStatus::Running { pid }),
            _ => Ok(ClusterStatus::Stopped),
        }
    }

    /// Creates the cluster if needed and starts it if it is not running. Idempotent.
    pub fn start(&self) -> Result<(), DbError> {
        if self.status()? == ClusterStatus::Uninitialised {
            self.init()?;
        }
        if matches!(self.status()?, ClusterStatus::Running { .. }) {
            return Ok(());
        }
        let socket_dir = self.socket_dir();
        create_dir(&socket_dir)?;
        self.hand_to_server_user(&socket_dir)?;
        let mut options =
            format!("-c listen_addresses='' -c unix_socket_directories='{}' -p {PORT}", socket_dir.display());
        if self.durability == Durability::Throwaway {
            options.push_str(" -c fsync=off -c synchronous_commit=off -c full_page_writes=off");
        }
        options.push_str(" -c max_connections=200");
        self.pg(
            "pg_ctl",
            &[
                "-D".as_ref(),
                self.data_dir().as_os_str(),
                "-l".as_ref(),
                self.log_file().as_os_str(),
                "-o".as_ref(),
                options.as_ref(),
                "-w".as_ref(),
                "-t".as_ref(),
                "60".as_ref(),
                "start".as_ref(),
            ],
        )?;
        Ok(())
    }

    /// Stops the cluster (fast shutdown: running transactions roll back). Idempotent.
    pub fn stop(&self) -> Result<(), DbError> {
        if !matches!(self.status()?, ClusterStatus::Running { .. }) {
            return Ok(());
        }
        self.pg(
            "pg_ctl",
            &[
                "-D".as_ref(),
                self.data_dir().as_os_str(),
                "-m".as_ref(),
                "fast".as_ref(),
                "-w".as_ref(),
                "stop".as_ref(),
            ],
        )?;
        Ok(())
    }

    fn init(&self) -> Result<(), DbError> {
        create_dir(&self.dir)?;
        self.hand_to_server_user(&self.dir)?;
        self.pg(
            "initdb",
            &[
                "-D".as_ref(),
                self.data_dir().as_os_str(),
                "-U".as_ref(),
                SUPERUSER.as_ref(),
                "--auth=trust".as_ref(),
                "--encoding=UTF8".as_ref(),
                "--locale=C.UTF-8".as_ref(),
            ],
        )?;
        Ok(())
    }

    /// Options for connecting to database `database` of this cluster.
    pub fn connect_options(&self, database: &str) -> PgConnectOptions {
        PgConnectOptions::new()
            .socket(self.socket_dir())
            .port(PORT)
            .username(SUPERUSER)
            .database(database)
            .application_name("plumb")
    }

    /// Postgres refuses to run as root: as root, the server runs as `postgres`, which
    /// then must own the cluster's directories.
    fn hand_to_server_user(&self, dir: &Path) -> Result<(), DbError> {
        if !is_root() {
            return Ok(());
        }
        use std::os::unix::fs::PermissionsExt;
        for ancestor in dir.ancestors().skip(1) {
            let mode = std::fs::metadata(ancestor)
                .map_err(|e| DbError::Io(ancestor.to_owned(), e))?
                .permissions()
                .mode();
            if mode & 0o001 == 0 {
                return Err(DbError::Unreachable(dir.to_owned()));
            }
        }
        let status = Command::new("chown")
            .args(["-R", "postgres:"])
            .arg(dir)
            .output()
            .map_err(|e| DbError::Io(dir.to_owned(), e))?;
        if !status.status.success() {
            return Err(DbError::NoUnprivilegedUser);
        }
        Ok(())
    }

    fn pg(&self, program: &'static str, args: &[&std::ffi::OsStr]) -> Result<String, DbError> {
        let binary = pg_binary(program)?;
        // As root the server runs as `postgres`, through runuser (in /usr/sbin, which a
        // minimal PATH may leave out).
        let launcher = if is_root() { Some(runuser()) } else { None };
        let mut command = match &launcher {
            Some(runuser) => {
                let mut c = Command::new(runuser);
                c.args(["-u", "postgres", "--"]).arg(&binary);
                c
            }
            None => Command::new(&binary),
        };
        command.args(args).current_dir("/");
        let output =
            command.output().map_err(|e| DbError::Io(launcher.unwrap_or_else(|| binary.clone()), e))?;
        let text =
            format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
        if !output.status.success() {
            let mut text = text.trim().to_string();
            if program == "pg_ctl" {
                if let Ok(log) = std::fs::read_to_string(self.log_file()) {
                    let tail: Vec<&str> = log.lines().rev().take(5).collect();
                    text.push_str(&format!(
                        "; the server log {} ends with: {}",
                        self.log_file().display(),
                        tail.into_iter().rev().collect::<Vec<_>>().join(" | ")
                    ));
                }
            }
            return Err(DbError::Command {
                command: format!(
                    "{} {}",
                    binary.display(),
                    args.iter().map(|a| a.to_string_lossy()).collect::<Vec<_>>().join(" ")
                ),
                status: output.status.to_string(),
                output: text,
            });
        }
        Ok(text)
    }
}

/// A private cluster that this process started; dropping it stops the cluster, on the
/// way out of a command however it ends (done, failed, or interrupted by a signal that
/// the command turned into an early return).
#[must_use = "dropping it stops the cluster"]
#[derive(Debug)]
pub struct StartedCluster(Cluster);

impl StartedCluster {
    pub fn cluster(&self) -> &Cluster {
        &self.0
    }
}

impl Drop for StartedCluster {
    fn drop(&mut self) {
        // Nobody is left to return an error to.
        if let Err(e) = self.0.stop() {
            eprintln!("plumb: stopping the private cluster in {} failed: {e}", self.0.dir().display());
        }
    }
}

/// Where to reach Postgres: `DATABASE_URL` when given, else the private cluster.
#[derive(Clone, Debug)]
pub enum Database {
    Url(String),
    Embedded(Cluster),
}

impl Database {
    /// `url` is `DATABASE_URL` (read by the caller, at the edge); `home` is plumb's
    /// state directory, whose `pg/` holds the private cluster.
    pub fn from_url_or_home(url: Option<String>, home: &Path) -> Self {
        match url.filter(|u| !u.trim().is_empty()) {
            Some(url) => Database::Url(url),
            None => Database::Embedded(Cluster::new(home.join("pg"), Durability::Durable)),
        }
    }

    /// Starts the private cluster if that is the database (a server at a URL is the
    /// operator's to run) and creates the `plumb` database in it.
    pub async fn ensure_started(&self) -> Result<(), DbError> {
        if let Database::Embedded(cluster) = self {
            let cluster = cluster.clone();
            tokio::task::spawn_blocking(move || cluster.start()).await.expect("cluster start panicked")?;
            create_database_if_missing(&cluster_admin(self)?, "plumb").await?;
        }
        Ok(())
    }

    /// [`Database::ensure_started`], for a command that stops what it starts: the private
    /// cluster when this call started it, else `None` (a cluster that was already running,
    /// or a server at a URL, is someone else's to stop).
    pub async fn start_owned(&self) -> Result<Option<StartedCluster>, DbError> {
        let Database::Embedded(cluster) = self else { return Ok(None) };
        if matches!(cluster.status()?, ClusterStatus::Running { .. }) {
            self.ensure_started().await?;
            return Ok(None);
        }
        // Held before the start, so that a start that fails half way is stopped too.
        let started = StartedCluster(cluster.clone());
        self.ensure_started().await?;
        Ok(Some(started))
    }

    pub fn connect_options(&self) -> Result<PgConnectOptions, DbError> {
        match self {
            Database::Url(url) => PgConnectOptions::from_str(url).map_err(DbError::BadUrl),
            Database::Embedded(cluster) => Ok(cluster.connect_options("plumb")),
        }
    }

    /// A description for messages: the URL without its password, or the socket.
    pub fn describe(&self) -> String {
        match self {
            Database::Url(url) => redact(url),
            Database::Embedded(c) => {
                format!("the private cluster in {} (socket {})", c.dir().display(), c.socket_dir().display())
            }
        }
    }

    pub async fn connect(&self, max_connections: u32) -> Result<PgPool, DbError> {
        connect(self.connect_options()?, max_connections, &self.describe()).await
    }
}

fn cluster_admin(db: &Database) -> Result<PgConnectOptions, DbError> {
    match db {
        Database::Embedded(c) => Ok(c.connect_options("postgres")),
        Database::Url(_) => Ok(db.connect_options()?.database("postgres")),
    }
}

/// A pool; a server that is still starting gets a few seconds to accept connections.
pub async fn connect(
    options: PgConnectOptions,
    max_connections: u32,
    target: &str,
) -> Result<PgPool, DbError> {
    PgPoolOptions::new()
        .max_connections(max_connections)
        .acquire_timeout(Duration::from_secs(30))
        .connect_with(options)
        .await
        .map_err(|source| DbError::Connect { target: target.to_string(), source })
}

/// Applies the migrations that the database lacks.
pub async fn migrate(pool: &PgPool) -> Result<(), DbError> {
    MIGRATOR.run(pool).await?;
    Ok(())
}

pub async fn create_database_if_missing(admin: &PgConnectOptions, name: &str) -> Result<(), DbError> {
    let pool = connect(admin.clone(), 1, "the server's `postgres` database").await?;
    let exists: bool = sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)")
        .bind(name)
        .fetch_one(&pool)
        .await?;
    if !exists {
        // Identifiers cannot be bound; `name` is quoted as an identifier.
        let create = sqlx::raw_sql(&format!("CREATE DATABASE {}", quote_ident(name))).execute(&pool).await;
        match create {
            Ok(_) => {}
            // Another process created it first.
            Err(sqlx::Error::Database(e)) if e.code().as_deref() == Some("42P04") => {}
            Err(e) => return Err(e.into()),
        }
    }
    pool.close().await;
    Ok(())
}

pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

fn redact(url: &str) -> String {
    match url.split_once("://") {
        Some((scheme, rest)) => match rest.rsplit_once('@') {
            Some((userinfo, host)) => {
                let user = userinfo.split(':').next().unwrap_or("");
                format!("{scheme}://{user}:***@{host}")
            }
            None => url.to_string(),
        },
        None => "(unparseable URL)".to_string(),
    }
}

fn create_dir(dir: &Path) -> Result<(), DbError> {
    std::fs::create_dir_all(dir).map_err(|e| DbError::Io(dir.to_owned(), e))
}

fn absolute(path: PathBuf) -> PathBuf {
    if path.is_absolute() {
        path
    } else {
        std::env::current_dir().map(|d| d.join(&path)).unwrap_or(path)
    }
}

/// Whether plumb runs as root (then the private cluster's server runs as `postgres`).
pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// Where Debian installs PostgreSQL's server programs, one directory per major version;
/// it does not put them on PATH.
/// `runuser`: where util-linux installs it, else as PATH finds it.
fn runuser() -> PathBuf {
    ["/usr/sbin/runuser", "/sbin/runuser"]
        .into_iter()
        .map(PathBuf::from)
        .find(|p| p.is_file())
        .unwrap_or_else(|| PathBuf::from("runuser"))
}

const DEBIAN_POSTGRESQL: &str = "/usr/lib/postgresql";

/// `initdb` and `pg_ctl`: on PATH, or in Debian's /usr/lib/postgresql/<version>/bin.
fn pg_binary(program: &'static str) -> Result<PathBuf, DbError> {
    find_pg_binary(program, std::env::var_os("PATH").as_deref(), Path::new(DEBIAN_POSTGRESQL))
        .ok_or(DbError::MissingBinary(program))
}

/// `program` in a directory of `path` (a PATH value), else in `versions`/<major>/bin of
/// the newest major version that has it.
fn find_pg_binary(program: &str, path: Option<&std::ffi::OsStr>, versions: &Path) -> Option<PathBuf> {
    let on_path = path.into_iter().flat_map(std::env::split_paths).map(|dir| dir.join(program));
    if let Some(found) = on_path.into_iter().find(|candidate| candidate.is_file()) {
        return Some(found);
    }
    let mut installed: Vec<(u32, PathBuf)> = std::fs::read_dir(versions)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let version = e.file_name().to_str()?.parse::<u32>().ok()?;
            let candidate = e.path().join("bin").join(program);
            candidate.is_file().then_some((version, candidate))
        })
        .collect();
    installed.sort();
    installed.pop().map(|(_, p)| p)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_password_in_a_database_url_is_never_shown() {
        assert_eq!(
            redact("postgres://me:secret@db.example:5432/plumb"),
            "postgres://me:***@db.example:5432/plumb"
        );
        assert_eq!(redact("postgres://db.example/plumb"), "postgres://db.example/plumb");
    }

    #[test]
    fn identifiers_are_quoted() {
        assert_eq!(quote_ident("a\"b"), "\"a\"\"b\"");
    }

    #[test]
    fn a_socket_path_that_is_too_long_moves_to_tmp() {
        let short = Cluster::new("/tmp/x", Durability::Throwaway);
        assert_eq!(short.socket_dir(), PathBuf::from("/tmp/x/run"));
        let long = Cluster::new(format!("/tmp/{}", "d".repeat(120)), Durability::Throwaway);
        assert!(long.socket_dir().to_string_lossy().starts_with("/tmp/plumb-pg-"));
    }

    fn touch(path: &Path) {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, "").unwrap();
    }

    #[test]
    fn an_initdb_off_path_is_found_in_the_newest_debian_version_directory() {
        let root = tempfile::tempdir().unwrap();
        let versions = root.path().join("postgresql");
        touch(&versions.join("9/bin/initdb"));
        touch(&versions.join("15/bin/initdb"));
        touch(&versions.join("16/bin/pg_ctl"));
        let path = std::env::join_paths([root.path().join("bin"), PathBuf::from("/nonexistent")]).unwrap();
        assert_eq!(find_pg_binary("initdb", Some(&path), &versions), Some(versions.join("15/bin/initdb")));
        assert_eq!(find_pg_binary("postgres", Some(&path), &versions), None);
    }

    #[test]
    fn an_initdb_on_path_comes_first() {
        let root = tempfile::tempdir().unwrap();
        let versions = root.path().join("postgresql");
        touch(&versions.join("15/bin/initdb"));
        touch(&root.path().join("bin/initdb"));
        let path = std::env::join_paths([root.path().join("bin")]).unwrap();
        assert_eq!(find_pg_binary("initdb", Some(&path), &versions), Some(root.path().join("bin/initdb")));
    }
}
