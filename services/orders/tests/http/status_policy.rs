//! Who may set which status: by default (`strict`) owners may only cancel and
//! PAID/SHIPPED need the `admin` role (the worker pays through the service, not
//! over HTTP); `ORDERS_STATUS_POLICY=owner` is the old system's behaviour.

use serde_json::json;

use crate::helpers::{Backend, TestApp};

async fn patch(app: &TestApp, token: &str, id: &str, status: &str) -> u16 {
    app.call_with_token(
        "PATCH",
        &format!("/orders/{id}/"),
        Some(token),
        Some(json!({ "status": status })),
    )
    .await
    .status
}

#[tokio::test(flavor = "multi_thread")]
async fn by_default_an_owner_may_cancel_but_not_pay_or_ship() {
    let app = TestApp::start(Backend::Sqlite, "1000/minute")
        .await
        .unwrap();
    let owner = app.token(1);
    let admin = app.token_with_role(2, Some("admin"));
    let first = app.create_order(1, "first").await;
    let answer = app
        .call_with_token(
            "PATCH",
            &format!("/orders/{first}/"),
            Some(&owner),
            Some(json!({"status": "PAID"})),
        )
        .await;
    assert_eq!(answer.status, 403, "{}", answer.text());
    assert_eq!(answer.json["detail"], "Not authorized");
    assert_eq!(patch(&app, &admin, &first, "PAID").await, 200);
    assert_eq!(patch(&app, &owner, &first, "SHIPPED").await, 403);
    assert_eq!(patch(&app, &admin, &first, "SHIPPED").await, 200);

    let second = app.create_order(1, "second").await;
    assert_eq!(patch(&app, &owner, &second, "CANCELED").await, 200);
    let order = app
        .call("GET", &format!("/orders/{second}/"), Some(1), None)
        .await;
    assert_eq!(order.json["status"], "CANCELED");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_legacy_owner_policy_lets_owners_make_any_legal_transition() {
    let app = TestApp::start_with(
        Backend::Sqlite,
        "1000/minute",
        &[("ORDERS_STATUS_POLICY", "owner")],
    )
    .await
    .unwrap();
    let owner = app.token(1);
    let id = app.create_order(1, "mine").await;
    assert_eq!(patch(&app, &owner, &id, "PAID").await, 200);
    assert_eq!(patch(&app, &owner, &id, "SHIPPED").await, 200);
    // Another user's order stays out of reach under any policy.
    let theirs = app.create_order(2, "theirs").await;
    assert_eq!(patch(&app, &owner, &theirs, "CANCELED").await, 403);
}
