//! The HTTP API's routes, and what every process serves beside them (health, metrics).

use crate::auth::require_token;
use crate::error::ApiError;
use crate::state::ApiState;
use crate::{accounts, actions, people, sending};
use axum::extract::{DefaultBodyLimit, State};
use axum::http::StatusCode;
use axum::routing::{delete, get, post, put};
use axum::{Json, Router, middleware};

pub fn router(state: ApiState) -> Router {
    let v1 = Router::new()
        .route("/users", post(accounts::create_user))
        .route("/users/{id}", delete(people::delete_user))
        .route(
            "/accounts",
            post(accounts::create_account).get(accounts::list_accounts),
        )
        .route(
            "/accounts/{id}",
            get(accounts::get_account)
                .patch(accounts::update_account)
                .delete(people::delete_account),
        )
        .route("/accounts/{id}/primary", post(people::set_primary))
        .route(
            "/accounts/{id}/access",
            get(people::list_access).post(people::grant_access),
        )
        .route(
            "/accounts/{id}/access/{user_id}",
            delete(people::revoke_access),
        )
        .route("/messages", get(people::list_messages))
        .route("/messages/{id}", get(people::get_message))
        .route("/mailbox-actions", post(actions::create_action))
        .route("/mailbox-actions/{id}", get(actions::get_action))
        .route("/contacts/{id}/messages", get(people::contact_messages))
        .route("/accounts/{id}/folders", put(accounts::set_active_folders))
        .route("/accounts/{id}/sync", post(accounts::sync_account_now))
        .route(
            "/accounts/{id}/reconnect",
            post(accounts::reconnect_account),
        )
        .route("/connection-tests", post(accounts::connection_test))
        .route("/outgoing-messages/{id}", get(sending::get_outgoing))
        .route(
            "/system-account",
            put(sending::set_system_account).get(sending::get_system_account),
        )
        .route("/users/{id}/signature", put(sending::set_signature))
        .merge(
            // Attachments travel base64-encoded inside the JSON: 25 MB decoded is ~34 MB.
            Router::new()
                .route("/messages", post(sending::send_message))
                .route("/system-mail", post(sending::send_system_mail))
                .layer(DefaultBodyLimit::max(
                    sending::MAX_ATTACHMENT_BYTES / 3 * 4 + (2 << 20),
                )),
        )
        .route_layer(middleware::from_fn_with_state(state.clone(), require_token))
        .route_layer(middleware::from_fn(trace_request));
    Router::new()
        .nest("/v1", v1)
        // The API's description is public: it names no data.
        .route(
            "/v1/openapi.json",
            get(|| async { Json(crate::openapi::document()) }),
        )
        .route("/healthz", get(|| async { "ok" }))
        .route("/metrics", get(metrics))
        .route("/readyz", get(readyz))
        // Both after every route: the 405 fallback is set on the routes that exist.
        .method_not_allowed_fallback(crate::extract::method_not_allowed)
        .fallback(crate::extract::not_found)
        .with_state(state)
}

/// One span per API request, named by its route; a CRM that sends `traceparent` gets the
/// request (and the jobs it publishes) in its own trace.
async fn trace_request(
    request: axum::extract::Request,
    next: middleware::Next,
) -> axum::response::Response {
    use tracing::Instrument;
    let route = request
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| request.uri().path().to_owned());
    let span = tracing::info_span!(
        "http.request",
        otel.name = %format!("{} {route}", request.method()),
        method = %request.method(),
        route,
        status = tracing::field::Empty,
    );
    let headers: Vec<(String, String)> = request
        .headers()
        .iter()
        .filter(|(k, _)| k.as_str().starts_with("trace"))
        .filter_map(|(k, v)| Some((k.as_str().to_owned(), v.to_str().ok()?.to_owned())))
        .collect();
    mailfleet_telemetry::propagation::continue_from(&span, &headers);
    let response = next.run(request).instrument(span.clone()).await;
    span.record("status", response.status().as_u16());
    response
}

/// Prometheus metrics; the coordinator adds what it sees from above: accounts by state and
/// the backlog of each queue.
async fn metrics(State(s): State<ApiState>) -> impl axum::response::IntoResponse {
    let m = mailfleet_telemetry::metrics::metrics();
    if let Ok(mut conn) = s.store.conn().await
        && let Ok(states) = mailfleet_store::accounts::count_by_state(&mut conn).await
    {
        for (state, n) in states {
            m.set_accounts(&state, n);
        }
    }
    let names = s.broker.names();
    for queue in [
        &names.sync,
        &names.refresh,
        &names.send,
        &names.test_connection,
        &names.dead,
    ] {
        if let Ok(n) = s.broker.ready_count(queue).await {
            m.set_queue_messages(queue, i64::from(n));
        }
    }
    (
        [(
            axum::http::header::CONTENT_TYPE,
            mailfleet_telemetry::metrics::CONTENT_TYPE,
        )],
        mailfleet_telemetry::metrics::render(),
    )
}

async fn readyz(State(s): State<ApiState>) -> Result<&'static str, ApiError> {
    if s.broker.ensure_connected().await.is_err() {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "RabbitMQ is not connected",
        ));
    }
    s.store.ping().await?;
    Ok("ready")
}
