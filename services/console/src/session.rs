//! Who may use the console, and how a POST proves it comes from the console's
//! own pages.
//!
//! On a loopback address whoever can connect is on this machine already: the
//! first visit gets a session as "loopback". Elsewhere a session needs the
//! configured token (`ORDERLY_CONSOLE_TOKEN`) typed into the sign-in page;
//! without a token the console is not served there at all. Under the orders
//! API (`ORDERS_CONSOLE=on`) it is an admin account's e-mail and password,
//! checked by the auth service ([`AdminSignIn`]); that session ends when the
//! account's access token does.
//!
//! A POST must carry the session's CSRF token in its form, and must not come
//! from another site: `Sec-Fetch-Site`, when the browser sends it, is
//! `same-origin`, and `Origin`, when sent, names this host. The cookie is
//! `SameSite=Strict` as a third line.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use axum::http::HeaderMap;
use axum::http::header::{COOKIE, HOST, ORIGIN};
use rand::RngCore;

/// The session cookie's name on the ops listener.
pub const COOKIE_NAME: &str = "orderly_console";
/// The session cookie's name under the orders API. Cookies do not tell ports
/// apart: with the same name, signing in on one listener of a host would
/// overwrite the session of the other.
pub const ADMIN_COOKIE_NAME: &str = "orderly_console_admin";
/// How long a session lasts after it was opened.
const SESSION_LIFETIME: Duration = Duration::from_secs(12 * 3600);
/// Sessions kept at most; the oldest goes first (a loopback console opens one
/// per browser, so this bounds what scripts hammering it can make it hold).
const MAX_SESSIONS: usize = 1_000;

/// How the console is reached, which decides who may use it.
#[derive(Clone)]
pub enum Access {
    /// Bound to a loopback address: no sign-in.
    Loopback,
    /// Bound elsewhere: signed in with this token.
    Token(String),
    /// Bound elsewhere without a token: not served.
    Refused,
    /// Under the orders API: signed in with an admin account.
    Admin(Arc<dyn AdminSignIn>),
}

/// Checks an account's e-mail and password and whether it is an admin (the
/// auth service, as the wiring reaches it).
#[async_trait::async_trait]
pub trait AdminSignIn: Send + Sync {
    async fn sign_in(&self, email: &str, password: &str) -> Result<SignedIn, SignInError>;
}

/// An admin who signed in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedIn {
    /// Who acts, as every action's log line names them.
    pub user: String,
    /// When the account's access token expires: the session ends then too.
    pub expires_at: SystemTime,
}

/// Why an admin sign-in did not open a session.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SignInError {
    #[error("incorrect e-mail or password")]
    Credentials,
    #[error("this account is not an admin")]
    NotAdmin,
    #[error("too many failed sign-ins; try again later")]
    Throttled,
    /// Auth cannot be reached, or answered what the console cannot use.
    #[error("the auth service is unavailable: {0}")]
    Unavailable(String),
}

impl Access {
    /// The access for a listener bound to `addr`, given the configured token.
    pub fn for_listener(addr: std::net::SocketAddr, token: Option<&str>) -> Self {
        match (addr.ip().is_loopback(), token) {
            (true, _) => Access::Loopback,
            (false, Some(t)) if !t.is_empty() => Access::Token(t.to_string()),
            (false, _) => Access::Refused,
        }
    }
}

/// One signed-in browser.
#[derive(Clone, Debug)]
pub struct Session {
    pub id: String,
    /// Who acts: "loopback" or "token".
    pub user: String,
    /// What its forms carry.
    pub csrf: String,
    opened: Instant,
    /// When it ends: [`SESSION_LIFETIME`] after it opened, or earlier.
    ends: Instant,
    /// What the last action did, shown once on the next page.
    flash: Option<String>,
}

impl Session {
    fn live(&self) -> bool {
        Instant::now() < self.ends
    }
}

/// The sessions of one console, in memory (a restart signs everyone out).
pub struct Sessions {
    cookie: &'static str,
    map: Mutex<HashMap<String, Session>>,
}

impl Default for Sessions {
    fn default() -> Self {
        Self::named(COOKIE_NAME)
    }
}

