//! Change events: what a committed write changed, so that schedulers, `--wait` and the UI react at once
//! instead of on a timer. In one process they travel on a broadcast bus; on PostgreSQL they are also sent with
//! `NOTIFY` inside the writing transaction (delivered at commit, dropped on rollback) and heard by every other
//! process that listens. A listener that loses its connection reconnects and tells its subscribers to look at
//! everything (`Change::Resync`), so a notification lost meanwhile costs one extra look, never a stuck run.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use sqlx::{Any, Transaction};
use tokio::sync::broadcast;

use crate::state::RunState;
use crate::store::{Backend, Store};
use crate::Result;

/// The PostgreSQL notification channel.
pub const CHANNEL: &str = "dagctl_events";
/// `application_name` of listening connections (operators can tell them apart in `pg_stat_activity`).
pub const LISTENER_APPLICATION: &str = "dagctl_listen";
/// Events kept for a subscriber that falls behind; past that it gets a `Resync`.
const BUS_CAPACITY: usize = 4096;

/// One change a write committed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// A run was created (manual, scheduled, backfill).
    RunCreated(i64),
    /// A queued run started.
    RunStarted(i64),
    /// Task instances of a run changed state (made ready, claimed, started): schedulers may claim them.
    TasksChanged(i64),
    /// A try of a run ended: the run needs evaluation.
    TryEnded(i64),
    /// A run ended (or was marked) in this state.
    RunEnded(i64, RunState),
    /// Log lines were added to a try of this task instance (told in this process and over the engine link;
    /// not sent through the database).
    Log(i64),
    /// Events may have been missed (a listener reconnected, a subscriber fell behind): look at everything.
    Resync,
}

impl Change {
    /// The run it is about (None for `Resync` and `Log`).
    pub fn run_pk(&self) -> Option<i64> {
        match *self {
            Change::RunCreated(pk)
            | Change::RunStarted(pk)
            | Change::TasksChanged(pk)
            | Change::TryEnded(pk)
            | Change::RunEnded(pk, _) => Some(pk),
            Change::Resync | Change::Log(_) => None,
        }
    }

    /// Whether someone watching run `run_pk` should look again (a change to it, or a possible miss).
    pub fn concerns_run(&self, run_pk: i64) -> bool {
        match self {
            Change::Resync => true,
            Change::Log(_) => false,
            change => change.run_pk() == Some(run_pk),
        }
    }

    /// The wire form: `created:12`, `ended:12:success`, `resync`.
    pub fn encode(&self) -> String {
        match self {
            Change::RunCreated(pk) => format!("created:{pk}"),
            Change::RunStarted(pk) => format!("started:{pk}"),
            Change::TasksChanged(pk) => format!("tasks:{pk}"),
            Change::TryEnded(pk) => format!("try:{pk}"),
            Change::RunEnded(pk, state) => format!("ended:{pk}:{state}"),
            Change::Log(ti) => format!("log:{ti}"),
            Change::Resync => "resync".into(),
        }
    }

    /// Reads [`Change::encode`]'s form; None for anything else.
    pub fn decode(text: &str) -> Option<Change> {
        let mut parts = text.trim().split(':');
        let kind = parts.next()?;
        if kind == "resync" {
            return Some(Change::Resync);
        }
        let pk: i64 = parts.next()?.parse().ok()?;
        let change = match kind {
            "created" => Change::RunCreated(pk),
            "started" => Change::RunStarted(pk),
            "tasks" => Change::TasksChanged(pk),
            "try" => Change::TryEnded(pk),
            "ended" => Change::RunEnded(pk, parts.next()?.parse().ok()?),
            "log" => Change::Log(pk),
            _ => return None,
        };
        parts.next().is_none().then_some(change)
    }
}

/// The bus of one store handle (shared by its clones).
pub(crate) struct Bus {
    /// Tells this process's notifications from others' (they already went on the local bus).
    origin: String,
    sender: broadcast::Sender<Change>,
    /// The database URL, for the listening connection; None on SQLite.
    listen_url: Option<String>,
    listening: Mutex<bool>,
    /// Also told of every change this process commits (a CLI on SQLite tells the running engine).
    relay: Mutex<Option<Relay>>,
}

/// Where committed changes are also sent (see [`Store::set_relay`]).
pub type Relay = Arc<dyn Fn(&[Change]) + Send + Sync>;

impl Bus {
    pub(crate) fn new(backend: Backend, url: &str) -> Arc<Bus> {
        let (sender, _) = broadcast::channel(BUS_CAPACITY);
        Arc::new(Bus {
            origin: uuid::Uuid::new_v4().simple().to_string()[..12].to_string(),
            sender,
            listen_url: (backend == Backend::Postgres).then(|| url.to_string()),
            listening: Mutex::new(false),
            relay: Mutex::new(None),
        })
    }
}

/// A subscription to a store's changes.
pub struct Changes {
    receiver: broadcast::Receiver<Change>,
}

impl Changes {
    /// The next change (a subscriber that fell behind gets `Resync`).
    pub async fn next(&mut self) -> Change {
        match self.receiver.recv().await {
            Ok(change) => change,
            Err(broadcast::error::RecvError::Lagged(_)) => Change::Resync,
            Err(broadcast::error::RecvError::Closed) => std::future::pending().await,
        }
    }

    /// Takes every change already waiting, without waiting; returns how many there were (a subscriber that
    /// looks at everything anyway needs one wake-up for many changes).
    pub fn drain(&mut self) -> usize {
        let mut taken = 0;
        loop {
            match self.receiver.try_recv() {
                Ok(_) | Err(broadcast::error::TryRecvError::Lagged(_)) => taken += 1,
                Err(_) => return taken,
            }
        }
    }
}

