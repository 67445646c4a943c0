//! Sending: `POST /v1/messages`, `POST /v1/system-mail`, the outgoing message's status, the
//! system account and user signatures. A message is composed and written to the outbox in
//! one statement; the relay publishes its `send_message` job (at once here, and from the
//! scheduler for whatever that missed).

use crate::acting::{ActingUser, Need, forbidden};
use crate::compose::{self, AttachmentFile, Draft, Party, Signature};
use crate::error::ApiError;
use crate::extract::{JsonBody, Path};
use crate::state::ApiState;
use axum::Json;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use chrono::{DateTime, Utc};
use mailfleet_core::{EmailAddress, Job, JobEnvelope};
use mailfleet_queue::Broker;
use mailfleet_store::models::{Account, NewOutgoing, Outgoing};
use mailfleet_store::outgoing::{self, Enqueued};
use mailfleet_store::{Store, StoreError, accounts, messages, system, users, viewer};
use serde::{Deserialize, Serialize};

/// The most a message may carry in attachments (decoded), as most providers allow.
pub const MAX_ATTACHMENT_BYTES: usize = 25 * 1024 * 1024;

/// `"addr"` or `{"email", "name"?}`; a name is one line.
enum Recipient {
    Bare(String),
    Named { email: String, name: Option<String> },
}

// By hand, not `untagged`: that would also read `["addr", "name"]` as a named recipient.
impl<'de> Deserialize<'de> for Recipient {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        struct Named {
            email: String,
            name: Option<String>,
        }
        match serde_json::Value::deserialize(d)? {
            serde_json::Value::String(email) => Ok(Recipient::Bare(email)),
            v @ serde_json::Value::Object(_) => {
                let Named { email, name } =
                    serde_json::from_value(v).map_err(serde::de::Error::custom)?;
                Ok(Recipient::Named { email, name })
            }
            _ => Err(serde::de::Error::custom(
                "a recipient is \"addr\" or {\"email\", \"name\"?}",
            )),
        }
    }
}

impl utoipa::PartialSchema for Recipient {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::{ObjectBuilder, OneOfBuilder, Type};
        let address = || utoipa::openapi::Ref::from_schema_name("EmailAddress");
        OneOfBuilder::new()
            .description(Some(
                "`\"addr\"` or `{\"email\", \"name\"?}`; a name is one line",
            ))
            .item(address())
            .item(
                ObjectBuilder::new()
                    .property("email", address())
                    .required("email")
                    .property(
                        "name",
                        ObjectBuilder::new()
                            .schema_type(utoipa::openapi::schema::SchemaType::from_iter([
                                Type::String,
                                Type::Null,
                            ]))
                            .pattern(Some(ONE_LINE)),
                    ),
            )
            .into()
    }
}

impl utoipa::ToSchema for Recipient {
    fn schemas(
        schemas: &mut Vec<(
            String,
            utoipa::openapi::RefOr<utoipa::openapi::schema::Schema>,
        )>,
    ) {
        use utoipa::PartialSchema;
        schemas.push((EmailAddress::name().into(), EmailAddress::schema()));
    }
}

/// A string without a line break (a subject, a display name).
const ONE_LINE: &str = r"^[^\r\n]*$";

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct AttachmentIn {
    /// A plain file name: not blank, no `/`, `\`, line break.
    #[schema(
        pattern = r"^[^\r\n/\\]*[^\r\n/\\\t\v\f \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000][^\r\n/\\]*$"
    )]
    filename: String,
    /// A MIME type, `type/subtype` with `; name=value` parameters (RFC 6838 names).
    #[schema(
        pattern = r"^[A-Za-z0-9!#$&^_.+-]+/[A-Za-z0-9!#$&^_.+-]+(?:; ?[A-Za-z0-9!#$&^_.+-]+=[A-Za-z0-9!#$&^_.+-]+)*$"
    )]
    content_type: String,
    /// Standard base64, padded.
    #[schema(
        pattern = r"^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/][AQgw]==|[A-Za-z0-9+/]{2}[AEIMQUYcgkosw048]=)?$"
    )]
    content_base64: String,
}

