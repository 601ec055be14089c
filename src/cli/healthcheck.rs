//! `orderly healthcheck`: the container health check, from the binary itself
//! so the runtime image needs no curl. An `http://` target must answer 200 to a
//! GET, a `tcp://` target must accept a connection.
//!
//! Without targets it probes what the role serves, from the same variables
//! the role reads: auth's `AUTH_BIND`, orders' `ORDERS_BIND`, the ops listener
//! (`ORDERLY_OPS_BIND`) of consumer and worker, the broker's
//! `ORDERLY_BROKER_LISTEN`. The role is `--role`, else the container's own
//! command (PID 1's arguments), else `all`. One image with one HEALTHCHECK
//! then fits every role.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use orderly_core::config::Settings;

use crate::wiring::Role;

/// Where `orderly broker` listens when `ORDERLY_BROKER_LISTEN` is unset.
const BROKER_DEFAULT_LISTEN: &str = "127.0.0.1:4223";

/// The role named on the command line, else PID 1's, else `all`.
pub fn role(named: Option<&str>) -> Result<Role> {
    if let Some(name) = named {
        return role_by_name(name).ok_or_else(|| {
            anyhow!("--role {name}: expected all, auth, orders, consumer, worker or broker")
        });
    }
    let pid1 = std::fs::read("/proc/1/cmdline").unwrap_or_default();
    Ok(role_of_command_line(&pid1).unwrap_or(Role::All))
}

fn role_by_name(name: &str) -> Option<Role> {
    Some(match name {
        "all" => Role::All,
        "auth" => Role::Auth,
        "orders" => Role::Orders,
        "consumer" => Role::Consumer,
        "worker" => Role::Worker,
        "broker" => Role::Broker,
        _ => return None,
    })
}

/// The role of an `orderly …` command line (NUL-separated, as in
/// /proc/PID/cmdline), also behind an init (`docker-init -- orderly auth`).
/// `None` when it is not orderly running a role.
fn role_of_command_line(cmdline: &[u8]) -> Option<Role> {
    let args: Vec<String> = cmdline
        .split(|b| *b == 0)
        .filter(|a| !a.is_empty())
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect();
    let at = args
        .iter()
        .position(|a| a.rsplit('/').next() == Some("orderly"))?;
    match args.get(at + 1) {
        None => Some(Role::All),
        Some(next) => role_by_name(next),
    }
}

/// What `role` serves, as targets, from the binds in `settings`.
pub fn role_targets(role: Role, settings: &Settings) -> Result<Vec<String>> {
    let starts = role.starts();
    if starts.broker {
        let listen = settings
            .broker_listen
            .as_deref()
            .unwrap_or(BROKER_DEFAULT_LISTEN);
        return Ok(vec![format!(
            "tcp://{}",
            local(listen, "ORDERLY_BROKER_LISTEN")?
        )]);
    }
    let mut targets = Vec::new();
    if starts.auth {
        let addr = local(&settings.auth.bind, "AUTH_BIND")?;
        targets.push(format!("http://{addr}/health"));
    }
    if starts.orders {
        let addr = local(&settings.orders.bind, "ORDERS_BIND")?;
        targets.push(format!("http://{addr}/health"));
    }
    if starts.needs_ops_listener() {
        let Some(bind) = &settings.ops_bind else {
            bail!(
                "{role:?} serves nothing to probe without ORDERLY_OPS_BIND (e.g. 0.0.0.0:9090, the image's default)"
            );
        };
        let addr = local(bind, "ORDERLY_OPS_BIND")?;
        targets.push(format!("http://{addr}/health"));
    }
    Ok(targets)
}

/// The address to probe a listener bound to `bind` at: a wildcard bind
/// (`0.0.0.0`, `[::]`) answers on loopback.
fn local(bind: &str, variable: &str) -> Result<SocketAddr> {
    let addr: SocketAddr = bind
        .parse()
        .with_context(|| format!("{variable}={bind:?} is not HOST:PORT"))?;
    if addr.port() == 0 {
        bail!("{variable}={bind}: port 0 is any free port, so there is no fixed port to probe");
    }
    let ip = match addr.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    Ok(SocketAddr::new(ip, addr.port()))
}

/// Checks each target in turn; the first that fails is the error. No
/// targets: what the role serves.
pub async fn run(
    targets: &[String],
    role_name: Option<&str>,
    timeout: Duration,
    settings: impl FnOnce() -> Result<Settings>,
) -> Result<()> {
    let derived;
    let targets = if targets.is_empty() {
        derived = role_targets(role(role_name)?, &settings()?)?;
        &derived
    } else {
        targets
    };
    for target in targets {
        tokio::time::timeout(timeout, check(target))
            .await
            .map_err(|_| anyhow!("{target}: no answer within {timeout:?}"))?
            .with_context(|| target.clone())?;
        println!("{target}: ok");
    }
    Ok(())
}

