//! The executor's one watch on dagctl's pods in its namespace, and a tick for what no event tells: pods pending
//! too long, tries overrunning their deadline, pods whose deletion the watch missed, and the clean-up of
//! finished pods by policy.

use std::collections::HashSet;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{ListParams, LogParams};
use kube::runtime::watcher::{self, watcher, Event};
use kube::runtime::WatchStreamExt;

use super::pod::{BASE_CONTAINER, MANAGED_BY};
use super::status::{self, PodState};
use super::{timed, Inner};

/// How often pending and overrunning pods are checked.
const TICK: Duration = Duration::from_secs(1);
/// How often finished pods are cleaned up.
const SWEEP: Duration = Duration::from_secs(30);
/// A succeeded pod of another scheduler is left this long for it to see, then deleted by policy.
const SUCCEEDED_GRACE: chrono::TimeDelta = chrono::TimeDelta::seconds(60);
/// Lines of a failed pod's own log copied into its try's log.
const LOG_TAIL: i64 = 30;

pub(super) async fn run(inner: Weak<Inner>) {
    let Some(api) = inner.upgrade().map(|inner| inner.pods.clone()) else {
        return;
    };
    let selector = format!("{}={}", MANAGED_BY.0, MANAGED_BY.1);
    let stream = watcher(api, watcher::Config::default().labels(&selector)).default_backoff();
    let mut stream = std::pin::pin!(stream);
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut listing: Option<HashSet<String>> = None;
    let mut swept = Instant::now();
    let mut failing_since: Option<Instant> = None;
    loop {
        tokio::select! {
            event = stream.next() => {
                let Some(inner) = inner.upgrade() else { return };
                match event {
                    None => return,
                    Some(Err(error)) => {
                        // Backed off and retried by the stream; said once a minute at most.
                        if failing_since.is_none_or(|at| at.elapsed() > Duration::from_secs(60)) {
                            tracing::warn!(%error, "the watch on task pods failed; retrying");
                            failing_since = Some(Instant::now());
                        }
                    }
                    Some(Ok(Event::Init)) => listing = Some(HashSet::new()),
                    Some(Ok(Event::InitApply(pod))) => {
                        if let Some(listing) = listing.as_mut() {
                            listing.insert(status::name_of(&pod));
                        }
                        inner.seen(&pod);
                        inner.observe(&pod).await;
                    }
                    Some(Ok(Event::InitDone)) => {
                        let listed = listing.take().unwrap_or_default();
                        if let Ok(mut known) = inner.known.lock() {
                            known.retain(|name, _| listed.contains(name));
                        }
                        inner.synced.store(true, Ordering::Release);
                        failing_since = None;
                    }
                    Some(Ok(Event::Apply(pod))) => {
                        inner.seen(&pod);
                        inner.observe(&pod).await;
                    }
                    Some(Ok(Event::Delete(pod))) => {
                        if let Ok(mut known) = inner.known.lock() {
                            known.remove(&status::name_of(&pod));
                        }
                        inner.deleted(&pod);
                    }
                }
            }
            _ = tick.tick() => {
                let Some(inner) = inner.upgrade() else { return };
                inner.check_tracked().await;
                if swept.elapsed() >= SWEEP {
                    swept = Instant::now();
                    inner.sweep().await;
                }
            }
        }
    }
}

impl Inner {
    fn seen(&self, pod: &Pod) {
        if let (Some(ids), Ok(mut known)) = (status::try_of(pod), self.known.lock()) {
            known.insert(status::name_of(pod), ids);
        }
    }

    /// The tracked try `pod` runs, unless it is already ending.
    fn tracked_for(&self, pod: &Pod) -> Option<super::Tracked> {
        let (ti_id, try_number) = status::try_of(pod)?;
        self.tracked(ti_id)
            .filter(|tracked| tracked.ti.try_number == try_number && tracked.pod == status::name_of(pod))
    }

    /// Marks a tracked try as ending for `why` (so later events of its pod do nothing); false if it already was.
    fn start_ending(&self, ti_id: i64, why: &str) -> bool {
        let Ok(mut running) = self.running.lock() else {
            return false;
        };
        match running.get_mut(&ti_id) {
            Some(tracked) if tracked.ending.is_none() => {
                tracked.ending = Some(why.to_string());
                true
            }
            _ => false,
        }
    }

