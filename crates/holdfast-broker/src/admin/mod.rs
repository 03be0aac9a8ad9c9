//! The admin HTTP listener: the JSON API under `/api/v1` (see docs/admin-api.md), `/metrics` in
//! Prometheus text format, `/healthz`, `/readyz` and a small dashboard at `/`.
//!
//! When a token is configured every `/api` and `/metrics` request must carry
//! `Authorization: Bearer TOKEN`; the probes and the dashboard's static page stay open (the page
//! asks for the token and sends it with its API calls).

mod api;
mod json;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tracing::{error, info};

use crate::broker::Broker;
use crate::config::AdminConfig;
use crate::ServeError;

/// What every handler can reach.
#[derive(Clone)]
pub struct AdminState {
    pub broker: Arc<Broker>,
    token: Option<Arc<str>>,
}

/// Bind the admin listener of `cfg` (when it has a `bind`) and spawn its server into `tasks`.
/// Returns the bound address.
pub async fn start(
    cfg: &AdminConfig,
    broker: Arc<Broker>,
    tasks: &mut JoinSet<()>,
) -> Result<Option<SocketAddr>, ServeError> {
    let Some(bind) = cfg.bind else {
        return Ok(None);
    };
    let listener = TcpListener::bind(bind)
        .await
        .map_err(|source| ServeError::Bind { addr: bind, source })?;
    let local = listener.local_addr().unwrap_or(bind);
    info!(addr = %local, auth = cfg.token.is_some(), "admin API listening");
    let app = router(broker, cfg.token.clone());
    tasks.spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            error!(error = %e, "admin API stopped");
        }
    });
    Ok(Some(local))
}

/// The whole admin application.
pub fn router(broker: Arc<Broker>, token: Option<String>) -> Router {
    let state = AdminState {
        broker,
        token: token.map(Arc::from),
    };
    let protected = Router::new()
        .route("/api/v1/sessions", get(api::list_sessions))
        .route(
            "/api/v1/sessions/:client_id",
            get(api::show_session).delete(api::discard_session),
        )
        .route("/api/v1/sessions/:client_id/kick", post(api::kick_session))
        .route("/api/v1/retained", get(api::list_retained))
        .route("/api/v1/retained/*topic", delete(api::delete_retained))
        .route("/api/v1/stats", get(api::stats))
        .route("/metrics", get(metrics))
        .route_layer(middleware::from_fn_with_state(state.clone(), require_token));
    Router::new()
        .route("/", get(dashboard))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .merge(protected)
        .fallback(not_found)
        .with_state(state)
}

/// An API error: its status and a JSON body `{"error": "..."}`.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            message: message.into(),
        }
    }
    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, message)
    }
    pub fn not_found(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = Json(serde_json::json!({ "error": self.message }));
        (self.status, body).into_response()
    }
}

async fn require_token(State(state): State<AdminState>, req: Request, next: Next) -> Response {
    if let Some(token) = &state.token {
        let given = req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, t)| t.trim());
        if !given.is_some_and(|g| constant_time_eq(g.as_bytes(), token.as_bytes())) {
            let mut resp = ApiError::new(
                StatusCode::UNAUTHORIZED,
                "missing or wrong bearer token (Authorization: Bearer TOKEN)",
            )
            .into_response();
            resp.headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            return resp;
        }
    }
    next.run(req).await
}

/// Compares without an early exit, so the time taken does not tell how much of a guess was right.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

async fn healthz() -> impl IntoResponse {
    Json(serde_json::json!({ "status": "ok" }))
}

async fn readyz(State(state): State<AdminState>) -> Response {
    if state
        .broker
        .ready
        .load(std::sync::atomic::Ordering::Acquire)
    {
        Json(serde_json::json!({ "status": "ready" })).into_response()
    } else {
        ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "recovering").into_response()
    }
}

async fn metrics(State(state): State<AdminState>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        crate::metrics::render(&state.broker),
    )
}

async fn dashboard() -> Html<&'static str> {
    Html(include_str!("dashboard.html"))
}

async fn not_found() -> ApiError {
    ApiError::not_found("no such endpoint; see docs/admin-api.md")
}
