//! `plumb db start|stop|migrate|status`: the private Postgres cluster under `.plumb/pg`,
//! or the server that `DATABASE_URL` names.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use registry::db::{Cluster, ClusterStatus, Database, Durability};

#[derive(Args)]
pub struct DbArgs {
    #[command(subcommand)]
    command: DbCommand,
    /// plumb's state directory; the private cluster lives in its `pg/`.
    #[arg(long, env = "PLUMB_HOME", default_value = ".plumb", global = true)]
    home: PathBuf,
    /// The private cluster's own directory instead of HOME/pg (`make test` stops the test
    /// suite's throwaway cluster with it); DATABASE_URL does not apply then.
    #[arg(long, global = true)]
    cluster: Option<PathBuf>,
}

#[derive(Subcommand)]
enum DbCommand {
    /// Start the private cluster (creating it on first use) and apply the migrations.
    Start,
    /// Stop the private cluster.
    Stop,
    /// Apply the migrations the database lacks.
    Migrate,
    /// Where the database is, whether it runs, and which migrations it has.
    Status,
}

pub fn run(args: DbArgs) -> Result<()> {
    let database = match args.cluster {
        Some(dir) => Database::Embedded(Cluster::new(dir, Durability::Durable)),
        None => Database::from_url_or_home(std::env::var("DATABASE_URL").ok(), &args.home),
    };
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    match args.command {
        DbCommand::Start | DbCommand::Migrate => runtime.block_on(async {
            database.ensure_started().await?;
            let pool = database.connect(2).await?;
            registry::db::migrate(&pool).await?;
            let applied = applied_migrations(&pool).await?;
            println!("{}: running, {} migrations applied", database.describe(), applied);
            Ok(())
        }),
        DbCommand::Stop => match &database {
            Database::Embedded(cluster) => {
                cluster.stop().context("stopping the private cluster")?;
                println!("{}: stopped", database.describe());
                Ok(())
            }
            Database::Url(_) => anyhow::bail!(
                "DATABASE_URL is set: plumb does not stop a server it did not start ({})",
                database.describe()
            ),
        },
        DbCommand::Status => {
            if let Database::Embedded(cluster) = &database {
                match cluster.status()? {
                    ClusterStatus::Uninitialised => {
                        println!("{}: not created yet (`plumb db start` creates it)", database.describe());
                        return Ok(());
                    }
                    ClusterStatus::Stopped => {
                        println!("{}: stopped", database.describe());
                        return Ok(());
                    }
                    ClusterStatus::Running { pid } => {
                        println!("{}: running (pid {pid})", database.describe())
                    }
                }
            }
            runtime.block_on(async {
                let pool = database.connect(1).await?;
                let applied = applied_migrations(&pool).await?;
                let known = registry::db::MIGRATOR.iter().count();
                println!("{}: {applied} of {known} migrations applied", database.describe());
                Ok(())
            })
        }
    }
}

async fn applied_migrations(pool: &sqlx::PgPool) -> Result<i64> {
    let exists: bool =
        sqlx::query_scalar("SELECT to_regclass('_sqlx_migrations') IS NOT NULL").fetch_one(pool).await?;
    if !exists {
        return Ok(0);
    }
    Ok(sqlx::query_scalar("SELECT count(*) FROM _sqlx_migrations WHERE success").fetch_one(pool).await?)
}
