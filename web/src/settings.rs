//! Typed settings: defaults, then a TOML file, then `PLUMB_*` environment variables.

use std::fmt;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// A value that must never be printed (a session key).
#[derive(Clone, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    /// Address to listen on.
    pub host: IpAddr,
    /// Port; 0 picks a free one (tests).
    pub port: u16,
    /// Key that encrypts and signs session cookies: at least 64 bytes, as 128 hex digits.
    /// Without it a random key is made at start, and sessions end with the process.
    pub session_key: Option<Secret>,
    /// Send cookies only over HTTPS. Leave off for http://127.0.0.1.
    pub secure_cookies: bool,
    /// The largest request body accepted (uploads of prompts), in bytes.
    pub max_body_bytes: usize,
    /// Failed logins an account may have before each further one doubles a wait (1 s,
    /// 2 s, … at most `login_max_wait_s`); a browser that logged in as it before is not
    /// held. Failures are remembered for `login_window_s`.
    pub login_attempts: u32,
    pub login_window_s: u64,
    pub login_max_wait_s: u64,
    /// Failed logins one client address may have within `login_window_s`.
    pub login_attempts_per_address: u32,
    /// The proxies (addresses or CIDR blocks, e.g. "10.0.0.0/8") whose `X-Forwarded-For`
    /// names the client; from anyone else the header is ignored.
    pub trusted_proxies: Vec<String>,
    /// A login session ends after this long without a request (seconds).
    pub session_idle_s: u64,
    /// A login session ends this long after logging in, however busy (seconds).
    pub session_absolute_s: u64,
    /// The artifact store that model versions' checkpoints live in (downloads are read
    /// from it): a directory or `s3://bucket/prefix`. None: `artifacts/` in plumb's state
    /// directory.
    pub artifacts: Option<PathBuf>,
    /// How to reach the bucket when `artifacts` is one: from the environment only
    /// (PLUMB_S3_ENDPOINT, AWS_REGION, AWS_ACCESS_KEY_ID, ...), never from the file.
    #[serde(skip)]
    pub s3: registry::artifacts::S3Settings,
    /// Who may read `/metrics` (a `[metrics]` table).
    pub metrics: MetricsSettings,
}

/// Who may read `/metrics`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MetricsSettings {
    /// The bearer token asked of a scraper. None: `/metrics` answers only requests from
    /// this machine (loopback).
    pub token: Option<Secret>,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            host: IpAddr::from([127, 0, 0, 1]),
            port: 8080,
            session_key: None,
            secure_cookies: false,
            max_body_bytes: 16 * 1024 * 1024,
            login_attempts: 5,
            login_window_s: 300,
            login_max_wait_s: 900,
            login_attempts_per_address: 50,
            trusted_proxies: Vec::new(),
            session_idle_s: 12 * 3600,
            session_absolute_s: 7 * 24 * 3600,
            artifacts: None,
            s3: registry::artifacts::S3Settings::default(),
            metrics: MetricsSettings::default(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    #[error("{0}: {1}")]
    Read(String, #[source] std::io::Error),
    #[error("{0}: {1}")]
    Parse(String, #[source] toml::de::Error),
    #[error("environment variable {0}: {1}")]
    Env(&'static str, String),
}

impl Settings {
    /// Defaults, then `file` (a TOML table of the fields above) if given, then the
    /// environment (`PLUMB_HOST`, `PLUMB_PORT`, `PLUMB_SESSION_KEY`, `PLUMB_SECURE_COOKIES`,
    /// `PLUMB_ARTIFACTS`, `PLUMB_METRICS_TOKEN`).
    pub fn load(
        file: Option<&Path>,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Settings, SettingsError> {
        let mut settings = match file {
            Some(path) => {
                let name = path.display().to_string();
                let text = std::fs::read_to_string(path).map_err(|e| SettingsError::Read(name.clone(), e))?;
                toml::from_str(&text).map_err(|e| SettingsError::Parse(name, e))?
            }
            None => Settings::default(),
        };
        if let Some(host) = env("PLUMB_HOST") {
            settings.host = host.parse().map_err(|e| SettingsError::Env("PLUMB_HOST", format!("{e}")))?;
        }
        if let Some(port) = env("PLUMB_PORT") {
            settings.port = port.parse().map_err(|e| SettingsError::Env("PLUMB_PORT", format!("{e}")))?;
        }
        if let Some(key) = env("PLUMB_SESSION_KEY") {
            settings.session_key = Some(Secret::new(key));
        }
        if let Some(secure) = env("PLUMB_SECURE_COOKIES") {
            settings.secure_cookies =
                secure.parse().map_err(|e| SettingsError::Env("PLUMB_SECURE_COOKIES", format!("{e}")))?;
        }
        if let Some(dir) = env("PLUMB_ARTIFACTS") {
            settings.artifacts = Some(PathBuf::from(dir));
        }
        if let Some(token) = env("PLUMB_METRICS_TOKEN") {
            settings.metrics.token = Some(Secret::new(token));
        }
        settings.s3 = registry::artifacts::S3Settings::from_env(&env)
            .map_err(|e| SettingsError::Env("PLUMB_S3_*", e.to_string()))?;
        Ok(settings)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A `web.toml` holding `text`, in a folder of its own for the test `name`.
    fn settings_file(name: &str, text: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("plumb-settings-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("web.toml");
        std::fs::write(&file, text).unwrap();
        file
    }

    #[test]
    fn the_environment_overrides_the_file_and_the_file_the_defaults() {
        let file = settings_file("good", "port = 9000\nlogin_attempts = 3\n");
        let env = |k: &str| (k == "PLUMB_PORT").then(|| "9100".to_string());
        let s = Settings::load(Some(&file), env).unwrap();
        assert_eq!(
            (s.port, s.login_attempts, s.max_body_bytes),
            (9100, 3, Settings::default().max_body_bytes)
        );
    }

    #[test]
    fn a_session_key_never_prints() {
        let s = Settings { session_key: Some(Secret::new("abc123")), ..Settings::default() };
        assert!(!format!("{s:?}").contains("abc123"));
    }

    #[test]
    fn an_unknown_field_in_the_file_is_an_error_naming_it() {
        let file = settings_file("bad", "prot = 9000\n");
        let e = Settings::load(Some(&file), |_| None).unwrap_err().to_string();
        assert!(e.contains("prot") && e.contains("web.toml"), "{e}");
    }
}