/// What a message holds, whoever sends it.
struct Content {
    to: Vec<Recipient>,
    cc: Vec<Recipient>,
    bcc: Vec<Recipient>,
    subject: Option<String>,
    text: Option<String>,
    html: Option<String>,
    attachments: Vec<AttachmentIn>,
    in_reply_to: Option<i64>,
}

/// A message sent from an account (`POST /v1/messages`). At least one recipient in `to`,
/// `cc` or `bcc` (else 422 `no_recipient`).
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct SendRequest {
    /// The account sent from.
    #[schema(minimum = 1)]
    account_id: i64,
    #[serde(default)]
    to: Vec<Recipient>,
    #[serde(default)]
    cc: Vec<Recipient>,
    #[serde(default)]
    bcc: Vec<Recipient>,
    #[schema(pattern = r"^[^\r\n]*$")]
    subject: Option<String>,
    text: Option<String>,
    html: Option<String>,
    #[serde(default, deserialize_with = "crate::extract::objects")]
    attachments: Vec<AttachmentIn>,
    /// The stored message (its id in `messages`) this one answers.
    #[schema(minimum = 1)]
    in_reply_to: Option<i64>,
}

impl SendRequest {
    fn split(self) -> (i64, Content) {
        let content = Content {
            to: self.to,
            cc: self.cc,
            bcc: self.bcc,
            subject: self.subject,
            text: self.text,
            html: self.html,
            attachments: self.attachments,
            in_reply_to: self.in_reply_to,
        };
        (self.account_id, content)
    }
}

/// A system notice (`POST /v1/system-mail`): a message without an account, which is the
/// system account, and without `in_reply_to`. At least one recipient (else 422
/// `no_recipient`).
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct SystemMailRequest {
    #[serde(default)]
    to: Vec<Recipient>,
    #[serde(default)]
    cc: Vec<Recipient>,
    #[serde(default)]
    bcc: Vec<Recipient>,
    #[schema(pattern = r"^[^\r\n]*$")]
    subject: Option<String>,
    text: Option<String>,
    html: Option<String>,
    #[serde(default, deserialize_with = "crate::extract::objects")]
    attachments: Vec<AttachmentIn>,
}

