//! The OpenAPI document of the HTTP API, generated from the handlers' annotations
//! (utoipa) and served at `/v1/openapi.json`.

use crate::acting::ACTING_USER_HEADER;
use utoipa::openapi::path::{Parameter, ParameterBuilder, ParameterIn};
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::openapi::{Object, Required, Type};
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
        crate::api::create_user,
        crate::people::delete_user,
        crate::sending::set_signature,
        crate::api::create_account,
        crate::api::list_accounts,
        crate::api::get_account,
        crate::api::update_account,
        crate::people::delete_account,
        crate::api::set_active_folders,
        crate::api::sync_account_now,
        crate::api::reconnect_account,
        crate::people::set_primary,
        crate::people::list_access,
        crate::people::grant_access,
        crate::people::revoke_access,
        crate::api::connection_test,
        crate::people::list_messages,
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

/// What every operation shares: the bearer token, and the acting user header on all but
/// `WITHOUT_ACTING_USER`.
struct Conventions;

impl Modify for Conventions {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)),
        );
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
                if WITHOUT_ACTING_USER.contains(&(path.as_str(), method)) {
                    continue;
                }
                op.parameters
                    .get_or_insert_with(Vec::new)
                    .push(acting_user().into());
            }
        }
    }
}

fn acting_user() -> Parameter {
    ParameterBuilder::new()
        .name(ACTING_USER_HEADER)
        .parameter_in(ParameterIn::Header)
        .required(Required::True)
        .description(Some(
            "The CRM user the request is made for (users.id); their rights come from the users table",
        ))
        .schema(Some(Object::with_type(Type::Integer)))
        .build()
}

pub fn document() -> utoipa::openapi::OpenApi {
    ApiDoc::openapi()
}
