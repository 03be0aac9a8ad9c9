//! The `/api/v1` handlers. Every answer is JSON; bad input is a 400 with `{"error": "..."}`.

use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

use super::{json as j, AdminState, ApiError};
use crate::broker::{AdminAction, SessionQuery};

type ApiResult = Result<Json<Value>, ApiError>;

/// The most sessions one page holds (and the default page size).
const MAX_LIMIT: usize = 1000;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SessionParams {
    prefix: Option<String>,
    connected: Option<bool>,
    offset: Option<usize>,
    limit: Option<usize>,
}

fn query<T>(q: Result<Query<T>, QueryRejection>) -> Result<T, ApiError> {
    q.map(|Query(t)| t)
        .map_err(|e| ApiError::bad_request(e.body_text()))
}

fn path(p: Result<Path<String>, PathRejection>) -> Result<String, ApiError> {
    p.map(|Path(s)| s)
        .map_err(|e| ApiError::bad_request(e.body_text()))
}

pub async fn list_sessions(
    State(st): State<AdminState>,
    q: Result<Query<SessionParams>, QueryRejection>,
) -> ApiResult {
    let p = query(q)?;
    let limit = p.limit.unwrap_or(MAX_LIMIT);
    if limit == 0 || limit > MAX_LIMIT {
        return Err(ApiError::bad_request(format!(
            "limit must be between 1 and {MAX_LIMIT}"
        )));
    }
    let q = SessionQuery {
        prefix: p.prefix.filter(|p| !p.is_empty()),
        connected: p.connected,
        offset: p.offset.unwrap_or(0),
        limit,
    };
    let (sessions, total) = st.broker.list_sessions(&q);
    let sessions: Vec<Value> = sessions.iter().map(j::session).collect();
    Ok(Json(json!({ "total": total, "sessions": sessions })))
}

pub async fn show_session(
    State(st): State<AdminState>,
    id: Result<Path<String>, PathRejection>,
) -> ApiResult {
    let id = path(id)?;
    match st.broker.session_info(&id) {
        Some(info) => Ok(Json(j::session(&info))),
        None => Err(no_session(&id)),
    }
}

fn no_session(id: &str) -> ApiError {
    ApiError::not_found(format!("no session '{id}'"))
}

async fn act(st: AdminState, id: String, action: AdminAction) -> Result<(), ApiError> {
    let ticket = st
        .broker
        .admin_session(&id, action)
        .ok_or_else(|| no_session(&id))?;
    ticket.wait().await.map_err(|e| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("the store could not record the change: {e}"),
        )
    })
}

pub async fn discard_session(
    State(st): State<AdminState>,
    id: Result<Path<String>, PathRejection>,
) -> ApiResult {
    let id = path(id)?;
    act(st, id.clone(), AdminAction::Discard).await?;
    Ok(Json(json!({ "discarded": id })))
}

pub async fn kick_session(
    State(st): State<AdminState>,
    id: Result<Path<String>, PathRejection>,
) -> ApiResult {
    let id = path(id)?;
    act(st, id.clone(), AdminAction::Kick).await?;
    Ok(Json(json!({ "kicked": id })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetainedParams {
    filter: Option<String>,
}

pub async fn list_retained(
    State(st): State<AdminState>,
    q: Result<Query<RetainedParams>, QueryRejection>,
) -> ApiResult {
    let filter = query(q)?.filter.unwrap_or_else(|| "#".to_string());
    holdfast_proto::topic::validate_topic_filter(&filter).map_err(|why| {
        ApiError::bad_request(format!("\"{filter}\" is not a valid topic filter: {why}"))
    })?;
    let list: Vec<Value> = st
        .broker
        .list_retained(&filter)
        .iter()
        .map(j::retained)
        .collect();
    Ok(Json(json!({ "total": list.len(), "retained": list })))
}

pub async fn delete_retained(
    State(st): State<AdminState>,
    topic: Result<Path<String>, PathRejection>,
) -> ApiResult {
    let topic = path(topic)?;
    if !st.broker.delete_retained(&topic) {
        return Err(ApiError::not_found(format!(
            "no retained message on '{topic}'"
        )));
    }
    st.broker.barrier().wait().await.map_err(|e| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("the store could not record the change: {e}"),
        )
    })?;
    Ok(Json(json!({ "deleted": topic })))
}

pub async fn stats(State(st): State<AdminState>) -> ApiResult {
    Ok(Json(j::stats(&st.broker)))
}