    /// Acts on a pod's new state.
    pub(super) async fn observe(self: &Arc<Self>, pod: &Pod) {
        let name = status::name_of(pod);
        let state = status::state(pod);
        let Some(tracked) = self.tracked_for(pod) else {
            // Another scheduler's pod, or one whose try ended: only the clean-up policy applies.
            if matches!(state, PodState::Succeeded(_)) && self.options.delete_succeeded && self.owned_here(pod) {
                self.delete_pod(&name, Duration::ZERO).await;
            }
            return;
        };
        let ti_id = tracked.ti.id;
        if let Ok(mut running) = self.running.lock() {
            if let Some(entry) = running.get_mut(&ti_id) {
                entry.created = true;
                entry.pending = matches!(state, PodState::Pending(_));
            }
        }
        // Ending already (stopped by dagctl): its end, now seen, ends the try for the reason it was stopped.
        if let Some(why) = tracked.ending.as_ref().filter(|_| !tracked.collecting) {
            if matches!(state, PodState::Succeeded(_) | PodState::Failed(_)) {
                self.finish(ti_id, why.clone());
            }
            return;
        }
        match state {
            PodState::Pending(_) | PodState::Running => {}
            PodState::Succeeded(detail) => {
                if self.start_ending(ti_id, &detail) {
                    self.finish(ti_id, detail);
                    if self.options.delete_succeeded {
                        self.delete_pod(&name, Duration::ZERO).await;
                    }
                }
            }
            PodState::Failed(detail) => {
                if self.start_ending(ti_id, &detail) {
                    if let Ok(mut running) = self.running.lock() {
                        if let Some(entry) = running.get_mut(&ti_id) {
                            entry.collecting = true;
                        }
                    }
                    let inner = Arc::clone(self);
                    tokio::spawn(async move {
                        inner.note(&tracked.ti, "error", &detail);
                        inner.copy_log_tail(&tracked.ti, &name).await;
                        inner.finish(ti_id, detail);
                    });
                }
            }
            PodState::Hopeless(detail) => {
                if self.start_ending(ti_id, &detail) {
                    self.note(&tracked.ti, "error", &detail);
                    self.delete_pod(&name, Duration::ZERO).await;
                    self.finish(ti_id, detail);
                }
            }
        }
    }

    /// Whether this scheduler is the one its labels name (a succeeded pod is deleted by its own scheduler
    /// first; the sweep deletes the others' after a grace period).
    fn owned_here(&self, pod: &Pod) -> bool {
        let ours = super::pod::safe_label(&self.options.scheduler_id);
        pod.metadata
            .labels
            .as_ref()
            .and_then(|labels| labels.get(super::pod::LABEL_SCHEDULER))
            .is_some_and(|label| *label == ours)
    }

    /// A pod is gone: its try ends unless its runner reported first (the scheduler then ignores the event).
    fn deleted(&self, pod: &Pod) {
        let Some(tracked) = self.tracked_for(pod) else { return };
        let name = status::name_of(pod);
        let detail = match (&tracked.ending, status::state(pod)) {
            (Some(why), _) => why.clone(),
            (None, PodState::Succeeded(detail) | PodState::Failed(detail)) => detail,
            (None, _) => format!("its pod {name} was deleted before it ended"),
        };
        if tracked.ending.is_none() {
            self.note(&tracked.ti, "warning", &detail);
        }
        self.finish(tracked.ti.id, detail);
    }

