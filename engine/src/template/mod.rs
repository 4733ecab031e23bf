//! Templating of operator arguments with Airflow's context (`ds`, `ts`, `params`, `dag_run.conf`,
//! `ti.xcom_pull(...)`, `macros.ds_add`, `var.value.x`, `conn.x.host`, ...), via minijinja with strict undefined
//! like Airflow.

mod lookups;

use std::collections::HashMap;
use std::sync::Arc;

use chrono::{DateTime, Duration as ChronoDuration, NaiveDate, SecondsFormat, Utc};
use minijinja::value::{Kwargs, Value};
use minijinja::{Environment, UndefinedBehavior};
use serde_json::Value as Json;

use crate::{Error, Result};

pub use lookups::{Lookups, Wanted};

/// Everything a template can see about the task instance being rendered.
#[derive(Debug, Clone)]
pub struct TemplateContext {
    pub dag_id: String,
    pub task_id: String,
    /// The mapped instance (-1: the task is not mapped), as `ti.map_index`.
    pub map_index: i64,
    pub run_id: String,
    pub try_number: u32,
    pub logical_date: Option<DateTime<Utc>>,
    pub data_interval_start: Option<DateTime<Utc>>,
    pub data_interval_end: Option<DateTime<Utc>>,
    pub run_after: DateTime<Utc>,
    pub conf: serde_json::Map<String, Json>,
    /// DAG params with the run's conf laid over them.
    pub params: serde_json::Map<String, Json>,
    /// XCom values of the run, by (task id, key); a mapped task's as one list.
    pub xcoms: HashMap<(String, String), Json>,
    /// The values of mapped task instances, by (task id, key, map_index), for `xcom_pull(map_indexes=...)`.
    pub instance_xcoms: HashMap<(String, String, i64), Json>,
    pub native: bool,
    /// Variables and connections (`var`, `conn`) known so far; see [`render_round`].
    pub lookups: Lookups,
}

impl TemplateContext {
    /// The date `ds` and friends are computed from: the logical date, or for runs without one, run_after.
    fn reference_date(&self) -> DateTime<Utc> {
        self.logical_date.unwrap_or(self.run_after)
    }

