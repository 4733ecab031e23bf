//! What the monitor sends out of the machine (alerts to a webhook, log lines to CloudWatch Logs) goes through an
//! outbox: a bounded queue in front of one sender task, so sampling never waits on a slow or unreachable
//! endpoint. A full queue drops the item; the sender counts what it sent and what it gave up on; at the end,
//! [`Outbox::finish`] gives the queue a grace period and accounts for every item taken in.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::mpsc;

/// The sender's tallies, shared with the outbox.
#[derive(Debug, Default)]
pub struct Tally {
    /// Taken into the queue.
    accepted: AtomicU64,
    /// Refused by a full queue.
    full: AtomicU64,
    sent: AtomicU64,
    /// Given up on after every try.
    failed: AtomicU64,
    /// Why the last try that failed did.
    last_error: Mutex<Option<String>>,
}

impl Tally {
    pub fn sent(&self, n: u64) {
        self.sent.fetch_add(n, Ordering::Relaxed);
    }

    /// `n` items given up on, because of `error`.
    pub fn failed(&self, n: u64, error: String) {
        self.failed.fetch_add(n, Ordering::Relaxed);
        if let Ok(mut last) = self.last_error.lock() {
            *last = Some(error);
        }
    }
}

/// What an outbox did, once finished.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Outcome {
    pub sent: u64,
    /// Refused by a full queue, given up on, or still queued when the grace period ended.
    pub dropped: u64,
    pub last_error: Option<String>,
}

/// A bounded queue of `T` and the task that sends them.
#[derive(Debug)]
pub struct Outbox<T> {
    sender: mpsc::Sender<T>,
    tally: Arc<Tally>,
    task: tokio::task::JoinHandle<()>,
}

impl<T: Send + 'static> Outbox<T> {
    /// Starts `send`, which takes the queue's receiving end and reports through the tally, behind a queue of
    /// `capacity` items.
    pub fn start<F, Fut>(capacity: usize, send: F) -> Self
    where
        F: FnOnce(mpsc::Receiver<T>, Arc<Tally>) -> Fut,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let (sender, receiver) = mpsc::channel(capacity);
        let tally = Arc::new(Tally::default());
        let task = tokio::spawn(send(receiver, tally.clone()));
        Self { sender, tally, task }
    }

    /// Queues `item`; a full queue drops it (counted). Never waits.
    pub fn send(&self, item: T) {
        let counter = match self.sender.try_send(item) {
            Ok(()) => &self.tally.accepted,
            Err(_) => &self.tally.full,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// Stops taking items and gives the queued ones up to `grace` to go; what is still queued then is dropped.
    pub async fn finish(self, grace: Duration) -> Outcome {
        drop(self.sender);
        let mut task = self.task;
        if tokio::time::timeout(grace, &mut task).await.is_err() {
            task.abort();
        }
        let load = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let tally = &self.tally;
        let (accepted, sent, failed) = (load(&tally.accepted), load(&tally.sent), load(&tally.failed));
        // Accepted items that neither went out nor failed were still queued when the sender stopped.
        let never_tried = accepted.saturating_sub(sent + failed);
        Outcome {
            sent,
            dropped: load(&tally.full) + failed + never_tried,
            last_error: tally.last_error.lock().ok().and_then(|e| e.clone()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn every_item_is_sent_or_counted_as_dropped() {
        // A sender that sends even numbers, fails odd ones, and stalls on 100.
        let outbox = Outbox::start(8, |mut receiver: mpsc::Receiver<u32>, tally| async move {
            while let Some(n) = receiver.recv().await {
                if n == 100 {
                    tokio::time::sleep(Duration::from_secs(3600)).await;
                }
                if n % 2 == 0 {
                    tally.sent(1);
                } else {
                    tally.failed(1, format!("odd {n}"));
                }
            }
        });
        for n in 0..6 {
            outbox.send(n);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        outbox.send(100);
        // The sender is stuck on 100: the queue fills and the rest are refused.
        for n in 0..20 {
            outbox.send(200 + n);
        }
        let outcome = outbox.finish(Duration::from_millis(100)).await;
        assert_eq!(outcome.sent, 3);
        assert_eq!(outcome.dropped, 3 + 1 + 20, "{outcome:?}");
        assert_eq!(outcome.last_error.as_deref(), Some("odd 5"));
    }
}
