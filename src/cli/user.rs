//! `orderly user promote|demote`: user administration in the auth database.

use anyhow::Result;
use clap::Subcommand;

use orderly_core::config::Settings;

#[derive(Subcommand, Clone, PartialEq, Eq)]
pub enum UserAction {
    /// Give the user the `admin` role (effective from their next login or refresh)
    Promote { email: String },
    /// Give the user back the plain `user` role
    Demote { email: String },
}

pub async fn run(settings: &Settings, action: &UserAction) -> Result<()> {
    let (email, role) = match action {
        UserAction::Promote { email } => (email, "admin"),
        UserAction::Demote { email } => (email, "user"),
    };
    match orderly_auth::set_role(&settings.auth, email, role).await? {
        Some(user) => {
            println!("user {} ({}) now has role {role}", user.id, user.email);
            Ok(())
        }
        None => Err(anyhow::anyhow!("no user with e-mail {email}")),
    }
}
