//! Helpers for tests that drive the real `dagctl` binary: a private data dir, a DAGs folder, free ports, and
//! processes stopped by PID.
#![allow(dead_code)]

use std::io::Read;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_dagctl");

/// A data dir and DAGs folder of one test, optionally on a PostgreSQL database of its own.
pub struct Home {
    pub dir: tempfile::TempDir,
    pub database_url: Option<String>,
    pg_name: Option<String>,
    /// Extra environment of every `dagctl` this home runs.
    pub env: Vec<(String, String)>,
    /// Variables every `dagctl` this home runs goes without (e.g. DAGCTL_DAGS_FOLDER when `[git]` says where).
    pub unset: Vec<&'static str>,
    /// Networks brought up by the helpers below: torn down when the home is dropped, even by a failed test.
    networks: std::cell::RefCell<Vec<String>>,
}

impl Home {
    pub fn new() -> Home {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::create_dir_all(dir.path().join("dags")).unwrap();
        Home {
            dir,
            database_url: None,
            pg_name: None,
            env: Vec::new(),
            unset: Vec::new(),
            networks: Default::default(),
        }
    }

    /// Another data dir and DAGs folder on the same database as `other` (a second engine on another machine,
    /// as far as files go); the database stays `other`'s to drop.
    pub fn sharing(other: &Home) -> Home {
        let mut home = Home::new();
        home.database_url = other.database_url.clone();
        home.env = other.env.clone();
        home
    }

    /// The name of this home's PostgreSQL database.
    pub fn pg_name(&self) -> &str {
        self.pg_name.as_deref().expect("a home made by Home::postgres")
    }

    /// A home whose store is a fresh PostgreSQL database.
    pub fn postgres() -> Home {
        let mut home = Home::new();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let (url, name) = rt.block_on(engine::testing::create_pg_database());
        home.database_url = Some(url);
        home.pg_name = Some(name);
        home
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn dags(&self) -> PathBuf {
        self.dir.path().join("dags")
    }

    pub fn write_dag(&self, name: &str, text: &str) -> PathBuf {
        let path = self.dags().join(name);
        std::fs::write(&path, text).unwrap();
        path
    }

    pub fn command(&self) -> Command {
        let mut command = Command::new(BIN);
        command
            .env("DAGCTL_HOME", self.path())
            .env("DAGCTL_DAGS_FOLDER", self.dags())
            .env("DAGCTL_DAGS_ARE_PAUSED_AT_CREATION", "false")
            .env_remove("DAGCTL_PARALLELISM")
            .envs(self.env.iter().map(|(k, v)| (k, v)));
        for name in &self.unset {
            command.env_remove(name);
        }
        match &self.database_url {
            Some(url) => command.env("DAGCTL_DATABASE_URL", url),
            None => command.env_remove("DAGCTL_DATABASE_URL"),
        };
        command
    }

    /// Runs `dagctl ARGS` to completion.
    pub fn run(&self, args: &[&str]) -> Output {
        let output = self
            .command()
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("run dagctl");
        output
    }

    /// Runs `dagctl ARGS`, which must succeed; returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let output = self.run(args);
        assert!(
            output.status.success(),
            "dagctl {args:?} failed: {}\nstdout: {}",
            stderr(&output),
            stdout(&output)
        );
        stdout(&output)
    }

    /// Runs `dagctl ARGS -o json` and parses stdout.
    pub fn json(&self, args: &[&str]) -> serde_json::Value {
        let mut all: Vec<&str> = args.to_vec();
        all.extend(["-o", "json"]);
        let text = self.ok(&all);
        serde_json::from_str(&text).unwrap_or_else(|err| panic!("not JSON ({err}): {text}"))
    }

    /// Like [`Home::json`], but None when the command fails (e.g. a DAG not loaded yet).
    pub fn try_json(&self, args: &[&str]) -> Option<serde_json::Value> {
        let mut all: Vec<&str> = args.to_vec();
        all.extend(["-o", "json"]);
        let output = self.run(&all);
        if !output.status.success() {
            return None;
        }
        serde_json::from_slice(&output.stdout).ok()
    }

