//! Whatever a request gets wrong — its path, query, body, route, method, token or acting
//! user — the answer is the JSON error `{"code", "message"}` with a documented code, never
//! a framework's plain text.

use crate::app::{App, TOKEN};
use mailfleet_coordinator::ACTING_USER_HEADER;
use serde_json::{Value, json};

/// A request and the error it must get: method, path, body, (status, code).
type Case<'a> = (&'a str, &'a str, Option<&'a str>, (u16, &'a str));

/// A raw request: the body is sent as given, with `Content-Type: application/json`.
async fn raw(
    app: &App,
    method: &str,
    path: &str,
    user: Option<i64>,
    body: Option<&str>,
) -> (u16, String, Value, reqwest::header::HeaderMap) {
    let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
    let mut r = app
        .http
        .request(method, format!("{}{path}", app.api))
        .bearer_auth(TOKEN);
    if let Some(u) = user {
        r = r.header(ACTING_USER_HEADER, u.to_string());
    }
    if let Some(b) = body {
        r = r
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(b.to_owned());
    }
    let r = r.send().await.unwrap();
    let status = r.status().as_u16();
    let headers = r.headers().clone();
    let content_type = headers
        .get(reqwest::header::CONTENT_TYPE)
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    let text = r.text().await.unwrap();
    let value = serde_json::from_str(&text).unwrap_or(Value::Null);
    (status, content_type, value, headers)
}

fn assert_error(
    what: &str,
    (status, content_type, body, _): &(u16, String, Value, reqwest::header::HeaderMap),
    expected: (u16, &str),
) {
    assert_eq!(
        (*status, body["code"].as_str()),
        (expected.0, Some(expected.1)),
        "{what}: {body}"
    );
    assert_eq!(content_type, "application/json", "{what}");
    assert!(
        body["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{what}: {body}"
    );
    assert_eq!(
        body.as_object().unwrap().len(),
        2,
        "{what}: only code and message: {body}"
    );
}

#[tokio::test]
async fn malformed_paths_queries_and_bodies_answer_the_json_error() {
    let app = App::start().await;
    let user = Some(app.acting().unwrap());
    let cases: [Case; 12] = [
        // The issue's examples.
        (
            "DELETE",
            "/v1/accounts/6.27e-241",
            None,
            (400, "invalid_path"),
        ),
        (
            "PATCH",
            "/v1/accounts/1",
            Some("null"),
            (422, "invalid_request"),
        ),
        (
            "PATCH",
            "/v1/accounts/1",
            Some(r#"{"create_contacts": "yes"}"#),
            (422, "invalid_request"),
        ),
        (
            "GET",
            "/v1/accounts/99999999999999999999",
            None,
            (400, "invalid_path"),
        ),
        (
            "DELETE",
            "/v1/accounts/1/access/abc",
            None,
            (400, "invalid_path"),
        ),
        (
            "GET",
            "/v1/messages?limit=abc",
            None,
            (400, "invalid_query"),
        ),
        ("GET", "/v1/messages?limit=0", None, (400, "invalid_query")),
        (
            "GET",
            "/v1/messages?colour=red",
            None,
            (400, "invalid_query"),
        ),
        (
            "GET",
            "/v1/messages?folder=a%00b",
            None,
            (400, "invalid_query"),
        ),
        // serde reads an array as a struct's fields in order: not here.
        (
            "PATCH",
            "/v1/accounts/1",
            Some("[null, null]"),
            (422, "invalid_request"),
        ),
        (
            "POST",
            "/v1/users",
            Some("not json"),
            (422, "invalid_request"),
        ),
        (
            "POST",
            "/v1/users",
            Some(r#"{"email": "a@b.test", "name": "a\u0000b"}"#),
            (422, "invalid_request"),
        ),
    ];
    for (method, path, body, expected) in cases {
        let answer = raw(&app, method, path, user, body).await;
        assert_error(&format!("{method} {path} {body:?}"), &answer, expected);
    }
    // A null body for the one operation whose body is optional means no body.
    let (status, _, body, _) = raw(
        &app,
        "POST",
        "/v1/accounts/99999/reconnect",
        user,
        Some("null"),
    )
    .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (404, Some("not_found")),
        "{body}"
    );
    // Over the size limit (2 MB but for sending): refused before it is read, still JSON.
    let big = format!(
        r#"{{"email": "a@b.test", "name": "{}"}}"#,
        "x".repeat(3 << 20)
    );
    let answer = raw(&app, "POST", "/v1/users", None, Some(&big)).await;
    assert_error("a body over the limit", &answer, (413, "too_large"));
    // Wrong-typed bodies, each field (the message names it).
    let (_, _, body, _) = raw(&app, "POST", "/v1/users", None, Some(r#"{"email": 7}"#)).await;
    assert!(
        body["message"].as_str().unwrap().contains("email"),
        "{body}"
    );
}

#[tokio::test]
async fn routes_methods_tokens_and_acting_users_answer_the_json_error() {
    let app = App::start().await;
    let user = Some(app.acting().unwrap());
    let unknown = raw(&app, "GET", "/v1/nothing-here", user, None).await;
    assert_error("an unknown route", &unknown, (404, "not_found"));
    let wrong_method = raw(&app, "PUT", "/v1/accounts", user, None).await;
    assert_error("a wrong method", &wrong_method, (405, "method_not_allowed"));
    let allow = wrong_method.3.get(reqwest::header::ALLOW).unwrap();
    let mut allowed: Vec<&str> = allow.to_str().unwrap().split(',').collect();
    allowed.sort_unstable();
    assert_eq!(allowed, ["GET", "HEAD", "POST"]);

    let r = app
        .http
        .get(format!("{}/v1/accounts", app.api))
        .bearer_auth("wrong")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["code"], "unauthorized");

    let missing = raw(&app, "GET", "/v1/accounts", None, None).await;
    assert_error("no acting user", &missing, (401, "acting_user_required"));
    let r = app
        .http
        .get(format!("{}/v1/accounts", app.api))
        .bearer_auth(TOKEN)
        .header(ACTING_USER_HEADER, "ann")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 422);
    assert_eq!(r.json::<Value>().await.unwrap()["code"], "invalid_request");
    let nobody = raw(&app, "GET", "/v1/accounts", Some(987_654_321), None).await;
    assert_error("an unknown acting user", &nobody, (403, "unknown_user"));
}

#[tokio::test]
async fn a_whole_number_written_as_a_float_is_that_integer() {
    let app = App::start().await;
    let admin = app.create_admin().await;
    let (status, body) = app
        .request_as(
            reqwest::Method::PUT,
            "/v1/system-account",
            Some(admin),
            None,
            Some(json!({ "account_id": 987_654.0 })),
        )
        .await;
    // Read as the id 987654 (which names no account), not refused as a float.
    assert_eq!(
        (status, body["code"].as_str()),
        (404, Some("not_found")),
        "{body}"
    );
    let (status, body) = app
        .request_as(
            reqwest::Method::PUT,
            "/v1/system-account",
            Some(admin),
            None,
            Some(json!({ "account_id": 1.5 })),
        )
        .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (422, Some("invalid_request")),
        "{body}"
    );
}
