//! A fresh Postgres database for each test: on the server of `DATABASE_URL` when it is
//! set, else on a private throwaway cluster in `PLUMB_TEST_PG` (which `make test` sets,
//! and stops the cluster in after the suite; by default `target/plumb-test-pg`) that the
//! first test starts (under a file lock, since nextest runs tests in parallel processes)
//! and later tests reuse.
//!
//! Also the tests that a command stops the private cluster it started.

use std::path::PathBuf;
use std::str::FromStr;

use registry::db::{self, Cluster, ClusterStatus, Database, Durability};
use sqlx::postgres::{PgConnectOptions, PgPool};

use crate::helpers::repo_root;

/// A migrated database of its own; dropped (with its connections) when the test ends.
pub struct TestDb {
    pub pool: PgPool,
    pub name: String,
    admin: PgConnectOptions,
    options: PgConnectOptions,
}

impl TestDb {
    pub async fn new() -> TestDb {
        TestDb::on(admin_options()).await
    }

    /// A database of its own on the server that `admin` reaches (a test's private
    /// cluster).
    pub async fn on(admin: PgConnectOptions) -> TestDb {
        let name = format!("plumb_test_{}", uuid::Uuid::new_v4().simple());
        db::create_database_if_missing(&admin, &name).await.expect("creating the test database");
        let options = admin.clone().database(&name);
        let pool = db::connect(options.clone(), 40, &name).await.expect("connecting to the test database");
        db::migrate(&pool).await.expect("migrating the test database");
        TestDb { pool, name, admin, options }
    }

    /// The database's URL, for a `plumb` subprocess's `DATABASE_URL`.
    pub fn url(&self) -> String {
        let o = &self.options;
        match o.get_socket() {
            Some(socket) => format!(
                "postgres://{}@localhost:{}/{}?host={}",
                o.get_username(),
                o.get_port(),
                self.name,
                socket.display()
            ),
            None => {
                format!("postgres://{}@{}:{}/{}", o.get_username(), o.get_host(), o.get_port(), self.name)
            }
        }
    }

    /// A second, independent pool on the same database (a second worker, say).
    pub async fn another_pool(&self, max_connections: u32) -> PgPool {
        db::connect(self.options.clone(), max_connections, &self.name).await.expect("connecting")
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let admin = self.admin.clone();
        let name = self.name.clone();
        // Drop runs inside the test's runtime, which cannot block on itself: the
        // database is dropped from a runtime of its own on another thread.
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().ok()?;
            runtime.block_on(async {
                let pool = db::connect(admin, 1, "admin").await.ok()?;
                let drop = format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", db::quote_ident(&name));
                sqlx::raw_sql(&drop).execute(&pool).await.ok()?;
                Some(())
            })
        })
        .join();
    }
}

fn admin_options() -> PgConnectOptions {
    if let Some(url) = std::env::var("DATABASE_URL").ok().filter(|u| !u.is_empty()) {
        return PgConnectOptions::from_str(&url)
            .expect("DATABASE_URL is not a Postgres URL")
            .database("postgres");
    }
    test_cluster().connect_options("postgres")
}

/// The throwaway cluster that tests share; started once, under a lock.
pub fn test_cluster() -> Cluster {
    // As root the server runs as `postgres`, which may not be able to reach a checkout
    // under /root: then the cluster lives in /tmp, named by the checkout's path.
    let dir = if let Some(dir) = std::env::var_os("PLUMB_TEST_PG").filter(|d| !d.is_empty()) {
        PathBuf::from(dir)
    } else if registry::db::is_root() {
        use sha2::Digest;
        let digest = sha2::Sha256::digest(repo_root().as_os_str().as_encoded_bytes());
        std::env::temp_dir().join(&format!("plumb-test-pg-{:x}", digest)[..40])
    } else {
        repo_root().join("target").join("plumb-test-pg")
    };
    std::fs::create_dir_all(repo_root().join("target")).expect("creating target/");
    let lock_path: PathBuf = repo_root().join("target").join("plumb-test-pg.lock");
    let lock = std::fs::File::create(&lock_path).expect("creating the test cluster's lock file");
    lock.lock().expect("locking the test cluster");
    let cluster = Cluster::new(dir, Durability::Throwaway);
    cluster.start().unwrap_or_else(|e| panic!("starting the test Postgres cluster: {e}"));
    lock.unlock().expect("unlocking the test cluster");
    cluster
}

/// A test body on a tokio runtime with a fresh database.
pub fn with_db<F, Fut>(test: F)
where
    F: FnOnce(TestDb) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .build()
        .expect("building a tokio runtime");
    runtime.block_on(async move {
        let db = TestDb::new().await;
        test(db).await;
    });
}

#[test]
fn a_cluster_that_a_command_started_is_stopped_when_its_guard_drops() {
    let home = tempfile::tempdir_in("/tmp").expect("a temporary home");
    let database = Database::from_url_or_home(None, home.path());
    let Database::Embedded(cluster) = &database else { unreachable!("no URL was given") };
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();

    let started = runtime.block_on(database.start_owned()).expect("starting the private cluster");
    assert!(started.is_some(), "the cluster was not running before: this command started it");
    assert!(matches!(cluster.status().unwrap(), ClusterStatus::Running { .. }));

    // A second command finds it running: not its to stop.
    let again = runtime.block_on(database.start_owned()).expect("reaching the running cluster");
    assert!(again.is_none());
    drop(again);
    assert!(matches!(cluster.status().unwrap(), ClusterStatus::Running { .. }));

    drop(started);
    assert_eq!(cluster.status().unwrap(), ClusterStatus::Stopped);
}

#[test]
fn a_server_at_a_url_is_never_the_commands_to_stop() {
    let database = Database::from_url_or_home(Some("postgres://nobody@localhost/plumb".into()), "/".as_ref());
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    assert!(runtime.block_on(database.start_owned()).unwrap().is_none());
}

/// `plumb serve` on SIGINT or SIGTERM stops the private cluster it started, then exits.
fn serve_stops_its_cluster_on(signal: &str) {
    use std::io::BufRead;
    use std::process::{Command, Stdio};

    let home = tempfile::tempdir_in("/tmp").expect("a temporary home");
    let mut serve = Command::new(env!("CARGO_BIN_EXE_plumb"))
        .args(["serve", "--home"])
        .arg(home.path())
        .env_remove("DATABASE_URL")
        .env("PLUMB_PORT", "0")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("plumb serve starts");
    // Read until the line that says it serves, and kept open: a closed pipe would fail
    // a later print.
    let mut lines = std::io::BufReader::new(serve.stdout.take().unwrap()).lines();
    let serving = lines.by_ref().map_while(Result::ok).any(|line| line.starts_with("plumb is serving"));
    assert!(serving, "plumb serve exited before serving: {:?}", serve.wait());
    let cluster = Cluster::new(home.path().join("pg"), Durability::Durable);
    assert!(matches!(cluster.status().unwrap(), ClusterStatus::Running { .. }));

    let sent = Command::new("kill").args(["-s", signal, &serve.id().to_string()]).status().unwrap();
    assert!(sent.success());
    let status = serve.wait().expect("plumb serve exits");
    drop(lines);
    assert!(status.success(), "plumb serve exited with {status}");
    assert_eq!(cluster.status().unwrap(), ClusterStatus::Stopped);
}

#[test]
fn serve_stops_the_cluster_it_started_on_ctrl_c() {
    serve_stops_its_cluster_on("INT");
}

#[test]
fn serve_stops_the_cluster_it_started_on_sigterm() {
    serve_stops_its_cluster_on("TERM");
}