    /// Starts a long-running `dagctl ARGS` (standalone, scheduler); stopped by PID when dropped.
    pub fn spawn(&self, args: &[&str]) -> Proc {
        let log = self.path().join(format!("proc-{}.log", uuid_like()));
        let file = std::fs::File::create(&log).unwrap();
        // In the home as its working dir: its runners inherit it, so the home's end finds any left behind.
        let child = self
            .command()
            .args(args)
            .current_dir(self.path())
            .stdin(Stdio::null())
            .stdout(file.try_clone().unwrap())
            .stderr(file)
            .spawn()
            .expect("spawn dagctl");
        Proc {
            child: Some(child),
            log,
        }
    }

    /// The states of a run's task instances, by task id.
    pub fn states(&self, dag_id: &str, run_id: &str) -> Vec<serde_json::Value> {
        self.json(&["tasks", "states-for-dag-run", dag_id, run_id])
            .as_array()
            .cloned()
            .unwrap_or_default()
    }
}

impl Home {
    /// Tears network `name` down when the home is dropped (a test that fails half-way leaves no node behind).
    pub fn down_at_end(&self, name: &str) {
        self.networks.borrow_mut().push(name.to_string());
    }
}

impl Drop for Home {
    fn drop(&mut self) {
        kill_processes_in(self.path());
        for name in self.networks.take() {
            // Already down when the test ended well: the error is expected and ignored.
            let _ = self
                .command()
                .args(["net", "down", &name])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
        if let Some(name) = self.pg_name.take() {
            if let Ok(rt) = tokio::runtime::Builder::new_current_thread().enable_all().build() {
                rt.block_on(engine::testing::drop_pg_database(&name));
            }
        }
    }
}

/// SIGKILLs, by PID, every process whose working dir is `dir`: the runners an engine of the home left (a runner
/// whose engine stopped for good keeps retrying its report for up to an hour, as after a restart).
fn kill_processes_in(dir: &Path) {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return;
    };
    let me = std::process::id();
    for entry in entries.flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|name| name.parse::<i32>().ok()) else {
            continue;
        };
        if pid as u32 != me && std::fs::read_link(entry.path().join("cwd")).is_ok_and(|cwd| cwd == dir) {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL);
        }
    }
}

fn uuid_like() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    format!("{}-{}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed))
}

/// A background dagctl process.
pub struct Proc {
    pub child: Option<Child>,
    pub log: PathBuf,
}

impl Proc {
    pub fn pid(&self) -> i32 {
        self.child.as_ref().map(|c| c.id() as i32).unwrap_or(0)
    }

    pub fn output(&self) -> String {
        let mut text = String::new();
        if let Ok(mut file) = std::fs::File::open(&self.log) {
            let _ = file.read_to_string(&mut text);
        }
        text
    }

    /// SIGKILL, as a crash.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM and wait (bounded), then SIGKILL.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(child.id() as i32),
                nix::sys::signal::Signal::SIGTERM,
            );
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Runs `future` to its end on a runtime of its own (for the store helpers of `engine::testing`).
pub fn block_on<T>(future: impl std::future::Future<Output = T>) -> T {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(future)
}

pub fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).to_string()
}

pub fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).to_string()
}

/// A TCP port free right now on 127.0.0.1.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Polls `check` until it returns Some, for at most `limit`.
pub fn wait_for<T>(limit: Duration, what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(value) = check() {
            return value;
        }
        if Instant::now() > deadline {
            panic!("timed out after {limit:?} waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A minimal HTTP GET on loopback: (status, body).
pub fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
    use std::io::Write;
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let status = response.split_whitespace().nth(1)?.parse().ok()?;
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    Some((status, body))
}

/// True when a process with this pid exists (and is not a zombie).
pub fn pid_alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !stat
            .rsplit_once(')')
            .map(|(_, rest)| rest.trim_start().starts_with('Z'))
            .unwrap_or(true),
        Err(_) => false,
    }
}

/// An HTTP answer: status, headers (lower-case names), body.
pub type HttpReply = (u16, Vec<(String, String)>, Vec<u8>);

