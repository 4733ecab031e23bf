//! Renders a try's templates, fetching the variables and connections they use from the engine in rounds
//! (`engine::template::render_round`); their secrets join the log's masker before anything can print them.

use engine::secrets::{percent_encode, Connection, Variable};
use engine::template::{render_round, Rendered, TemplateContext, Wanted};
use hyper::Method;
use serde_json::Value as Json;

use super::TaskLog;
use crate::client::{ClientError, ExecutionClient};
use crate::execution::VariableResponse;

/// Rounds of fetching before a template that keeps naming new variables is refused.
const MAX_ROUNDS: usize = 16;

/// The rendered arguments, or why the try fails.
pub(super) async fn render(
    args: &serde_json::Map<String, Json>,
    ctx: &TemplateContext,
    client: &ExecutionClient,
    log: &TaskLog,
) -> Result<serde_json::Map<String, Json>, String> {
    for _ in 0..MAX_ROUNDS {
        match render_round(args, ctx).map_err(|e| e.to_string())? {
            Rendered::Done(args) => return Ok(args),
            Rendered::Needs(wanted) => {
                for name in wanted {
                    fetch(&name, ctx, client, log).await?;
                }
            }
        }
    }
    Err(format!(
        "the templates still asked for new variables or connections after {MAX_ROUNDS} rounds"
    ))
}

async fn fetch(name: &Wanted, ctx: &TemplateContext, client: &ExecutionClient, log: &TaskLog) -> Result<(), String> {
    let absent = |err: &ClientError| matches!(err, ClientError::Refused { status: 404, .. });
    match name {
        Wanted::Variable(key) => {
            let path = format!("/execution/variables/{}", percent_encode(key));
            match client.call::<(), VariableResponse>(Method::GET, &path, None).await {
                Ok(v) => {
                    let variable = Variable {
                        key: key.clone(),
                        value: v.value,
                        description: None,
                    };
                    log.add_secrets(variable.secret_values());
                    ctx.lookups.set_variable(key, Some(variable.value));
                }
                Err(err) if absent(&err) => ctx.lookups.set_variable(key, None),
                Err(err) => return Err(format!("cannot read {name}: {err}")),
            }
        }
        Wanted::Connection(id) => {
            let path = format!("/execution/connections/{}", percent_encode(id));
            match client.call::<(), Connection>(Method::GET, &path, None).await {
                Ok(conn) => {
                    log.add_secrets(conn.secret_values());
                    ctx.lookups.set_connection(id, Some(&conn));
                }
                Err(err) if absent(&err) => ctx.lookups.set_connection(id, None),
                Err(err) => return Err(format!("cannot read {name}: {err}")),
            }
        }
    }
    Ok(())
}