    /// Pods pending too long, tries past their deadline, and pods that vanished without the watch telling.
    pub(super) async fn check_tracked(self: &Arc<Self>) {
        let tracked: Vec<super::Tracked> = match self.running.lock() {
            Ok(running) => running.values().cloned().collect(),
            Err(_) => return,
        };
        let synced = self.synced.load(Ordering::Acquire);
        for entry in tracked {
            let ti_id = entry.ti.id;
            if entry.collecting {
                continue;
            }
            if let Some(why) = &entry.ending {
                // Ending by deletion: the pod's end, or its absence should the Delete event never come, ends the
                // try; a delete that did not take is sent again.
                if entry.since.elapsed() > Duration::from_secs(10) {
                    match timed(self.pods.get_opt(&entry.pod)).await {
                        Ok(None) => self.finish(ti_id, why.clone()),
                        Ok(Some(pod))
                            if matches!(status::state(&pod), PodState::Succeeded(_) | PodState::Failed(_)) =>
                        {
                            self.finish(ti_id, why.clone())
                        }
                        Ok(Some(_)) => {
                            self.touch(ti_id);
                            self.delete_pod(&entry.pod, self.options.kill_grace).await;
                        }
                        Err(_) => {}
                    }
                }
                continue;
            }
            if entry.deadline.is_some_and(|deadline| Instant::now() > deadline) {
                let why = format!(
                    "its pod {} ran past the task's execution_timeout and was stopped",
                    entry.pod
                );
                if self.start_ending(ti_id, &why) {
                    self.note(&entry.ti, "error", &why);
                    self.touch(ti_id);
                    self.delete_pod(&entry.pod, self.options.kill_grace).await;
                }
                continue;
            }
            if entry.created && entry.pending && entry.since.elapsed() > self.options.pending_timeout {
                let reason = match timed(self.pods.get_opt(&entry.pod)).await {
                    Ok(Some(pod)) => match status::state(&pod) {
                        PodState::Pending(Some(reason)) => format!(" ({reason})"),
                        PodState::Pending(None) => String::new(),
                        // It moved on meanwhile: acted on as the watch would.
                        _ => {
                            self.observe(&pod).await;
                            continue;
                        }
                    },
                    Ok(None) => String::new(),
                    // An error is not an answer: the pod may be running.
                    Err(_) => continue,
                };
                let why = format!(
                    "its pod {} was still pending after {}s{reason}",
                    entry.pod,
                    self.options.pending_timeout.as_secs()
                );
                if self.start_ending(ti_id, &why) {
                    self.note(&entry.ti, "error", &why);
                    self.delete_pod(&entry.pod, Duration::ZERO).await;
                    self.finish(ti_id, why);
                }
                continue;
            }
            let known = self.known.lock().map(|k| k.contains_key(&entry.pod)).unwrap_or(true);
            if synced
                && entry.created
                && !known
                && entry.since.elapsed() > Duration::from_secs(3)
                && self.pod_absent(&entry.pod).await
            {
                let why = format!("its pod {} is gone (deleted outside dagctl?)", entry.pod);
                if self.start_ending(ti_id, &why) {
                    self.note(&entry.ti, "warning", &why);
                    self.finish(ti_id, why);
                }
            }
        }
    }

    /// Restarts a tracked try's clock (for the wait on its pod's deletion).
    fn touch(&self, ti_id: i64) {
        if let Ok(mut running) = self.running.lock() {
            if let Some(entry) = running.get_mut(&ti_id) {
                entry.since = Instant::now();
            }
        }
    }

    /// Whether the API server says the pod does not exist (an error is not an answer).
    async fn pod_absent(&self, name: &str) -> bool {
        matches!(timed(self.pods.get_opt(name)).await, Ok(None))
    }

    /// Copies the end of a pod's own log (what its runner printed before it could report, or could not send)
    /// into its try's log.
    async fn copy_log_tail(&self, ti: &engine::store::TiRow, name: &str) {
        let params = LogParams {
            container: Some(BASE_CONTAINER.into()),
            tail_lines: Some(LOG_TAIL),
            ..LogParams::default()
        };
        match tokio::time::timeout(Duration::from_secs(10), self.pods.logs(name, &params)).await {
            Ok(Ok(text)) if !text.trim().is_empty() => {
                self.note(ti, "info", &format!("the last lines of pod {name}'s own log:"));
                for line in text.lines() {
                    self.note(ti, "info", line);
                }
            }
            Ok(Ok(_)) => {}
            Ok(Err(err)) => self.note(ti, "warning", &format!("pod {name}'s own log could not be read: {err}")),
            Err(_) => self.note(
                ti,
                "warning",
                &format!("pod {name}'s own log could not be read in 10 s"),
            ),
        }
    }

    /// Deletes finished pods by policy: succeeded ones (after a grace period when another scheduler made
    /// them), failed ones once `keep_failed` has passed.
    pub(super) async fn sweep(&self) {
        let selector = format!("{}={}", MANAGED_BY.0, MANAGED_BY.1);
        let Ok(list) = timed(self.pods.list(&ListParams::default().labels(&selector))).await else {
            return;
        };
        let now = chrono::Utc::now();
        let keep_failed = chrono::TimeDelta::from_std(self.options.keep_failed).unwrap_or(chrono::TimeDelta::MAX);
        for pod in list.items {
            if self.tracked_for(&pod).is_some() {
                continue;
            }
            let age = status::ended_at(&pod).map(|at| now - at).unwrap_or_default();
            let pending_limit =
                chrono::TimeDelta::from_std(self.options.pending_timeout).unwrap_or(chrono::TimeDelta::MAX);
            let expired = match status::state(&pod) {
                PodState::Succeeded(_) => self.options.delete_succeeded && age > SUCCEEDED_GRACE,
                PodState::Failed(_) => age > keep_failed,
                // A pod of this scheduler that never started and whose try ended (its deletion did not take).
                PodState::Pending(_) | PodState::Hopeless(_) => self.owned_here(&pod) && age > pending_limit,
                PodState::Running => false,
            };
            if expired && pod.metadata.deletion_timestamp.is_none() {
                self.delete_pod(&status::name_of(&pod), Duration::ZERO).await;
            }
        }
    }
}
