//! The OpenAPI document served at /v1/openapi.json, held to the real API: every documented
//! operation is called, every answer's status must be documented for it, and its JSON must
//! match the documented schema — with no field the schema does not name.

use crate::app::App;
use mailfleet_testkit::TestMailbox;
use serde_json::{Value, json};
use std::collections::BTreeSet;

/// The served document, with its schemas checked by a JSON Schema validator (draft 2020-12,
/// formats asserted) — and one thing stricter than the document: an object may have no field
/// its schema does not name (`additionalProperties: false` wherever the document leaves it
/// open), so an answer can't carry something undocumented.
struct Doc {
    raw: Value,
    components: Value,
}

/// Closes every object schema that names its properties and says nothing of others.
fn close_objects(schema: &mut Value) {
    match schema {
        Value::Object(map) => {
            if map.contains_key("properties") && !map.contains_key("additionalProperties") {
                map.insert("additionalProperties".into(), Value::Bool(false));
            }
            map.values_mut().for_each(close_objects);
        }
        Value::Array(items) => items.iter_mut().for_each(close_objects),
        _ => {}
    }
}

impl Doc {
    fn new(raw: Value) -> Self {
        let mut components = raw["components"].clone();
        close_objects(&mut components);
        Self { raw, components }
    }

    /// What is wrong with `value` under `schema` (empty: nothing).
    fn check(&self, schema: &Value, value: &Value, at: &str) -> Vec<String> {
        let mut root = schema.clone();
        close_objects(&mut root);
        // `#/components/schemas/…` resolves against the root: give it the components.
        root.as_object_mut()
            .expect("a schema object")
            .insert("components".into(), self.components.clone());
        let validator = jsonschema::options()
            .with_draft(jsonschema::Draft::Draft202012)
            .should_validate_formats(true)
            .build(&root)
            .unwrap_or_else(|e| panic!("{at}: the schema does not compile: {e}"));
        validator
            .iter_errors(value)
            .map(|e| format!("{at}{}: {e}", e.instance_path()))
            .collect()
    }
}

/// Calls the API and records what came back.
struct Recorder<'a> {
    app: &'a App,
    seen: Vec<(String, String, u16, Value)>,
}

impl Recorder<'_> {
    async fn call(
        &mut self,
        method: &str,
        template: &str,
        path: &str,
        user: Option<i64>,
        body: Option<Value>,
    ) -> Value {
        let m = reqwest::Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
        let (status, answer) = self.app.request_as(m, path, user, None, body).await;
        self.seen.push((
            method.to_owned(),
            template.to_owned(),
            status,
            answer.clone(),
        ));
        answer
    }
}

