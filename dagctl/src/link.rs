//! The engine link: a Unix socket in the data dir (`run/engine.sock`, mode 0600) through which other `dagctl`
//! processes of the same data dir reach a running engine without a timer. On SQLite there is no `NOTIFY`, so
//! a CLI that changes something (trigger, clear, mark) tells the engine here, and `--wait` hears here when its
//! run changes. On PostgreSQL the database's notifications do both, from any host; the link is not needed.
//!
//! One line per connection from the client: `publish CHANGE[,CHANGE...]` (put on the engine's change bus: its
//! scheduler wakes, its watchers hear), or `watch` (the engine then writes one change per line as they happen).

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use engine::store::{Backend, Change, Changes, Store};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio_util::sync::CancellationToken;

use crate::config::Config;

/// Longest first line a client may send.
const MAX_LINE: usize = 64 * 1024;
/// At most this many clients at once (each `watch` holds one).
const MAX_CLIENTS: usize = 256;

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
            let store = store.clone();
            let stop = stop.clone();
            tokio::spawn(async move {
                let _permit = permit;
                client(stream, store, stop).await;
            });
        }
        let _ = std::fs::remove_file(&served);
    });
    Ok(())
}

async fn client(stream: UnixStream, store: Store, stop: CancellationToken) {
    let (read, mut write) = stream.into_split();
    let mut reader = BufReader::new(read).take(MAX_LINE as u64);
    let mut line = String::new();
    if reader.read_line(&mut line).await.is_err() {
        return;
    }
    let line = line.trim();
    if let Some(list) = line.strip_prefix("publish ") {
        let changes: Vec<Change> = list.split(',').filter_map(Change::decode).collect();
        store.publish(&changes);
    } else if line == "watch" {
        let mut changes = store.subscribe();
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
