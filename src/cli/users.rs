//! `plumb users`: a team's people from the command line, the first admin included. Each
//! command prints the user it touched (or every user) as JSON lines; a password is only
//! ever read from standard input, never from the command line. Each change is written to
//! the audit log without an actor (whoever runs this holds the database).

use std::io::Read;
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use labeling::audit::{self, Action};
use labeling::domain::{DisplayName, Password, Role, Username};
use labeling::users::{self, User};
use serde_json::json;
use sqlx::PgPool;

#[derive(Args)]
pub struct UsersArgs {
    #[command(subcommand)]
    command: UsersCommand,
    /// plumb's state directory; the private Postgres cluster lives in its `pg/`.
    #[arg(long, env = "PLUMB_HOME", default_value = ".plumb", global = true)]
    home: PathBuf,
}

#[derive(Subcommand)]
enum UsersCommand {
    /// Create a user with a role (admin, researcher or annotator).
    Add {
        #[arg(long)]
        username: String,
        #[arg(long)]
        role: String,
        /// The name pages show (default: the username).
        #[arg(long)]
        display_name: Option<String>,
        /// Read the password from standard input (its first line).
        #[arg(long)]
        password_stdin: bool,
    },
    /// Every user, by username.
    List,
    /// Stop a user: they can no longer log in, and their sessions and API tokens stop
    /// working at their next request.
    Disable { username: String },
    /// Let a disabled user in again.
    Enable { username: String },
    /// Set a user's password.
    Passwd {
        username: String,
        /// Read the password from standard input (its first line).
        #[arg(long)]
        password_stdin: bool,
    },
    /// Give a user another role (admin, researcher or annotator).
    Role { username: String, role: String },
}

pub fn run(args: UsersArgs) -> Result<()> {
    super::with_database(&args.home, async |pool| {
        match args.command {
            UsersCommand::Add { username, role, display_name, password_stdin } => {
                let role = Role::parse(&role)?;
                let password = password_from_stdin(password_stdin)?;
                let display_name = DisplayName::parse(display_name.as_deref().unwrap_or(&username))?;
                let user =
                    users::create_user(&pool, &Username::parse(&username)?, &display_name, role, &password)
                        .await?;
                let details = json!({ "role": role, "display_name": user.display_name });
                record(&pool, Action::UserCreate, &user, details).await?;
                print_user(&user);
            }
            UsersCommand::List => {
                for user in users::list_users(&pool).await? {
                    print_user(&user);
                }
            }
            UsersCommand::Disable { username } => set_disabled(&pool, &username, true).await?,
            UsersCommand::Enable { username } => set_disabled(&pool, &username, false).await?,
            UsersCommand::Passwd { username, password_stdin } => {
                let password = password_from_stdin(password_stdin)?;
                let user = named(&pool, &username).await?;
                users::set_password(&pool, user.id, &password).await?;
                record(&pool, Action::UserPasswordReset, &user, json!({})).await?;
                print_user(&user);
            }
            UsersCommand::Role { username, role } => {
                let role = Role::parse(&role)?;
                let user = named(&pool, &username).await?;
                users::set_role(&pool, user.id, role).await?;
                record(&pool, Action::UserRole, &user, json!({ "from": user.role, "to": role })).await?;
                print_user(&users::get_user(&pool, user.id).await?);
            }
        }
        Ok(())
    })
}

async fn named(pool: &PgPool, username: &str) -> Result<User> {
    users::get_user_by_username(pool, username.trim()).await.with_context(|| format!("user {username:?}"))
}

async fn set_disabled(pool: &PgPool, username: &str, disabled: bool) -> Result<()> {
    let user = named(pool, username).await?;
    users::set_disabled(pool, user.id, disabled).await?;
    let action = if disabled { Action::UserDisable } else { Action::UserEnable };
    record(pool, action, &user, json!({})).await?;
    print_user(&users::get_user(pool, user.id).await?);
    Ok(())
}

/// Writes `action` on `user` to the audit log, as the command line's (no actor).
async fn record(pool: &PgPool, action: Action, user: &User, details: serde_json::Value) -> Result<()> {
    Ok(audit::record(pool, None, action, &audit::user_subject(&user.username), details).await?)
}

/// The password on standard input's first line (without its line ending).
fn password_from_stdin(asked: bool) -> Result<Password> {
    if !asked {
        bail!("give --password-stdin and the password on standard input (never on the command line)");
    }
    let mut text = String::new();
    std::io::stdin().read_to_string(&mut text).context("reading the password from standard input")?;
    let line = text.lines().next().unwrap_or_default();
    Ok(Password::parse(line)?)
}

fn print_user(user: &User) {
    println!(
        "{}",
        json!({ "id": user.id, "username": user.username, "display_name": user.display_name,
                "role": user.role, "disabled": user.disabled })
    );
}
