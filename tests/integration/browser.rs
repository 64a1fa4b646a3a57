//! A real browser for the end-to-end tests: Debian's headless Chromium driven through
//! chromedriver by fantoccini (a WebDriver client). Each `Browser` has its own
//! chromedriver on a free port and a fresh profile directory; screenshots go to
//! `target/screenshots/<name>.png`.
//!
//! `PLUMB_CHROMIUM` and `PLUMB_CHROMEDRIVER` override the programs' paths. `.ci/run`
//! installs both (`apt-get install chromium chromium-driver`).

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::actions::{InputSource, KeyAction, KeyActions};
use fantoccini::{elements::Element, Client, ClientBuilder, Locator};
use serde_json::json;

use crate::helpers::repo_root;
use crate::web_app::PASSWORD;

pub struct Browser {
    pub client: Client,
    base: String,
    driver: Child,
    _profile: tempfile::TempDir,
}

fn program(variable: &str, default: &str) -> String {
    std::env::var(variable).unwrap_or_else(|_| default.to_owned())
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("a free port").port()
}

impl Browser {
    /// A headless Chromium whose relative URLs start at `base` (`http://127.0.0.1:PORT`).
    pub async fn start(base: &str) -> Browser {
        Browser::launch(base, None).await
    }

    /// `start`, with the browser in the time zone `tz` (an IANA name: "Asia/Kolkata").
    pub async fn start_in_time_zone(base: &str, tz: &str) -> Browser {
        Browser::launch(base, Some(tz)).await
    }

    async fn launch(base: &str, time_zone: Option<&str>) -> Browser {
        let chromium = program("PLUMB_CHROMIUM", "/usr/bin/chromium");
        let chromedriver = program("PLUMB_CHROMEDRIVER", "chromedriver");
        assert!(
            std::path::Path::new(&chromium).exists(),
            "{chromium} not found: the browser tests need Debian's chromium and chromium-driver \
             (apt-get install chromium chromium-driver), or PLUMB_CHROMIUM/PLUMB_CHROMEDRIVER"
        );
        let port = free_port();
        let mut command = Command::new(&chromedriver);
        // Chromium inherits chromedriver's environment, and takes its time zone from TZ.
        if let Some(tz) = time_zone {
            command.env("TZ", tz);
        }
        let driver = command
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("starting {chromedriver}: {e} (apt-get install chromium-driver)"));
        let profile = tempfile::tempdir().expect("a profile directory");
        let args = [
            "--headless=new".to_owned(),
            "--no-sandbox".into(),
            "--disable-gpu".into(),
            "--disable-background-networking".into(),
            "--no-first-run".into(),
            "--disable-component-update".into(),
            "--disable-sync".into(),
            "--disable-dev-shm-usage".into(),
            "--window-size=1280,1000".into(),
            format!("--user-data-dir={}", profile.path().display()),
        ];
        let mut capabilities = serde_json::Map::new();
        capabilities.insert("goog:chromeOptions".into(), json!({ "binary": chromium, "args": args }));
        let url = format!("http://127.0.0.1:{port}");
        // Two crypto providers are linked into the tests (see Cargo.toml): name one.
        let _ = rustls::crypto::ring::default_provider().install_default();
        // chromedriver takes a moment to listen: retry the session until it does.
        let deadline = Instant::now() + Duration::from_secs(30);
        let client = loop {
            let connected = ClientBuilder::rustls()
                .expect("a WebDriver client")
                .capabilities(capabilities.clone())
                .connect(&url)
                .await;
            match connected {
                Ok(client) => break client,
                Err(e) if Instant::now() > deadline => {
                    panic!("no WebDriver session from {chromedriver}: {e}")
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        };
        Browser { client, base: base.to_owned(), driver, _profile: profile }
    }

    pub async fn goto(&self, path: &str) {
        self.client.goto(&format!("{}{path}", self.base)).await.unwrap_or_else(|e| panic!("GET {path}: {e}"));
    }

    /// The path of the page the browser shows now.
    pub async fn path(&self) -> String {
        self.client.current_url().await.expect("the current URL").path().to_owned()
    }

    /// The element `css`, waiting up to 10 s for it to appear.
    pub async fn find(&self, css: &str) -> Element {
        self.client
            .wait()
            .at_most(Duration::from_secs(10))
            .for_element(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("no element {css} on {}: {e}", self.base))
    }

    /// The visible text of the page's body.
    pub async fn text(&self) -> String {
        self.find("body").await.text().await.expect("the page's text")
    }

    /// Presses `key` wherever the focus is, as a person would (no element targeted);
    /// `fantoccini::key::Key`'s codes name the keys that are not characters.
    pub async fn press(&self, key: char) {
        let actions = KeyActions::new("keyboard".into())
            .then(KeyAction::Down { value: key })
            .then(KeyAction::Up { value: key });
        self.client.perform_actions(actions).await.expect("pressing a key");
    }

    /// The id of the focused element ("" when it has none).
    pub async fn focused_id(&self) -> String {
        let id = self.client.execute("return document.activeElement.id", vec![]).await.expect("the focus");
        id.as_str().unwrap_or_default().to_owned()
    }

    /// Marks the page shown now, so that `next_page` can wait for another one.
    pub async fn mark_page(&self) {
        self.client
            .execute("document.body.setAttribute('data-seen', '')", vec![])
            .await
            .expect("marking the page");
    }

    /// Waits for a page other than the one `mark_page` marked, and returns its path.
    pub async fn next_page(&self) -> String {
        self.find("body:not([data-seen])").await;
        self.path().await
    }

    /// Saves the page as `target/screenshots/<name>.png`.
    pub async fn screenshot(&self, name: &str) {
        let png = self.client.screenshot().await.expect("a screenshot");
        let dir: PathBuf = repo_root().join("target").join("screenshots");
        std::fs::create_dir_all(&dir).expect("creating target/screenshots");
        std::fs::write(dir.join(format!("{name}.png")), png).expect("writing a screenshot");
    }

    /// Logs `username` in through the login form (the test users' password).
    /// Presses "Next task" (or "Start") of `project` on the page shown.
    pub async fn take_next_task(&self, project: i64) {
        let button = format!("li[data-project-id='{project}'] button.next-task");
        self.find(&button).await.click().await.unwrap();
    }

    pub async fn log_in(&self, username: &str) {
        self.goto("/login").await;
        self.find("#username").await.send_keys(username).await.unwrap();
        self.find("#password").await.send_keys(PASSWORD).await.unwrap();
        self.find("form button[type=submit]").await.click().await.unwrap();
        self.find("header").await;
        assert_ne!(self.path().await, "/login", "{username} could not log in");
    }

    pub async fn close(mut self) {
        let _ = self.client.clone().close().await;
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.driver.kill();
    }
}