impl From<SystemMailRequest> for Content {
    fn from(r: SystemMailRequest) -> Self {
        Content {
            to: r.to,
            cc: r.cc,
            bcc: r.bcc,
            subject: r.subject,
            text: r.text,
            html: r.html,
            attachments: r.attachments,
            in_reply_to: None,
        }
    }
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct OutgoingView {
    pub id: i64,
    pub account_id: i64,
    pub kind: String,
    pub status: String,
    pub message_id: String,
    pub subject: Option<String>,
    pub to: serde_json::Value,
    pub cc: serde_json::Value,
    pub bcc: serde_json::Value,
    pub attachments: serde_json::Value,
    pub in_reply_to: Option<i64>,
    pub attempts: i32,
    pub next_attempt_at: Option<DateTime<Utc>>,
    /// The server's last reply (on `failed`, why).
    pub server_reply: Option<String>,
    pub error_code: Option<String>,
    pub sent_at: Option<DateTime<Utc>>,
    /// The copy in the account's Sent folder, as stored in `messages`.
    pub sent_copy_message_id: Option<i64>,
    pub created_at: DateTime<Utc>,
}

impl From<Outgoing> for OutgoingView {
    fn from(o: Outgoing) -> Self {
        Self {
            id: o.id,
            account_id: o.account_id,
            kind: o.kind,
            status: o.status,
            message_id: o.message_id,
            subject: o.subject,
            to: o.to_addrs,
            cc: o.cc_addrs,
            bcc: o.bcc_addrs,
            attachments: o.attachments,
            in_reply_to: o.in_reply_to_message,
            attempts: o.attempts,
            next_attempt_at: o.next_attempt_at,
            server_reply: o.server_reply,
            error_code: o.error_code,
            sent_at: o.sent_at,
            sent_copy_message_id: o.sent_copy_message_id,
            created_at: o.created_at,
        }
    }
}

/// `POST /v1/messages`: send from one of the acting user's accounts.
#[utoipa::path(post, path = "/v1/messages", tag = "sending", params(("Idempotency-Key" = Option<String>, Header, description = "one outgoing message per account and key", min_length = 1, max_length = 255, pattern = r"^[!-~](?:[ -~]*[!-~])?$")), request_body = SendRequest, responses((status = 202, body = OutgoingView), (status = 404, description = "no such account or parent message, or not readable", body = crate::error::Body), (status = 409, description = "account_disabled or idempotency_key_reused", body = crate::error::Body), (status = 413, description = "too_large", body = crate::error::Body), (status = 422, description = "no_recipient, invalid_address, invalid_request", body = crate::error::Body)))]
pub(crate) async fn send_message(
    State(s): State<ApiState>,
    user: ActingUser,
    headers: HeaderMap,
    body: Result<axum::body::Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let (req, sha) = crate::idempotency::parse_hashed::<SendRequest>(&body.map_err(body_error)?)?;
    let (account_id, req) = req.split();
    let account = user.account(&s, account_id, Need::Use).await?;
    crate::acting::require_active(&account)?;
    let signature = Signature {
        text: user.0.signature_text.clone(),
        html: user.0.signature_html.clone(),
    };
    let sender_name = user.0.name.clone();
    enqueue(
        &s,
        &headers,
        req,
        sha,
        Sender {
            account,
            kind: "user",
            user: Some(user),
            name: sender_name,
            signature,
        },
    )
    .await
}

/// `POST /v1/system-mail`: a system notice, from the system account, without a signature.
#[utoipa::path(post, path = "/v1/system-mail", tag = "sending", params(("Idempotency-Key" = Option<String>, Header, description = "one outgoing message per key", min_length = 1, max_length = 255, pattern = r"^[!-~](?:[ -~]*[!-~])?$")), request_body = SystemMailRequest, responses((status = 202, body = OutgoingView), (status = 409, description = "no_system_account, account_disabled or idempotency_key_reused", body = crate::error::Body), (status = 413, description = "too_large", body = crate::error::Body), (status = 422, description = "invalid input", body = crate::error::Body)))]
pub(crate) async fn send_system_mail(
    State(s): State<ApiState>,
    headers: HeaderMap,
    body: Result<axum::body::Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let (req, sha) =
        crate::idempotency::parse_hashed::<SystemMailRequest>(&body.map_err(body_error)?)?;
    let req = Content::from(req);
    let mut conn = s.store.conn().await?;
    let Some(account_id) = system::system_account(&mut conn).await? else {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "no_system_account",
            "no system account is designated (PUT /v1/system-account)",
        ));
    };
    drop(conn);
    let mut conn = s.store.conn().await?;
    let account = accounts::get(&mut conn, account_id).await?;
    drop(conn);
    crate::acting::require_active(&account)?;
    enqueue(
        &s,
        &headers,
        req,
        sha,
        Sender {
            account,
            kind: "system",
            user: None,
            name: None,
            signature: Signature::default(),
        },
    )
    .await
}

/// A body over the route's limit is refused before it is read: still a JSON error.
fn body_error(e: BytesRejection) -> ApiError {
    if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_large",
            format!(
                "the request is over the size limit (attachments may total at most {} MB)",
                MAX_ATTACHMENT_BYTES / 1024 / 1024
            ),
        )
    } else {
        ApiError::invalid(e.body_text())
    }
}

/// `type/subtype` with `; name=value` parameters, each a name of RFC 6838's characters:
/// exactly `AttachmentIn::content_type`'s pattern.
pub(crate) fn is_media_type(s: &str) -> bool {
    let name = |n: &str| {
        !n.is_empty()
            && n.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$&^_.+-".contains(&b))
    };
    let mut parts = s.split(';');
    let essence = parts.next().unwrap_or_default();
    let Some((kind, subtype)) = essence.split_once('/') else {
        return false;
    };
    name(kind)
        && name(subtype)
        && parts.all(|p| {
            let p = p.strip_prefix(' ').unwrap_or(p);
            p.split_once('=').is_some_and(|(k, v)| name(k) && name(v))
        })
}

