//! The assets page: every asset DAGs name, which DAGs it schedules and which tasks update it, and the latest
//! events with the runs they went into.

use axum::extract::State;
use axum::response::Response;
use engine::store::AssetEventFilter;
use serde_json::{json, Value};

use super::view::fail;
use super::UiUser;
use crate::html::render;
use crate::WebState;

/// Events shown on the page.
const EVENTS_SHOWN: i64 = 100;

/// `/assets`.
pub async fn assets(State(state): State<WebState>, user: UiUser) -> Response {
    let store = &state.store;
    let loaded = async {
        let assets = store.list_assets().await?;
        let refs = store.asset_references().await?;
        let last = store.last_asset_events().await?;
        let (events, _) = store
            .asset_events(&AssetEventFilter {
                descending: true,
                limit: EVENTS_SHOWN,
                ..Default::default()
            })
            .await?;
        Ok::<_, engine::Error>((assets, refs, last, events))
    };
    let (assets, refs, last, events) = match loaded.await {
        Ok(all) => all,
        Err(err) => return fail(err.into()),
    };
    let mut ctx = user.base(&state, "assets");
    ctx.insert(
        "assets".into(),
        json!(assets
            .iter()
            .map(|a| crate::api::assets::asset(a, &refs, last.get(&a.id)))
            .collect::<Vec<_>>()),
    );
    ctx.insert(
        "events".into(),
        json!(events.iter().map(crate::api::assets::event).collect::<Vec<_>>()),
    );
    render("assets.html", Value::Object(ctx))
}