    fn to_value(&self) -> Value {
        let date = self.reference_date();
        let ds = date.format("%Y-%m-%d").to_string();
        let ts = date.to_rfc3339_opts(SecondsFormat::Secs, false);
        let iso = |dt: Option<DateTime<Utc>>| dt.map(|d| d.to_rfc3339_opts(SecondsFormat::Secs, false));
        let xcoms = Arc::new(self.xcoms.clone());
        let instances = Arc::new(self.instance_xcoms.clone());
        let xcom_pull = Value::from_function(
            move |task_ids: Option<Value>, kwargs: Kwargs| -> std::result::Result<Value, minijinja::Error> {
                let task_ids = match task_ids {
                    Some(value) => Some(value),
                    None => kwargs.get::<Option<Value>>("task_ids")?,
                };
                let key: Option<String> = kwargs.get("key")?;
                let map_indexes: Option<Value> = kwargs.get("map_indexes")?;
                let _: Option<Value> = kwargs.get("dag_id")?;
                let _: Option<Value> = kwargs.get("include_prior_dates")?;
                kwargs.assert_all_used()?;
                let key = key.unwrap_or_else(|| "return_value".to_string());
                // `map_indexes`: one instance's value (an int) or several (a list), as Airflow's xcom_pull.
                let one = |task: &str, index: i64| -> Value {
                    instances
                        .get(&(task.to_string(), key.clone(), index))
                        .map(Value::from_serialize)
                        .unwrap_or(Value::from(()))
                };
                let lookup = |task: &str| -> Value {
                    match &map_indexes {
                        Some(indexes) if indexes.kind() == minijinja::value::ValueKind::Seq => Value::from(
                            indexes
                                .try_iter()
                                .map(|it| {
                                    it.map(|i| one(task, i64::try_from(i).unwrap_or(-1)))
                                        .collect::<Vec<_>>()
                                })
                                .unwrap_or_default(),
                        ),
                        Some(index) if !index.is_none() && !index.is_undefined() => {
                            one(task, i64::try_from(index.clone()).unwrap_or(-1))
                        }
                        _ => xcoms
                            .get(&(task.to_string(), key.clone()))
                            .map(Value::from_serialize)
                            .unwrap_or(Value::from(())),
                    }
                };
                match task_ids {
                    None => Ok(Value::from(())),
                    Some(ids) => {
                        if let Some(single) = ids.as_str() {
                            Ok(lookup(single))
                        } else if ids.kind() == minijinja::value::ValueKind::Seq {
                            let values: Vec<Value> = ids
                                .try_iter()?
                                .map(|id| lookup(id.as_str().unwrap_or_default()))
                                .collect();
                            Ok(Value::from(values))
                        } else {
                            Err(minijinja::Error::new(
                                minijinja::ErrorKind::InvalidOperation,
                                "task_ids must be a task id or a list of them",
                            ))
                        }
                    }
                }
            },
        );
        let ds_add = Value::from_function(
            |ds: String, days: i64| -> std::result::Result<String, minijinja::Error> {
                let date = NaiveDate::parse_from_str(&ds, "%Y-%m-%d").map_err(|_| {
                    minijinja::Error::new(
                        minijinja::ErrorKind::InvalidOperation,
                        format!("ds_add needs a YYYY-MM-DD date, got `{ds}`"),
                    )
                })?;
                Ok((date + ChronoDuration::days(days)).format("%Y-%m-%d").to_string())
            },
        );
        let ds_format = Value::from_function(
            |ds: String, input: String, output: String| -> std::result::Result<String, minijinja::Error> {
                let date = chrono::NaiveDateTime::parse_from_str(&ds, &input)
                    .or_else(|_| {
                        NaiveDate::parse_from_str(&ds, &input).map(|d| d.and_hms_opt(0, 0, 0).unwrap_or_default())
                    })
                    .map_err(|_| {
                        minijinja::Error::new(
                            minijinja::ErrorKind::InvalidOperation,
                            format!("`{ds}` does not match `{input}`"),
                        )
                    })?;
                Ok(date.format(&output).to_string())
            },
        );
        let mut ti = serde_json::Map::new();
        ti.insert("task_id".into(), Json::from(self.task_id.clone()));
        ti.insert("dag_id".into(), Json::from(self.dag_id.clone()));
        ti.insert("run_id".into(), Json::from(self.run_id.clone()));
        ti.insert("try_number".into(), Json::from(self.try_number));
        ti.insert("map_index".into(), Json::from(self.map_index));
        let mut ti_value: std::collections::BTreeMap<String, Value> =
            ti.into_iter().map(|(k, v)| (k, Value::from_serialize(&v))).collect();
        ti_value.insert("xcom_pull".into(), xcom_pull);
        let mut macros = std::collections::BTreeMap::new();
        macros.insert("ds_add".to_string(), ds_add);
        macros.insert("ds_format".to_string(), ds_format);
        let mut dag_run = std::collections::BTreeMap::new();
        dag_run.insert("conf".to_string(), Value::from_serialize(&self.conf));
        dag_run.insert("run_id".to_string(), Value::from(self.run_id.clone()));
        dag_run.insert("dag_id".to_string(), Value::from(self.dag_id.clone()));
        dag_run.insert(
            "logical_date".to_string(),
            Value::from_serialize(iso(self.logical_date)),
        );
        let mut dag = std::collections::BTreeMap::new();
        dag.insert("dag_id".to_string(), Value::from(self.dag_id.clone()));
        let mut task = std::collections::BTreeMap::new();
        task.insert("task_id".to_string(), Value::from(self.task_id.clone()));
        let mut ctx = std::collections::BTreeMap::new();
        ctx.insert("ds".to_string(), Value::from(ds.clone()));
        ctx.insert("ds_nodash".to_string(), Value::from(ds.replace('-', "")));
        ctx.insert("ts".to_string(), Value::from(ts.clone()));
        ctx.insert(
            "ts_nodash".to_string(),
            Value::from(date.format("%Y%m%dT%H%M%S").to_string()),
        );
        ctx.insert(
            "ts_nodash_with_tz".to_string(),
            Value::from(format!("{}+0000", date.format("%Y%m%dT%H%M%S"))),
        );
        ctx.insert("logical_date".to_string(), Value::from(ts));
        ctx.insert(
            "data_interval_start".to_string(),
            Value::from_serialize(iso(self.data_interval_start.or(Some(date)))),
        );
        ctx.insert(
            "data_interval_end".to_string(),
            Value::from_serialize(iso(self.data_interval_end.or(Some(date)))),
        );
        ctx.insert("run_id".to_string(), Value::from(self.run_id.clone()));
        ctx.insert("params".to_string(), Value::from_serialize(&self.params));
        ctx.insert("dag_run".to_string(), Value::from(dag_run));
        ctx.insert("dag".to_string(), Value::from(dag));
        ctx.insert("task".to_string(), Value::from(task));
        ctx.insert("ti".to_string(), Value::from(ti_value.clone()));
        ctx.insert("task_instance".to_string(), Value::from(ti_value));
        ctx.insert("macros".to_string(), Value::from(macros));
        ctx.insert("var".to_string(), self.lookups.var_value());
        ctx.insert("conn".to_string(), self.lookups.conn_value());
        Value::from(ctx)
    }
}