struct Sender {
    account: Account,
    kind: &'static str,
    user: Option<ActingUser>,
    name: Option<String>,
    signature: Signature,
}

fn parties(field: &str, list: Vec<Recipient>) -> Result<Vec<Party>, ApiError> {
    list.into_iter()
        .map(|r| {
            let (email, name) = match r {
                Recipient::Bare(e) => (e, None),
                Recipient::Named { email, name } => (email, name),
            };
            if name.as_deref().is_some_and(|n| n.contains(['\r', '\n'])) {
                return Err(ApiError::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "invalid_address",
                    format!("{field}: a name must be one line"),
                ));
            }
            let email = EmailAddress::parse(&email).map_err(|e| {
                ApiError::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "invalid_address",
                    format!("{field}: {email:?}: {e}"),
                )
            })?;
            Ok(Party { email, name })
        })
        .collect()
}

fn as_json(list: &[Party]) -> serde_json::Value {
    serde_json::to_value(list).expect("parties serialise")
}

async fn enqueue(
    s: &ApiState,
    headers: &HeaderMap,
    req: Content,
    sha: Vec<u8>,
    sender: Sender,
) -> Result<Response, ApiError> {
    let key = crate::idempotency::key(headers)?;
    let to = parties("to", req.to)?;
    let cc = parties("cc", req.cc)?;
    let bcc = parties("bcc", req.bcc)?;
    if to.is_empty() && cc.is_empty() && bcc.is_empty() {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "no_recipient",
            "give at least one recipient in to, cc or bcc",
        ));
    }
    let mut attachments = Vec::with_capacity(req.attachments.len());
    let mut total = 0usize;
    for a in req.attachments {
        if crate::openapi::is_blank(&a.filename) || a.filename.contains(['\r', '\n', '/', '\\']) {
            return Err(ApiError::invalid(format!(
                "attachment filename {:?} is not a plain file name",
                a.filename
            )));
        }
        if !is_media_type(&a.content_type) {
            return Err(ApiError::invalid(format!(
                "attachment {}: content_type {:?} is not a MIME type",
                a.filename, a.content_type
            )));
        }
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(a.content_base64.as_bytes())
            .map_err(|e| {
                ApiError::invalid(format!("attachment {}: not base64: {e}", a.filename))
            })?;
        total += bytes.len();
        if total > MAX_ATTACHMENT_BYTES {
            return Err(ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "too_large",
                format!(
                    "attachments may total at most {} MB",
                    MAX_ATTACHMENT_BYTES / 1024 / 1024
                ),
            ));
        }
        attachments.push(AttachmentFile {
            filename: a.filename,
            content_type: a.content_type,
            bytes,
        });
    }
    if req
        .subject
        .as_deref()
        .is_some_and(|t| t.contains(['\r', '\n']))
    {
        return Err(ApiError::invalid("subject must be one line"));
    }

    let mut conn = s.store.conn().await?;
    let (mut subject, mut in_reply_to, mut references) = (req.subject, None, Vec::new());
    if let Some(parent_id) = req.in_reply_to {
        let not_found = || {
            ApiError::new(
                StatusCode::NOT_FOUND,
                "not_found",
                format!("message {parent_id} not found"),
            )
        };
        let parent = messages::reply_parent(&mut conn, parent_id)
            .await
            .map_err(|e| match e {
                StoreError::NotFound { .. } => not_found(),
                e => e.into(),
            })?;
        // Only a message the sender may read can be answered (its id would leak otherwise).
        let readable = match &sender.user {
            Some(u) => viewer::may_read_account(&mut conn, parent.account_id, u.id()).await?,
            None => false,
        };
        if !readable {
            return Err(not_found());
        }
        let Some(parent_mid) = parent.message_id.clone() else {
            return Err(ApiError::invalid(format!(
                "message {parent_id} has no Message-ID to answer"
            )));
        };
        // References: the parent's, else its In-Reply-To, then the parent itself (RFC 5322
        // 3.6.4); the first one keys the thread, as the parent's did.
        references = if parent.reference_ids.is_empty() {
            parent.in_reply_to.clone().into_iter().collect()
        } else {
            parent.reference_ids.clone()
        };
        references.push(parent_mid.clone());
        in_reply_to = Some(parent_mid);
        if subject.is_none() {
            let original = parent.subject.unwrap_or_default();
            subject = Some(if original.to_ascii_lowercase().starts_with("re:") {
                original
            } else {
                format!("Re: {original}")
            });
        }
    }
    let from_email = EmailAddress::parse(&sender.account.email)
        .map_err(|e| ApiError::invalid(format!("the account's address: {e}")))?;
    let message_id = format!("{}@{}", uuid::Uuid::new_v4().simple(), from_email.domain());
    let mut draft = Draft {
        from: Party {
            email: from_email.clone(),
            name: sender.name.clone(),
        },
        to,
        cc,
        bcc,
        subject: subject.clone().unwrap_or_default(),
        text: req.text.clone(),
        html: req.html.clone(),
        attachments,
        in_reply_to,
        references,
        message_id: message_id.clone(),
        date: Utc::now(),
    };
    compose::sign(&mut draft, &sender.signature);
    let raw = compose::compose(&draft).map_err(|e| ApiError::invalid(e.to_string()))?;
    let envelope_to: Vec<String> = draft
        .to
        .iter()
        .chain(&draft.cc)
        .chain(&draft.bcc)
        .map(|p| p.email.to_string())
        .collect();
    let attachment_meta: Vec<serde_json::Value> = draft
        .attachments
        .iter()
        .map(|a| {
            serde_json::json!({
                "filename": a.filename, "content_type": a.content_type, "size": a.bytes.len()
            })
        })
        .collect();
    let new = NewOutgoing {
        account_id: sender.account.id,
        kind: sender.kind.into(),
        sender_user_id: sender.user.as_ref().map(|u| u.0.id),
        idempotency_key: key,
        request_sha256: Some(sha),
        message_id,
        to_addrs: as_json(&draft.to),
        cc_addrs: as_json(&draft.cc),
        bcc_addrs: as_json(&draft.bcc),
        subject,
        text_body: draft.text.clone(),
        html_body: draft.html.clone(),
        in_reply_to_message: req.in_reply_to,
        raw_message: raw,
        envelope_from: from_email.to_string(),
        envelope_to,
        attachments: serde_json::Value::Array(attachment_meta),
    };
    let id = match outgoing::enqueue(&mut conn, &new).await? {
        Enqueued::New(id) => {
            drop(conn);
            relay_one(&s.store, &s.broker, id).await;
            tracing::info!(
                outgoing_id = id,
                account_id = sender.account.id,
                kind = sender.kind,
                "Message queued."
            );
            id
        }
        Enqueued::Existing(id) => id,
        Enqueued::KeyReused(id) => {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                "idempotency_key_reused",
                format!(
                    "this Idempotency-Key was used for another request (outgoing message {id})"
                ),
            ));
        }
    };
    let mut conn = s.store.conn().await?;
    let view = OutgoingView::from(outgoing::get(&mut conn, id).await?);
    Ok((
        StatusCode::ACCEPTED,
        [(header::LOCATION, format!("/v1/outgoing-messages/{id}"))],
        Json(view),
    )
        .into_response())
}

