//! `AUTH_TRUSTED_PROXIES` / `ORDERS_TRUSTED_PROXIES`: the peers whose
//! `X-Forwarded-For` is believed, as addresses or CIDR ranges
//! (`10.0.0.0/8`, `fd00::/8`): a load balancer's address changes whenever it
//! is replaced, its subnet does not.

use std::net::IpAddr;
use std::str::FromStr;

use super::ConfigError;
use super::env::{Env, invalid};

/// An address range: `network/prefix`; a bare address is a range of one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpRange {
    network: IpAddr,
    prefix: u8,
}

impl IpRange {
    /// Whether `ip` is in the range. An IPv4 address seen through an IPv6
    /// socket (`::ffff:10.0.0.1`) counts as the IPv4 address.
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.network, ip.to_canonical()) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = mask_v4(self.prefix);
                u32::from(ip) & mask == u32::from(net)
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = mask_v6(self.prefix);
                u128::from(ip) & mask == u128::from(net)
            }
            _ => false,
        }
    }
}

fn mask_v4(prefix: u8) -> u32 {
    u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0)
}

fn mask_v6(prefix: u8) -> u128 {
    u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0)
}

impl FromStr for IpRange {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (addr, prefix) = match s.split_once('/') {
            Some((addr, prefix)) => (addr, Some(prefix)),
            None => (s, None),
        };
        let network: IpAddr = addr
            .parse()
            .map_err(|_| format!("{s:?} is not an IP address or CIDR range"))?;
        let network = network.to_canonical();
        let most = if network.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => most,
            Some(p) => match p.parse::<u8>() {
                Ok(p) if p <= most => p,
                _ => return Err(format!("{s:?}: the prefix length must be 0 to {most}")),
            },
        };
        let range = Self { network, prefix };
        // `10.0.0.1/8` is most likely a typo for one of two different things.
        if !range.contains(network) || network != range.first() {
            return Err(format!(
                "{s:?} has bits set after the prefix; the range is {}/{prefix}, the address alone {addr}",
                range.first()
            ));
        }
        Ok(range)
    }
}

impl IpRange {
    /// The range's first address (the network with the host bits cleared).
    fn first(&self) -> IpAddr {
        match self.network {
            IpAddr::V4(net) => IpAddr::V4((u32::from(net) & mask_v4(self.prefix)).into()),
            IpAddr::V6(net) => IpAddr::V6((u128::from(net) & mask_v6(self.prefix)).into()),
        }
    }
}

impl std::fmt::Display for IpRange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix)
    }
}

/// The proxies whose `X-Forwarded-For` is believed (empty: none, the peer
/// address is the client).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustedProxies(Vec<IpRange>);

impl TrustedProxies {
    /// These ranges.
    pub fn new(ranges: Vec<IpRange>) -> Self {
        Self(ranges)
    }

    /// Whether `ip` is in one of the ranges.
    pub fn contains(&self, ip: IpAddr) -> bool {
        self.0.iter().any(|r| r.contains(ip))
    }

    /// The number of ranges.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// No proxy is trusted.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl FromStr for TrustedProxies {
    type Err = String;

    /// Comma-separated addresses and ranges.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        s.split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::parse)
            .collect::<Result<Vec<_>, _>>()
            .map(Self)
    }
}

/// The proxies `name` lists (unset: none).
pub(super) fn trusted_proxies(env: &Env, name: &str) -> Result<TrustedProxies, ConfigError> {
    match env.get(&[name]) {
        None => Ok(TrustedProxies::default()),
        Some((name, value)) => value.parse().map_err(|why| invalid(&name, &value, why)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn proxies(s: &str) -> TrustedProxies {
        s.parse().unwrap()
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn an_exact_address_trusts_that_address_only() {
        let p = proxies("10.0.0.1, 2001:db8::1");
        assert!(p.contains(ip("10.0.0.1")));
        assert!(!p.contains(ip("10.0.0.2")));
        assert!(p.contains(ip("2001:db8::1")));
        assert!(!p.contains(ip("2001:db8::2")));
    }

    #[test]
    fn an_ipv4_range_trusts_every_address_in_it_and_none_outside() {
        let p = proxies("10.0.0.0/8,192.168.1.0/24");
        assert!(p.contains(ip("10.0.0.0")));
        assert!(p.contains(ip("10.255.255.255")));
        assert!(!p.contains(ip("11.0.0.0")));
        assert!(!p.contains(ip("9.255.255.255")));
        assert!(p.contains(ip("192.168.1.77")));
        assert!(!p.contains(ip("192.168.2.1")));
    }

    #[test]
    fn an_ipv6_range_trusts_every_address_in_it_and_none_outside() {
        let p = proxies("fd00::/8");
        assert!(p.contains(ip("fd12:3456::1")));
        assert!(!p.contains(ip("fe80::1")));
        assert!(!p.contains(ip("10.0.0.1")));
    }

    #[test]
    fn an_ipv4_peer_on_an_ipv6_socket_matches_its_ipv4_range() {
        let p = proxies("10.0.0.0/8");
        assert!(p.contains(ip("::ffff:10.1.2.3")));
        assert!(!p.contains(ip("::ffff:11.1.2.3")));
    }

    #[test]
    fn slash_zero_trusts_everything_of_its_family() {
        let p = proxies("0.0.0.0/0");
        assert!(p.contains(ip("1.2.3.4")));
        assert!(!p.contains(ip("::1")));
    }

    #[test]
    fn bad_ranges_are_refused_with_a_reason() {
        for (bad, why) in [
            ("10.0.0.0/33", "0 to 32"),
            ("fd00::/129", "0 to 128"),
            ("10.0.0.0/x", "prefix length"),
            ("10.0.0.1/8", "the range is 10.0.0.0/8"),
            ("proxy.local", "not an IP address"),
        ] {
            let err = bad.parse::<TrustedProxies>().unwrap_err();
            assert!(err.contains(why), "{bad}: {err}");
        }
    }

    #[test]
    fn a_bad_entry_names_the_variable() {
        let env = Env::from_pairs([("ORDERS_TRUSTED_PROXIES", "10.0.0.0/8, 300.0.0.1")]);
        let err = trusted_proxies(&env, "ORDERS_TRUSTED_PROXIES").unwrap_err();
        assert!(err.to_string().contains("ORDERS_TRUSTED_PROXIES"), "{err}");
        assert!(err.to_string().contains("300.0.0.1"), "{err}");
    }
}