fn environment() -> Environment<'static> {
    let mut env = Environment::new();
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    env.set_keep_trailing_newline(true);
    env
}

/// Renders every string in `args` (recursively); an error names the field, e.g. `env.TARGET`.
pub fn render_args(
    args: &serde_json::Map<String, Json>,
    ctx: &TemplateContext,
) -> Result<serde_json::Map<String, Json>> {
    let env = environment();
    let value = ctx.to_value();
    let mut out = serde_json::Map::new();
    for (key, arg) in args {
        out.insert(key.clone(), render_value(&env, &value, arg, key, ctx.native)?);
    }
    Ok(out)
}

/// What one rendering round gave.
#[derive(Debug)]
pub enum Rendered {
    Done(serde_json::Map<String, Json>),
    /// Variables or connections the templates asked for that `ctx.lookups` does not know yet: fetch them
    /// (recording what there is with `set_variable`/`set_connection`) and render again.
    Needs(Vec<Wanted>),
}

/// Renders `args` once: done, or the variables and connections to fetch before rendering again. A variable
/// or connection that does not exist fails the render naming it.
pub fn render_round(args: &serde_json::Map<String, Json>, ctx: &TemplateContext) -> Result<Rendered> {
    ctx.lookups.start_render();
    // Every field, even after one failed, so one round finds every name they use.
    let env = environment();
    let value = ctx.to_value();
    let mut result = Ok(serde_json::Map::new());
    for (key, arg) in args {
        match (render_value(&env, &value, arg, key, ctx.native), &mut result) {
            (Ok(rendered), Ok(out)) => {
                out.insert(key.clone(), rendered);
            }
            (Err(err), Ok(_)) => result = Err(err),
            (_, Err(_)) => {}
        }
    }
    let wanted = ctx.lookups.take_wanted();
    if !wanted.is_empty() {
        return Ok(Rendered::Needs(wanted));
    }
    match result {
        Ok(args) => Ok(Rendered::Done(args)),
        Err(Error::Template { field, message }) => {
            let missing = ctx.lookups.missing();
            if missing.is_empty() {
                return Err(Error::Template { field, message });
            }
            let names: Vec<String> = missing.iter().map(|(w, why)| format!("{w} {why}")).collect();
            Err(Error::Template {
                field,
                message: names.join("; "),
            })
        }
        Err(other) => Err(other),
    }
}

/// Renders one template string.
pub fn render_str(template: &str, ctx: &TemplateContext) -> Result<String> {
    let env = environment();
    env.render_str(template, ctx.to_value())
        .map_err(|err| template_error("template", &err))
}

fn template_error(field: &str, err: &minijinja::Error) -> Error {
    let mut message = err.to_string();
    let mut source = std::error::Error::source(err);
    while let Some(inner) = source {
        message.push_str(&format!(": {inner}"));
        source = inner.source();
    }
    Error::Template {
        field: field.to_string(),
        message,
    }
}

