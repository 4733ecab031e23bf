//! The web UI: server-rendered pages with a little script, every asset compiled into the binary.

use axum::http::StatusCode;
use axum::response::{Html, IntoResponse};
use axum::Router;

use crate::WebState;

pub fn routes() -> Router<WebState> {
    Router::new()
}

pub fn not_found_page() -> impl IntoResponse {
    (
        StatusCode::NOT_FOUND,
        Html("<!doctype html><title>Not found</title><h1>Not found</h1>"),
    )
}
