//! Variables and connections for a running try's templates (`{{ var.value.x }}`, `{{ conn.x.host }}`),
//! decrypted for the try alone, as Airflow's execution API serves them to its task runners.
//!
//! | call | answer |
//! |------|--------|
//! | `GET /execution/variables/{key}` | `{key, value}`, or 404 |
//! | `GET /execution/connections/{conn_id}` | the connection with its password and extra, or 404 |

use axum::extract::{Path, State};
use axum::routing::get;
use axum::{Json, Router};
use engine::secrets::Connection;
use worker::execution::VariableResponse;

use super::{CallerTry, ExecState};
use crate::error::{ApiError, ApiResult};

pub(super) fn routes() -> Router<ExecState> {
    Router::new()
        .route("/execution/variables/{key}", get(variable))
        .route("/execution/connections/{conn_id}", get(connection))
}

async fn variable(
    State(state): State<ExecState>,
    caller: CallerTry,
    Path(key): Path<String>,
) -> ApiResult<Json<VariableResponse>> {
    caller.current(&state).await?;
    match state.vault.get_variable(&key).await {
        Ok(v) => Ok(Json(VariableResponse {
            key: v.key,
            value: v.value,
        })),
        Err(engine::Error::NotFound(_)) => Err(ApiError::not_found(format!("variable `{key}` does not exist"))),
        Err(err) => Err(err.into()),
    }
}

async fn connection(
    State(state): State<ExecState>,
    caller: CallerTry,
    Path(conn_id): Path<String>,
) -> ApiResult<Json<Connection>> {
    caller.current(&state).await?;
    match state.vault.get_connection(&conn_id).await {
        Ok(conn) => Ok(Json(conn)),
        Err(engine::Error::NotFound(_)) => Err(ApiError::not_found(format!("connection `{conn_id}` does not exist"))),
        Err(err) => Err(err.into()),
    }
}
