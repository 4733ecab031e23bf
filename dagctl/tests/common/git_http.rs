//! A git repository served over HTTP by a test: git's "dumb" HTTP protocol (static files of a bare repository
//! after `git update-server-info`), each request needing HTTP Basic of `git:TOKEN`.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;

pub const TOKEN: &str = "tok-7f3a9c";

pub fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .args([
            "-c",
            "user.name=qa",
            "-c",
            "user.email=qa@example.invalid",
            "-c",
            "commit.gpgsign=false",
        ])
        .args(args)
        .current_dir(dir)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .output()
        .expect("git is installed (the [git] DAGs folder needs it)");
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// A working repository and the bare one served over HTTP.
pub struct Repo {
    pub work: PathBuf,
    pub served: PathBuf,
}

impl Repo {
    pub fn new(root: &Path) -> Repo {
        let work = root.join("work");
        std::fs::create_dir_all(&work).unwrap();
        git(&work, &["init", "--quiet", "--initial-branch=main"]);
        Repo {
            work,
            served: root.join("served").join("dags.git"),
        }
    }

    /// Commits `text` as dags/pinned.yaml and publishes it; returns the commit.
    pub fn publish(&self, text: &str) -> String {
        self.publish_file("dags/pinned.yaml", text)
    }

    /// Commits `text` as `name` and publishes it; returns the commit.
    pub fn publish_file(&self, name: &str, text: &str) -> String {
        let path = self.work.join(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
        git(&self.work, &["add", "-A"]);
        git(&self.work, &["commit", "--quiet", "-m", "dags"]);
        if !self.served.exists() {
            let parent = self.served.parent().unwrap();
            std::fs::create_dir_all(parent).unwrap();
            git(
                parent,
                &["init", "--quiet", "--bare", "--initial-branch=main", "dags.git"],
            );
        }
        git(&self.work, &["push", "--quiet", self.served.to_str().unwrap(), "main"]);
        git(&self.served, &["update-server-info"]);
        git(&self.work, &["rev-parse", "HEAD"])
    }
}

/// Serves `dir`'s files over HTTP/1.1 on loopback, each request needing `Authorization: Basic` of `git:TOKEN`.
/// Stops when dropped.
pub struct Server {
    pub port: u16,
    stop: Arc<AtomicBool>,
    pub requests: Arc<AtomicUsize>,
}

impl Server {
    pub fn start(dir: PathBuf) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let stop = Arc::new(AtomicBool::new(false));
        let requests = Arc::new(AtomicUsize::new(0));
        let (flag, count) = (Arc::clone(&stop), Arc::clone(&requests));
        let expected = basic_auth();
        std::thread::spawn(move || {
            // Bounded: the test's own lifetime, at most ten minutes.
            let end = std::time::Instant::now() + Duration::from_secs(600);
            while !flag.load(Ordering::Relaxed) && std::time::Instant::now() < end {
                match listener.accept() {
                    Ok((stream, _)) => {
                        count.fetch_add(1, Ordering::Relaxed);
                        let _ = stream.set_nonblocking(false);
                        let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
                        answer(stream, &dir, &expected);
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(20)),
                }
            }
        });
        Server { port, stop, requests }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn answer(stream: std::net::TcpStream, dir: &Path, expected: &str) {
    let mut reader = BufReader::new(stream);
    let mut first = String::new();
    if reader.read_line(&mut first).is_err() {
        return;
    }
    let mut authorized = false;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 || line.trim().is_empty() {
            break;
        }
        if let Some((name, value)) = line.split_once(':') {
            if name.eq_ignore_ascii_case("authorization") && value.trim() == expected {
                authorized = true;
            }
        }
    }
    let path = first.split_whitespace().nth(1).unwrap_or("/");
    let path = path.split('?').next().unwrap_or_default();
    let file = path
        .strip_prefix("/dags.git/")
        .filter(|rest| !rest.split('/').any(|part| part == ".." || part.is_empty()))
        .map(|rest| dir.join(rest));
    let mut stream = reader.into_inner();
    let (status, body) = match file {
        _ if !authorized => ("401 Unauthorized\r\nWWW-Authenticate: Basic realm=\"dags\"", Vec::new()),
        Some(file) if file.is_file() => ("200 OK", std::fs::read(file).unwrap_or_default()),
        _ => ("404 Not Found", Vec::new()),
    };
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: application/octet-stream\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    let _ = stream.write_all(head.as_bytes());
    let _ = stream.write_all(&body);
}

/// The `Authorization` value the server wants.
pub fn basic_auth() -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("git:{TOKEN}"))
    )
}
