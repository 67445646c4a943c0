//! The OpenAPI document of the HTTP API, generated from the handlers' annotations
//! (utoipa) and served at `/v1/openapi.json`.

use crate::acting::ACTING_USER_HEADER;
use utoipa::openapi::path::{Operation, Parameter, ParameterBuilder, ParameterIn};
use utoipa::openapi::schema::{AllOfBuilder, AnyOfBuilder, ArrayBuilder};
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::openapi::{
    ContentBuilder, ObjectBuilder, Ref, RefOr, Required, ResponseBuilder, Schema, Type,
};
use utoipa::{Modify, OpenApi};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "mailfleet",
        description = "Mailboxes in two-way sync with the CRM's Postgres, and mail sent for its users. \
            Every /v1 request carries `Authorization: Bearer $MAILFLEET_API_TOKEN`; most name the \
            acting user in `X-Mailfleet-User`.",
    ),
    paths(
        crate::accounts::create_user,
        crate::people::delete_user,
        crate::sending::set_signature,
        crate::accounts::create_account,
        crate::accounts::list_accounts,
        crate::accounts::get_account,
        crate::accounts::update_account,
        crate::people::delete_account,
        crate::accounts::set_active_folders,
        crate::accounts::sync_account_now,
        crate::accounts::reconnect_account,
        crate::people::set_primary,
        crate::people::list_access,
        crate::people::grant_access,
        crate::people::revoke_access,
        crate::accounts::connection_test,
        crate::people::list_messages,
        crate::people::get_message,
        crate::actions::create_action,
        crate::actions::get_action,
        crate::people::contact_messages,
        crate::sending::send_message,
        crate::sending::get_outgoing,
        crate::sending::set_system_account,
        crate::sending::get_system_account,
        crate::sending::send_system_mail,
    ),
    modifiers(&Conventions),
    security(("bearer" = []))
)]
pub struct ApiDoc;

/// Requests made for nobody in particular: provisioning users, system mail.
const WITHOUT_ACTING_USER: [(&str, &str); 3] = [
    ("/v1/users", "post"),
    ("/v1/system-account", "get"),
    ("/v1/system-mail", "post"),
];

/// What every operation shares: the bearer token, the acting user header on all but
/// `WITHOUT_ACTING_USER`, and the errors that the extractors answer whatever the handler
/// (`crate::extract`, `crate::auth`, `crate::acting`): 400 for a path or query that does not
/// parse, 401 without the token (or the acting user), 403 for an unknown acting user, 413
/// and 422 for a body that is too large or not the operation's JSON.
struct Conventions;

impl Modify for Conventions {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)),
        );
        for name in ["SendRequest", "SystemMailRequest"] {
            if let Some(schema) = components.schemas.remove(name) {
                components
                    .schemas
                    .insert(name.to_owned(), at_least_one_recipient(schema));
            }
        }
        for (path, item) in doc.paths.paths.iter_mut() {
            let ops = [
                ("get", item.get.as_mut()),
                ("post", item.post.as_mut()),
                ("put", item.put.as_mut()),
                ("patch", item.patch.as_mut()),
                ("delete", item.delete.as_mut()),
            ];
            for (method, op) in ops {
                let Some(op) = op else { continue };
                let acting = !WITHOUT_ACTING_USER.contains(&(path.as_str(), method));
                shared_errors(op, acting);
                if acting {
                    op.parameters
                        .get_or_insert_with(Vec::new)
                        .push(acting_user().into());
                }
            }
        }
    }
}