/// One HTTP/1.1 request on loopback with `Connection: close`: (status, headers with lower-case names, body).
/// A body gets a Content-Length; a chunked answer is decoded. Panics when the server cannot be reached.
pub fn http(port: u16, method: &str, path: &str, headers: &[(&str, &str)], body: Option<&[u8]>) -> HttpReply {
    try_http(port, method, path, headers, body).unwrap_or_else(|err| panic!("{method} {path} on port {port}: {err}"))
}

/// Like [`http`], but an error when the exchange fails.
pub fn try_http(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&[u8]>,
) -> std::io::Result<HttpReply> {
    use std::io::{Error, ErrorKind, Write};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    stream.set_write_timeout(Some(Duration::from_secs(30)))?;
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n");
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    if let Some(body) = body {
        head.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes())?;
    if let Some(body) = body {
        // A server may answer (e.g. 413) before reading all of a big body; its answer still counts.
        let _ = stream.write_all(body);
    }
    let mut raw = Vec::new();
    if let Err(err) = stream.read_to_end(&mut raw) {
        if raw.is_empty() {
            return Err(err);
        }
    }
    let bad = |what: &str| {
        Error::new(
            ErrorKind::InvalidData,
            format!("{what}: {}", String::from_utf8_lossy(&raw)),
        )
    };
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| bad("no end of headers"))?;
    let head = String::from_utf8_lossy(&raw[..split]).to_string();
    let mut lines = head.split("\r\n");
    let status: u16 = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| bad("no status line"))?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let rest = &raw[split + 4..];
    let chunked = headers
        .iter()
        .any(|(n, v)| n == "transfer-encoding" && v.to_ascii_lowercase().contains("chunked"));
    let body = if chunked {
        decode_chunked(rest).ok_or_else(|| bad("bad chunked body"))?
    } else {
        rest.to_vec()
    };
    Ok((status, headers, body))
}

/// Decodes a `Transfer-Encoding: chunked` body (trailers ignored).
pub fn decode_chunked(mut data: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let line_end = data.windows(2).position(|w| w == b"\r\n")?;
        let size_text = std::str::from_utf8(&data[..line_end]).ok()?;
        let size = usize::from_str_radix(size_text.split(';').next()?.trim(), 16).ok()?;
        data = &data[line_end + 2..];
        if size == 0 {
            return Some(out);
        }
        out.extend_from_slice(data.get(..size)?);
        data = data.get(size + 2..)?;
    }
}

