//! Airflow's bulk bodies (`PATCH /api/v2/variables`, `PATCH /api/v2/connections`): a list of create, update
//! and delete actions, each over several entities, answered per action with the names that succeeded and the
//! errors of those that did not (`BulkResponse`). One entity failing does not stop the others.

use std::future::Future;

use axum::http::StatusCode;
use engine::store::Existing;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::error::{ApiError, ApiResult};

/// An entity of a bulk body, named by one of its fields.
pub trait Entity {
    fn name(&self) -> &str;
}

#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum OnExistence {
    #[default]
    Fail,
    Skip,
    Overwrite,
}

#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum OnNonExistence {
    #[default]
    Fail,
    Skip,
}

/// A name, or an entity, to delete.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum DeleteTarget<T> {
    Name(String),
    Entity(T),
}

#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "action", rename_all = "lowercase", deny_unknown_fields)]
pub enum BulkAction<T> {
    Create {
        entities: Vec<T>,
        #[serde(default)]
        action_on_existence: OnExistence,
    },
    Update {
        entities: Vec<T>,
        #[serde(default)]
        action_on_non_existence: OnNonExistence,
        #[serde(default)]
        update_mask: Option<Vec<String>>,
    },
    Delete {
        entities: Vec<DeleteTarget<T>>,
        #[serde(default)]
        action_on_non_existence: OnNonExistence,
    },
}

/// `BulkBody[...]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BulkBody<T> {
    pub actions: Vec<BulkAction<T>>,
}

/// One write or delete for the caller to carry out.
pub enum Action<T> {
    Write { entity: T, existing: Existing },
    Delete(String),
}

/// The most entities one body may carry.
const MAX_ENTITIES: usize = 1000;

/// Runs every action of `body` through `run`, collecting Airflow's `BulkResponse`.
pub async fn apply<T, F, Fut>(body: BulkBody<T>, mut run: F) -> ApiResult<Value>
where
    T: Entity,
    F: FnMut(Action<T>) -> Fut,
    Fut: Future<Output = ApiResult<String>>,
{
    let total: usize = body
        .actions
        .iter()
        .map(|a| match a {
            BulkAction::Create { entities, .. } | BulkAction::Update { entities, .. } => entities.len(),
            BulkAction::Delete { entities, .. } => entities.len(),
        })
        .sum();
    if total > MAX_ENTITIES {
        return Err(ApiError::validation(
            &["body", "actions"],
            format!("at most {MAX_ENTITIES} entities in one bulk request"),
            "too_long",
        ));
    }
    let mut response = serde_json::Map::new();
    for action in body.actions {
        let (kind, work, skip): (&str, Vec<Action<T>>, Option<StatusCode>) = match action {
            BulkAction::Create {
                entities,
                action_on_existence,
            } => {
                let existing = if action_on_existence == OnExistence::Overwrite {
                    Existing::Overwrite
                } else {
                    Existing::Fail
                };
                let skip = (action_on_existence == OnExistence::Skip).then_some(StatusCode::CONFLICT);
                let work = entities
                    .into_iter()
                    .map(|entity| Action::Write { entity, existing })
                    .collect();
                ("create", work, skip)
            }
            BulkAction::Update {
                entities,
                action_on_non_existence,
                update_mask,
            } => {
                if update_mask.is_some_and(|m| !m.is_empty()) {
                    return Err(ApiError::bad_request(
                        "update_mask in a bulk update is not supported by dagctl: send whole entities",
                    ));
                }
                let skip = (action_on_non_existence == OnNonExistence::Skip).then_some(StatusCode::NOT_FOUND);
                let work = entities
                    .into_iter()
                    .map(|entity| Action::Write {
                        entity,
                        existing: Existing::MustExist,
                    })
                    .collect();
                ("update", work, skip)
            }
            BulkAction::Delete {
                entities,
                action_on_non_existence,
            } => {
                let skip = (action_on_non_existence == OnNonExistence::Skip).then_some(StatusCode::NOT_FOUND);
                let work = entities
                    .into_iter()
                    .map(|target| match target {
                        DeleteTarget::Name(name) => Action::Delete(name),
                        DeleteTarget::Entity(entity) => Action::Delete(entity.name().to_string()),
                    })
                    .collect();
                ("delete", work, skip)
            }
        };
        let mut success = Vec::new();
        let mut errors = Vec::new();
        for item in work {
            match run(item).await {
                Ok(name) => success.push(Value::String(name)),
                Err(err) if Some(err.status) == skip => {}
                Err(err) => errors.push(json!({"error": err.detail, "status_code": err.status.as_u16()})),
            }
        }
        let entry = response
            .entry(kind.to_string())
            .or_insert_with(|| json!({"success": [], "errors": []}));
        if let Some(e) = entry["errors"].as_array_mut() {
            e.extend(errors);
        }
        if let Some(s) = entry["success"].as_array_mut() {
            s.extend(success);
        }
    }
    for kind in ["create", "update", "delete"] {
        response.entry(kind.to_string()).or_insert(Value::Null);
    }
    Ok(Value::Object(response))
}
