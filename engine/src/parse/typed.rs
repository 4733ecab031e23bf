//! dag-factory's typed values, resolved where its loader resolves them (right after PyYAML, before any layer
//! is merged): `{__type__: T, __args__: [...], key: value}` builds a Python object of type `T`, and
//! `{__join__: [...]}`, `{__and__: [...]}`, `{__or__: [...]}` fold a list into one value.
//!
//! dagctl builds the types it has a meaning for into the plain forms its readers take: `datetime.datetime` and
//! `datetime.date` become date text, `datetime.timedelta` keeps its mapping form with every field named (the
//! duration reader reads it), `builtins.list` becomes its `items`. Any other type (an Airflow asset, a
//! Kubernetes model, a timetable class) is one error naming the type, instead of a follow-on error from
//! whichever key holds it.

use chrono::NaiveDate;

use crate::yaml::{Node, Value};

/// `datetime.timedelta`'s positional parameters, in order.
const TIMEDELTA_FIELDS: &[&str] = &[
    "days",
    "seconds",
    "microseconds",
    "milliseconds",
    "minutes",
    "hours",
    "weeks",
];

/// `datetime.datetime`'s positional parameters (after `year, month, day`), in order.
const TIME_FIELDS: &[&str] = &["hour", "minute", "second", "microsecond"];

/// Resolves every typed value and `__join__`/`__and__`/`__or__` under `node`, in place, in dag-factory's order
/// (types first, then the folds). Problems are (line, message) pairs; a node that could not be built is left
/// as written.
pub(super) fn resolve(node: &mut Node) -> Vec<(usize, String)> {
    let mut problems = Vec::new();
    build_types(node, &mut problems);
    fold(node, &mut problems);
    problems
}

fn build_types(node: &mut Node, problems: &mut Vec<(usize, String)>) {
    match &mut node.value {
        Value::Seq(items) => items.iter_mut().for_each(|item| build_types(item, problems)),
        Value::Map(entries) => {
            for (_, value) in entries.iter_mut() {
                build_types(value, problems);
            }
            let type_name = entries
                .iter()
                .find(|(k, _)| k.as_str() == Some("__type__"))
                .map(|(_, v)| v.clone());
            let Some(type_node) = type_name else { return };
            let Some(type_name) = type_node.as_str().map(str::to_string) else {
                problems.push((type_node.line, "`__type__` must be a dotted Python type name".into()));
                return;
            };
            match build(&type_name, node) {
                Ok(Some(built)) => *node = built,
                Ok(None) => {}
                Err(message) => problems.push((node.line, message)),
            }
        }
        _ => {}
    }
}

/// A typed mapping's positional `__args__` and its keyword entries.
type Arguments = (Vec<Node>, Vec<(String, Node)>);

/// The positional `__args__` and the keyword entries of a typed mapping.
fn arguments(node: &Node) -> Result<Arguments, String> {
    let mut args = Vec::new();
    let mut kwargs = Vec::new();
    for (key, value) in node.as_map().unwrap_or_default() {
        match key.as_str() {
            Some("__type__") => {}
            Some("__args__") => match &value.value {
                Value::Seq(items) => args = items.clone(),
                _ => return Err(format!("`__args__` must be a list, got {}", value.kind())),
            },
            _ => kwargs.push((key.key_text().unwrap_or_default(), value.clone())),
        }
    }
    Ok((args, kwargs))
}

/// Builds the typed mapping `node` as `type_name`: `Ok(None)` keeps it as it is.
fn build(type_name: &str, node: &Node) -> Result<Option<Node>, String> {
    let at = |value: Value| Node {
        value,
        line: node.line,
        col: node.col,
    };
    match type_name {
        "builtins.list" => match node.get("items") {
            Some(Node {
                value: Value::Seq(items),
                ..
            }) => Ok(Some(at(Value::Seq(items.clone())))),
            Some(other) => Err(format!(
                "`items` of a `builtins.list` must be a list, got {}",
                other.kind()
            )),
            None => Err("a `builtins.list` needs `items`".into()),
        },
        "datetime.timedelta" => timedelta(node).map(|fields| Some(at(Value::Map(fields)))),
        "airflow.sdk.Asset"
        | "airflow.sdk.definitions.asset.Asset"
        | "airflow.assets.Asset"
        | "airflow.datasets.Dataset"
        | "airflow.Dataset"
        | "airflow.sdk.Dataset" => asset_uri(type_name, node).map(|uri| Some(at(Value::Str(uri)))),
        _ if timetable_kind(type_name).is_some() => {
            timetable(type_name, node).map(|fields| Some(at(Value::Map(fields))))
        }
        "datetime.datetime" | "datetime.date" => {
            let text = datetime(node, type_name == "datetime.date")?;
            Ok(Some(at(Value::Str(text))))
        }
        other => Err(unsupported(other)),
    }
}

