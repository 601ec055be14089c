use crate::helpers::{logs_when, spawn_app_with};

/// The old README's script, unchanged but for the host:port of each service.
pub fn run_old_script(auth_url: &str, orders_url: &str) -> String {
    let script = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/e2e/old_readme_e2e.sh"
    ))
    .unwrap();
    let script = script
        .replace("http://localhost:8001", auth_url)
        .replace("http://localhost:8000", orders_url);
    let out = std::process::Command::new("bash")
        .arg("-c")
        .arg(script)
        .output()
        .expect("bash");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_old_readme_script_prints_paid_against_a_fresh_default_setup() {
    // The real 2 s payment and the real 10/minute limit: the defaults the script meets.
    let app = spawn_app_with(&[
        ("WORKER_PAYMENT_DELAY_MS", "2000"),
        ("ORDERS_RATE_LIMIT", "10/minute"),
    ])
    .await;
    let (auth, orders) = (app.auth_url.clone(), app.orders_url.clone());
    let output = tokio::task::spawn_blocking(move || run_old_script(&auth, &orders))
        .await
        .unwrap();
    assert!(
        output.contains(r#"{"msg":"User created","user_id":1}"#),
        "{output}"
    );
    assert!(
        output.contains(r#""status":"PAID"#),
        "script output:\n{output}\nlogs:\n{}",
        app.logs()
    );
    let logs = logs_when(
        || app.logs(),
        |l| {
            l.contains("Starting to process order")
                && l.contains("successfully updated to PAID status")
        },
    )
    .await;
    assert!(logs.contains("Starting to process order"), "{logs}");
    assert!(
        logs.contains("successfully updated to PAID status"),
        "{logs}"
    );
}
