//! Which client a request comes from (rate limits, login throttling).

use std::net::{IpAddr, SocketAddr};

use axum::http::HeaderMap;
use orderly_core::config::TrustedProxies;

/// The peer address, or — only when the peer is a trusted proxy — the rightmost
/// `X-Forwarded-For` entry that is not itself a trusted proxy (clients can
/// prepend anything to that header, so the left end is never believed).
pub fn client_ip(peer: SocketAddr, headers: &HeaderMap, trusted: &TrustedProxies) -> IpAddr {
    let peer_ip = peer.ip();
    if !trusted.contains(peer_ip) {
        return peer_ip;
    }
    let forwarded = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|s| s.trim().parse::<IpAddr>().ok())
        .collect::<Vec<_>>();
    forwarded
        .into_iter()
        .rev()
        .find(|ip| !trusted.contains(*ip))
        .unwrap_or(peer_ip)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(xff: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert("x-forwarded-for", xff.parse().unwrap());
        h
    }

    #[test]
    fn an_untrusted_peer_cannot_claim_another_address() {
        let peer: SocketAddr = "9.9.9.9:1000".parse().unwrap();
        let none = TrustedProxies::default();
        assert_eq!(client_ip(peer, &headers("1.1.1.1"), &none), peer.ip());
    }

    #[test]
    fn a_trusted_proxy_forwards_the_client() {
        let peer: SocketAddr = "10.0.0.1:1000".parse().unwrap();
        let trusted = "10.0.0.1".parse().unwrap();
        let ip = client_ip(peer, &headers("6.6.6.6, 2.2.2.2"), &trusted);
        assert_eq!(ip, "2.2.2.2".parse::<IpAddr>().unwrap());
    }

    #[test]
    fn a_proxy_in_a_trusted_range_forwards_the_client_past_the_proxies_in_it() {
        let trusted = "10.0.0.0/8, fd00::/8".parse().unwrap();
        let peer: SocketAddr = "10.1.2.3:1000".parse().unwrap();
        // Two hops inside the ranges; the client is the first address outside.
        let ip = client_ip(peer, &headers("6.6.6.6, 2.2.2.2, 10.9.9.9"), &trusted);
        assert_eq!(ip, "2.2.2.2".parse::<IpAddr>().unwrap());
        let peer: SocketAddr = "[fd00::7]:1000".parse().unwrap();
        let ip = client_ip(peer, &headers("2001:db8::5"), &trusted);
        assert_eq!(ip, "2001:db8::5".parse::<IpAddr>().unwrap());
    }

    #[test]
    fn a_peer_outside_every_trusted_range_is_the_client() {
        let trusted = "10.0.0.0/8".parse().unwrap();
        let peer: SocketAddr = "11.0.0.1:1000".parse().unwrap();
        assert_eq!(client_ip(peer, &headers("2.2.2.2"), &trusted), peer.ip());
    }
}
