//! `plumb users`: a team's people from the command line, the first admin included.

use labeling::domain::Password;
use labeling::users;
use serde_json::Value;

use crate::db::with_db;
use crate::helpers::{json_lines, plumb_in};

#[test]
fn a_team_is_managed_from_the_command_line_and_a_disabled_user_cannot_log_in() {
    with_db(|db| async move {
        let url = db.url();
        let env = [("DATABASE_URL", url.as_str())];
        let users_cmd = |args: &[&str], stdin: &str| plumb_in(&[&["users"], args].concat(), &env, stdin);
        let ok = |args: &[&str], stdin: &str| -> Value {
            let out = users_cmd(args, stdin);
            assert!(out.status.success(), "users {args:?}: {}", String::from_utf8_lossy(&out.stderr));
            json_lines(&out.stdout).pop().expect("a JSON line")
        };
        let refused = |args: &[&str], stdin: &str| -> String {
            let out = users_cmd(args, stdin);
            assert!(!out.status.success(), "users {args:?} should fail");
            String::from_utf8_lossy(&out.stderr).into_owned()
        };
        let logs_in = |name: &'static str, password: &'static str| {
            let pool = db.pool.clone();
            async move { users::authenticate(&pool, name, &Password::parse(password).unwrap()).await.is_ok() }
        };

        // A password never comes from the command line.
        let e = refused(&["add", "--username", "ada", "--role", "admin"], "");
        assert!(e.contains("--password-stdin"), "{e}");
        let ada =
            ok(&["add", "--username", "ada", "--role", "admin", "--password-stdin"], "first admin pw\n");
        assert_eq!((ada["username"].as_str(), ada["role"].as_str()), (Some("ada"), Some("admin")), "{ada}");
        assert!(logs_in("ada", "first admin pw").await);

        // Bad input is named, and nothing is written.
        let e = refused(&["add", "--username", "bob", "--role", "boss", "--password-stdin"], "long enough\n");
        assert!(e.contains("boss"), "{e}");
        let e = refused(
            &["add", "--username", "ada", "--role", "annotator", "--password-stdin"],
            "long enough\n",
        );
        assert!(e.contains("taken"), "{e}");
        let e = refused(&["add", "--username", "bob", "--role", "annotator", "--password-stdin"], "short\n");
        assert!(e.to_lowercase().contains("password"), "{e}");
        let e = refused(&["disable", "ghost"], "");
        assert!(e.contains("ghost"), "{e}");
        assert_eq!(users::list_users(&db.pool).await.unwrap().len(), 1);

        ok(&["add", "--username", "ann", "--role", "annotator", "--password-stdin"], "annotator pw\n");
        assert_eq!(ok(&["role", "ann", "researcher"], "")["role"], "researcher");
        ok(&["passwd", "ann", "--password-stdin"], "a new password\n");
        assert!(!logs_in("ann", "annotator pw").await && logs_in("ann", "a new password").await);
        assert_eq!(ok(&["disable", "ann"], "")["disabled"], true);
        assert!(!logs_in("ann", "a new password").await, "a disabled user cannot log in");
        assert_eq!(ok(&["enable", "ann"], "")["disabled"], false);
        assert!(logs_in("ann", "a new password").await);

        let out = users_cmd(&["list"], "");
        let names: Vec<String> =
            json_lines(&out.stdout).iter().map(|u| u["username"].as_str().unwrap().to_owned()).collect();
        assert_eq!(names, ["ada", "ann"]);
    });
}

/// The lines `plumb serve` prints up to the one saying where it serves; the server is
/// stopped then.
fn serve_banner(url: &str) -> Vec<String> {
    use std::io::{BufRead, BufReader};
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_plumb"))
        .arg("serve")
        .envs([("DATABASE_URL", url), ("PLUMB_PORT", "0"), ("PLUMB_HOST", "127.0.0.1")])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("plumb serve starts");
    let mut lines = Vec::new();
    for line in BufReader::new(child.stdout.take().unwrap()).lines() {
        let line = line.unwrap();
        let serving = line.starts_with("plumb is serving");
        lines.push(line);
        if serving {
            break;
        }
    }
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(lines.last().is_some_and(|l| l.starts_with("plumb is serving")), "{lines:?}");
    lines
}

#[test]
fn a_fresh_server_says_how_to_make_the_first_admin_until_there_is_one() {
    with_db(|db| async move {
        let url = db.url();
        let banner = serve_banner(&url).join("\n");
        assert!(banner.contains("plumb users add --username NAME --role admin --password-stdin"), "{banner}");
        let env = [("DATABASE_URL", url.as_str())];
        let out = plumb_in(
            &["users", "add", "--username", "ada", "--role", "admin", "--password-stdin"],
            &env,
            "pw of ada\n",
        );
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let banner = serve_banner(&url).join("\n");
        assert!(!banner.contains("No admin yet"), "{banner}");
    });
}
