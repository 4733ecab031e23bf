//! The engine link: a Unix socket in the data dir (`run/engine.sock`, mode 0600) through which other `dagctl`
//! processes of the same data dir reach a running engine without a timer. On SQLite there is no `NOTIFY`, so
//! a CLI that changes something (trigger, clear, mark) tells the engine here, and `--wait` hears here when its
//! run changes. On PostgreSQL the database's notifications do both, from any host; the link is not needed.
//!
//! One line per connection from the client: `publish CHANGE[,CHANGE...]` (put on the engine's change bus: its
//! scheduler wakes, its watchers hear), `watch` (the engine then writes one change per line as they happen), or
//! `run PK` (the engine answers one JSON line: the run's [`RunStatus`] as `{"Ok": ...}`, or `{"Err": message}`), or
//! `trigger JSON` (a [`Trigger`]: the engine creates the run, answers one JSON line, an [`Answer`], and with
//! `watch` set then writes changes as for `watch`, from before the run existed). On both backends a CLI
//! trigger thus needs no database connection and no timer before its first task starts.

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::bail;
use engine::store::{Backend, Change, Changes, Store};
use scheduler::dag_processor::DagProcessor;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::unix::OwnedWriteHalf;
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::Mutex;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::trigger::{RunStatus, Trigger, Triggered};

/// Longest first line a client may send.
const MAX_LINE: usize = 64 * 1024;
/// At most this many clients at once (each `watch` holds one).
const MAX_CLIENTS: usize = 256;
/// How long a CLI waits for the engine to answer a trigger.
const ANSWER_TIME: Duration = Duration::from_secs(60);

/// The engine's answer to `trigger`.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Answer {
    Run(Triggered),
    /// What the CLI prints after `error: `.
    Error(String),
    /// The engine works on another database or DAGs folder than the CLI: the CLI creates the run itself.
    Elsewhere,
}

/// What the engine side of the link works with.
struct Engine {
    store: Store,
    setup: String,
    /// Reads the DAGs folder before a trigger, when it changed (a DAG file written just before
    /// `dags trigger` is triggered as written, as when the CLI reads the folder itself).
    processor: Mutex<DagProcessor>,
}

/// Where the engine of data dir `home` listens.
pub fn socket_path(home: &Path) -> PathBuf {
    home.join("run").join("engine.sock")
}

