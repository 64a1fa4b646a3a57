//! A local S3-compatible server for tests: moto's server mode (`moto[server]` in
//! scripts/requirements-peers.txt, installed into .venv by `make peers`) on a free
//! loopback port, with one bucket, stopped when dropped.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use registry::artifacts::{ArtifactStore, S3Settings, StoreSettings};

use crate::helpers::python;

pub const BUCKET: &str = "plumb-test";

pub struct S3Server {
    child: Child,
    pub endpoint: String,
}

impl S3Server {
    /// Starts the server and creates [`BUCKET`] on it.
    pub fn start() -> S3Server {
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let child = Command::new(python())
            .args(["-m", "moto.server", "-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("moto's server starts (make peers installs moto[server] into .venv)");
        let server = S3Server { child, endpoint: format!("http://127.0.0.1:{port}") };
        let deadline = Instant::now() + Duration::from_secs(60);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "moto's server did not listen on port {port} within 60 s");
            std::thread::sleep(Duration::from_millis(100));
        }
        let (status, body) = server.request("PUT", &format!("/{BUCKET}"), b"");
        assert_eq!(status, 200, "creating the bucket: {body}");
        server
    }

    /// The environment that points plumb's commands at `s3://<bucket>/<prefix>` on it.
    pub fn env(&self, prefix: &str) -> Vec<(&'static str, String)> {
        vec![
            ("PLUMB_ARTIFACTS", format!("s3://{BUCKET}/{prefix}")),
            ("PLUMB_S3_ENDPOINT", self.endpoint.clone()),
            ("PLUMB_S3_ALLOW_HTTP", "true".into()),
            ("AWS_ACCESS_KEY_ID", "plumb".into()),
            ("AWS_SECRET_ACCESS_KEY", "plumb-secret".into()),
            ("AWS_REGION", "us-east-1".into()),
        ]
    }

    /// A store on `s3://<bucket>/<prefix>`, caching in `cache`.
    pub fn store(&self, prefix: &str, cache: &Path) -> ArtifactStore {
        let env = self.env(prefix);
        let var = |name: &str| env.iter().find(|(k, _)| *k == name).map(|(_, v)| v.clone());
        let settings = StoreSettings {
            location: var("PLUMB_ARTIFACTS").unwrap(),
            cache: cache.to_path_buf(),
            s3: S3Settings::from_env(var).unwrap(),
        };
        ArtifactStore::open(&settings).unwrap()
    }

    /// The keys of the bucket's objects, sorted.
    pub fn keys(&self) -> Vec<String> {
        let (status, body) = self.request("GET", &format!("/{BUCKET}?list-type=2"), b"");
        assert_eq!(status, 200, "listing the bucket: {body}");
        let mut keys: Vec<String> = body
            .split("<Key>")
            .skip(1)
            .map(|rest| rest.split("</Key>").next().unwrap().to_string())
            .collect();
        keys.sort();
        keys
    }

    /// Overwrites the object at `key` with `bytes`, behind the store's back, through
    /// boto3 (moto's own dependency): moto refuses an unsigned overwrite of an object.
    pub fn overwrite(&self, key: &str, bytes: &[u8]) {
        let script = "import sys, boto3\n\
            s3 = boto3.client('s3', endpoint_url=sys.argv[1], region_name='us-east-1',\n\
                              aws_access_key_id='plumb', aws_secret_access_key='plumb-secret')\n\
            s3.put_object(Bucket=sys.argv[2], Key=sys.argv[3], Body=sys.stdin.buffer.read())\n";
        let mut child = Command::new(python())
            .args(["-c", script, &self.endpoint, BUCKET, key])
            .stdin(Stdio::piped())
            .spawn()
            .expect("python runs");
        child.stdin.take().unwrap().write_all(bytes).unwrap();
        assert!(child.wait().unwrap().success(), "overwriting {key} through boto3");
    }

    /// One plain HTTP/1.1 request (moto does not check signatures): status and body.
    fn request(&self, method: &str, path: &str, body: &[u8]) -> (u16, String) {
        let address = self.endpoint.strip_prefix("http://").unwrap();
        let mut stream = TcpStream::connect(address).unwrap();
        let head = format!(
            "{method} {path} HTTP/1.1\r\nHost: {address}\r\nContent-Type: application/octet-stream\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        );
        stream.write_all(head.as_bytes()).unwrap();
        stream.write_all(body).unwrap();
        let mut response = Vec::new();
        stream.read_to_end(&mut response).unwrap();
        let response = String::from_utf8_lossy(&response).into_owned();
        let status = response.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
        let body = response.split_once("\r\n\r\n").map_or(String::new(), |(_, b)| b.to_string());
        (status, body)
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
