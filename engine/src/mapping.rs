//! Airflow's dynamic task mapping: a task whose `expand` arguments are lists (written in the DAG file, or an
//! upstream task's XCom) runs once per element, each run a task instance of its own with a `map_index`.
//!
//! A run starts with one unexpanded instance (`map_index` -1) per mapped task. When its trigger rule lets it
//! run, the scheduler counts the elements ([`map_length`]): none skips it, too many or a value that is not a
//! list fails it, otherwise the instance becomes `map_index` 0 and instances 1..n join it. Each runner then
//! picks its own element ([`mapped_args`]). Several `expand` arguments are crossed (their product), the last
//! one written varying fastest, as Airflow does.

use serde::{Deserialize, Serialize};

use crate::state::TaskState;
use serde_json::Value as Json;

/// The most instances one mapped task may expand to (Airflow's `max_map_length` default).
pub const MAX_MAP_LENGTH: usize = 1024;

/// The `map_index` of a task instance that is not (yet) one of a mapped task's instances.
pub const UNMAPPED: i64 = -1;

/// One `expand` argument.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MappedArg {
    /// The operator argument each element is given as.
    pub key: String,
    pub source: MapSource,
}

/// Where a mapped argument's elements come from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MapSource {
    /// A list written in the DAG file.
    Literal(Vec<Json>),
    /// The `return_value` XCom of an upstream task (dag-factory's `task.output`); of a mapped upstream task,
    /// the list of its instances' values.
    Xcom { task_id: String },
}

impl MapSource {
    /// The elements, given the XCom values of the run's tasks (`return_value`, by task id). A dict maps as its
    /// `[key, value]` pairs, as in Airflow; anything else is an error naming its type.
    fn elements<'a>(&'a self, xcom: &dyn Fn(&str) -> Option<&'a Json>) -> Result<Vec<Json>, String> {
        match self {
            MapSource::Literal(items) => Ok(items.clone()),
            MapSource::Xcom { task_id } => match xcom(task_id) {
                None => Err(format!(
                    "upstream task `{task_id}` pushed no XCom (return_value) to map over"
                )),
                Some(Json::Array(items)) => Ok(items.clone()),
                Some(Json::Object(entries)) => Ok(entries
                    .iter()
                    .map(|(k, v)| Json::Array(vec![Json::String(k.clone()), v.clone()]))
                    .collect()),
                Some(other) => Err(format!(
                    "cannot map over the XCom of `{task_id}`: expected a list or a dict, got {} ({})",
                    json_type(other),
                    preview(other)
                )),
            },
        }
    }
}

/// The name of a JSON value's type in Airflow's (Python's) words.
pub fn json_type(value: &Json) -> &'static str {
    match value {
        Json::Null => "NoneType",
        Json::Bool(_) => "bool",
        Json::Number(n) if n.is_f64() => "float",
        Json::Number(_) => "int",
        Json::String(_) => "str",
        Json::Array(_) => "list",
        Json::Object(_) => "dict",
    }
}

fn preview(value: &Json) -> String {
    let text = value.to_string();
    match text.char_indices().nth(60) {
        Some((at, _)) => format!("{}...", &text[..at]),
        None => text,
    }
}

/// How many instances a mapped task expands to: the product of its arguments' lengths, or why it cannot be
/// expanded (an XCom that is missing or not a list, more than [`MAX_MAP_LENGTH`]).
pub fn map_length<'a>(expand: &'a [MappedArg], xcom: &dyn Fn(&str) -> Option<&'a Json>) -> Result<usize, String> {
    let mut total: usize = 1;
    for arg in expand {
        let len = arg.source.elements(xcom)?.len();
        total = total.saturating_mul(len);
    }
    if total > MAX_MAP_LENGTH {
        return Err(format!(
            "the mapped task would expand to {total} instances, more than the limit of {MAX_MAP_LENGTH}"
        ));
    }
    Ok(total)
}

/// The arguments of instance `map_index`: each mapped argument's element laid over the task's own (partial)
/// arguments.
pub fn mapped_args<'a>(
    args: &serde_json::Map<String, Json>,
    expand: &'a [MappedArg],
    map_index: i64,
    xcom: &dyn Fn(&str) -> Option<&'a Json>,
) -> Result<serde_json::Map<String, Json>, String> {
    let mut out = args.clone();
    let mut lists = Vec::with_capacity(expand.len());
    for arg in expand {
        lists.push(arg.source.elements(xcom)?);
    }
    let total: usize = lists.iter().map(Vec::len).product();
    let index = usize::try_from(map_index).ok().filter(|i| *i < total).ok_or_else(|| {
        format!("map_index {map_index} is out of range: the mapped arguments have {total} combinations")
    })?;
    let mut rest = index;
    for (arg, list) in expand.iter().zip(&lists).rev() {
        out.insert(arg.key.clone(), list[rest % list.len()].clone());
        rest /= list.len();
    }
    Ok(out)
}

