//! A running `certman serve` for the end-to-end tests, and plain HTTP/1.1 to talk to it.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::Env;

/// A running `certman serve`, its stderr collected.
pub struct Daemon {
    pub child: Child,
    pub port: u16,
    log: Arc<Mutex<String>>,
}

impl Daemon {
    pub fn start(env: &Env, listen: &str) -> Daemon {
        Daemon::start_with(env, &[&format!("listen={listen}")], &[])
    }

    /// `certman serve ARGS…` with extra environment variables.
    pub fn start_with(env: &Env, args: &[&str], vars: &[(&str, &str)]) -> Daemon {
        let mut command = env.command(&[&["serve"], args].concat());
        command.env("CERTMAN_LOG", "info");
        for (k, v) in vars {
            command.env(k, v);
        }
        let mut child = command
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start certman serve");
        let log = Arc::new(Mutex::new(String::new()));
        let stderr = child.stderr.take().expect("stderr");
        let sink = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let mut l = sink.lock().unwrap();
                l.push_str(&line);
                l.push('\n');
            }
        });
        let mut d = Daemon {
            child,
            port: 0,
            log,
        };
        let text = d.wait_for_log("listening on ", Duration::from_secs(30));
        let addr = text
            .lines()
            .find_map(|l| l.split("listening on ").nth(1))
            .expect("listening line")
            .trim();
        d.port = addr
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("no port in {addr:?}"));
        d
    }

    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// Waits until the log contains `needle`; returns the log.
    pub fn wait_for_log(&mut self, needle: &str, timeout: Duration) -> String {
        let start = Instant::now();
        loop {
            let text = self.log();
            if text.contains(needle) {
                return text;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("certman serve exited ({status}) before logging {needle:?}:\n{text}");
            }
            assert!(
                start.elapsed() < timeout,
                "certman serve did not log {needle:?} within {timeout:?}:\n{text}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn get(&self, path: &str) -> (u16, String, Vec<u8>) {
        http_get(self.port, path)
    }

    /// SIGTERM; requires a clean exit; returns the log.
    pub fn stop(mut self) -> String {
        let pid = self.child.id().to_string();
        let st = std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("kill");
        assert!(st.success());
        let start = Instant::now();
        let status = loop {
            if let Some(s) = self.child.try_wait().expect("wait") {
                break s;
            }
            assert!(
                start.elapsed() < Duration::from_secs(40),
                "serve did not stop on SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(50));
        };
        std::thread::sleep(Duration::from_millis(100));
        let log = self.log();
        assert!(status.success(), "serve exited with {status}:\n{log}");
        assert!(log.contains("stopped"), "{log}");
        log
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The `reasons` of a `/health` answer, as (reason, CA) pairs.
pub fn health_reasons(v: &serde_json::Value) -> Vec<(String, String)> {
    v["reasons"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|r| {
                    (
                        r["reason"].as_str().unwrap_or("").to_owned(),
                        r["ca"].as_str().unwrap_or("").to_owned(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

/// A plain HTTP/1.1 GET: (status, headers, body).
pub fn http_get(port: u16, path: &str) -> (u16, String, Vec<u8>) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).expect("read response");
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("end of headers");
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let body = raw[split + 4..].to_vec();
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .expect("status code");
    (status, head, body)
}

/// A port that is free now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}
