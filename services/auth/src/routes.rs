//! HTTP routes, one file per area, and the OpenAPI document describing them.

mod google;
mod register;
mod session;
mod token;

use axum::Router;
use axum::routing::{get, post};
use serde::Serialize;
use utoipa::{OpenApi, ToSchema};

use crate::state::AuthState;

/// The auth routes only; wrap with `orderly_kit::http::finish` to serve them
/// (or use [`crate::build`], which does).
pub fn router(state: AuthState) -> Router {
    Router::new()
        // The old service answered both spellings; clients use either.
        .route("/auth/register/", post(register::register))
        .route("/auth/register", post(register::register))
        .route("/auth/token/", post(token::token))
        .route("/auth/token", post(token::token))
        .route("/auth/login/google", get(google::login))
        .route("/auth/callback/google", get(google::callback))
        .route("/auth/refresh", post(session::refresh))
        .route("/auth/logout", post(session::logout))
        .route("/.well-known/jwks.json", get(session::jwks))
        .with_state(state)
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

pub fn openapi() -> utoipa::openapi::OpenApi {
    ApiDoc::openapi()
}
