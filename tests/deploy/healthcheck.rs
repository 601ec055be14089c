//! `orderly healthcheck` (the image's HEALTHCHECK) and `orderly keygen
//! --if-missing` (compose's first-start job) against the real binary.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::process::{Command, Output};
use std::time::Duration;

fn orderly(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_orderly"))
        .args(args)
        .output()
        .expect("run orderly")
}

/// A one-connection HTTP server answering `status`; returns its URL.
fn serve_once(status: &'static str) -> (String, std::thread::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let url = format!("http://{}/health", listener.local_addr().expect("addr"));
    let handle = std::thread::spawn(move || {
        if let Ok((mut s, _)) = listener.accept() {
            let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
            let mut buf = [0u8; 1024];
            let _ = s.read(&mut buf);
            let _ = write!(
                s,
                "HTTP/1.1 {status}\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{{}}"
            );
        }
    });
    (url, handle)
}

#[test]
fn healthcheck_passes_on_200_and_fails_otherwise() {
    let (ok, h) = serve_once("200 OK");
    let out = orderly(&["healthcheck", &ok]);
    h.join().expect("server");
    assert!(out.status.success(), "{out:?}");

    let (bad, h) = serve_once("503 Service Unavailable");
    let out = orderly(&["healthcheck", &bad]);
    h.join().expect("server");
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("503"),
        "{out:?}"
    );

    // A port nothing listens on: bind, note it, release it.
    let closed = TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr");
    assert!(
        !orderly(&["healthcheck", &format!("tcp://{closed}")])
            .status
            .success()
    );
    let open = TcpListener::bind("127.0.0.1:0").expect("bind");
    let target = format!("tcp://{}", open.local_addr().expect("addr"));
    assert!(orderly(&["healthcheck", &target]).status.success());
    assert!(!orderly(&["healthcheck", "ftp://x"]).status.success());
}

/// `orderly healthcheck --role ROLE` with only `env` of orderly's variables,
/// in a directory without a .env.
fn role_check(role: &str, env: &[(&str, &str)]) -> Output {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_orderly"));
    cmd.args(["healthcheck", "--role", role])
        .current_dir(dir.path());
    for name in [
        "AUTH_BIND",
        "ORDERS_BIND",
        "ORDERLY_OPS_BIND",
        "ORDERLY_BROKER_LISTEN",
    ] {
        cmd.env_remove(name);
    }
    cmd.envs(env.iter().copied());
    cmd.output().expect("run orderly healthcheck")
}

/// The `HOST:PORT` of a URL from [`serve_once`].
fn authority(url: &str) -> &str {
    url.trim_start_matches("http://")
        .split('/')
        .next()
        .expect("authority")
}

#[test]
fn healthcheck_probes_what_the_role_binds() {
    let (url, h) = serve_once("200 OK");
    let out = role_check("auth", &[("AUTH_BIND", authority(&url))]);
    h.join().expect("server");
    assert!(out.status.success(), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stdout).contains(&url),
        "{out:?}"
    );

    let (url, h) = serve_once("200 OK");
    let out = role_check("worker", &[("ORDERLY_OPS_BIND", authority(&url))]);
    h.join().expect("server");
    assert!(out.status.success(), "{out:?}");

    // orders is not what listens there: its bind is elsewhere.
    let (url, h) = serve_once("200 OK");
    let closed = TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .to_string();
    let out = role_check(
        "orders",
        &[("AUTH_BIND", authority(&url)), ("ORDERS_BIND", &closed)],
    );
    drop(std::net::TcpStream::connect(authority(&url)));
    h.join().expect("server");
    assert!(!out.status.success(), "{out:?}");
}

#[test]
fn healthcheck_says_what_is_missing_when_the_role_binds_nothing_fixed() {
    let out = role_check("consumer", &[]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("ORDERLY_OPS_BIND"),
        "{out:?}"
    );
    let out = role_check("auths", &[]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("--role auths"),
        "{out:?}"
    );
}

#[test]
fn keygen_if_missing_keeps_an_existing_pair() {
    let dir = tempfile::tempdir().expect("tempdir");
    let keys = dir.path().join("keys");
    let keys_arg = keys.to_str().expect("utf-8 path");
    let first = orderly(&["keygen", "--dir", keys_arg, "--if-missing"]);
    assert!(first.status.success(), "{first:?}");
    let private = std::fs::read(keys.join("private.pem")).expect("private.pem");

    let again = orderly(&["keygen", "--dir", keys_arg, "--if-missing"]);
    assert!(again.status.success(), "{again:?}");
    assert_eq!(
        std::fs::read(keys.join("private.pem")).expect("private.pem"),
        private
    );
    // Without the flag an existing pair is an error, as before.
    assert!(!orderly(&["keygen", "--dir", keys_arg]).status.success());
    // Half a pair is never papered over.
    std::fs::remove_file(keys.join("public.pem")).expect("rm");
    assert!(
        !orderly(&["keygen", "--dir", keys_arg, "--if-missing"])
            .status
            .success()
    );
}