/// Serves the link of this engine until `stop`; the socket file is removed at the end.
pub async fn serve(config: &Config, store: Store, stop: CancellationToken) -> anyhow::Result<()> {
    let path = socket_path(&config.home);
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    // A file left by an engine that was killed is stale: this engine takes the address.
    let _ = std::fs::remove_file(&path);
    let listener = UnixListener::bind(&path)?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
    let clients = std::sync::Arc::new(tokio::sync::Semaphore::new(MAX_CLIENTS));
    let engine = std::sync::Arc::new(Engine {
        store,
        setup: crate::trigger::setup(config),
        processor: Mutex::new(crate::runtime::dag_processor(config)),
    });
    let served = path.clone();
    tokio::spawn(async move {
        loop {
            let stream = tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok((stream, _)) => stream,
                    Err(err) => {
                        tracing::warn!(error = %err, "engine link: accept failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                },
                _ = stop.cancelled() => break,
            };
            let Ok(permit) = std::sync::Arc::clone(&clients).try_acquire_owned() else {
                continue;
            };
            let engine = std::sync::Arc::clone(&engine);
            let stop = stop.clone();
            tokio::spawn(async move {
                let _permit = permit;
                client(stream, &engine, stop).await;
            });
        }
        let _ = std::fs::remove_file(&served);
    });
    Ok(())
}

async fn client(stream: UnixStream, engine: &Engine, stop: CancellationToken) {
    let (read, mut write) = stream.into_split();
    let mut reader = BufReader::new(read).take(MAX_LINE as u64);
    let mut line = String::new();
    if reader.read_line(&mut line).await.is_err() {
        return;
    }
    let line = line.trim();
    if let Some(list) = line.strip_prefix("publish ") {
        let changes: Vec<Change> = list.split(',').filter_map(Change::decode).collect();
        engine.store.publish(&changes);
    } else if line == "watch" {
        stream_changes(engine.store.subscribe(), &mut write, stop).await;
    } else if let Some(pk) = line.strip_prefix("run ") {
        let status = match pk.parse::<i64>() {
            Ok(pk) => crate::trigger::RunStatus::read(&engine.store, pk)
                .await
                .map_err(|err| crate::one_line(&err)),
            Err(_) => Err(format!("`run` wants a run's primary key, not `{pk}`")),
        };
        if let Ok(mut text) = serde_json::to_string(&status) {
            text.push('\n');
            let _ = write.write_all(text.as_bytes()).await;
        }
    } else if let Some(request) = line.strip_prefix("trigger ") {
        let changes = engine.store.subscribe();
        let (answer, watch) = match serde_json::from_str::<Trigger>(request) {
            Ok(trigger) => (take_trigger(engine, &trigger).await, trigger.watch),
            Err(err) => (
                Answer::Error(format!("the engine cannot read this trigger: {err}")),
                false,
            ),
        };
        let created = matches!(answer, Answer::Run(_));
        let Ok(mut text) = serde_json::to_string(&answer) else {
            return;
        };
        text.push('\n');
        if write.write_all(text.as_bytes()).await.is_ok() && created && watch {
            stream_changes(changes, &mut write, stop).await;
        }
    }
}

async fn take_trigger(engine: &Engine, trigger: &Trigger) -> Answer {
    if trigger.setup != engine.setup {
        return Answer::Elsewhere;
    }
    let created = async {
        engine.processor.lock().await.process(&engine.store).await?;
        trigger.create(&engine.store).await
    };
    match created.await {
        Ok(run) => {
            tracing::info!(dag_id = %run.dag_id, run_id = %run.run_id, user = ?trigger.user, "run triggered over the engine link");
            Answer::Run(run)
        }
        Err(err) => Answer::Error(crate::one_line(&err)),
    }
}

/// Writes each change as a line until the client goes or the engine stops.
async fn stream_changes(mut changes: Changes, write: &mut OwnedWriteHalf, stop: CancellationToken) {
    loop {
        let change = tokio::select! {
            change = changes.next() => change,
            _ = stop.cancelled() => return,
        };
        if write
            .write_all(format!("{}\n", change.encode()).as_bytes())
            .await
            .is_err()
        {
            return;
        }
    }
}

/// A run as the engine at `socket` reads it (`run PK`).
pub async fn run_status(socket: &Path, pk: i64) -> anyhow::Result<RunStatus> {
    let asked = async {
        let mut stream = UnixStream::connect(socket).await?;
        stream.write_all(format!("run {pk}\n").as_bytes()).await?;
        let mut answer = String::new();
        BufReader::new(stream).read_line(&mut answer).await?;
        anyhow::Ok(answer)
    };
    let answer = match tokio::time::timeout(ANSWER_TIME, asked).await {
        Ok(Ok(answer)) => answer,
        Ok(Err(err)) => bail!("cannot ask the running engine about run {pk}: {err}"),
        Err(_) => bail!("the running engine did not say how run {pk} is within {ANSWER_TIME:?}"),
    };
    match serde_json::from_str::<Result<RunStatus, String>>(answer.trim()) {
        Ok(Ok(status)) => Ok(status),
        Ok(Err(message)) => bail!("{message}"),
        Err(_) => bail!("the running engine gave no answer about run {pk} (did it stop?)"),
    }
}

/// Hands `trigger` to the running engine of this data dir; with `watch`, the answer comes with the source of the
/// run's changes. None when no engine runs here, or it works on another database or DAGs folder: the caller
/// then creates the run itself.
pub async fn trigger(config: &Config, trigger: &Trigger) -> anyhow::Result<Option<(Triggered, ChangeSource)>> {
    let Ok(mut stream) = UnixStream::connect(socket_path(&config.home)).await else {
        return Ok(None);
    };
    let request = format!("trigger {}\n", serde_json::to_string(trigger)?);
    // An engine that did not take the whole line did nothing with it.
    if stream.write_all(request.as_bytes()).await.is_err() {
        return Ok(None);
    }
    let mut reader = BufReader::new(stream);
    let mut answer = String::new();
    let lost = || {
        format!(
            "the running engine did not answer the trigger of `{}` (`dagctl dags list-runs {}` shows whether the run was created)",
            trigger.dag_id, trigger.dag_id
        )
    };
    match tokio::time::timeout(ANSWER_TIME, reader.read_line(&mut answer)).await {
        Ok(Ok(n)) if n > 0 => {}
        _ => bail!("{}", lost()),
    }
    match serde_json::from_str::<Answer>(answer.trim()) {
        Ok(Answer::Run(run)) => Ok(Some((run, ChangeSource::Link(reader.lines())))),
        Ok(Answer::Error(message)) => bail!("{message}"),
        Ok(Answer::Elsewhere) => Ok(None),
        Err(_) => bail!("{}", lost()),
    }
}

/// Makes the changes this CLI commits on SQLite reach the running engine of its data dir, if there is one.
pub fn relay_changes(config: &Config, store: &Store) {
    if store.backend() != Backend::Sqlite {
        return;
    }
    let path = socket_path(&config.home);
    store.set_relay(std::sync::Arc::new(move |changes: &[Change]| {
        let list: Vec<String> = changes.iter().map(Change::encode).collect();
        // No engine (no socket, or nobody listening): nothing to tell; it reads the store when it starts.
        if let Ok(mut stream) = std::os::unix::net::UnixStream::connect(&path) {
            let _ = stream.set_write_timeout(Some(Duration::from_secs(1)));
            let _ = stream.write_all(format!("publish {}\n", list.join(",")).as_bytes());
        }
    }));
}

/// Where a waiting CLI hears of changes: the engine link (a running engine of this data dir: it also tells of
/// new log lines), else the database's notifications (PostgreSQL, any host), else nothing (then it looks on a
/// timer).
pub enum ChangeSource {
    Store(Changes),
    Link(tokio::io::Lines<BufReader<UnixStream>>),
    None,
}

impl ChangeSource {
    pub async fn open(config: &Config, store: &Store) -> ChangeSource {
        if let Ok(mut stream) = UnixStream::connect(socket_path(&config.home)).await {
            if stream.write_all(b"watch\n").await.is_ok() {
                return ChangeSource::Link(BufReader::new(stream).lines());
            }
        }
        if store.backend() == Backend::Postgres {
            return ChangeSource::Store(store.subscribe());
        }
        ChangeSource::None
    }

    /// Whether changes arrive as they happen (else the caller looks on a short timer).
    pub fn is_live(&self) -> bool {
        !matches!(self, ChangeSource::None)
    }

    /// Returns when `wanted` says a change matters (a source that breaks gives `Resync`), or when the fallback
    /// time has passed: `live` when the source tells changes as they happen, `polling` otherwise.
    pub async fn wait(&mut self, live: Duration, polling: Duration, wanted: impl Fn(&Change) -> bool) {
        let fallback = if self.is_live() { live } else { polling };
        let deadline = tokio::time::Instant::now() + fallback;
        loop {
            tokio::select! {
                change = self.next() => {
                    if wanted(&change) {
                        return;
                    }
                }
                _ = tokio::time::sleep_until(deadline) => return,
            }
        }
    }

    /// The next change; `Resync` when the source broke (it is then closed: the caller falls back to its
    /// timer).
    pub async fn next(&mut self) -> Change {
        match self {
            ChangeSource::Store(changes) => changes.next().await,
            ChangeSource::Link(lines) => loop {
                match lines.next_line().await {
                    Ok(Some(line)) => {
                        if let Some(change) = Change::decode(&line) {
                            return change;
                        }
                    }
                    _ => {
                        *self = ChangeSource::None;
                        return Change::Resync;
                    }
                }
            },
            ChangeSource::None => std::future::pending().await,
        }
    }
}