/// An API token of the local `admin` that a standalone or webserver on `port` created in `home`.
pub fn admin_token(home: &Home, port: u16) -> String {
    let password = std::fs::read_to_string(home.path().join("standalone_admin_password.txt")).unwrap();
    let login = format!(r#"{{"username":"admin","password":"{}"}}"#, password.trim());
    let (status, _, body) = http(
        port,
        "POST",
        "/auth/token",
        &[("Content-Type", "application/json")],
        Some(login.as_bytes()),
    );
    assert_eq!(status, 201, "{}", String::from_utf8_lossy(&body));
    serde_json::from_slice::<serde_json::Value>(&body).unwrap()["access_token"]
        .as_str()
        .unwrap()
        .to_string()
}

/// A client binary for a test: `$variable` (e.g. `DAGCTL_GETH`), else `<$DAGCTL_CLIENTS_BIN>/<program>` (the bin
/// dir `scripts/install-clients.sh` prints). A missing client fails the test, saying how to get it.
pub fn client_binary(program: &str, variable: &str) -> PathBuf {
    if let Some(path) = std::env::var_os(variable).filter(|p| !p.is_empty()) {
        let path = PathBuf::from(path);
        assert!(path.exists(), "{variable}={} does not exist", path.display());
        return path;
    }
    if let Some(dir) = std::env::var_os("DAGCTL_CLIENTS_BIN").filter(|p| !p.is_empty()) {
        let path = PathBuf::from(dir).join(program);
        if path.exists() {
            return path;
        }
    }
    panic!(
        "{program} is needed by this test: set {variable}, or DAGCTL_CLIENTS_BIN to the bin dir printed by `scripts/install-clients.sh CACHE_DIR` (./scripts/test.sh does both)"
    )
}

/// `dagctl load` with `args`, its summary (`-o json`) and its stderr.
pub fn load(home: &Home, args: &[&str]) -> (serde_json::Value, String) {
    let output = home.run(&[&["load"], args, &["-o", "json"]].concat());
    let err = stderr(&output);
    assert!(output.status.success(), "{}\n{err}", stdout(&output));
    (serde_json::from_str(&stdout(&output)).unwrap(), err)
}

/// The interpreter of the venv `scripts/install-pytools.sh` makes; the tests that need it fail without it.
pub fn python() -> String {
    match std::env::var("DAGCTL_PYTHON") {
        Ok(py) if !py.is_empty() => {
            assert!(
                std::path::Path::new(&py).exists(),
                "DAGCTL_PYTHON={py} does not exist: run ./scripts/test.sh, or set DAGCTL_PYTHON=$(scripts/install-pytools.sh ~/.cache/dagctl/py)"
            );
            py
        }
        _ => panic!(
            "DAGCTL_PYTHON is not set: run ./scripts/test.sh (it installs the pinned airflow client and schemathesis), \
             or set DAGCTL_PYTHON=$(scripts/install-pytools.sh ~/.cache/dagctl/py)"
        ),
    }
}

/// `dagctl net up` of an anvil network of `nodes` nodes (1 s blocks) named `name`; panics with its stderr on
/// failure.
pub fn anvil_network(home: &Home, name: &str, nodes: u32) {
    home.down_at_end(name);
    let up = home
        .command()
        .env("DAGCTL_ANVIL", client_binary("anvil", "DAGCTL_ANVIL"))
        .args([
            "net",
            "up",
            "--client",
            "anvil",
            "--consensus",
            "interval",
            "--block-time",
            "1",
        ])
        .args(["--nodes", &nodes.to_string(), "--name", name])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(up.status.success(), "{}", stderr(&up));
}

/// `dagctl net up` of a geth 1.13 Clique network of `nodes` signers (1 s blocks) named `name`.
pub fn geth_clique_network(home: &Home, name: &str, nodes: u32) {
    geth_clique_network_with_members(home, name, nodes, 0);
}

/// Like [`geth_clique_network`], with `members` non-sealing nodes (`member-N`) besides the signers.
pub fn geth_clique_network_with_members(home: &Home, name: &str, nodes: u32, members: u32) {
    geth_clique_network_with(home, name, nodes, &["--members", &members.to_string()]);
}

/// Like [`geth_clique_network`], with more `net up` flags (`--account ADDRESS=WEI`, `--members N`).
pub fn geth_clique_network_with(home: &Home, name: &str, nodes: u32, extra: &[&str]) {
    home.down_at_end(name);
    let up = home
        .command()
        .env("DAGCTL_GETH", client_binary("geth", "DAGCTL_GETH"))
        .args([
            "net",
            "up",
            "--client",
            "geth",
            "--consensus",
            "clique",
            "--block-time",
            "1",
        ])
        .args(["--nodes", &nodes.to_string(), "--name", name])
        .args(extra)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(up.status.success(), "{}", stderr(&up));
}

/// The log of `dag`.`task` in the output of `dagctl dags test` (from its `--- dag.task try` header to the
/// next header).
pub fn section<'a>(text: &'a str, dag: &str, task: &str) -> &'a str {
    let head = format!("--- {dag}.{task} try ");
    let start = text.find(&head).unwrap_or_else(|| panic!("no log of {task}: {text}"));
    let rest = &text[start + head.len()..];
    let end = rest
        .find("\n--- ")
        .map(|e| start + head.len() + e)
        .unwrap_or(text.len());
    &text[start..end]
}

/// A JSON-RPC call to the node at `url` (`http://127.0.0.1:PORT`): its `result`, or `None` when it fails.
pub fn rpc(url: &str, method: &str, params: serde_json::Value) -> Option<serde_json::Value> {
    let port: u16 = url.rsplit_once(':')?.1.trim_end_matches('/').parse().ok()?;
    let body = serde_json::json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params}).to_string();
    let (status, _, answer) = try_http(
        port,
        "POST",
        "/",
        &[("Content-Type", "application/json")],
        Some(body.as_bytes()),
    )
    .ok()?;
    if status != 200 {
        return None;
    }
    let value: serde_json::Value = serde_json::from_slice(&answer).ok()?;
    value.get("result").cloned()
}