/// Publishes the message's job if no job is in flight for it. A failure leaves it to the
/// scheduler's relay pass: the row is the record, the job only a wake-up call.
pub async fn relay_one(store: &Store, broker: &Broker, id: i64) -> bool {
    let Ok(mut conn) = store.conn().await else {
        return false;
    };
    match outgoing::claim_one_for_relay(&mut conn, id).await {
        Ok(true) => {}
        _ => return false,
    }
    drop(conn);
    let env = JobEnvelope::new(Job::SendMessage { outgoing_id: id });
    match broker.publish(&env).await {
        Ok(()) => true,
        Err(e) => {
            tracing::warn!(outgoing_id = id, error = %e, "Send job not published; the relay will retry.");
            if let Ok(mut conn) = store.conn().await {
                let _ = outgoing::unpublish(&mut conn, id).await;
            }
            false
        }
    }
}

/// `GET /v1/outgoing-messages/{id}`.
#[utoipa::path(get, path = "/v1/outgoing-messages/{id}", tag = "sending", params(("id" = i64, Path, minimum = 1)), responses((status = 200, body = OutgoingView), (status = 404, description = "not found", body = crate::error::Body)))]
pub(crate) async fn get_outgoing(
    State(s): State<ApiState>,
    user: ActingUser,
    Path(id): Path<i64>,
) -> Result<Json<OutgoingView>, ApiError> {
    let mut conn = s.store.conn().await?;
    let o = outgoing::get(&mut conn, id).await?;
    let readable = viewer::may_read_account(&mut conn, o.account_id, user.id()).await?;
    if !(readable || (o.kind == "system" && user.0.is_admin)) {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("outgoing message {id} not found"),
        ));
    }
    Ok(Json(o.into()))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct SystemAccountRequest {
    /// `null` clears it.
    #[schema(minimum = 1)]
    account_id: Option<i64>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct SystemAccountView {
    account_id: Option<i64>,
}

/// `PUT /v1/system-account` (administrators): designates the account that sends system mail.
#[utoipa::path(put, path = "/v1/system-account", tag = "sending", request_body = SystemAccountRequest, responses((status = 200, body = SystemAccountView), (status = 403, description = "administrators only", body = crate::error::Body), (status = 404, description = "no such account, or not one the administrator may send from", body = crate::error::Body), (status = 409, description = "account_disabled", body = crate::error::Body)))]
pub(crate) async fn set_system_account(
    State(s): State<ApiState>,
    user: ActingUser,
    body: Result<JsonBody<SystemAccountRequest>, ApiError>,
) -> Result<Json<SystemAccountView>, ApiError> {
    user.require_admin()?;
    let JsonBody(req) = body?;
    if let Some(id) = req.account_id {
        // Only an account the administrator may send from themself: a shared one, or their
        // own. Designating someone's personal mailbox would send as them without them.
        let account = user.account(&s, id, Need::Use).await?;
        if account.state != "active" {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                "account_disabled",
                format!("account {id} is disabled; re-connect it first"),
            ));
        }
    }
    let mut conn = s.store.conn().await?;
    system::set_system_account(&mut conn, req.account_id).await?;
    Ok(Json(SystemAccountView {
        account_id: req.account_id,
    }))
}

