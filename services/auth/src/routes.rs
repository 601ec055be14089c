//! HTTP routes, one file per area, and the OpenAPI document describing them.

mod google;
mod register;
mod session;
mod token;

use axum::Router;
use orderly_http::routes::{BearerAuth, RouteTable, Routes};
use serde::Serialize;
use utoipa::{OpenApi, ToSchema};

use crate::state::AuthState;

fn routes() -> Routes<AuthState> {
    Routes::new()
        // The old service answered both spellings; clients use either.
        .post("/auth/register/", register::register)
        .alias("/auth/register", "/auth/register/")
        .post("/auth/token/", token::token)
        .alias("/auth/token", "/auth/token/")
        .get("/auth/login/google", google::login)
        .get("/auth/callback/google", google::callback)
        .post("/auth/link/google", google::link)
        .post("/auth/refresh", session::refresh)
        .post("/auth/logout", session::logout)
        .get("/.well-known/jwks.json", session::jwks)
        .get("/auth/revoked-tokens", session::revoked_tokens)
}

/// The auth routes only; wrap with `orderly_http::server::finish` to serve them
/// (or use [`crate::build`], which does).
pub fn router(state: AuthState) -> Router {
    routes().into_router().with_state(state)
}

/// Everything the served auth app routes: [`router`] plus the HTTP edge's operational
/// routes (checked against [`openapi`] by the tests).
pub fn route_table() -> RouteTable {
    routes().table().merge(orderly_http::routes::ops_table())
}

/// `{"detail": "..."}`, the body of every non-validation error.
#[derive(Serialize, ToSchema)]
pub(crate) struct ErrorBody {
    detail: String,
}

/// One FastAPI validation error.
#[derive(Serialize, ToSchema)]
pub(crate) struct ValidationItem {
    /// Where: `["body", "email"]`.
    #[schema(value_type = Vec<serde_json::Value>)]
    loc: Vec<serde_json::Value>,
    msg: String,
    #[serde(rename = "type")]
    kind: String,
}

/// The 422 body: `{"detail": [{"loc": [...], "msg": "...", "type": "..."}]}`.
#[derive(Serialize, ToSchema)]
pub(crate) struct ValidationErrorBody {
    detail: Vec<ValidationItem>,
}

#[derive(OpenApi)]
#[openapi(
    info(title = "orderly auth", description = "Users, passwords, tokens (with refresh and a JWKS) and Google login."),
    paths(
        register::register,
        token::token,
        google::login,
        google::callback,
        google::link,
        session::refresh,
        session::logout,
        session::jwks,
        session::revoked_tokens,
    ),
    components(schemas(ErrorBody, ValidationItem, ValidationErrorBody)),
    tags((name = "auth", description = "Registration and sign-in")),
    modifiers(&BearerAuth),
)]
struct ApiDoc;

/// The routes that exist only with Google login configured.
const GOOGLE_PATHS: [&str; 3] = [
    "/auth/login/google",
    "/auth/callback/google",
    "/auth/link/google",
];

/// Every route the auth app can serve and the operational routes (what the
/// tests check the router against).
pub fn openapi() -> utoipa::openapi::OpenApi {
    orderly_http::routes::document_ops(ApiDoc::openapi())
}

/// The document served at `/openapi.json`: [`openapi`], without the Google
/// routes when Google login is not configured (they answer 404 then).
pub fn served_openapi(google_configured: bool) -> utoipa::openapi::OpenApi {
    let mut document = openapi();
    if !google_configured {
        for path in GOOGLE_PATHS {
            document.paths.paths.remove(path);
        }
    }
    document
}
