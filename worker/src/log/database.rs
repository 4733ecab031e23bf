//! Task logs in the database (`task_logs = "database"`): what every scheduler and webserver of an
//! installation reads, whichever server a runner's lines reached. The [`TaskLogs`] trait is blocking (file I/O
//! behind it); each call here runs its query on a short-lived thread that blocks on the engine's runtime, so
//! it may be called from anywhere, async code included.

use engine::store::{LogRef, Store};

use super::{page, LogLine, LogPage, TaskLogs, TryKey};

/// Task logs kept in the store.
#[derive(Clone)]
pub struct DbLogs {
    store: Store,
    runtime: tokio::runtime::Handle,
}

impl DbLogs {
    /// Logs in `store`, queried on `runtime` (the engine's).
    pub fn new(store: Store, runtime: tokio::runtime::Handle) -> DbLogs {
        DbLogs { store, runtime }
    }

    /// Runs a query to its end from blocking code: on a worker of a multi-threaded runtime through
    /// `block_in_place` (the worker hands its other tasks over first, so the runtime keeps polling sockets),
    /// elsewhere (spawn_blocking threads, plain threads) directly. A current-thread runtime cannot wait on
    /// itself: an error there, not a hang.
    fn run<T>(&self, query: impl std::future::Future<Output = engine::Result<T>>) -> std::io::Result<T> {
        use tokio::runtime::{Handle, RuntimeFlavor};
        let outcome = match Handle::try_current() {
            Ok(current) if current.runtime_flavor() == RuntimeFlavor::CurrentThread => {
                return Err(std::io::Error::other(
                    "database task logs need a multi-threaded runtime to be read from async code",
                ))
            }
            Ok(_) => tokio::task::block_in_place(|| self.runtime.block_on(query)),
            Err(_) => self.runtime.block_on(query),
        };
        outcome.map_err(std::io::Error::other)
    }
}

fn log_ref(key: &TryKey) -> LogRef<'_> {
    LogRef {
        dag_id: &key.dag_id,
        run_id: &key.run_id,
        task_id: &key.task_id,
        map_index: key.map_index,
        try_number: key.try_number,
    }
}

impl TaskLogs for DbLogs {
    fn append(&self, key: &TryKey, lines: &[LogLine]) -> std::io::Result<()> {
        if lines.is_empty() {
            return Ok(());
        }
        let mut body = String::new();
        for line in lines {
            body.push_str(&serde_json::to_string(line).map_err(std::io::Error::other)?);
            body.push('\n');
        }
        self.run(self.store.append_log(log_ref(key), &body))
    }

    fn read_from(&self, key: &TryKey, from: u64, max: u64) -> std::io::Result<LogPage> {
        let chunks = self.run(self.store.read_log(log_ref(key), from, max))?;
        if chunks.is_empty() {
            // Nothing (yet) past `from`; a position past the end comes back to it, as with files.
            let len = self.run(self.store.log_length(log_ref(key)))?.unwrap_or(0);
            return Ok(LogPage {
                next: from.min(len),
                ..Default::default()
            });
        }
        Ok(page_of(&chunks, from, max, false))
    }

    fn read_tail(&self, key: &TryKey, max: u64) -> std::io::Result<LogPage> {
        let Some(len) = self.run(self.store.log_length(log_ref(key)))? else {
            return Ok(LogPage::default());
        };
        let start = len.saturating_sub(max);
        let chunks = self.run(self.store.read_log_tail(log_ref(key), max))?;
        Ok(page_of(&chunks, start, max, true))
    }

    fn exists(&self, key: &TryKey) -> bool {
        match self.run(self.store.log_length(log_ref(key))) {
            Ok(len) => len.is_some(),
            Err(err) => {
                tracing::warn!(error = %err, "cannot tell whether a task log exists in the database");
                false
            }
        }
    }

    fn describe(&self, key: &TryKey) -> String {
        format!(
            "the database log of {}/{}/{} try {}",
            key.dag_id, key.run_id, key.task_id, key.try_number
        )
    }
}