#[utoipa::path(get, path = "/v1/system-account", tag = "sending", responses((status = 200, body = SystemAccountView)))]
pub(crate) async fn get_system_account(
    State(s): State<ApiState>,
) -> Result<Json<SystemAccountView>, ApiError> {
    let mut conn = s.store.conn().await?;
    Ok(Json(SystemAccountView {
        account_id: system::system_account(&mut conn).await?,
    }))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct SignatureRequest {
    text: Option<String>,
    html: Option<String>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct SignatureView {
    user_id: i64,
    text: Option<String>,
    html: Option<String>,
}

/// `PUT /v1/users/{id}/signature`: the user themself, or an administrator.
#[utoipa::path(put, path = "/v1/users/{id}/signature", tag = "users", params(("id" = i64, Path, minimum = 1)), request_body = SignatureRequest, responses((status = 200, body = SignatureView), (status = 403, description = "not the user's own signature", body = crate::error::Body), (status = 404, description = "no such user", body = crate::error::Body)))]
pub(crate) async fn set_signature(
    State(s): State<ApiState>,
    user: ActingUser,
    Path(id): Path<i64>,
    body: Result<JsonBody<SignatureRequest>, ApiError>,
) -> Result<Json<SignatureView>, ApiError> {
    if user.0.id != id && !user.0.is_admin {
        return Err(forbidden("a user's signature is theirs to set"));
    }
    let JsonBody(req) = body?;
    let blank = |v: Option<String>| v.filter(|t| !t.trim().is_empty());
    let mut conn = s.store.conn().await?;
    let u = users::set_signature(
        &mut conn,
        id,
        blank(req.text).as_deref(),
        blank(req.html).as_deref(),
    )
    .await?;
    Ok(Json(SignatureView {
        user_id: u.id,
        text: u.signature_text,
        html: u.signature_html,
    }))
}
