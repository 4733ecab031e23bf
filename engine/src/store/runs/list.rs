//! Listing runs: filters, sort orders and keyset cursors; one page at a time, with the count of all matches.

use chrono::{DateTime, Utc};
use sqlx::Row;

use super::{run_from_row, RunRow, RunType, RUN_COLUMNS};
use crate::state::RunState;
use crate::store::{micros, Store};
use crate::{Error, Result};

/// Filters for listing runs.
#[derive(Debug, Clone, Default)]
pub struct RunFilter {
    pub dag_id: Option<String>,
    pub states: Vec<RunState>,
    /// Any of these types (all when empty).
    pub run_types: Vec<RunType>,
    /// SQL LIKE pattern on the run id (`%` and `_` wildcards).
    pub run_id_pattern: Option<String>,
    pub run_after: TimeRange,
    pub logical_date: TimeRange,
    pub start_date: TimeRange,
    pub end_date: TimeRange,
    pub limit: i64,
    pub offset: i64,
    /// Sort column; `run_after` when None.
    pub order_by: Option<RunOrder>,
    /// Newest first when true.
    pub descending: bool,
    /// Keyset paging: only rows after this (sort value, id) in the chosen order.
    pub after: Option<(CursorValue, i64)>,
}

/// An inclusive or exclusive time range; every bound optional.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct TimeRange {
    pub gte: Option<DateTime<Utc>>,
    pub gt: Option<DateTime<Utc>>,
    pub lte: Option<DateTime<Utc>>,
    pub lt: Option<DateTime<Utc>>,
}

/// The columns runs can be sorted by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunOrder {
    Id,
    DagId,
    RunId,
    State,
    RunType,
    RunAfter,
    LogicalDate,
    StartDate,
    EndDate,
}

impl RunOrder {
    pub const ALL: [(&'static str, RunOrder); 9] = [
        ("id", RunOrder::Id),
        ("dag_id", RunOrder::DagId),
        ("run_id", RunOrder::RunId),
        ("state", RunOrder::State),
        ("run_type", RunOrder::RunType),
        ("run_after", RunOrder::RunAfter),
        ("logical_date", RunOrder::LogicalDate),
        ("start_date", RunOrder::StartDate),
        ("end_date", RunOrder::EndDate),
    ];

    pub fn parse(name: &str) -> Option<RunOrder> {
        RunOrder::ALL.iter().find(|(n, _)| *n == name).map(|(_, o)| *o)
    }

    pub fn column(self) -> &'static str {
        RunOrder::ALL
            .iter()
            .find(|(_, o)| *o == self)
            .map(|(n, _)| *n)
            .unwrap_or("id")
    }

    /// Columns that can be NULL cannot carry a keyset cursor.
    pub fn nullable(self) -> bool {
        matches!(self, RunOrder::LogicalDate | RunOrder::StartDate | RunOrder::EndDate)
    }

    fn is_text(self) -> bool {
        matches!(
            self,
            RunOrder::DagId | RunOrder::RunId | RunOrder::State | RunOrder::RunType
        )
    }

    /// The value of this column in a row, for a cursor.
    pub fn value_of(self, run: &RunRow) -> CursorValue {
        match self {
            RunOrder::Id => CursorValue::Int(run.id),
            RunOrder::DagId => CursorValue::Text(run.dag_id.clone()),
            RunOrder::RunId => CursorValue::Text(run.run_id.clone()),
            RunOrder::State => CursorValue::Text(run.state.as_str().to_string()),
            RunOrder::RunType => CursorValue::Text(run.run_type.as_str().to_string()),
            RunOrder::RunAfter => CursorValue::Int(micros(run.run_after)),
            RunOrder::LogicalDate => CursorValue::Int(run.logical_date.map(micros).unwrap_or(0)),
            RunOrder::StartDate => CursorValue::Int(run.start_date.map(micros).unwrap_or(0)),
            RunOrder::EndDate => CursorValue::Int(run.end_date.map(micros).unwrap_or(0)),
        }
    }
}

/// A sort value carried in a keyset cursor.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(untagged)]
pub enum CursorValue {
    Int(i64),
    Text(String),
}

enum Bind {
    Int(i64),
    Text(String),
}

