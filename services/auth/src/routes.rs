//! HTTP routes, one file per area, and the OpenAPI document describing them.

mod google;
mod register;
mod session;
mod token;

use axum::Router;
use orderly_http::routes::{RouteTable, Routes};
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
        .post("/auth/refresh", session::refresh)
        .post("/auth/logout", session::logout)
        .get("/.well-known/jwks.json", session::jwks)
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
        session::refresh,
        session::logout,
        session::jwks,
    ),
    components(schemas(ErrorBody, ValidationItem, ValidationErrorBody)),
    tags((name = "auth", description = "Registration and sign-in"))
)]
struct ApiDoc;

/// The document served at `/openapi.json`: the auth API and the operational routes.
pub fn openapi() -> utoipa::openapi::OpenApi {
    orderly_http::routes::document_ops(ApiDoc::openapi())
}