async fn check(target: &str) -> Result<()> {
    if let Some(addr) = target.strip_prefix("tcp://") {
        TcpStream::connect(addr).await?;
        return Ok(());
    }
    let Some(rest) = target.strip_prefix("http://") else {
        bail!("expected http://HOST:PORT/PATH or tcp://HOST:PORT");
    };
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let mut stream = TcpStream::connect(authority).await?;
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\nUser-Agent: orderly-healthcheck\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await?;
    // The status line is all that matters; a short read limit keeps a
    // misbehaving peer from feeding us forever.
    let mut head = Vec::new();
    let mut buf = [0u8; 512];
    while !head.windows(2).any(|w| w == b"\r\n") && head.len() < 4096 {
        let n = stream.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        head.extend_from_slice(&buf[..n]);
    }
    let line = String::from_utf8_lossy(&head);
    let status_line = line.lines().next().unwrap_or_default();
    match status_line.split_whitespace().nth(1) {
        Some("200") => Ok(()),
        Some(code) => bail!("answered {code}"),
        None => bail!("not an HTTP answer: {status_line:?}"),
    }
}

#[cfg(test)]
mod tests {
    use orderly_core::config::Env;

    use super::*;

    fn settings(pairs: &[(&str, &str)]) -> Settings {
        Settings::from_env(&Env::from_pairs(pairs.iter().copied())).unwrap()
    }

    #[test]
    fn each_role_probes_what_it_binds() {
        let s = settings(&[
            ("AUTH_BIND", "0.0.0.0:9001"),
            ("ORDERS_BIND", "127.0.0.2:9000"),
            ("ORDERLY_OPS_BIND", "[::]:9090"),
            ("ORDERLY_BROKER_LISTEN", "0.0.0.0:4333"),
        ]);
        let targets = |r| role_targets(r, &s).unwrap();
        assert_eq!(targets(Role::Auth), ["http://127.0.0.1:9001/health"]);
        assert_eq!(targets(Role::Orders), ["http://127.0.0.2:9000/health"]);
        assert_eq!(
            targets(Role::All),
            [
                "http://127.0.0.1:9001/health",
                "http://127.0.0.2:9000/health"
            ]
        );
        assert_eq!(targets(Role::Consumer), ["http://[::1]:9090/health"]);
        assert_eq!(targets(Role::Worker), ["http://[::1]:9090/health"]);
        assert_eq!(targets(Role::Broker), ["tcp://127.0.0.1:4333"]);
    }

    #[test]
    fn defaults_are_the_contract_ports() {
        let s = settings(&[]);
        assert_eq!(
            role_targets(Role::All, &s).unwrap(),
            [
                "http://127.0.0.1:8001/health",
                "http://127.0.0.1:8000/health"
            ]
        );
        assert_eq!(
            role_targets(Role::Broker, &s).unwrap(),
            ["tcp://127.0.0.1:4223"]
        );
    }

    #[test]
    fn a_role_without_a_fixed_port_to_probe_is_an_error_naming_the_variable() {
        let err = role_targets(Role::Worker, &settings(&[])).unwrap_err();
        assert!(err.to_string().contains("ORDERLY_OPS_BIND"), "{err}");
        let err = role_targets(Role::Auth, &settings(&[("AUTH_BIND", "127.0.0.1:0")])).unwrap_err();
        assert!(err.to_string().contains("AUTH_BIND"), "{err}");
    }

    #[test]
    fn the_role_comes_from_the_containers_command_line() {
        assert_eq!(role_of_command_line(b"orderly\0auth\0"), Some(Role::Auth));
        assert_eq!(
            role_of_command_line(b"/usr/local/bin/orderly\0worker\0"),
            Some(Role::Worker)
        );
        assert_eq!(
            role_of_command_line(b"/sbin/docker-init\0--\0orderly\0consumer\0"),
            Some(Role::Consumer)
        );
        assert_eq!(role_of_command_line(b"orderly\0"), Some(Role::All));
        assert_eq!(role_of_command_line(b"orderly\0migrate\0"), None);
        assert_eq!(role_of_command_line(b"/sbin/init\0"), None);
        assert_eq!(role(Some("orders")).unwrap(), Role::Orders);
        assert!(role(Some("order")).is_err());
    }
}
