//! The orderly API as a client sees it (CONTRACT.md): just enough to set up a
//! benchmark's user, token and orders on any implementation.

use anyhow::{Context, Result, anyhow, bail};
use hyper::StatusCode;
use serde_json::{Value, json};

use crate::http::{Client, Target};

pub(crate) const PASSWORD: &str = "bench-password-1";

/// The body of every order the bench creates.
pub(crate) fn order_body() -> Value {
    json!({
        "items": [{"name": "Bench item", "price": 100.0, "quantity": 1}],
        "total_price": 100.0
    })
}

#[derive(Debug, Clone)]
pub(crate) struct User {
    pub(crate) email: String,
    pub(crate) user_id: i64,
    pub(crate) token: String,
}

/// Registers a fresh user and logs in.
pub(crate) async fn new_user(auth: &Target) -> Result<User> {
    let mut c = Client::new(auth.clone());
    let email = format!("bench-{}@example.com", uuid::Uuid::new_v4().simple());
    let (status, body) = c
        .post_json(
            "/auth/register/",
            None,
            &json!({"email": email, "password": PASSWORD}),
        )
        .await
        .context("register")?;
    if !status.is_success() {
        bail!(
            "register answered {status}: {}",
            String::from_utf8_lossy(&body)
        );
    }
    let v: Value = serde_json::from_slice(&body).context("register answer")?;
    let user_id = v["user_id"]
        .as_i64()
        .ok_or_else(|| anyhow!("no user_id in {v}"))?;
    let token = login(&mut c, &email).await?;
    Ok(User {
        email,
        user_id,
        token,
    })
}

pub(crate) fn token_form(email: &str) -> String {
    format!(
        "username={}&password={PASSWORD}",
        email.replace('@', "%40").replace('+', "%2B")
    )
}

async fn login(c: &mut Client, email: &str) -> Result<String> {
    let (status, body) = c
        .post_form("/auth/token/", &token_form(email))
        .await
        .context("token")?;
    if status != StatusCode::OK {
        bail!(
            "token answered {status}: {}",
            String::from_utf8_lossy(&body)
        );
    }
    let v: Value = serde_json::from_slice(&body).context("token answer")?;
    v["access_token"]
        .as_str()
        .map(str::to_string)
        .ok_or_else(|| anyhow!("no access_token in {v}"))
}

/// Creates one order; returns its id.
pub(crate) async fn create_order(c: &mut Client, token: &str) -> Result<String> {
    let (status, body) = c.post_json("/orders/", Some(token), &order_body()).await?;
    if status != StatusCode::OK && status != StatusCode::CREATED {
        bail!(
            "create answered {status}: {}",
            String::from_utf8_lossy(&body)
        );
    }
    let v: Value = serde_json::from_slice(&body).context("create answer")?;
    v["id"]
        .as_str()
        .map(str::to_string)
        .ok_or_else(|| anyhow!("no id in {v}"))
}

/// The order's status, from `GET /orders/{id}/`.
pub(crate) async fn order_status(c: &mut Client, token: &str, id: &str) -> Result<String> {
    let (status, body) = c.get(&format!("/orders/{id}/"), Some(token)).await?;
    if status != StatusCode::OK {
        bail!("get answered {status}");
    }
    let v: Value = serde_json::from_slice(&body)?;
    Ok(v["status"].as_str().unwrap_or_default().to_string())
}

/// Polls `GET /health` until it answers 200; `Err` after `timeout`.
pub(crate) async fn wait_healthy(target: &Target, timeout: std::time::Duration) -> Result<()> {
    let deadline = tokio::time::Instant::now() + timeout;
    let mut c = Client::new(target.clone());
    loop {
        if let Ok((s, _)) = c.get("/health", None).await
            && s == StatusCode::OK
        {
            return Ok(());
        }
        if tokio::time::Instant::now() >= deadline {
            bail!("{} not healthy within {timeout:?}", target.base_url);
        }
        tokio::time::sleep(std::time::Duration::from_millis(2)).await;
    }
}