fn random_token() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl Sessions {
    /// No sessions yet; their cookie is called `cookie`.
    pub fn named(cookie: &'static str) -> Self {
        Self {
            cookie,
            map: Mutex::default(),
        }
    }

    /// A new session for `user`.
    pub fn open(&self, user: &str) -> Session {
        self.open_until(user, None)
    }

    /// A new session for `user` that ends at `until` at the latest.
    pub fn open_until(&self, user: &str, until: Option<SystemTime>) -> Session {
        let opened = Instant::now();
        let mut ends = opened + SESSION_LIFETIME;
        if let Some(until) = until {
            let left = until
                .duration_since(SystemTime::now())
                .unwrap_or(Duration::ZERO);
            ends = ends.min(opened + left);
        }
        let session = Session {
            id: random_token(),
            user: user.to_string(),
            csrf: random_token(),
            opened,
            ends,
            flash: None,
        };
        let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        map.retain(|_, s| s.live());
        if map.len() >= MAX_SESSIONS
            && let Some(oldest) = map.values().min_by_key(|s| s.opened).map(|s| s.id.clone())
        {
            map.remove(&oldest);
        }
        map.insert(session.id.clone(), session.clone());
        session
    }

    /// Keep `message` for the session's next page.
    pub fn set_flash(&self, id: &str, message: String) {
        let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(s) = map.get_mut(id) {
            s.flash = Some(message);
        }
    }

    /// The message kept for this page, once.
    pub fn take_flash(&self, id: &str) -> Option<String> {
        let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        map.get_mut(id)?.flash.take()
    }

    /// The live session the request's cookie names.
    pub fn find(&self, headers: &HeaderMap) -> Option<Session> {
        let id = cookie(headers, self.cookie)?;
        let map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        map.get(&id).filter(|s| s.live()).cloned()
    }

    /// The `Set-Cookie` value for `session`.
    pub fn set_cookie(&self, session: &Session) -> String {
        format!(
            "{}={}; Path=/console; HttpOnly; SameSite=Strict",
            self.cookie, session.id
        )
    }
}

fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_string())
}

/// Compares in time independent of where the strings differ.
pub fn same_secret(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Why a POST is refused as cross-site, if it is.
pub fn cross_site(headers: &HeaderMap) -> Option<String> {
    if let Some(site) = headers.get("sec-fetch-site") {
        let site = site.to_str().unwrap_or("");
        if site != "same-origin" {
            return Some(format!("Sec-Fetch-Site: {site}"));
        }
    }
    if let Some(origin) = headers.get(ORIGIN) {
        let origin = origin.to_str().unwrap_or("");
        let host = headers
            .get(HOST)
            .and_then(|h| h.to_str().ok())
            .unwrap_or("");
        let origin_host = origin
            .strip_prefix("http://")
            .or_else(|| origin.strip_prefix("https://"));
        if host.is_empty() || origin_host != Some(host) {
            return Some(format!("Origin {origin} is not {host}"));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, v.parse().unwrap());
        }
        h
    }

    #[test]
    fn only_same_origin_posts_pass() {
        let host = ("host", "127.0.0.1:8002");
        assert_eq!(cross_site(&headers(&[host])), None, "no browser headers");
        assert_eq!(
            cross_site(&headers(&[
                host,
                ("origin", "http://127.0.0.1:8002"),
                ("sec-fetch-site", "same-origin")
            ])),
            None
        );
        assert!(cross_site(&headers(&[host, ("sec-fetch-site", "cross-site")])).is_some());
        assert!(cross_site(&headers(&[host, ("sec-fetch-site", "same-site")])).is_some());
        assert!(cross_site(&headers(&[host, ("origin", "http://evil.example")])).is_some());
        assert!(cross_site(&headers(&[host, ("origin", "null")])).is_some());
    }

    #[test]
    fn a_session_is_found_by_its_cookie_only() {
        let sessions = Sessions::default();
        let s = sessions.open("loopback");
        let found = sessions.find(&headers(&[(
            "cookie",
            &format!("a=b; {COOKIE_NAME}={}", s.id),
        )]));
        assert_eq!(found.map(|f| f.csrf), Some(s.csrf));
        assert!(
            sessions
                .find(&headers(&[("cookie", &format!("{COOKIE_NAME}=nope"))]))
                .is_none()
        );
        let admin = Sessions::named(ADMIN_COOKIE_NAME);
        let a = admin.open("admin:a@example.com");
        assert!(
            admin
                .find(&headers(&[("cookie", &format!("{COOKIE_NAME}={}", a.id))]))
                .is_none(),
            "the admin console's session is found by the ops console's cookie"
        );
        assert!(admin.set_cookie(&a).starts_with("orderly_console_admin="));
    }

    #[test]
    fn a_session_ends_when_its_access_token_does() {
        let sessions = Sessions::named(ADMIN_COOKIE_NAME);
        let cookie_of =
            |s: &Session| headers(&[("cookie", &format!("{ADMIN_COOKIE_NAME}={}", s.id))]);
        let expired =
            sessions.open_until("admin:a", Some(SystemTime::now() - Duration::from_secs(1)));
        assert!(
            sessions.find(&cookie_of(&expired)).is_none(),
            "a session outlived its access token"
        );
        let later = SystemTime::now() + Duration::from_secs(600);
        let live = sessions.open_until("admin:a", Some(later));
        assert!(sessions.find(&cookie_of(&live)).is_some());
    }

    #[test]
    fn the_listener_address_decides_the_access() {
        let lo = "127.0.0.1:8002".parse().unwrap();
        let any = "0.0.0.0:9090".parse().unwrap();
        assert!(matches!(Access::for_listener(lo, None), Access::Loopback));
        assert!(matches!(Access::for_listener(any, None), Access::Refused));
        assert!(matches!(
            Access::for_listener(any, Some("")),
            Access::Refused
        ));
        assert!(matches!(
            Access::for_listener(any, Some("t")),
            Access::Token(_)
        ));
        assert!(same_secret("abc", "abc") && !same_secret("abc", "abd") && !same_secret("a", "ab"));
    }
}