#[tokio::test]
async fn the_openapi_document_describes_every_real_answer() {
    let app = App::start().await;
    let _worker = app.run_worker();
    let r = app
        .http
        .get(format!("{}/v1/openapi.json", app.api))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let doc = Doc::new(r.json().await.unwrap());
    assert!(doc.raw["openapi"].as_str().unwrap().starts_with("3."));
    // The checker bites: a wrong type, a missing field, an undocumented one.
    let view = json!({ "$ref": "#/components/schemas/SyncQueued" });
    let good = json!({ "account_id": 1, "queued": true, "new_job": false });
    assert!(doc.check(&view, &good, "").is_empty());
    for bad in [
        json!({ "account_id": "1", "queued": true, "new_job": false }),
        json!({ "queued": true, "new_job": false }),
        json!({ "account_id": 1, "queued": true, "new_job": false, "extra": 1 }),
        json!([1, true, false]),
    ] {
        assert!(!doc.check(&view, &bad, "").is_empty(), "{bad} passed");
    }

    let mailbox = TestMailbox::create();
    let shared_box = TestMailbox::create();
    let mut rec = Recorder {
        app: &app,
        seen: Vec::new(),
    };
    let suffix = mailfleet_testkit::unique_suffix();
    let user = rec
        .call(
            "post",
            "/v1/users",
            "/v1/users",
            None,
            Some(json!({ "email": format!("ann-{suffix}@crm.example.test"), "name": "Ann" })),
        )
        .await["id"]
        .as_i64()
        .unwrap();
    let admin = rec
        .call(
            "post",
            "/v1/users",
            "/v1/users",
            None,
            Some(json!({ "email": format!("root-{suffix}@crm.example.test"), "is_admin": true })),
        )
        .await["id"]
        .as_i64()
        .unwrap();
    rec.call(
        "post",
        "/v1/users",
        "/v1/users",
        None,
        Some(json!({ "email": "nope" })),
    )
    .await;
    let (u, a) = (Some(user), Some(admin));
    let imap = |port: u16| json!({ "host": "127.0.0.1", "port": port, "encryption": "ssl" });
    let smtp = json!({ "host": "127.0.0.1", "port": 587, "encryption": "starttls" });
    rec.call(
        "post",
        "/v1/connection-tests",
        "/v1/connection-tests",
        u,
        Some(json!({ "email": mailbox.address, "password": mailbox.password, "imap": imap(993), "smtp": smtp })),
    )
    .await;
    rec.call(
        "post",
        "/v1/connection-tests",
        "/v1/connection-tests",
        u,
        Some(json!({ "email": mailbox.address, "password": "wrong", "imap": imap(993), "smtp": smtp })),
    )
    .await;
    let id = rec
        .call(
            "post",
            "/v1/accounts",
            "/v1/accounts",
            u,
            Some(json!({
                "provider": "imap", "kind": "personal", "email": mailbox.address,
                "password": mailbox.password, "imap": imap(993), "smtp": smtp,
                "sync_from": "1_month", "active_folders": ["INBOX"]
            })),
        )
        .await["id"]
        .as_i64()
        .unwrap();
    rec.call(
        "post",
        "/v1/accounts",
        "/v1/accounts",
        u,
        Some(json!({ "provider": "imap" })),
    )
    .await;
    let shared = rec
        .call(
            "post",
            "/v1/accounts",
            "/v1/accounts",
            a,
            Some(json!({
                "provider": "imap", "kind": "shared", "email": shared_box.address,
                "password": shared_box.password, "imap": imap(993), "smtp": smtp,
                "sync_from": "now"
            })),
        )
        .await["id"]
        .as_i64()
        .unwrap();
    let acc = format!("/v1/accounts/{id}");
    rec.call("get", "/v1/accounts", "/v1/accounts", u, None)
        .await;
    rec.call("get", "/v1/accounts/{id}", &acc, u, None).await;
    rec.call("get", "/v1/accounts/{id}", "/v1/accounts/999999", u, None)
        .await;
    rec.call(
        "patch",
        "/v1/accounts/{id}",
        &acc,
        u,
        Some(json!({ "create_contacts": true })),
    )
    .await;
    rec.call(
        "patch",
        "/v1/accounts/{id}",
        &acc,
        u,
        Some(json!({ "sync_from": "6_months" })),
    )
    .await;
    rec.call(
        "put",
        "/v1/accounts/{id}/folders",
        &format!("{acc}/folders"),
        u,
        Some(json!({ "active": ["INBOX", "Sent"] })),
    )
    .await;
    rec.call(
        "post",
        "/v1/accounts/{id}/sync",
        &format!("{acc}/sync"),
        u,
        None,
    )
    .await;
    rec.call(
        "post",
        "/v1/accounts/{id}/reconnect",
        &format!("{acc}/reconnect"),
        u,
        Some(json!({})),
    )
    .await;
    rec.call(
        "post",
        "/v1/accounts/{id}/primary",
        &format!("{acc}/primary"),
        u,
        None,
    )
    .await;
    rec.call(
        "post",
        "/v1/accounts/{id}/primary",
        &format!("/v1/accounts/{shared}/primary"),
        a,
        None,
    )
    .await;
    let access = format!("/v1/accounts/{shared}/access");
    rec.call(
        "post",
        "/v1/accounts/{id}/access",
        &access,
        a,
        Some(json!({ "user_id": user })),
    )
    .await;
    rec.call(
        "post",
        "/v1/accounts/{id}/access",
        &access,
        u,
        Some(json!({ "user_id": user })),
    )
    .await;
    rec.call("get", "/v1/accounts/{id}/access", &access, a, None)
        .await;
    rec.call(
        "delete",
        "/v1/accounts/{id}/access/{user_id}",
        &format!("{access}/{user}"),
        a,
        None,
    )
    .await;
    rec.call("get", "/v1/messages", "/v1/messages?limit=2", u, None)
        .await;
    // A stored message to read and act on (as a sync would have stored it).
    let message = mailfleet_testkit::count(
        &app.db.url,
        &format!(
            "WITH m AS (
                 INSERT INTO messages (account_id, thread_key, size_bytes, content_hash, message_id,
                                       subject, flags)
                 VALUES ({id}, 'k', 10, '\\x00', 'doc@example.org', 'Hi', '{{\\Seen}}')
                 RETURNING id),
             f AS (INSERT INTO message_folders (message_id, folder_id, remote_id)
                   SELECT m.id, folders.id, '1:99' FROM m, folders
                   WHERE folders.account_id = {id} AND folders.name = 'INBOX')
             SELECT id AS count FROM m"
        ),
    )
    .await;
    rec.call(
        "get",
        "/v1/messages/{id}",
        &format!("/v1/messages/{message}"),
        u,
        None,
    )
    .await;
    rec.call("get", "/v1/messages/{id}", "/v1/messages/999999", u, None)
        .await;
    let action = rec
        .call(
            "post",
            "/v1/mailbox-actions",
            "/v1/mailbox-actions",
            u,
            Some(json!({ "message_ids": [message], "action": "flag" })),
        )
        .await["id"]
        .as_i64()
        .unwrap();
    rec.call(
        "post",
        "/v1/mailbox-actions",
        "/v1/mailbox-actions",
        u,
        Some(json!({ "message_ids": [message], "action": "move", "folder": "Nope" })),
    )
    .await;
    rec.call(
        "get",
        "/v1/mailbox-actions/{id}",
        &format!("/v1/mailbox-actions/{action}"),
        u,
        None,
    )
    .await;
    rec.call(
        "get",
        "/v1/mailbox-actions/{id}",
        "/v1/mailbox-actions/999999",
        u,
        None,
    )
    .await;
    rec.call("get", "/v1/messages", "/v1/messages?limit=0", u, None)
        .await;
    rec.call(
        "get",
        "/v1/contacts/{id}/messages",
        "/v1/contacts/999999/messages",
        u,
        None,
    )
    .await;
    rec.call(
        "put",
        "/v1/users/{id}/signature",
        &format!("/v1/users/{user}/signature"),
        u,
        Some(json!({ "text": "Ann" })),
    )
    .await;
    rec.call(
        "put",
        "/v1/users/{id}/signature",
        &format!("/v1/users/{admin}/signature"),
        u,
        Some(json!({ "text": "x" })),
    )
    .await;
    let sent = rec
        .call(
            "post",
            "/v1/messages",
            "/v1/messages",
            u,
            Some(json!({ "account_id": id, "to": ["bob@example.test"], "text": "hi" })),
        )
        .await["id"]
        .as_i64()
        .unwrap();
    rec.call(
        "post",
        "/v1/messages",
        "/v1/messages",
        u,
        Some(json!({ "account_id": id, "to": [] })),
    )
    .await;
    rec.call(
        "get",
        "/v1/outgoing-messages/{id}",
        &format!("/v1/outgoing-messages/{sent}"),
        u,
        None,
    )
    .await;
    rec.call(
        "get",
        "/v1/system-account",
        "/v1/system-account",
        None,
        None,
    )
    .await;
    rec.call(
        "put",
        "/v1/system-account",
        "/v1/system-account",
        u,
        Some(json!({ "account_id": shared })),
    )
    .await;
    rec.call(
        "post",
        "/v1/system-mail",
        "/v1/system-mail",
        None,
        Some(json!({ "to": ["bob@example.test"], "text": "x" })),
    )
    .await;
    rec.call(
        "put",
        "/v1/system-account",
        "/v1/system-account",
        a,
        Some(json!({ "account_id": shared })),
    )
    .await;
    rec.call(
        "post",
        "/v1/system-mail",
        "/v1/system-mail",
        None,
        Some(json!({ "to": ["bob@example.test"], "text": "x" })),
    )
    .await;
    rec.call(
        "delete",
        "/v1/accounts/{id}",
        &format!("/v1/accounts/{shared}"),
        u,
        None,
    )
    .await;
    rec.call(
        "delete",
        "/v1/accounts/{id}",
        &format!("/v1/accounts/{shared}"),
        a,
        None,
    )
    .await;
    rec.call(
        "delete",
        "/v1/users/{id}",
        &format!("/v1/users/{user}"),
        a,
        None,
    )
    .await;
    rec.call("get", "/v1/accounts", "/v1/accounts", None, None)
        .await;

    let mut errors = Vec::new();
    let mut exercised = BTreeSet::new();
    for (method, template, status, body) in &rec.seen {
        exercised.insert((template.clone(), method.clone()));
        let op = &doc.raw["paths"][template][method];
        if op.is_null() {
            errors.push(format!("{method} {template} is not documented"));
            continue;
        }
        let response = &op["responses"][status.to_string()];
        if response.is_null() {
            errors.push(format!(
                "{method} {template} answered {status}, not documented: {body}"
            ));
            continue;
        }
        let schema = &response["content"]["application/json"]["schema"];
        if schema.is_null() {
            errors.push(format!(
                "{method} {template} {status}: no JSON schema documented"
            ));
            continue;
        }
        errors.extend(doc.check(schema, body, &format!("{method} {template} {status}")));
    }
    let documented: BTreeSet<(String, String)> = doc.raw["paths"]
        .as_object()
        .unwrap()
        .iter()
        .flat_map(|(path, item)| {
            item.as_object()
                .unwrap()
                .keys()
                .filter(|k| ["get", "post", "put", "patch", "delete"].contains(&k.as_str()))
                .map(move |m| (path.clone(), m.clone()))
        })
        .collect();
    for op in documented.difference(&exercised) {
        errors.push(format!("documented but never called here: {op:?}"));
    }
    assert!(errors.is_empty(), "{}", errors.join("\n"));
}
