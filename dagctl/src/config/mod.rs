//! Configuration: flags > environment (`DAGCTL_*`) > `dagctl.toml` in the data dir > defaults, built once.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde::Deserialize;

mod chain_kube;
mod git;
mod kube;

pub use kube::{ExecutorKind, KubeSettings};

pub use dagctl::runner::{
    client_override_name, client_overrides, CHAIN_KUBERNETES_ENV, CLIENTS_DIR_ENV, LOAD_DIR_ENV, LOCUST_ENV,
    NETWORKS_DIR_ENV,
};

/// Settings that may come from the command line.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct GlobalFlags {
    /// Data dir: database, logs, dagctl.toml [env: DAGCTL_HOME; default ~/.dagctl]
    #[arg(long, global = true)]
    pub home: Option<PathBuf>,
    /// Folder of DAG files [env: DAGCTL_DAGS_FOLDER; default <home>/dags]
    #[arg(long, global = true)]
    pub dags_folder: Option<PathBuf>,
    /// sqlite://PATH or postgres://... [env: DAGCTL_DATABASE_URL; default sqlite in <home>]
    #[arg(long, global = true)]
    pub database_url: Option<String>,
    /// Most task tries running at once [env: DAGCTL_PARALLELISM; default 32]
    #[arg(long, global = true)]
    pub parallelism: Option<usize>,
}

/// `dagctl.toml` (no `Debug`: it holds secrets).
#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    dags_folder: Option<PathBuf>,
    dag_ignore_file_syntax: Option<String>,
    dag_file_max_bytes: Option<u64>,
    dagbag_import_timeout: Option<String>,
    max_connections: Option<usize>,
    database_url: Option<String>,
    parallelism: Option<usize>,
    dags_are_paused_at_creation: Option<bool>,
    create_cron_data_intervals: Option<bool>,
    fork_runners: Option<bool>,
    executor: Option<String>,
    task_logs: Option<String>,
    kubernetes: Option<kube::FileKube>,
    git: Option<git::FileGit>,
    chain: Option<chain_kube::FileChain>,
    host: Option<String>,
    port: Option<u16>,
    secret_key: Option<String>,
    fernet_key: Option<String>,
    base_url: Option<String>,
    execution_api_url: Option<String>,
    geth_release_url: Option<String>,
    quorum_release_url: Option<String>,
    sample_retention: Option<String>,
    scheduler_idle_sleep_time: Option<String>,
    runner_pass_env: Option<Vec<String>>,
    locust: Option<PathBuf>,
    oidc: Option<FileOidc>,
}

/// Where task logs are kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TaskLogStore {
    /// Files in the data dir (the default): one engine, or servers sharing a disk.
    Files,
    /// The database: every scheduler and webserver of an installation reads them (the Helm chart's choice).
    Database,
}

/// `[oidc]` in `dagctl.toml` (no `Debug`: it holds the client secret).
#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileOidc {
    issuer: Option<String>,
    client_id: Option<String>,
    client_secret: Option<String>,
    scopes: Option<Vec<String>>,
    groups_claim: Option<String>,
    /// group = "Role"
    role_map: Option<RoleMapValue>,
    display_name: Option<String>,
}

/// `[oidc] role_map`: a table (`[oidc.role_map]` group = "Role") or the environment's form,
/// `"group=Role,..."` (what the Helm chart and Terraform write).
#[derive(Deserialize)]
#[serde(untagged)]
enum RoleMapValue {
    Table(std::collections::BTreeMap<String, String>),
    Text(String),
}

/// OpenID Connect settings (validated; the redirect URL is made from the base URL when serving).
#[derive(Clone)]
pub struct OidcSettings {
    pub issuer: String,
    pub client_id: String,
    pub client_secret: Option<String>,
    pub scopes: Vec<String>,
    pub groups_claim: String,
    /// `group=Role,...`
    pub role_map: String,
    pub display_name: String,
}

impl std::fmt::Debug for OidcSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OidcSettings")
            .field("issuer", &self.issuer)
            .field("client_id", &self.client_id)
            .field("scopes", &self.scopes)
            .field("role_map", &self.role_map)
            .finish_non_exhaustive()
    }
}

