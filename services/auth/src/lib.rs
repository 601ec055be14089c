//! The auth service: registration, OAuth2 password-flow tokens and Google login.
//!
//! `main` calls [`build`] (store, migrations, keys, finished router) and serves the
//! router ([`migrate`] alone for `orderly migrate`);
//! tests and other hosts can assemble the parts with [`AuthState::from_settings`],
//! [`router`], [`openapi`] and [`readiness_checks`].

pub mod error;
pub mod google;
pub mod keys;
pub mod password;
pub mod refresh;
mod refresh_store;
mod routes;
#[cfg(test)]
mod session_store_tests;
pub mod sql_store;
pub mod startup;
pub mod state;
pub mod store;
#[cfg(test)]
mod store_tests;
pub mod throttle;
pub mod tokens;

pub use error::AuthError;
pub use routes::{openapi, route_table, router, served_openapi};
pub use startup::{
    StartupError, build, migrate, open_store, open_stores, readiness_checks, set_role,
};
pub use state::{AuthParts, AuthState};