/// The timetable classes dagctl schedules by, as `(short name, positional parameters)`, from the type name
/// dag-factory would import (`airflow.timetables.trigger.CronTriggerTimetable`, or Airflow 3's
/// `airflow.sdk.CronTriggerTimetable`).
pub(super) fn timetable_kind(type_name: &str) -> Option<(&'static str, &'static [&'static str])> {
    let (module, name) = type_name.rsplit_once('.')?;
    let known: (&'static str, &'static [&'static str]) = match name {
        "CronTriggerTimetable" => ("CronTriggerTimetable", &["cron"]),
        "CronDataIntervalTimetable" => ("CronDataIntervalTimetable", &["cron", "timezone"]),
        "DeltaDataIntervalTimetable" => ("DeltaDataIntervalTimetable", &["delta"]),
        "DeltaTriggerTimetable" => ("DeltaTriggerTimetable", &["delta"]),
        _ => return None,
    };
    let module_ok = matches!(
        (module, known.0),
        ("airflow.sdk" | "airflow.timetables.trigger", "CronTriggerTimetable")
            | (
                "airflow.sdk" | "airflow.timetables.interval",
                "CronDataIntervalTimetable"
            )
            | (
                "airflow.sdk" | "airflow.timetables.interval",
                "DeltaDataIntervalTimetable"
            )
            | ("airflow.sdk" | "airflow.timetables.trigger", "DeltaTriggerTimetable")
    );
    module_ok.then_some(known)
}

/// The URI of an `Asset(name, uri, ...)` (the name when no URI is given, as Airflow does) or a
/// `Dataset(uri, ...)`; checked as an asset URI.
fn asset_uri(type_name: &str, node: &Node) -> Result<String, String> {
    let (args, kwargs) = arguments(node)?;
    let named = |key: &str| kwargs.iter().find(|(k, _)| k == key).map(|(_, v)| v.clone());
    let text = |n: Option<Node>, what: &str| -> Result<Option<String>, String> {
        match n {
            None => Ok(None),
            Some(n) => n
                .as_str()
                .map(|s| Some(s.to_string()))
                .ok_or_else(|| format!("the {what} of an asset must be text, got {}", n.kind())),
        }
    };
    let known: &[&str] = if type_name.ends_with("Dataset") {
        &["uri", "extra"]
    } else {
        &["name", "uri", "group", "extra"]
    };
    if let Some((key, _)) = kwargs.iter().find(|(k, _)| !known.contains(&k.as_str())) {
        return Err(format!(
            "`{key}` of an asset is not something dagctl takes (it reads {})",
            known.join(", ")
        ));
    }
    let uri = if type_name.ends_with("Dataset") {
        text(args.first().cloned().or_else(|| named("uri")), "uri")?
    } else {
        text(args.get(1).cloned().or_else(|| named("uri")), "uri")?
            .or(text(args.first().cloned().or_else(|| named("name")), "name")?)
    };
    let uri = uri.ok_or_else(|| "an asset needs a `uri` (or a `name`)".to_string())?;
    crate::assets::check_uri(&uri)?;
    Ok(uri)
}

/// A timetable with every argument named (positional `__args__` as the class takes them).
fn timetable(type_name: &str, node: &Node) -> Result<Vec<(Node, Node)>, String> {
    let (short, positional) = timetable_kind(type_name).unwrap_or(("", &[]));
    let (args, kwargs) = arguments(node)?;
    if args.len() > positional.len() {
        return Err(format!(
            "a {short} takes at most {} positional argument(s) ({}), got {}",
            positional.len(),
            positional.join(", "),
            args.len()
        ));
    }
    let key = |text: &str, near: &Node| Node {
        value: Value::Str(text.to_string()),
        line: near.line,
        col: near.col,
    };
    let mut fields = vec![(key("__type__", node), key(type_name, node))];
    for (name, value) in positional.iter().zip(args) {
        fields.push((key(name, &value), value));
    }
    for (name, value) in kwargs {
        if fields.iter().any(|(k, _)| k.as_str() == Some(name.as_str())) {
            return Err(format!("{short} got `{name}` twice (in `__args__` and by name)"));
        }
        fields.push((key(&name, &value), value));
    }
    Ok(fields)
}

/// Why a Python type cannot be built, with what to write instead where there is something.
fn unsupported(type_name: &str) -> String {
    let last = type_name.rsplit('.').next().unwrap_or(type_name);
    let hint = if matches!(last, "Asset" | "Dataset") {
        ": write it as airflow.sdk.Asset (or airflow.datasets.Dataset)"
    } else if matches!(
        last,
        "AssetAlias" | "DatasetAlias" | "AssetWatcher" | "AssetAll" | "AssetAny"
    ) {
        ": asset aliases and watchers are not supported by dagctl; name the assets' URIs"
    } else if type_name.contains("timetables") {
        ": of the timetable classes dagctl has CronTriggerTimetable, CronDataIntervalTimetable, DeltaTriggerTimetable and DeltaDataIntervalTimetable"
    } else if type_name.starts_with("kubernetes.") || type_name.contains("cncf.kubernetes") {
        ": Kubernetes objects belong to KubernetesPodOperator, which dagctl does not have"
    } else if type_name == "dateutil.relativedelta.relativedelta" {
        ": write the schedule as a cron string or preset"
    } else {
        ""
    };
    format!("`__type__: {type_name}` builds a Python object, which dagctl cannot do{hint}; it builds datetime.datetime, datetime.date, datetime.timedelta and builtins.list")
}

/// A timedelta with every field named: positional `__args__` become days, seconds, ... as in Python.
fn timedelta(node: &Node) -> Result<Vec<(Node, Node)>, String> {
    let (args, kwargs) = arguments(node)?;
    if args.len() > TIMEDELTA_FIELDS.len() {
        return Err(format!(
            "a datetime.timedelta takes at most {} arguments ({}), got {}",
            TIMEDELTA_FIELDS.len(),
            TIMEDELTA_FIELDS.join(", "),
            args.len()
        ));
    }
    let key = |text: &str, like: &Node| Node {
        value: Value::Str(text.to_string()),
        line: like.line,
        col: like.col,
    };
    let mut fields = vec![(key("__type__", node), key("datetime.timedelta", node))];
    for (name, value) in TIMEDELTA_FIELDS.iter().zip(args) {
        fields.push((key(name, &value), value));
    }
    for (name, value) in kwargs {
        if !TIMEDELTA_FIELDS.contains(&name.as_str()) {
            return Err(format!(
                "unknown datetime.timedelta field `{name}`; expected one of {}",
                TIMEDELTA_FIELDS.join(", ")
            ));
        }
        if fields.iter().any(|(k, _)| k.as_str() == Some(name.as_str())) {
            return Err(format!(
                "datetime.timedelta got `{name}` twice (in `__args__` and by name)"
            ));
        }
        fields.push((key(&name, &value), value));
    }
    for (name, value) in &fields[1..] {
        if !matches!(value.value, Value::Int(_) | Value::Float(_)) {
            return Err(format!(
                "`{}` of a datetime.timedelta must be a number, got {}",
                name.as_str().unwrap_or_default(),
                value.kind()
            ));
        }
    }
    Ok(fields)
}

/// `datetime.datetime(year, month, day, hour, minute, second, microsecond)` or `datetime.date(year, month,
/// day)`, positional or by name, as ISO 8601 text in the DAG's time zone (as dag-factory reads a naive one).
fn datetime(node: &Node, date_only: bool) -> Result<String, String> {
    let type_name = if date_only {
        "datetime.date"
    } else {
        "datetime.datetime"
    };
    let (args, kwargs) = arguments(node)?;
    let mut names: Vec<&str> = vec!["year", "month", "day"];
    if !date_only {
        names.extend(TIME_FIELDS);
    }
    if args.len() > names.len() {
        return Err(format!(
            "a {type_name} takes at most {} arguments ({}), got {}",
            names.len(),
            names.join(", "),
            args.len()
        ));
    }
    let mut values: Vec<Option<i64>> = vec![None; names.len()];
    let mut set = |name: &str, value: &Node| -> Result<(), String> {
        if name == "tzinfo" || name == "tz" {
            return Err(format!(
                "`{name}` of a {type_name} is not supported; give the DAG a `timezone` instead"
            ));
        }
        let Some(index) = names.iter().position(|n| *n == name) else {
            return Err(format!(
                "unknown {type_name} field `{name}`; expected one of {}",
                names.join(", ")
            ));
        };
        let Value::Int(number) = value.value else {
            return Err(format!(
                "`{name}` of a {type_name} must be a whole number, got {}",
                value.kind()
            ));
        };
        if values[index].replace(number).is_some() {
            return Err(format!("{type_name} got `{name}` twice (in `__args__` and by name)"));
        }
        Ok(())
    };
    for (name, value) in names.clone().iter().zip(&args) {
        set(name, value)?;
    }
    for (name, value) in &kwargs {
        set(name, value)?;
    }
    let (Some(year), Some(month), Some(day)) = (values[0], values[1], values[2]) else {
        return Err(format!("a {type_name} needs year, month and day"));
    };
    let date = u32::try_from(month)
        .ok()
        .zip(u32::try_from(day).ok())
        .and_then(|(m, d)| NaiveDate::from_ymd_opt(i32::try_from(year).ok()?, m, d))
        .filter(|_| (1..=9999).contains(&year))
        .ok_or_else(|| format!("{year}-{month}-{day} is not a date"))?;
    if date_only {
        return Ok(date.format("%Y-%m-%d").to_string());
    }
    let part = |i: usize| values.get(i).copied().flatten().unwrap_or(0);
    let (hour, minute, second, micro) = (part(3), part(4), part(5), part(6));
    let time = u32::try_from(hour)
        .ok()
        .zip(u32::try_from(minute).ok())
        .zip(u32::try_from(second).ok().zip(u32::try_from(micro).ok()))
        .and_then(|((h, m), (s, us))| date.and_hms_micro_opt(h, m, s, us))
        .ok_or_else(|| format!("{hour}:{minute}:{second}.{micro} is not a time of day"))?;
    Ok(time.format("%Y-%m-%dT%H:%M:%S%.f").to_string())
}

/// `__join__` (text of the items, concatenated), `__and__` and `__or__` (asset conditions: as dag-factory
/// folds text items, `(a & b)` and `(a | b)`), top-down as dag-factory folds them.
fn fold(node: &mut Node, problems: &mut Vec<(usize, String)>) {
    match &mut node.value {
        Value::Seq(items) => items.iter_mut().for_each(|item| fold(item, problems)),
        Value::Map(entries) => {
            let operator = ["__and__", "__or__", "__join__"]
                .into_iter()
                .find(|op| entries.iter().any(|(k, _)| k.as_str() == Some(op)));
            let Some(operator) = operator else {
                for (_, value) in entries.iter_mut() {
                    fold(value, problems);
                }
                return;
            };
            let mut items = match entries.iter().find(|(k, _)| k.as_str() == Some(operator)) {
                Some((
                    _,
                    Node {
                        value: Value::Seq(items),
                        ..
                    },
                )) => items.clone(),
                Some((_, other)) => {
                    problems.push((other.line, format!("`{operator}` must be a list, got {}", other.kind())));
                    return;
                }
                None => return,
            };
            items.iter_mut().for_each(|item| fold(item, problems));
            let mut texts = Vec::new();
            for item in &items {
                match python_str(item) {
                    Some(text) => texts.push(text),
                    None => {
                        problems.push((
                            item.line,
                            format!("an item of `{operator}` must be text or a number, got {}", item.kind()),
                        ));
                        return;
                    }
                }
            }
            let text = match operator {
                "__join__" => texts.concat(),
                "__and__" => format!("({})", texts.join(" & ")),
                _ => format!("({})", texts.join(" | ")),
            };
            node.value = Value::Str(text);
        }
        _ => {}
    }
}

/// Python's `str()` of a scalar.
fn python_str(node: &Node) -> Option<String> {
    Some(match &node.value {
        Value::Null => "None".into(),
        Value::Bool(true) => "True".into(),
        Value::Bool(false) => "False".into(),
        Value::Int(n) => n.to_string(),
        Value::Float(f) if f.is_nan() => "nan".into(),
        Value::Float(f) if f.is_infinite() => if *f > 0.0 { "inf" } else { "-inf" }.into(),
        Value::Float(f) if f.fract() == 0.0 && f.abs() < 1e16 => format!("{f:.1}"),
        Value::Float(f) => f.to_string(),
        Value::Str(text) => text.clone(),
        Value::Seq(_) | Value::Map(_) => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resolved(text: &str) -> (serde_json::Value, Vec<(usize, String)>) {
        let mut doc = crate::yaml::parse_str(text).unwrap().remove(0);
        let problems = resolve(&mut doc);
        (doc.to_json(), problems)
    }

    #[test]
    fn datetimes_dates_and_lists() {
        let (json, problems) = resolved(
            "a: {__type__: datetime.datetime, year: 2024, month: 2, day: 29, hour: 3}\n\
             b: {__type__: datetime.datetime, __args__: [2024, 1, 1]}\n\
             c: {__type__: datetime.date, __args__: [2023, 12, 31]}\n\
             d: {__type__: builtins.list, items: [1, {__type__: datetime.date, year: 2020, month: 1, day: 2}]}\n",
        );
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(json["a"], "2024-02-29T03:00:00");
        assert_eq!(json["b"], "2024-01-01T00:00:00");
        assert_eq!(json["c"], "2023-12-31");
        assert_eq!(json["d"], serde_json::json!([1, "2020-01-02"]));
    }

    #[test]
    fn timedelta_arguments_become_named_fields() {
        let (json, problems) = resolved("t: {__type__: datetime.timedelta, __args__: [1, 30], minutes: 2}\n");
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(
            json["t"],
            serde_json::json!({"__type__": "datetime.timedelta", "days": 1, "seconds": 30, "minutes": 2})
        );
        let mut doc = crate::yaml::parse_str("{__type__: datetime.timedelta, __args__: [0, 90]}")
            .unwrap()
            .remove(0);
        assert!(resolve(&mut doc).is_empty());
        assert_eq!(crate::duration::duration_from_node(&doc).unwrap().as_secs(), 90);
    }

    #[test]
    fn folds_as_dag_factory() {
        let (json, problems) = resolved(
            "uri: {__join__: [s3://bucket/, {__join__: [run, 1]}, /, true]}\n\
             cond: {__or__: [a, {__and__: [b, c]}]}\n",
        );
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(json["uri"], "s3://bucket/run1/True");
        assert_eq!(json["cond"], "(a | (b & c))");
    }

    #[test]
    fn bad_forms_are_one_problem_each_with_their_line() {
        let cases = [
            (
                "x:\n  y: {__type__: airflow.sdk.Asset, uri: 'not a uri'}\n",
                2,
                "not an asset URI",
            ),
            (
                "x:\n  y: {__type__: airflow.sdk.AssetWatcher, name: w}\n",
                2,
                "watchers",
            ),
            (
                "x: {__type__: airflow.timetables.events.EventsTimetable, event_dates: []}\n",
                1,
                "CronTriggerTimetable, CronDataIntervalTimetable, DeltaTriggerTimetable and DeltaDataIntervalTimetable",
            ),
            (
                "x: {__type__: airflow.timetables.trigger.CronTriggerTimetable, __args__: [a, b]}\n",
                1,
                "at most 1 positional",
            ),
            (
                "x: {__type__: datetime.datetime, year: 2024, month: 2, day: 30}\n",
                1,
                "not a date",
            ),
            (
                "x: {__type__: datetime.datetime, year: 2024, month: 1, day: 1, tzinfo: UTC}\n",
                1,
                "timezone",
            ),
            (
                "x: {__type__: datetime.timedelta, fortnights: 1}\n",
                1,
                "unknown datetime.timedelta field",
            ),
            (
                "x: {__type__: datetime.timedelta, __args__: [1], days: 2}\n",
                1,
                "twice",
            ),
            ("x: {__type__: datetime.timedelta, hours: one}\n", 1, "must be a number"),
            ("x: {__type__: builtins.list}\n", 1, "needs `items`"),
            ("x:\n\n  {__join__: [a, [b]]}\n", 3, "must be text"),
            ("x: {__type__: [a]}\n", 1, "dotted"),
        ];
        for (text, line, needle) in cases {
            let (_, problems) = resolved(text);
            assert_eq!(problems.len(), 1, "{text}: {problems:?}");
            assert_eq!(problems[0].0, line, "{text}: {problems:?}");
            assert!(problems[0].1.contains(needle), "{text}: {problems:?}");
        }
    }
}
