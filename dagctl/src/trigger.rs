//! A manual run from `dagctl dags trigger`. When an engine of the same data dir is running, the CLI hands the
//! trigger to it over the engine link ([`crate::link`]): the engine reads the DAGs folder if it changed,
//! creates the run and wakes its scheduler in the same process, so the CLI opens no database connection before
//! the run exists and the first task starts milliseconds later on SQLite and PostgreSQL alike. With no engine
//! (or one of another database or DAGs folder), the CLI does the same steps itself.

use anyhow::{anyhow, Result};
use chrono::Utc;
use engine::runs::{ManualRunId, RunKind, RunRequest, TriggeredBy};
use engine::state::{RunState, TaskState};
use engine::store::{RunRow, Store};
use engine::timetable::parse_datetime;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::cmd::dags::{find_dag, parse_conf};
use crate::config::Config;

/// What the user asked for, as typed (checked where the DAG is known).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Trigger {
    pub dag_id: String,
    pub conf: Option<String>,
    pub run_id: Option<String>,
    pub logical_date: Option<String>,
    pub user: Option<String>,
    /// Over the engine link: stream the run's changes after the answer (`--wait`).
    #[serde(default)]
    pub watch: bool,
    /// Which database and DAGs folder the CLI means; an engine takes the trigger only when they are its own.
    pub setup: String,
}

/// A created run, as the CLI reports it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Triggered {
    /// The run's primary key.
    pub pk: i64,
    pub dag_id: String,
    pub run_id: String,
    /// `dags trigger -o json`'s object.
    pub json: serde_json::Value,
    pub paused: bool,
}

impl Trigger {
    /// Checks what can be checked without the DAG, so a typing error is reported before anything happens.
    pub fn new(config: &Config, args: &crate::TriggerArgs) -> Result<Trigger> {
        let trigger = Trigger {
            dag_id: args.dag_id.clone(),
            conf: args.conf.clone(),
            run_id: args.run_id.clone(),
            logical_date: args.logical_date.clone(),
            user: config.user.clone(),
            watch: args.wait,
            setup: setup(config),
        };
        trigger.conf()?;
        trigger.manual_run_id()?;
        Ok(trigger)
    }

    fn conf(&self) -> Result<serde_json::Map<String, serde_json::Value>> {
        parse_conf(self.conf.as_deref())
    }

    fn manual_run_id(&self) -> Result<Option<ManualRunId>> {
        self.run_id
            .as_deref()
            .map(ManualRunId::new)
            .transpose()
            .map_err(|e| anyhow!("--run-id: {e}"))
    }

    /// Creates the run in `store` (whose DAGs are already read from the folder).
    pub async fn create(&self, store: &Store) -> Result<Triggered> {
        let dag = find_dag(store, &self.dag_id).await?;
        let logical_date = self
            .logical_date
            .as_deref()
            .map(|text| parse_datetime(text, &dag.spec.timezone))
            .transpose()
            .map_err(|e| anyhow!("--logical-date: {e}"))?;
        let kind = RunKind::Manual {
            run_id: self.manual_run_id()?,
            logical_date,
            data_interval_start: None,
            data_interval_end: None,
            run_after: None,
        };
        let request = RunRequest {
            conf: self.conf()?,
            user: self.user.clone(),
            ..RunRequest::new(kind, TriggeredBy::Cli, Utc::now())
        };
        let run = store.create_run(request.new_run(&dag.spec)?).await?;
        Ok(Triggered::new(&run, dag.is_paused))
    }
}

impl Triggered {
    fn new(run: &RunRow, paused: bool) -> Triggered {
        Triggered {
            pk: run.id,
            dag_id: run.dag_id.clone(),
            run_id: run.run_id.clone(),
            json: crate::cmd::dags::run_json(run),
            paused,
        }
    }
}

/// A digest of the database and DAGs folder a process works on (the URL holds a password: only its digest
/// crosses the link).
pub fn setup(config: &Config) -> String {
    let mut digest = Sha256::new();
    digest.update(config.database_url.as_bytes());
    digest.update([0]);
    digest.update(config.dags_folder.as_os_str().as_encoded_bytes());
    format!("{:x}", digest.finalize())
}

/// A run as `--wait` shows it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunStatus {
    pub state: RunState,
    pub tis: Vec<(String, TaskState)>,
    /// `dags trigger -o json`'s object.
    pub json: serde_json::Value,
}

impl RunStatus {
    pub async fn read(store: &Store, pk: i64) -> Result<RunStatus> {
        let run = store.get_run_by_pk(pk).await?;
        let tis = store.tis_of_run(pk).await?;
        Ok(RunStatus {
            state: run.state,
            tis: tis
                .into_iter()
                .map(|ti| (engine::mapping::instance_name(&ti.task_id, ti.map_index), ti.state))
                .collect(),
            json: crate::cmd::dags::run_json(&run),
        })
    }
}

/// Where `--wait` reads its run: from the running engine over the link (the CLI then needs no database
/// connection at all), or from the store (also when the engine stops answering).
pub enum RunReader {
    Engine(Box<Config>),
    Store(Store),
}

impl RunReader {
    pub async fn status(&mut self, pk: i64) -> Result<RunStatus> {
        if let RunReader::Engine(config) = self {
            match crate::link::run_status(&crate::link::socket_path(&config.home), pk).await {
                Ok(status) => return Ok(status),
                Err(_) => *self = RunReader::Store(crate::runtime::open_store(config).await?),
            }
        }
        match self {
            RunReader::Store(store) => RunStatus::read(store, pk).await,
            RunReader::Engine(_) => unreachable!("replaced by the store above"),
        }
    }

    /// Whether a scheduler is at work (an engine that answers is one).
    pub async fn scheduler_alive(&self) -> Result<bool> {
        match self {
            RunReader::Engine(_) => Ok(true),
            RunReader::Store(store) => Ok(store
                .latest_scheduler_heartbeat()
                .await?
                .map(|hb| Utc::now() - hb < chrono::Duration::seconds(30))
                .unwrap_or(false)),
        }
    }
}
