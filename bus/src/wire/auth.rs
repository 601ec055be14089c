//! Who may connect to the listener and what each client may do, after
//! nats-server's `authorization` block: a shared token (nats-server's
//! `--auth`), and users whose passwords are stored as bcrypt or Argon2 hashes,
//! each with publish and subscribe permissions (allow and deny lists of
//! subjects with wildcards). The JetStream API (`$JS.API.>`, `$JS.ACK.>`) is
//! reached by publishing, so the publish permissions guard it too.
//!
//! The file (`ORDERLY_BROKER_AUTH_FILE`) is JSON:
//!
//! ```json
//! {
//!   "token": "optional shared token, plain or bcrypt",
//!   "users": [
//!     { "user": "orders",
//!       "password": "$2b$10$…",
//!       "permissions": {
//!         "publish":   { "allow": ["orders.>", "$JS.API.>", "$JS.ACK.>"], "deny": [] },
//!         "subscribe": ["_INBOX.>"] } }
//!   ]
//! }
//! ```
//!
//! A list alone is an allow list; a user without `permissions` may do
//! everything, as may a client that presented the token.

use std::path::Path;
use std::sync::Arc;

use serde::Deserialize;
use tokio::sync::Semaphore;

use crate::subject::{is_subset, matches, overlap, validate_filter};

/// Why the authorization settings cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum AuthConfigError {
    /// The file cannot be read.
    #[error("cannot read the broker's auth file {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not the format described in docs/broker-security.md.
    #[error("the broker's auth file {path} is not valid: {reason}")]
    Invalid {
        /// The file.
        path: String,
        /// What is wrong, with its place in the file.
        reason: String,
    },
}

/// Allow and deny lists for one direction (publish or subscribe).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SubjectRules {
    /// `None`: every subject not denied. `Some(list)`: only subjects the list matches.
    pub allow: Option<Vec<String>>,
    /// Never, even when allowed.
    pub deny: Vec<String>,
}

/// What one client may do.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Permissions {
    /// Subjects it may publish to (the JetStream API included).
    pub publish: SubjectRules,
    /// Subjects it may subscribe to.
    pub subscribe: SubjectRules,
}

/// The answer to a subscription request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SubscribeDecision {
    /// Every subject the filter matches is allowed.
    Allowed,
    /// Allowed, but some subjects it matches are denied: these filters are
    /// checked on each delivery (as nats-server does).
    Filtered(Arc<[String]>),
    /// Refused: `-ERR 'Permissions Violation for Subscription to …'`.
    Refused,
}

impl SubjectRules {
    fn publish_allowed(&self, subject: &str) -> bool {
        let allowed = self
            .allow
            .as_ref()
            .is_none_or(|list| list.iter().any(|f| matches(f, subject) || f == subject));
        allowed
            && !self
                .deny
                .iter()
                .any(|f| matches(f, subject) || f == subject)
    }

    fn subscribe_decision(&self, filter: &str) -> SubscribeDecision {
        let allowed = self
            .allow
            .as_ref()
            .is_none_or(|list| list.iter().any(|a| is_subset(filter, a)));
        if !allowed || self.deny.iter().any(|d| is_subset(filter, d)) {
            return SubscribeDecision::Refused;
        }
        let partly: Vec<String> = self
            .deny
            .iter()
            .filter(|d| overlap(filter, d))
            .cloned()
            .collect();
        if partly.is_empty() {
            SubscribeDecision::Allowed
        } else {
            SubscribeDecision::Filtered(partly.into())
        }
    }
}

impl Permissions {
    /// Whether the client may publish to `subject`.
    pub fn may_publish(&self, subject: &str) -> bool {
        self.publish.publish_allowed(subject)
    }

    /// Whether (and how) the client may subscribe to `filter`.
    pub fn subscribe(&self, filter: &str) -> SubscribeDecision {
        self.subscribe.subscribe_decision(filter)
    }
}

/// A secret as configured: a password hash, or (tokens only) the plain value.
#[derive(Clone)]
enum Stored {
    Plain(String),
    Bcrypt(String),
    Argon2(String),
}

impl std::fmt::Debug for Stored {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Stored::Plain(_) => "Plain(***)",
            Stored::Bcrypt(_) => "Bcrypt(***)",
            Stored::Argon2(_) => "Argon2(***)",
        })
    }
}

impl Stored {
    fn parse(secret: &str, plain_allowed: bool) -> Result<Self, String> {
        if ["$2a$", "$2b$", "$2y$"]
            .iter()
            .any(|p| secret.starts_with(p))
        {
            secret
                .parse::<bcrypt::HashParts>()
                .map_err(|e| format!("bad bcrypt hash: {e}"))?;
            return Ok(Stored::Bcrypt(secret.to_string()));
        }
        if secret.starts_with("$argon2") {
            argon2::PasswordHash::new(secret).map_err(|e| format!("bad Argon2 hash: {e}"))?;
            return Ok(Stored::Argon2(secret.to_string()));
        }
        if plain_allowed {
            if secret.is_empty() {
                return Err("the token is empty".into());
            }
            return Ok(Stored::Plain(secret.to_string()));
        }
        Err("passwords are stored as bcrypt ($2a$/$2b$/$2y$) or Argon2 ($argon2id$) hashes, never in plain text".into())
    }