/// XCom values as `xcom_pull` sees them, by (task id, key): a plain task's value, and a mapped task's
/// instances' values as one list in map_index order (instances that pushed none are left out). `values` are
/// (task id, key, map_index, value) in map_index order.
pub fn pull_view(
    values: impl IntoIterator<Item = (String, String, i64, Json)>,
) -> std::collections::HashMap<(String, String), Json> {
    let mut plain = std::collections::HashMap::new();
    let mut mapped: std::collections::HashMap<(String, String), Vec<Json>> = std::collections::HashMap::new();
    for (task_id, key, map_index, value) in values {
        if map_index < 0 {
            plain.insert((task_id, key), value);
        } else {
            mapped.entry((task_id, key)).or_default().push(value);
        }
    }
    for (key, values) in mapped {
        plain.insert(key, Json::Array(values));
    }
    plain
}

/// How a task instance is named to people: `task`, or `task[2]` for an instance of a mapped task.
pub fn instance_name(task_id: &str, map_index: i64) -> String {
    if map_index >= 0 {
        format!("{task_id}[{map_index}]")
    } else {
        task_id.to_string()
    }
}

/// The one state a mapped task's instances are shown as (Airflow's grid summary): the most pressing of
/// them, failures first, then what is still to happen, then the finished ones. Removed instances count only
/// when every instance is removed.
pub fn summary_state(states: impl IntoIterator<Item = TaskState>) -> Option<TaskState> {
    const ORDER: [TaskState; 11] = [
        TaskState::Failed,
        TaskState::UpstreamFailed,
        TaskState::UpForRetry,
        TaskState::Queued,
        TaskState::Scheduled,
        TaskState::Running,
        TaskState::Restarting,
        TaskState::None,
        TaskState::Success,
        TaskState::Skipped,
        TaskState::Removed,
    ];
    let seen: Vec<TaskState> = states.into_iter().collect();
    ORDER.into_iter().find(|state| seen.contains(state))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn literal(key: &str, items: Json) -> MappedArg {
        MappedArg {
            key: key.into(),
            source: MapSource::Literal(items.as_array().unwrap().clone()),
        }
    }

    #[test]
    fn products_vary_the_last_argument_fastest() {
        let expand = vec![literal("a", json!([1, 2])), literal("b", json!(["x", "y", "z"]))];
        let none = |_: &str| None;
        assert_eq!(map_length(&expand, &none).unwrap(), 6);
        let args = serde_json::Map::from_iter([("c".to_string(), json!(true))]);
        let picks: Vec<(Json, Json)> = (0..6)
            .map(|i| {
                let m = mapped_args(&args, &expand, i, &none).unwrap();
                assert_eq!(m["c"], json!(true));
                (m["a"].clone(), m["b"].clone())
            })
            .collect();
        assert_eq!(picks[0], (json!(1), json!("x")));
        assert_eq!(picks[2], (json!(1), json!("z")));
        assert_eq!(picks[3], (json!(2), json!("x")));
        assert!(mapped_args(&args, &expand, 6, &none).is_err());
        assert!(mapped_args(&args, &expand, -1, &none).is_err());
    }

    #[test]
    fn summaries_put_failures_first_and_removed_last() {
        use TaskState as S;
        assert_eq!(summary_state([S::Success, S::Failed, S::Running]), Some(S::Failed));
        assert_eq!(summary_state([S::Success, S::Running]), Some(S::Running));
        assert_eq!(summary_state([S::Success, S::Removed]), Some(S::Success));
        assert_eq!(summary_state([S::Removed]), Some(S::Removed));
        assert_eq!(summary_state([]), None);
    }

    #[test]
    fn xcom_sources_must_be_lists_or_dicts() {
        let expand = vec![MappedArg {
            key: "bash_command".into(),
            source: MapSource::Xcom { task_id: "up".into() },
        }];
        let text = json!("not a list");
        let err = map_length(&expand, &|_| Some(&text)).unwrap_err();
        assert!(err.contains("got str"), "{err}");
        assert!(map_length(&expand, &|_| None).unwrap_err().contains("pushed no XCom"));
        let dict = json!({"k": 1});
        assert_eq!(
            mapped_args(&serde_json::Map::new(), &expand, 0, &|_| Some(&dict)).unwrap()["bash_command"],
            json!(["k", 1])
        );
        let big = Json::Array(vec![json!(0); MAX_MAP_LENGTH + 1]);
        assert!(map_length(&expand, &|_| Some(&big)).unwrap_err().contains("limit"));
        let empty = json!([]);
        assert_eq!(map_length(&expand, &|_| Some(&empty)).unwrap(), 0);
    }
}