fn shared_errors(op: &mut Operation, acting: bool) {
    // A response object's description is required; the handlers' success answers have none.
    for (status, response) in op.responses.responses.iter_mut() {
        if let RefOr::T(r) = response
            && r.description.is_empty()
        {
            r.description = match status.as_str() {
                "200" => "OK",
                "201" => "Created",
                "202" => "Accepted",
                _ => "",
            }
            .to_owned();
        }
    }
    let takes = |place: ParameterIn| {
        op.parameters.iter().flatten().any(|p| match p {
            RefOr::T(p) => p.parameter_in == place,
            RefOr::Ref(_) => false,
        })
    };
    let (path, query, body) = (
        takes(ParameterIn::Path),
        takes(ParameterIn::Query),
        op.request_body.is_some(),
    );
    if path {
        error(
            op,
            400,
            "`invalid_path`: a path parameter is not an integer of 64 bits",
        );
    }
    if query {
        error(
            op,
            400,
            "`invalid_query`: a query parameter that does not parse, is out of its range or is \
             unknown; a cursor this API did not give",
        );
    }
    error(op, 401, "`unauthorized`: no valid bearer token");
    if acting {
        error(
            op,
            401,
            "`acting_user_required`: no X-Mailfleet-User header",
        );
        error(op, 403, "`unknown_user`: the acting user does not exist");
        error(
            op,
            422,
            "`invalid_request`: X-Mailfleet-User is not a user id",
        );
    }
    if body {
        error(op, 413, "`too_large`: the body is over the size limit");
        error(
            op,
            422,
            "`invalid_request`: the body is not JSON of the documented shape (or not sent as \
             `application/json`)",
        );
    }
}

/// A message's schema and: one of `to`, `cc`, `bcc` is not empty (else 422 `no_recipient`).
fn at_least_one_recipient(message: RefOr<Schema>) -> RefOr<Schema> {
    let mut any = AnyOfBuilder::new();
    for field in ["to", "cc", "bcc"] {
        any = any.item(
            ObjectBuilder::new()
                .required(field)
                .property(field, ArrayBuilder::new().min_items(Some(1))),
        );
    }
    AllOfBuilder::new().item(message).item(any).into()
}

/// Documents an error answer with the JSON error body, or adds to the description of the
/// one the operation documents already.
fn error(op: &mut Operation, status: u16, description: &str) {
    let entry = op
        .responses
        .responses
        .entry(status.to_string())
        .or_insert_with(|| {
            ResponseBuilder::new()
                .content(
                    "application/json",
                    ContentBuilder::new()
                        .schema(Some(Ref::from_schema_name("Error")))
                        .build(),
                )
                .build()
                .into()
        });
    if let RefOr::T(response) = entry {
        if response.description.is_empty() {
            response.description = description.to_owned();
        } else if !response.description.contains(description) {
            response.description = format!("{}; {description}", response.description);
        }
    }
}

/// `provider` as the API takes it today: only IMAP accounts (Gmail and Outlook are next).
pub(crate) struct SupportedProvider;

impl utoipa::PartialSchema for SupportedProvider {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .enum_values(Some(["imap"]))
            .description(Some("The provider: only `imap` yet"))
            .into()
    }
}

impl utoipa::ToSchema for SupportedProvider {}

/// A folder's name as an account's `active_folders` takes it: not blank.
pub(crate) struct FolderName;

impl utoipa::PartialSchema for FolderName {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .pattern(Some(format!("[^{WHITE_SPACE}]")))
            .description(Some("A folder's name (as the server lists it; not blank)"))
            .into()
    }
}

impl utoipa::ToSchema for FolderName {}

/// Unicode's `White_Space` (what Rust's `char::is_whitespace` and `str::trim` take), spelled
/// out for a pattern's character class: `\s` means something else in each regex dialect.
pub(crate) const WHITE_SPACE: &str =
    r"\t\n\v\f\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000";

/// Empty or white space only: what `FolderName`'s pattern (and an attachment's file name's)
/// refuses.
pub(crate) fn is_blank(s: &str) -> bool {
    s.chars().all(char::is_whitespace)
}

fn acting_user() -> Parameter {
    ParameterBuilder::new()
        .name(ACTING_USER_HEADER)
        .parameter_in(ParameterIn::Header)
        .required(Required::True)
        .description(Some(
            "The CRM user the request is made for (users.id); their rights come from the users table",
        ))
        .schema(Some(ObjectBuilder::new().schema_type(Type::Integer)))
        .build()
}

pub fn document() -> utoipa::openapi::OpenApi {
    ApiDoc::openapi()
}
