//! `plumb serve`: the web app (annotators' and researchers' pages, the JSON API).

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;
use registry::db::Database;

#[derive(Args)]
pub struct ServeArgs {
    /// A TOML file of web settings (host, port, session_key, secure_cookies,
    /// max_body_bytes, login_attempts, login_window_s, login_max_wait_s,
    /// login_attempts_per_address, trusted_proxies, session_idle_s, session_absolute_s,
    /// artifacts, and `[metrics]` token); PLUMB_* variables override it.
    #[arg(long)]
    config: Option<PathBuf>,
    /// plumb's state directory; the private Postgres cluster lives in its `pg/`.
    #[arg(long, env = "PLUMB_HOME", default_value = ".plumb")]
    home: PathBuf,
    /// Log lines as JSON objects (for log collectors) instead of text.
    #[arg(long)]
    json_logs: bool,
}

pub fn run(args: ServeArgs) -> Result<()> {
    super::init_logs(args.json_logs, "info");
    let mut settings = web::Settings::load(args.config.as_deref(), |k| std::env::var(k).ok())?;
    settings.artifacts.get_or_insert_with(|| args.home.join("artifacts"));
    let database = Database::from_url_or_home(std::env::var("DATABASE_URL").ok(), &args.home);
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(super::shutdown::until_signal(async {
        // Stopped when serving ends, if this command started it.
        let _cluster = database.start_owned().await?;
        let pool = database.connect(20).await?;
        registry::db::migrate(&pool).await?;
        let users = labeling::users::list_users(&pool).await?;
        if !users.iter().any(|u| u.role == labeling::domain::Role::Admin && !u.disabled) {
            println!(
                "No admin yet. Make the first with\n  plumb users add --username NAME --role admin --password-stdin"
            );
        }
        let app = web::Application::build(&settings, pool).context("starting the web app")?;
        println!(
            "plumb is serving http://{}:{} (database: {})",
            settings.host,
            app.port(),
            database.describe()
        );
        app.run_until_stopped().await.context("the web server stopped with an error")
    }))
}
