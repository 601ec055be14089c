//! Which browser origins may call the APIs (`CORS_ALLOWED_ORIGINS`).
//!
//! The old system allowed "only requests from localhost"; that stays the
//! default. A deployment lists its front-ends' exact origins, or `*` for a
//! public API that takes no cookies. This is the setting; `orderly-http`
//! turns it into the CORS layer.

/// The origins a browser may call from.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum CorsOrigins {
    /// `http(s)://localhost`, `127.0.0.1` or `[::1]`, any port (the default).
    #[default]
    Localhost,
    /// `*`: any origin, but without credentials (cookies).
    Any,
    /// Exactly these origins, each serialized as a browser sends it
    /// (`https://shop.example.com`, default port left out).
    List(Vec<String>),
}

impl CorsOrigins {
    /// Parse `CORS_ALLOWED_ORIGINS`: `*`, or comma-separated origins. The error
    /// says which entry is wrong and why.
    pub fn parse(value: &str) -> Result<Self, String> {
        let entries: Vec<&str> = value
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .collect();
        if entries.is_empty() {
            return Ok(Self::Localhost);
        }
        if entries.contains(&"*") {
            if entries.len() > 1 {
                return Err("`*` allows every origin and cannot be combined with others".into());
            }
            return Ok(Self::Any);
        }
        let mut origins = Vec::with_capacity(entries.len());
        for entry in entries {
            let origin = origin_of(entry).map_err(|why| format!("{entry:?} {why}"))?;
            if !origins.contains(&origin) {
                origins.push(origin);
            }
        }
        Ok(Self::List(origins))
    }

    /// Whether a request with this `Origin` header value is allowed.
    pub fn allows(&self, origin: &str) -> bool {
        match self {
            Self::Any => true,
            Self::List(list) => list.iter().any(|o| o == origin),
            Self::Localhost => is_local_origin(origin),
        }
    }
}

impl std::fmt::Display for CorsOrigins {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Localhost => f.write_str("localhost (any port)"),
            Self::Any => f.write_str("*"),
            Self::List(list) => f.write_str(&list.join(",")),
        }
    }
}

/// `entry` as the browser would serialize its origin, or why it is not one.
fn origin_of(entry: &str) -> Result<String, &'static str> {
    let url = url::Url::parse(entry)
        .map_err(|_| "is not an origin (expected e.g. https://shop.example.com)")?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err("is not an origin: the scheme must be http or https");
    }
    if url.host().is_none() {
        return Err("is not an origin: it has no host");
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err("is not an origin: it has user information");
    }
    // `https://a.example` and `https://a.example/` are the same origin; anything
    // more is a path, a query or a fragment, which an Origin header never has.
    if url.path() != "/" || url.query().is_some() || url.fragment().is_some() {
        return Err("is not an origin: it has a path, query or fragment");
    }
    Ok(url.origin().ascii_serialization())
}

/// `http(s)://localhost[:port]`, `127.0.0.1` or `[::1]`, exactly as an Origin
/// header carries it (so `http://localhost.evil.example` is not local).
fn is_local_origin(origin: &str) -> bool {
    let Ok(url) = url::Url::parse(origin) else {
        return false;
    };
    let local = match url.host() {
        Some(url::Host::Domain(d)) => d == "localhost",
        Some(url::Host::Ipv4(ip)) => ip == std::net::Ipv4Addr::LOCALHOST,
        Some(url::Host::Ipv6(ip)) => ip == std::net::Ipv6Addr::LOCALHOST,
        None => false,
    };
    local
        && matches!(url.scheme(), "http" | "https")
        && url.origin().ascii_serialization() == origin
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_allows_local_origins_on_any_port_only() {
        let cors = CorsOrigins::default();
        for ok in [
            "http://localhost",
            "http://localhost:3000",
            "https://localhost:8443",
            "http://127.0.0.1:5173",
            "http://[::1]:8080",
        ] {
            assert!(cors.allows(ok), "{ok}");
        }
        for bad in [
            "https://evil.example",
            "http://localhost.evil.example",
            "http://evil.example#localhost",
            "http://127.0.0.2",
            "ftp://localhost",
            "http://localhost:3000/path",
            "null",
            "",
        ] {
            assert!(!cors.allows(bad), "{bad}");
        }
    }

    #[test]
    fn a_list_is_exact_origins_normalized_like_a_browser_sends_them() {
        let cors = CorsOrigins::parse(
            " https://Shop.Example.com , https://admin.example.com:443/,http://a.test:8080",
        )
        .unwrap();
        assert_eq!(
            cors,
            CorsOrigins::List(vec![
                "https://shop.example.com".into(),
                "https://admin.example.com".into(),
                "http://a.test:8080".into(),
            ])
        );
        assert!(cors.allows("https://shop.example.com"));
        assert!(cors.allows("http://a.test:8080"));
        assert!(!cors.allows("http://shop.example.com"));
        assert!(!cors.allows("http://a.test"));
        assert!(!cors.allows("http://localhost:3000"));
    }

    #[test]
    fn a_star_allows_everything_and_stands_alone() {
        assert_eq!(CorsOrigins::parse("*").unwrap(), CorsOrigins::Any);
        assert!(CorsOrigins::Any.allows("https://anything.example"));
        assert!(CorsOrigins::parse("*,https://a.example").is_err());
        assert_eq!(CorsOrigins::parse(" , ").unwrap(), CorsOrigins::Localhost);
    }

    #[test]
    fn what_is_not_an_origin_is_refused_with_the_entry_named() {
        for bad in [
            "https://shop.example.com/app",
            "https://shop.example.com?x=1",
            "ftp://files.example.com",
            "shop.example.com",
            "https://user:pw@shop.example.com",
            "file:///etc/passwd",
        ] {
            let err = CorsOrigins::parse(&format!("https://ok.example,{bad}")).unwrap_err();
            assert!(err.contains(bad), "{bad}: {err}");
        }
    }
}