    /// Blocking for hashes (run it off the async threads).
    fn verify(&self, given: &str) -> bool {
        match self {
            Stored::Plain(want) => constant_time_eq(want.as_bytes(), given.as_bytes()),
            Stored::Bcrypt(hash) => bcrypt::verify(given, hash).unwrap_or(false),
            Stored::Argon2(hash) => {
                use argon2::PasswordVerifier;
                argon2::PasswordHash::new(hash).is_ok_and(|h| {
                    argon2::Argon2::default()
                        .verify_password(given.as_bytes(), &h)
                        .is_ok()
                })
            }
        }
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    // Lengths leak; contents do not.
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[derive(Debug, Clone)]
struct User {
    name: String,
    password: Stored,
    permissions: Arc<Permissions>,
}

/// The listener's authorization: who may connect, with which permissions.
#[derive(Debug)]
pub struct Authorization {
    token: Option<Stored>,
    users: Vec<User>,
    /// Hash checks at once: a flood of CONNECTs cannot take every core.
    hashing: Semaphore,
}

/// Cost of the hashes [`hash_password`] makes (bcrypt's 2^cost rounds).
pub const HASH_COST: u32 = 11;

/// A bcrypt hash of `password` for the auth file (`$2b$`, which nats-server
/// reads too).
pub fn hash_password(password: &str) -> Result<String, String> {
    if password.is_empty() {
        return Err("the password is empty".into());
    }
    bcrypt::hash(password, HASH_COST).map_err(|e| e.to_string())
}

/// Everything, for a token client or a user without `permissions`.
pub fn full_permissions() -> Arc<Permissions> {
    Arc::new(Permissions::default())
}

impl Authorization {
    /// A shared token only (plain, or a bcrypt hash of it).
    pub fn with_token(token: &str) -> Result<Self, String> {
        Ok(Self::new(Some(Stored::parse(token, true)?), Vec::new()))
    }

    fn new(token: Option<Stored>, users: Vec<User>) -> Self {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        Self {
            token,
            users,
            hashing: Semaphore::new(cores),
        }
    }

    /// Reads the JSON auth file; `token` (`ORDERLY_BROKER_TOKEN`) is used
    /// when the file sets none.
    pub fn from_file(path: &Path, token: Option<&str>) -> Result<Self, AuthConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| AuthConfigError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Self::from_json(&text, token).map_err(|reason| AuthConfigError::Invalid {
            path: path.display().to_string(),
            reason,
        })
    }

    /// The auth file's content (see the module documentation).
    pub fn from_json(text: &str, token: Option<&str>) -> Result<Self, String> {
        let file: AuthFile = serde_json::from_str(text).map_err(|e| e.to_string())?;
        let token = match file.token.as_deref().or(token) {
            Some(t) => Some(Stored::parse(t, true).map_err(|e| format!("token: {e}"))?),
            None => None,
        };
        let mut users: Vec<User> = Vec::new();
        for u in file.users {
            if u.user.is_empty() {
                return Err("a user has an empty name".into());
            }
            if users.iter().any(|o| o.name == u.user) {
                return Err(format!("user {:?} is listed twice", u.user));
            }
            let password =
                Stored::parse(&u.password, false).map_err(|e| format!("user {:?}: {e}", u.user))?;
            let permissions = match u.permissions {
                Some(p) => p
                    .into_permissions()
                    .map_err(|e| format!("user {:?}: {e}", u.user))?,
                None => Permissions::default(),
            };
            users.push(User {
                name: u.user,
                password,
                permissions: Arc::new(permissions),
            });
        }
        if token.is_none() && users.is_empty() {
            return Err("neither a token nor any user: nobody could connect".into());
        }
        Ok(Self::new(token, users))
    }

    /// Whether it has users (the INFO and the logs say which kind).
    pub fn has_users(&self) -> bool {
        !self.users.is_empty()
    }

    /// The permissions of a client that presented these credentials, or
    /// `None` when they are wrong or missing.
    pub async fn authenticate(
        &self,
        token: Option<&str>,
        user: Option<&str>,
        pass: Option<&str>,
    ) -> Option<(String, Arc<Permissions>)> {
        let (stored, name, permissions) = match (user, token) {
            (Some(name), _) => {
                let u = self.users.iter().find(|u| u.name == name)?;
                (u.password.clone(), u.name.clone(), u.permissions.clone())
            }
            (None, Some(_)) => (self.token.clone()?, "token".into(), full_permissions()),
            (None, None) => return None,
        };
        let given = match user {
            Some(_) => pass?.to_string(),
            None => token?.to_string(),
        };
        let _slot = self.hashing.acquire().await.ok()?;
        let ok = tokio::task::spawn_blocking(move || stored.verify(&given))
            .await
            .unwrap_or(false);
        ok.then_some((name, permissions))
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AuthFile {
    #[serde(default)]
    token: Option<String>,
    #[serde(default)]
    users: Vec<UserEntry>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UserEntry {
    user: String,
    password: String,
    #[serde(default)]
    permissions: Option<PermissionsEntry>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PermissionsEntry {
    #[serde(default)]
    publish: Option<RulesEntry>,
    #[serde(default)]
    subscribe: Option<RulesEntry>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum RulesEntry {
    /// A bare list: the allow list.
    Allow(Vec<String>),
    Both {
        #[serde(default)]
        allow: Option<Vec<String>>,
        #[serde(default)]
        deny: Vec<String>,
    },
}

impl PermissionsEntry {
    fn into_permissions(self) -> Result<Permissions, String> {
        Ok(Permissions {
            publish: rules(self.publish, "publish")?,
            subscribe: rules(self.subscribe, "subscribe")?,
        })
    }
}

fn rules(entry: Option<RulesEntry>, what: &str) -> Result<SubjectRules, String> {
    let rules = match entry {
        None => SubjectRules::default(),
        Some(RulesEntry::Allow(allow)) => SubjectRules {
            allow: Some(allow),
            deny: Vec::new(),
        },
        Some(RulesEntry::Both { allow, deny }) => SubjectRules { allow, deny },
    };
    for s in rules.allow.iter().flatten().chain(&rules.deny) {
        validate_filter(s).map_err(|why| format!("{what} subject {s:?}: {why}"))?;
    }
    Ok(rules)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn perms(json: &str) -> Permissions {
        serde_json::from_str::<PermissionsEntry>(json)
            .unwrap()
            .into_permissions()
            .unwrap()
    }

    #[test]
    fn an_allow_list_bounds_publish_and_subscribe_and_deny_wins() {
        let p = perms(
            r#"{"publish": {"allow": ["orders.>", "$JS.ACK.>"], "deny": ["orders.secret"]},
                "subscribe": ["orders.*", "_INBOX.>"]}"#,
        );
        assert!(p.may_publish("orders.created"));
        assert!(p.may_publish("$JS.ACK.orders.g.1.2.3.4.5"));
        assert!(!p.may_publish("orders.secret"));
        assert!(!p.may_publish("$JS.API.STREAM.DELETE.orders"));
        assert!(!p.may_publish("payments.done"));
        assert_eq!(p.subscribe("orders.paid"), SubscribeDecision::Allowed);
        assert_eq!(p.subscribe("orders.*"), SubscribeDecision::Allowed);
        assert_eq!(p.subscribe(">"), SubscribeDecision::Refused);
        assert_eq!(p.subscribe("orders.>"), SubscribeDecision::Refused);
        assert_eq!(p.subscribe("$JS.API.>"), SubscribeDecision::Refused);
    }

    #[test]
    fn a_subscription_partly_denied_is_filtered_and_wholly_denied_is_refused() {
        let p = perms(r#"{"subscribe": {"deny": ["orders.secret", "audit.>"]}}"#);
        assert_eq!(p.subscribe("audit.x"), SubscribeDecision::Refused);
        assert_eq!(
            p.subscribe("orders.*"),
            SubscribeDecision::Filtered(vec!["orders.secret".to_string()].into())
        );
        assert_eq!(p.subscribe("payments.*"), SubscribeDecision::Allowed);
    }

    #[test]
    fn plain_passwords_and_empty_files_are_refused() {
        let plain = r#"{"users": [{"user": "a", "password": "hunter2"}]}"#;
        let e = Authorization::from_json(plain, None).unwrap_err();
        assert!(e.contains("never in plain text"), "{e}");
        let e = Authorization::from_json("{}", None).unwrap_err();
        assert!(e.contains("nobody could connect"), "{e}");
        let bad = r#"{"users": [{"user": "a", "password": "$2b$04$x"}]}"#;
        assert!(Authorization::from_json(bad, None).is_err());
        let typo = r#"{"token": "t", "userz": []}"#;
        assert!(Authorization::from_json(typo, None).is_err());
    }

    #[tokio::test]
    async fn users_are_checked_against_their_hashes_and_the_token_against_its_value() {
        let hash = bcrypt::hash("pw", 4).unwrap();
        let json = format!(
            r#"{{"users": [{{"user": "a", "password": "{hash}", "permissions": {{"publish": ["x"]}}}}]}}"#
        );
        let auth = Authorization::from_json(&json, Some("tok")).unwrap();
        let (name, p) = auth
            .authenticate(None, Some("a"), Some("pw"))
            .await
            .unwrap();
        assert_eq!(name, "a");
        assert!(p.may_publish("x") && !p.may_publish("y"));
        assert!(
            auth.authenticate(None, Some("a"), Some("no"))
                .await
                .is_none()
        );
        assert!(
            auth.authenticate(None, Some("b"), Some("pw"))
                .await
                .is_none()
        );
        assert!(auth.authenticate(None, Some("a"), None).await.is_none());
        assert!(auth.authenticate(Some("tok"), None, None).await.is_some());
        assert!(auth.authenticate(Some("tok2"), None, None).await.is_none());
        assert!(auth.authenticate(None, None, None).await.is_none());
    }
}