/// The resolved configuration. Its `Debug` hides the secret key and the database password.
#[derive(Clone)]
pub struct Config {
    pub home: PathBuf,
    /// Where DAG files are read: the folder given, or the current checkout of `[git]`.
    pub dags_folder: PathBuf,
    /// The DAGs folder is a git repository that schedulers keep in sync (`[git]`).
    pub git: Option<scheduler::git_sync::GitSettings>,
    /// `[chain.kubernetes]`: where networks with `backend: kubernetes` run; None: nowhere.
    pub chain_kube: Option<chain::kubernetes::KubeSetup>,
    /// How the DAGs folder is read: `.airflowignore` syntax (Airflow's `dag_ignore_file_syntax`: glob, the
    /// default, or regexp) and the budgets per file (`dag_file_max_bytes`, `dagbag_import_timeout`).
    pub folder_options: engine::parse::FolderOptions,
    /// The web face's limits: `max_connections` at once (default 256; more get 503), header read and idle
    /// timeouts.
    pub web_limits: web::serve::Limits,
    pub database_url: String,
    pub parallelism: usize,
    /// Whether the local executor forks each try's runner from one runner host (default) rather than starting
    /// the runner binary anew (`fork_runners = false`, or DAGCTL_FORK_RUNNERS).
    pub fork_runners: bool,
    /// Which executor runs tries (`executor`, DAGCTL_EXECUTOR: `local` or `kubernetes` with `[kubernetes]`).
    pub executor: ExecutorKind,
    /// Where task logs are kept (`task_logs`, DAGCTL_TASK_LOGS: `files` or `database`).
    pub task_logs: TaskLogStore,
    pub paused_at_creation: bool,
    pub host: String,
    pub port: u16,
    /// Signs API tokens and session cookies; None = `jwt_secret` in the data dir.
    pub secret_key: Option<String>,
    /// Encrypts variables and connections at rest (Airflow's `fernet_key`: one key, or several separated by
    /// commas, newest first); None = `fernet_key` in the data dir.
    pub fernet_key: Option<String>,
    /// The public URL of the web server (https makes cookies `Secure`; OIDC redirects come back here).
    pub base_url: Option<String>,
    /// OpenID Connect sign-in, when an issuer is configured.
    pub oidc: Option<OidcSettings>,
    /// Where task runners reach the task execution API; None = this process's own server.
    pub execution_api_url: Option<String>,
    /// The local admin's password for `standalone` (DAGCTL_ADMIN_PASSWORD).
    pub admin_password: Option<String>,
    /// Who runs the CLI (`USER`), recorded as the user of CLI changes.
    pub user: Option<String>,
    /// `PATH`, where client binaries are looked for last.
    pub path: Option<String>,
    /// Client binaries given by `DAGCTL_<CLIENT>` (e.g. `DAGCTL_GETH`), by client name.
    pub client_overrides: std::collections::BTreeMap<chain::Client, PathBuf>,
    /// The part of the engine's environment that task runners get: PATH, HOME, LANG, LC_ALL, TZ, and the
    /// names listed in `runner_pass_env` (e.g. AWS credentials for the monitor's CloudWatch sink).
    pub runner_env: Vec<(String, String)>,
    /// Where `clients install geth` downloads release archives (a mirror); None = geth's own store.
    pub geth_release_url: Option<String>,
    /// Where `clients install quorum` downloads release archives (a mirror); None = ConsenSys's store.
    pub quorum_release_url: Option<String>,
    /// How long monitor samples are kept (`sample_retention`, e.g. `7d`; `none` keeps them for good).
    pub sample_retention: Option<std::time::Duration>,
    /// The longest a scheduler sleeps with nothing to do (Airflow's `scheduler_idle_sleep_time`): a fallback,
    /// since changes wake it at once.
    pub scheduler_idle_sleep_time: std::time::Duration,
    /// The `locust` program `chain.locust` runs (`DAGCTL_LOCUST`, `locust`); None = `locust` on PATH.
    pub locust: Option<PathBuf>,
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("home", &self.home)
            .field("dags_folder", &self.dags_folder)
            .field("database_url", &engine::store::redact_url(&self.database_url))
            .field("parallelism", &self.parallelism)
            .field("host", &self.host)
            .field("port", &self.port)
            .field("secret_key", &self.secret_key.as_ref().map(|_| "<secret>"))
            .field("fernet_key", &self.fernet_key.as_ref().map(|_| "<secret>"))
            .field("base_url", &self.base_url)
            .field("oidc", &self.oidc)
            .field("execution_api_url", &self.execution_api_url)
            .field("admin_password", &self.admin_password.as_ref().map(|_| "<secret>"))
            .field("client_overrides", &self.client_overrides)
            .finish_non_exhaustive()
    }
}