fn render_value(env: &Environment<'static>, ctx: &Value, arg: &Json, path: &str, native: bool) -> Result<Json> {
    match arg {
        Json::String(text) if text.contains("{{") || text.contains("{%") => {
            if native {
                let trimmed = text.trim();
                if let Some(expr) = trimmed.strip_prefix("{{").and_then(|rest| rest.strip_suffix("}}")) {
                    if !expr.contains("{{") && !expr.contains("}}") {
                        let compiled = env.compile_expression(expr).map_err(|err| template_error(path, &err))?;
                        let result = compiled.eval(ctx).map_err(|err| template_error(path, &err))?;
                        if result.is_undefined() {
                            return Err(Error::Template {
                                field: path.to_string(),
                                message: format!("`{}` is undefined", expr.trim()),
                            });
                        }
                        return serde_json::to_value(&result).map_err(|err| Error::Template {
                            field: path.to_string(),
                            message: err.to_string(),
                        });
                    }
                }
            }
            env.render_str(text, ctx)
                .map(Json::String)
                .map_err(|err| template_error(path, &err))
        }
        Json::Array(items) => items
            .iter()
            .enumerate()
            .map(|(i, item)| render_value(env, ctx, item, &format!("{path}[{i}]"), native))
            .collect::<Result<Vec<_>>>()
            .map(Json::Array),
        Json::Object(map) => {
            let mut out = serde_json::Map::new();
            for (key, item) in map {
                out.insert(
                    key.clone(),
                    render_value(env, ctx, item, &format!("{path}.{key}"), native)?,
                );
            }
            Ok(Json::Object(out))
        }
        other => Ok(other.clone()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ctx() -> TemplateContext {
        let mut xcoms = HashMap::new();
        xcoms.insert(
            ("deploy".to_string(), "return_value".to_string()),
            json!({"rpc": "http://127.0.0.1:8545"}),
        );
        xcoms.insert(("deploy".to_string(), "nodes".to_string()), json!(4));
        xcoms.insert(("other".to_string(), "return_value".to_string()), json!("x"));
        TemplateContext {
            dag_id: "d".into(),
            task_id: "t".into(),
            map_index: -1,
            run_id: "scheduled__2026-11-01T00:00:00+00:00".into(),
            try_number: 2,
            logical_date: Some("2026-11-01T00:00:00Z".parse().unwrap()),
            data_interval_start: Some("2026-11-01T00:00:00Z".parse().unwrap()),
            data_interval_end: Some("2026-11-02T00:00:00Z".parse().unwrap()),
            run_after: "2026-11-02T00:00:00Z".parse().unwrap(),
            conf: json!({"nodes": 7}).as_object().unwrap().clone(),
            params: json!({"nodes": 7, "client": "geth"}).as_object().unwrap().clone(),
            xcoms,
            instance_xcoms: [(("fan".to_string(), "return_value".to_string(), 1), json!("b"))]
                .into_iter()
                .collect(),
            native: false,
            lookups: Lookups::default(),
        }
    }

    fn render(template: &str) -> String {
        render_str(template, &ctx()).unwrap()
    }

    #[test]
    fn airflow_context_variables() {
        assert_eq!(render("{{ ds }} {{ ds_nodash }}"), "2026-11-01 20261101");
        assert_eq!(render("{{ ts }}"), "2026-11-01T00:00:00+00:00");
        assert_eq!(render("{{ logical_date }}"), "2026-11-01T00:00:00+00:00");
        assert_eq!(render("{{ data_interval_end }}"), "2026-11-02T00:00:00+00:00");
        assert_eq!(render("{{ run_id }}"), "scheduled__2026-11-01T00:00:00+00:00");
        assert_eq!(render("{{ dag_run.conf.nodes }} {{ params.client }}"), "7 geth");
        assert_eq!(render("{{ macros.ds_add(ds, 5) }}"), "2026-11-06");
        assert_eq!(render("{{ ti.try_number }}"), "2");
    }

    #[test]
    fn xcom_pull_forms() {
        assert_eq!(
            render("{{ ti.xcom_pull(task_ids='deploy').rpc }}"),
            "http://127.0.0.1:8545"
        );
        assert_eq!(render("{{ ti.xcom_pull('deploy')['rpc'] }}"), "http://127.0.0.1:8545");
        assert_eq!(render("{{ ti.xcom_pull(task_ids='deploy', key='nodes') }}"), "4");
        // One instance of a mapped task, or several.
        assert_eq!(render("{{ ti.xcom_pull(task_ids='fan', map_indexes=1) }}"), "b");
        assert_eq!(
            render("{{ ti.xcom_pull(task_ids='fan', map_indexes=[1, 5]) | tojson }}"),
            r#"["b",null]"#
        );
        assert_eq!(
            render("{% set both = ti.xcom_pull(task_ids=['other', 'missing']) %}{{ both[0] }} {{ both[1] is none }}"),
            "x True"
        );
    }

    #[test]
    fn errors_name_the_field() {
        let args = json!({"bash_command": "echo {{ params.missing }}", "env": {"A": "{{ ds }}", "B": "{{ nope( }}"}});
        let err = render_args(args.as_object().unwrap(), &ctx()).unwrap_err();
        let text = err.to_string();
        assert!(text.contains("`bash_command`") || text.contains("`env.B`"), "{text}");
        let err = render_args(json!({"env": {"B": "{{ nope( }}"}}).as_object().unwrap(), &ctx()).unwrap_err();
        assert!(err.to_string().contains("`env.B`"), "{err}");
    }

    #[test]
    fn variables_and_connections_are_fetched_in_rounds_and_missing_ones_are_named() {
        let ctx = ctx();
        let args = json!({
            "cmd": "{{ var.value.region }} {{ var.json.cfg.nodes }} {{ conn.rpc.host }}:{{ conn.rpc.port }} {{ conn.rpc.extra_dejson.chain_id }}",
            "fallback": "{{ var.value.get('unset', 'dflt') }}",
        });
        let args = args.as_object().unwrap();
        let Rendered::Needs(mut wanted) = render_round(args, &ctx).unwrap() else {
            panic!()
        };
        wanted.sort();
        assert_eq!(
            wanted,
            [
                Wanted::Variable("cfg".into()),
                Wanted::Variable("region".into()),
                Wanted::Variable("unset".into()),
                Wanted::Connection("rpc".into())
            ]
        );
        ctx.lookups.set_variable("region", Some("eu".into()));
        ctx.lookups.set_variable("cfg", Some(r#"{"nodes": 4}"#.into()));
        ctx.lookups.set_variable("unset", None);
        let conn = crate::secrets::Connection::from_uri("rpc", "ethereum://127.0.0.1:8545?chain_id=1337").unwrap();
        ctx.lookups.set_connection("rpc", Some(&conn));
        let Rendered::Done(out) = render_round(args, &ctx).unwrap() else {
            panic!()
        };
        assert_eq!(out["cmd"], "eu 4 127.0.0.1:8545 1337");
        assert_eq!(out["fallback"], "dflt");
        // A variable that does not exist is a failure naming it, not an empty string.
        let missing = json!({"cmd": "echo {{ var.value.nope }}"});
        let missing = missing.as_object().unwrap();
        assert!(matches!(render_round(missing, &ctx).unwrap(), Rendered::Needs(_)));
        ctx.lookups.set_variable("nope", None);
        let err = render_round(missing, &ctx).unwrap_err().to_string();
        assert!(
            err.contains("variable `nope` does not exist") && err.contains("`cmd`"),
            "{err}"
        );
        ctx.lookups.set_variable("text", Some("not json".into()));
        let err = render_round(json!({"x": "{{ var.json.text }}"}).as_object().unwrap(), &ctx)
            .map(|_| ())
            .unwrap_err()
            .to_string();
        assert!(err.contains("variable `text` is not JSON"), "{err}");
        ctx.lookups.set_connection("gone", None);
        let err = render_round(json!({"x": "{{ conn.gone.host }}"}).as_object().unwrap(), &ctx)
            .map(|_| ())
            .unwrap_err()
            .to_string();
        assert!(err.contains("connection `gone` does not exist"), "{err}");
    }

    #[test]
    fn renders_nested_args_and_native_values() {
        let args = json!({"cmd": "echo {{ ds }}", "list": ["{{ params.nodes }}", 3], "n": 5});
        let out = render_args(args.as_object().unwrap(), &ctx()).unwrap();
        assert_eq!(out["cmd"], "echo 2026-11-01");
        assert_eq!(out["list"], json!(["7", 3]));
        let native = TemplateContext { native: true, ..ctx() };
        let out = render_args(
            json!({"nodes": "{{ params.nodes }}", "text": "n={{ params.nodes }}"})
                .as_object()
                .unwrap(),
            &native,
        )
        .unwrap();
        assert_eq!(out["nodes"], json!(7));
        assert_eq!(out["text"], json!("n=7"));
    }
}