impl Store {
    /// Subscribes to the changes this process commits and, on PostgreSQL, those other processes commit (the
    /// first subscription opens the listening connection).
    pub fn subscribe(&self) -> Changes {
        let receiver = self.bus.sender.subscribe();
        if let Some(url) = &self.bus.listen_url {
            if let Ok(mut listening) = self.bus.listening.lock() {
                if !*listening {
                    *listening = true;
                    tokio::spawn(listen(url.clone(), Arc::clone(&self.bus)));
                }
            }
        }
        Changes { receiver }
    }

    /// Puts changes heard elsewhere (another process's relay) on this process's bus.
    pub fn publish(&self, changes: &[Change]) {
        for change in changes {
            let _ = self.bus.sender.send(*change);
        }
    }

    /// Sends `changes` with the transaction (PostgreSQL `NOTIFY`, delivered at commit). Call [`Store::emit`]
    /// after the commit.
    pub(crate) async fn announce(&self, tx: &mut Transaction<'static, Any>, changes: &[Change]) -> Result<()> {
        if changes.is_empty() || self.backend != Backend::Postgres {
            return Ok(());
        }
        // A notification payload holds at most 8,000 bytes.
        let mut payload = String::new();
        for change in changes {
            let text = change.encode();
            if payload.len() + text.len() + self.bus.origin.len() + 2 > 7_900 {
                self.notify(tx, &payload).await?;
                payload.clear();
            }
            if !payload.is_empty() {
                payload.push(',');
            }
            payload.push_str(&text);
        }
        self.notify(tx, &payload).await
    }

    async fn notify(&self, tx: &mut Transaction<'static, Any>, payload: &str) -> Result<()> {
        sqlx::query("SELECT pg_notify($1, $2)")
            .bind(CHANNEL)
            .bind(format!("{};{payload}", self.bus.origin))
            .execute(&mut **tx)
            .await?;
        Ok(())
    }

    /// Tells this process's subscribers what a committed write changed, and the relay if one is set.
    pub(crate) fn emit(&self, changes: &[Change]) {
        if changes.is_empty() {
            return;
        }
        self.publish(changes);
        let relay = self.bus.relay.lock().ok().and_then(|r| r.clone());
        if let Some(relay) = relay {
            relay(changes);
        }
    }

    /// Sends every change this handle (and its clones) commits to `relay` too, after the commit.
    pub fn set_relay(&self, relay: Relay) {
        if let Ok(mut slot) = self.bus.relay.lock() {
            *slot = Some(relay);
        }
    }
}

/// Listens on PostgreSQL for other processes' changes, reconnecting after a drop, for the life of the process.
/// A listening connection that cannot be opened (e.g. behind a pooler in transaction mode) is logged once;
/// subscribers then rely on their timers.
async fn listen(url: String, bus: Arc<Bus>) {
    use sqlx::postgres::PgListener;
    let url = with_application_name(&url);
    let mut warned = false;
    let mut delay = Duration::from_millis(500);
    loop {
        let opened = async {
            let mut listener = PgListener::connect(&url).await?;
            listener.listen(CHANNEL).await?;
            Ok::<_, sqlx::Error>(listener)
        }
        .await;
        let mut listener = match opened {
            Ok(listener) => listener,
            Err(err) => {
                if !warned {
                    tracing::warn!(error = %err, "cannot LISTEN for changes on PostgreSQL; waking on timers until it can");
                    warned = true;
                }
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(10));
                continue;
            }
        };
        if warned {
            tracing::info!("listening for changes on PostgreSQL again");
        }
        warned = false;
        delay = Duration::from_millis(500);
        // Whatever happened while not listening is looked at once.
        let _ = bus.sender.send(Change::Resync);
        loop {
            match listener.try_recv().await {
                Ok(Some(notification)) => {
                    let Some((origin, changes)) = notification.payload().split_once(';') else {
                        continue;
                    };
                    if origin == bus.origin {
                        continue;
                    }
                    for change in changes.split(',').filter_map(Change::decode) {
                        let _ = bus.sender.send(change);
                    }
                }
                Ok(None) => {
                    // The connection dropped; the next call reconnects and listens again.
                    tracing::info!("the PostgreSQL LISTEN connection dropped; listening again");
                    let _ = bus.sender.send(Change::Resync);
                }
                Err(err) => {
                    tracing::debug!(error = %err, "the LISTEN connection failed; opening a new one");
                    let _ = bus.sender.send(Change::Resync);
                    break;
                }
            }
        }
    }
}

fn with_application_name(url: &str) -> String {
    if url.contains("application_name=") {
        return url.to_string();
    }
    let separator = if url.contains('?') { '&' } else { '?' };
    format!("{url}{separator}application_name={LISTENER_APPLICATION}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changes_round_trip_their_wire_form() {
        for change in [
            Change::RunCreated(1),
            Change::RunStarted(2),
            Change::TasksChanged(3),
            Change::TryEnded(4),
            Change::RunEnded(5, RunState::Success),
            Change::RunEnded(6, RunState::Failed),
            Change::Log(7),
            Change::Resync,
        ] {
            assert_eq!(Change::decode(&change.encode()), Some(change));
        }
        for bad in [
            "",
            "created",
            "created:x",
            "ended:1",
            "ended:1:nope",
            "created:1:2",
            "other:1",
        ] {
            assert_eq!(Change::decode(bad), None, "{bad}");
        }
        assert_eq!(
            with_application_name("postgres://u@h/db"),
            "postgres://u@h/db?application_name=dagctl_listen"
        );
        assert_eq!(
            with_application_name("postgres://u@h/db?sslmode=disable"),
            "postgres://u@h/db?sslmode=disable&application_name=dagctl_listen"
        );
    }
}