impl Store {
    /// Runs matching a filter (one page), and how many match in all (ignoring the page and cursor).
    pub async fn list_runs(&self, filter: &RunFilter) -> Result<(Vec<RunRow>, i64)> {
        let mut conditions = Vec::new();
        let mut binds: Vec<Bind> = Vec::new();
        let bind = |binds: &mut Vec<Bind>, value: Bind| {
            binds.push(value);
            format!("${}", binds.len())
        };
        if let Some(dag_id) = &filter.dag_id {
            let p = bind(&mut binds, Bind::Text(dag_id.clone()));
            conditions.push(format!("dag_id = {p}"));
        }
        if !filter.states.is_empty() {
            let list: Vec<String> = filter
                .states
                .iter()
                .map(|s| bind(&mut binds, Bind::Text(s.as_str().to_string())))
                .collect();
            conditions.push(format!("state IN ({})", list.join(", ")));
        }
        if !filter.run_types.is_empty() {
            let list: Vec<String> = filter
                .run_types
                .iter()
                .map(|t| bind(&mut binds, Bind::Text(t.as_str().to_string())))
                .collect();
            conditions.push(format!("run_type IN ({})", list.join(", ")));
        }
        if let Some(pattern) = &filter.run_id_pattern {
            let p = bind(&mut binds, Bind::Text(pattern.clone()));
            conditions.push(format!("run_id LIKE {p}"));
        }
        for (column, range) in [
            ("run_after", &filter.run_after),
            ("logical_date", &filter.logical_date),
            ("start_date", &filter.start_date),
            ("end_date", &filter.end_date),
        ] {
            for (op, bound) in [(">=", range.gte), (">", range.gt), ("<=", range.lte), ("<", range.lt)] {
                if let Some(at) = bound {
                    let p = bind(&mut binds, Bind::Int(micros(at)));
                    conditions.push(format!("{column} {op} {p}"));
                }
            }
        }
        let where_clause = if conditions.is_empty() {
            String::new()
        } else {
            format!("WHERE {}", conditions.join(" AND "))
        };
        let count_sql = format!("SELECT COUNT(*) FROM dag_run {where_clause}");
        let order_by = filter.order_by.unwrap_or(RunOrder::RunAfter);
        let column = order_by.column();
        let (order, cmp) = if filter.descending { ("DESC", "<") } else { ("ASC", ">") };
        let mut page_conditions = conditions.clone();
        let count_binds = binds.len();
        if let Some((value, last_id)) = &filter.after {
            if order_by.nullable() {
                return Err(Error::invalid(format!(
                    "cursor paging cannot order by `{column}`, which can be empty"
                )));
            }
            let value = match (value, order_by.is_text()) {
                (CursorValue::Int(v), false) => Bind::Int(*v),
                (CursorValue::Text(v), true) => Bind::Text(v.clone()),
                _ => return Err(Error::invalid("the cursor does not match the sort order")),
            };
            let v = bind(&mut binds, value);
            let id = bind(&mut binds, Bind::Int(*last_id));
            page_conditions.push(if order_by == RunOrder::Id {
                format!("id {cmp} {id}")
            } else {
                format!("({column} {cmp} {v} OR ({column} = {v} AND id {cmp} {id}))")
            });
        }
        let page_where = if page_conditions.is_empty() {
            String::new()
        } else {
            format!("WHERE {}", page_conditions.join(" AND "))
        };
        let limit = if filter.limit <= 0 { 100 } else { filter.limit };
        let tiebreak = if order_by == RunOrder::Id {
            String::new()
        } else {
            format!(", id {order}")
        };
        let sql = format!(
            "SELECT {RUN_COLUMNS} FROM dag_run {page_where} ORDER BY {column} {order}{tiebreak} LIMIT {limit} OFFSET {}",
            filter.offset.max(0)
        );
        let mut query = sqlx::query(&sql);
        for value in &binds {
            query = match value {
                Bind::Int(v) => query.bind(*v),
                Bind::Text(v) => query.bind(v.clone()),
            };
        }
        let runs = query
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(run_from_row)
            .collect::<Result<Vec<_>>>()?;
        let mut count_query = sqlx::query(&count_sql);
        for value in &binds[..count_binds] {
            count_query = match value {
                Bind::Int(v) => count_query.bind(*v),
                Bind::Text(v) => count_query.bind(v.clone()),
            };
        }
        let total: i64 = count_query.fetch_one(&self.pool).await?.try_get(0)?;
        Ok((runs, total))
    }
}