impl Config {
    pub fn logs_dir(&self) -> PathBuf {
        self.home.join("logs")
    }

    /// Where networks of the local backend live.
    pub fn networks_dir(&self) -> PathBuf {
        self.home.join("networks")
    }

    /// Where `dagctl clients install` puts client binaries.
    pub fn clients_dir(&self) -> PathBuf {
        self.home.join("clients")
    }

    /// Where load tests keep their per-call records files.
    pub fn load_dir(&self) -> PathBuf {
        self.home.join("load")
    }

    /// Builds the configuration from flags, the environment and the config file.
    pub fn load(flags: &GlobalFlags) -> Result<Config> {
        Self::load_from(flags, |name| std::env::var(name).ok())
    }

    pub fn load_from(flags: &GlobalFlags, env: impl Fn(&str) -> Option<String>) -> Result<Config> {
        let home = match flags.home.clone().or_else(|| env("DAGCTL_HOME").map(PathBuf::from)) {
            Some(home) => home,
            None => match env("HOME") {
                Some(user_home) => Path::new(&user_home).join(".dagctl"),
                None => bail!("cannot tell where the data dir is: set DAGCTL_HOME or --home"),
            },
        };
        let file_path = home.join("dagctl.toml");
        let file: FileConfig = match std::fs::read_to_string(&file_path) {
            Ok(text) => toml::from_str(&text)
                .map_err(|err| anyhow::anyhow!("{}: {}", file_path.display(), err.to_string().trim()))?,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => FileConfig::default(),
            Err(err) => return Err(err).with_context(|| format!("cannot read {}", file_path.display())),
        };
        let given_folder = flags
            .dags_folder
            .clone()
            .or_else(|| env("DAGCTL_DAGS_FOLDER").map(PathBuf::from))
            .or(file.dags_folder);
        let git = match file.git {
            None => None,
            Some(_) if given_folder.is_some() => {
                bail!("both dags_folder (or DAGCTL_DAGS_FOLDER, --dags-folder) and [git] say where DAGs are: keep one")
            }
            Some(git) => Some(git::load_git(git, &home, env("PATH"))?),
        };
        let dags_folder = match &git {
            Some(git) => git.dags_folder(),
            None => given_folder.unwrap_or_else(|| home.join("dags")),
        };
        let database_url = flags
            .database_url
            .clone()
            .or_else(|| env("DAGCTL_DATABASE_URL"))
            .or(file.database_url)
            .unwrap_or_else(|| format!("sqlite://{}", home.join("dagctl.db").display()));
        let parallelism = match flags.parallelism {
            Some(n) => n,
            None => match env("DAGCTL_PARALLELISM") {
                Some(text) => text
                    .trim()
                    .parse()
                    .map_err(|_| anyhow::anyhow!("DAGCTL_PARALLELISM must be a whole number, got `{text}`"))?,
                None => file.parallelism.unwrap_or(32),
            },
        };
        if parallelism == 0 {
            bail!("parallelism must be at least 1");
        }
        let boolean = |name: &str, text: String| -> Result<bool> {
            match text.to_ascii_lowercase().as_str() {
                "true" | "1" | "yes" => Ok(true),
                "false" | "0" | "no" => Ok(false),
                _ => bail!("{name} must be true or false, got `{text}`"),
            }
        };
        let paused_at_creation = match env("DAGCTL_DAGS_ARE_PAUSED_AT_CREATION") {
            Some(text) => boolean("DAGCTL_DAGS_ARE_PAUSED_AT_CREATION", text)?,
            None => file.dags_are_paused_at_creation.unwrap_or(true),
        };
        let fork_runners = match env("DAGCTL_FORK_RUNNERS") {
            Some(text) => boolean("DAGCTL_FORK_RUNNERS", text)?,
            None => file.fork_runners.unwrap_or(true),
        };
        let executor = kube::load_executor(file.executor, file.kubernetes, &env)?;
        let chain_kube = chain_kube::load_chain(file.chain)?;
        let task_logs = match env("DAGCTL_TASK_LOGS").or(file.task_logs) {
            None => TaskLogStore::Files,
            Some(text) => match text.trim().to_ascii_lowercase().as_str() {
                "files" => TaskLogStore::Files,
                "database" => TaskLogStore::Database,
                _ => bail!("task_logs: `{text}` is not where logs can be kept (files or database)"),
            },
        };
        let cron_data_intervals = match env("DAGCTL_CREATE_CRON_DATA_INTERVALS") {
            Some(text) => boolean("DAGCTL_CREATE_CRON_DATA_INTERVALS", text)?,
            None => file.create_cron_data_intervals.unwrap_or(false),
        };
        let sample_retention = match env("DAGCTL_SAMPLE_RETENTION").or(file.sample_retention) {
            None => Some(scheduler::DEFAULT_SAMPLE_RETENTION),
            Some(text) if text.trim().eq_ignore_ascii_case("none") => None,
            Some(text) => Some(
                engine::duration::parse_duration_str(&text)
                    .map_err(|e| anyhow::anyhow!("sample_retention: {e} (a duration like 7d or 12h, or none)"))?,
            ),
        };
        let scheduler_idle_sleep_time = match env("DAGCTL_SCHEDULER_IDLE_SLEEP_TIME").or(file.scheduler_idle_sleep_time)
        {
            None => std::time::Duration::from_millis(500),
            Some(text) => engine::duration::parse_duration_str(&text)
                .ok()
                .filter(|d| !d.is_zero() && *d <= std::time::Duration::from_secs(3600))
                .ok_or_else(|| {
                    anyhow::anyhow!(
                        "scheduler_idle_sleep_time: `{text}` is not a duration from 1ms to 1h (e.g. 500ms, 5s)"
                    )
                })?,
        };
        let mut folder_options = engine::parse::FolderOptions {
            cron_data_intervals,
            ..Default::default()
        };
        if let Some(text) = env("DAGCTL_DAG_IGNORE_FILE_SYNTAX").or(file.dag_ignore_file_syntax) {
            folder_options.ignore_syntax = text
                .trim()
                .parse()
                .map_err(|e| anyhow::anyhow!("dag_ignore_file_syntax: {e}"))?;
        }
        if let Some(bytes) = file.dag_file_max_bytes {
            if bytes == 0 {
                bail!("dag_file_max_bytes must be at least 1");
            }
            folder_options.limits.max_file_bytes = bytes;
        }
        if let Some(text) = env("DAGCTL_DAGBAG_IMPORT_TIMEOUT").or(file.dagbag_import_timeout) {
            folder_options.limits.import_timeout = engine::duration::parse_duration_str(&text)
                .ok()
                .filter(|d| !d.is_zero())
                .ok_or_else(|| anyhow::anyhow!("dagbag_import_timeout: `{text}` is not a duration (e.g. 30s, 2m)"))?;
        }
        let mut web_limits = web::serve::Limits::default();
        if let Some(max) = file.max_connections {
            if max == 0 {
                bail!("max_connections must be at least 1");
            }
            web_limits.max_connections = max;
        }
        let oidc = load_oidc(file.oidc.unwrap_or_default(), &env)?;
        let client_overrides = client_overrides(&env);
        let pass_env: Vec<String> = match env("DAGCTL_RUNNER_PASS_ENV") {
            Some(list) => list
                .split(',')
                .map(str::trim)
                .filter(|n| !n.is_empty())
                .map(str::to_string)
                .collect(),
            None => file.runner_pass_env.unwrap_or_default(),
        };
        for name in &pass_env {
            check_pass_env(name)?;
        }
        let runner_env = worker::executor::local::INHERITED_ENV
            .iter()
            .copied()
            .chain(pass_env.iter().map(String::as_str))
            .filter_map(|name| env(name).map(|value| (name.to_string(), value)))
            .collect();
        Ok(Config {
            execution_api_url: env("DAGCTL_EXECUTION_API_URL")
                .or(file.execution_api_url)
                .map(|u| u.trim_end_matches('/').to_string()),
            admin_password: env("DAGCTL_ADMIN_PASSWORD"),
            geth_release_url: env("DAGCTL_GETH_RELEASE_URL").or(file.geth_release_url),
            quorum_release_url: env("DAGCTL_QUORUM_RELEASE_URL").or(file.quorum_release_url),
            sample_retention,
            scheduler_idle_sleep_time,
            locust: env(LOCUST_ENV).map(PathBuf::from).or(file.locust),
            user: env("USER"),
            path: env("PATH"),
            client_overrides,
            runner_env,
            oidc,
            home,
            dags_folder,
            git,
            chain_kube,
            folder_options,
            web_limits,
            database_url,
            parallelism,
            fork_runners,
            executor,
            task_logs,
            paused_at_creation,
            host: file.host.unwrap_or_else(|| "127.0.0.1".into()),
            port: file.port.unwrap_or(8080),
            secret_key: env("DAGCTL_SECRET_KEY").or(file.secret_key),
            fernet_key: env("DAGCTL_FERNET_KEY").or(file.fernet_key),
            base_url: env("DAGCTL_BASE_URL").or(file.base_url),
        })
    }
}