/// The bytes `from..from + max` of the log the chunks belong to, as a page of complete lines.
fn page_of(chunks: &[(u64, String)], from: u64, max: u64, tail: bool) -> LogPage {
    let mut buf: Vec<u8> = Vec::new();
    for (start, body) in chunks {
        let bytes = body.as_bytes();
        let skip = from.saturating_sub(*start) as usize;
        if skip >= bytes.len() {
            continue;
        }
        let room = max.saturating_sub(buf.len() as u64) as usize;
        if room == 0 {
            break;
        }
        let part = &bytes[skip..];
        buf.extend_from_slice(&part[..part.len().min(room)]);
    }
    let start = chunks.first().map_or(from, |(first, _)| from.max(*first));
    // Chunks hold whole lines: bytes that begin at a chunk's start begin a line.
    let aligned = chunks.first().is_some_and(|(first, _)| *first >= from);
    page(&buf, start, tail && !aligned)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn pages_and_tails_read_as_from_a_file_on_either_database() {
        for db in [
            engine::testing::TestDb::sqlite().await,
            engine::testing::TestDb::postgres().await,
        ] {
            let logs = DbLogs::new(db.store.clone(), tokio::runtime::Handle::current());
            let files_dir = tempfile::tempdir().unwrap();
            let files = super::super::FileLogs::new(files_dir.path().to_path_buf());
            let key = TryKey::new("d", "r", "t", -1, 1);
            assert!(!logs.exists(&key));
            assert_eq!(logs.read_tail(&key, 100).unwrap(), LogPage::default());
            // Batches as a runner sends them, the same into both.
            for batch in 0..4 {
                let lines: Vec<LogLine> = (0..5)
                    .map(|i| LogLine::now("info", "x", &format!("line {}", batch * 5 + i)))
                    .collect();
                logs.append(&key, &lines).unwrap();
                files.append(&key, &lines).unwrap();
            }
            assert!(logs.exists(&key));
            let all = logs.read_from(&key, 0, 1 << 20).unwrap();
            assert_eq!(all, files.read_from(&key, 0, 1 << 20).unwrap());
            assert_eq!(all.lines.len(), 20);
            // Pages cut mid-chunk, read on from where the last ended.
            let mut offset = 0;
            let mut seen = Vec::new();
            for _ in 0..100 {
                let page = logs.read_from(&key, offset, 230).unwrap();
                assert_eq!(page, files.read_from(&key, offset, 230).unwrap(), "at {offset}");
                if page.lines.is_empty() {
                    break;
                }
                seen.extend(page.lines.iter().map(|l| super::super::parse_line(l).event));
                offset = page.next;
            }
            assert_eq!(seen.len(), 20);
            assert_eq!(seen[13], "line 13");
            for max in [150, 500, 1 << 20] {
                assert_eq!(
                    logs.read_tail(&key, max).unwrap(),
                    files.read_tail(&key, max).unwrap(),
                    "tail {max}"
                );
            }
            // Another try is another log.
            assert!(!logs.exists(&TryKey::new("d", "r", "t", -1, 2)));
            // A position past the end comes back to the end.
            assert_eq!(logs.read_from(&key, all.next + 500, 100).unwrap().next, all.next);
            // More chunks than one query returns: the tail is still the newest lines, and paging reaches them.
            let long = TryKey::new("d", "r", "long", -1, 1);
            for i in 0..2100 {
                logs.append(&long, &[LogLine::now("info", "x", &format!("one {i}"))])
                    .unwrap();
            }
            let tail = logs.read_tail(&long, 4 << 20).unwrap();
            assert_eq!(super::super::parse_line(tail.lines.last().unwrap()).event, "one 2099");
            let mut offset = 0;
            let mut count = 0;
            for _ in 0..10 {
                let page = logs.read_from(&long, offset, 4 << 20).unwrap();
                if page.lines.is_empty() {
                    break;
                }
                count += page.lines.len();
                offset = page.next;
            }
            assert_eq!(count, 2100);
        }
    }
}