/// A setting that is a duration above zero (`key` names it in the error), `default` seconds when absent.
fn positive_duration(key: &str, text: Option<String>, default: u64) -> Result<std::time::Duration> {
    match text {
        None => Ok(std::time::Duration::from_secs(default)),
        Some(text) => engine::duration::parse_duration_str(&text)
            .ok()
            .filter(|d| !d.is_zero())
            .ok_or_else(|| anyhow::anyhow!("{key}: `{text}` is not a duration (e.g. 30s, 5m)")),
    }
}

/// Client binaries named by `DAGCTL_<CLIENT>` (e.g. `DAGCTL_GETH`).
/// A name `runner_pass_env` may list: an environment variable's name, not one of the engine's own
/// (`DAGCTL_*`: the database URL, the secret key, the try's token).
fn check_pass_env(name: &str) -> Result<()> {
    let valid = name.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !valid {
        bail!("runner_pass_env: `{name}` is not an environment variable name");
    }
    if name.to_ascii_uppercase().starts_with("DAGCTL_") {
        bail!("runner_pass_env: `{name}` is the engine's own setting and never reaches a task");
    }
    Ok(())
}

fn load_oidc(file: FileOidc, env: &impl Fn(&str) -> Option<String>) -> Result<Option<OidcSettings>> {
    let Some(issuer) = env("DAGCTL_OIDC_ISSUER")
        .or(file.issuer)
        .filter(|i| !i.trim().is_empty())
    else {
        return Ok(None);
    };
    let client_id = env("DAGCTL_OIDC_CLIENT_ID").or(file.client_id).ok_or_else(|| {
        anyhow::anyhow!("OIDC issuer `{issuer}` is set but no client id (DAGCTL_OIDC_CLIENT_ID or [oidc] client_id)")
    })?;
    let scopes = match env("DAGCTL_OIDC_SCOPES") {
        Some(text) => text
            .split([' ', ','])
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect(),
        None => file
            .scopes
            .unwrap_or_else(|| vec!["profile".into(), "email".into(), "groups".into()]),
    };
    let role_map = match env("DAGCTL_OIDC_ROLE_MAP") {
        Some(text) => text,
        None => match file.role_map {
            None => String::new(),
            Some(RoleMapValue::Text(text)) => text,
            Some(RoleMapValue::Table(table)) => table
                .into_iter()
                .map(|(group, role)| format!("{group}={role}"))
                .collect::<Vec<_>>()
                .join(","),
        },
    };
    if role_map.trim().is_empty() {
        bail!("OIDC needs a role map from groups to roles (DAGCTL_OIDC_ROLE_MAP=group=Admin,... or [oidc.role_map])");
    }
    Ok(Some(OidcSettings {
        issuer,
        client_id,
        client_secret: env("DAGCTL_OIDC_CLIENT_SECRET").or(file.client_secret),
        scopes: scopes.into_iter().filter(|s| s != "openid").collect(),
        groups_claim: env("DAGCTL_OIDC_GROUPS_CLAIM")
            .or(file.groups_claim)
            .unwrap_or_else(|| "groups".into()),
        role_map,
        display_name: env("DAGCTL_OIDC_NAME")
            .or(file.display_name)
            .unwrap_or_else(|| "single sign-on".into()),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_oidc_role_map_reads_as_a_table_or_as_the_charts_text() {
        let dir = tempfile::tempdir().unwrap();
        let home = dir.path().display().to_string();
        let env = |name: &str| (name == "DAGCTL_HOME").then(|| home.clone());
        let mut maps = Vec::new();
        for text in [
            "[oidc]\nissuer = \"https://id.example\"\nclient_id = \"dagctl\"\n[oidc.role_map]\nqa = \"Admin\"\nops = \"Viewer\"\n",
            "[oidc]\nissuer = \"https://id.example\"\nclient_id = \"dagctl\"\nrole_map = \"ops=Viewer,qa=Admin\"\n",
        ] {
            std::fs::write(dir.path().join("dagctl.toml"), text).unwrap();
            let config = Config::load_from(&GlobalFlags::default(), env).unwrap();
            maps.push(config.oidc.unwrap().role_map);
        }
        assert_eq!(maps, ["ops=Viewer,qa=Admin", "ops=Viewer,qa=Admin"]);
    }

    #[test]
    fn flags_beat_env_beat_file() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("dagctl.toml"),
            "parallelism = 3\ndags_folder = \"/from/file\"\n",
        )
        .unwrap();
        let home = dir.path().display().to_string();
        let env = |name: &str| match name {
            "DAGCTL_HOME" => Some(home.clone()),
            "DAGCTL_PARALLELISM" => Some("7".to_string()),
            _ => None,
        };
        let config = Config::load_from(&GlobalFlags::default(), env).unwrap();
        assert_eq!(config.parallelism, 7);
        assert_eq!(config.dags_folder, PathBuf::from("/from/file"));
        assert!(config.database_url.starts_with("sqlite://"));
        let flags = GlobalFlags {
            parallelism: Some(9),
            ..Default::default()
        };
        assert_eq!(Config::load_from(&flags, env).unwrap().parallelism, 9);
    }

    #[test]
    fn runners_get_only_the_listed_extra_variables() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("dagctl.toml"), "runner_pass_env = [\"AWS_PROFILE\"]\n").unwrap();
        let home = dir.path().display().to_string();
        let env = |pass: Option<&'static str>| {
            let home = home.clone();
            move |name: &str| match name {
                "DAGCTL_HOME" => Some(home.clone()),
                "DAGCTL_RUNNER_PASS_ENV" => pass.map(str::to_string),
                "PATH" => Some("/bin".into()),
                "AWS_PROFILE" => Some("qa".into()),
                "AWS_REGION" => Some("eu-west-1".into()),
                "DAGCTL_DATABASE_URL" => Some("postgres://u:secret@h/db".into()),
                _ => None,
            }
        };
        let names = |config: Config| -> Vec<String> { config.runner_env.into_iter().map(|(n, _)| n).collect() };
        let from_file = Config::load_from(&GlobalFlags::default(), env(None)).unwrap();
        assert_eq!(names(from_file), ["PATH", "AWS_PROFILE"]);
        let from_env = Config::load_from(&GlobalFlags::default(), env(Some("AWS_REGION, UNSET_NAME"))).unwrap();
        assert_eq!(names(from_env), ["PATH", "AWS_REGION"]);
        for bad in ["DAGCTL_DATABASE_URL", "dagctl_secret_key", "AWS-REGION", "1X"] {
            let leaked = |n: &str| {
                if n == "DAGCTL_RUNNER_PASS_ENV" {
                    Some(bad.to_string())
                } else {
                    env(None)(n)
                }
            };
            let err = Config::load_from(&GlobalFlags::default(), leaked)
                .unwrap_err()
                .to_string();
            assert!(err.starts_with("runner_pass_env: `"), "{err}");
        }
    }

    #[test]
    fn bad_values_are_one_readable_error() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("dagctl.toml"), "paralelism = 3\n").unwrap();
        let home = dir.path().display().to_string();
        let err = Config::load_from(&GlobalFlags::default(), |n| (n == "DAGCTL_HOME").then(|| home.clone()))
            .unwrap_err()
            .to_string();
        assert!(err.contains("dagctl.toml") && err.contains("paralelism"), "{err}");
        let err = Config::load_from(&GlobalFlags::default(), |n| match n {
            "DAGCTL_HOME" => Some(home.clone()),
            "DAGCTL_PARALLELISM" => Some("lots".into()),
            _ => None,
        });
        assert!(err.is_err());
        std::fs::write(dir.path().join("dagctl.toml"), "dag_ignore_file_syntax = \"regexp\"\n").unwrap();
        let config =
            Config::load_from(&GlobalFlags::default(), |n| (n == "DAGCTL_HOME").then(|| home.clone())).unwrap();
        assert_eq!(config.folder_options.ignore_syntax, engine::parse::IgnoreSyntax::Regexp);
        let err = Config::load_from(&GlobalFlags::default(), |n| match n {
            "DAGCTL_HOME" => Some(home.clone()),
            "DAGCTL_DAG_IGNORE_FILE_SYNTAX" => Some("fnmatch".into()),
            _ => None,
        })
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("dag_ignore_file_syntax") && err.contains("glob or regexp"),
            "{err}"
        );
    }
}
