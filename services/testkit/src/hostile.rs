//! proptest strategies for hostile HTTP input: JSON text (not values, so
//! numbers like `1e400` or `9223372036854775808` and duplicate keys survive),
//! strings that broke services before (SQL, NUL, bidi overrides, very long),
//! raw body bytes (invalid UTF-8, truncated JSON, deep nesting, oversize),
//! content types, path segments and query strings.
//!
//! Each test combines them into the shape of its endpoint's input; the
//! services' tests assert that no such input gets a 5xx or an answer off the
//! contract.

use proptest::prelude::*;
use proptest::sample::{Index, select};

/// Strings with a history: SQL and format-string injection, quoting, NUL and
/// other control characters, bidi override, combining marks, astral planes.
pub const NASTY_STRINGS: &[&str] = &[
    "'; DROP TABLE orders; --",
    "Robert'); DROP TABLE users;--",
    "1' OR '1'='1' --",
    "\" OR \"\"=\"",
    "' UNION SELECT password FROM users --",
    "%s%s%s%n%x",
    "${jndi:ldap://127.0.0.1/x}",
    "{{7*7}}",
    "<script>alert(1)</script>",
    "\0",
    "a\0b",
    "\u{202e}gnp.exe",
    "💥🔥 ünïcødé 日本語 עברית العربية",
    "e\u{301}\u{301}\u{301}\u{301}",
    "\u{feff}bom",
    "\u{10ffff}\u{fffd}\u{fffe}",
    "\\",
    "\\u0000",
    "\"",
    "",
    " ",
    "\t\n\r\u{b}\u{c}",
    "null",
    "NaN",
    "Infinity",
    "-0",
    "../../etc/passwd",
    "%00",
    "%FF",
];

/// Number literals around every boundary a service might trip on: zero and
/// negative zero, i64/u64 overflow, f64 overflow and underflow, more digits
/// than f64 holds, money rounding.
pub const NASTY_NUMBERS: &[&str] = &[
    "0",
    "-0",
    "0.0",
    "-0.0",
    "1",
    "-1",
    "0.1",
    "0.005",
    "0.015",
    "1.005",
    "2.675",
    "100",
    "1e2",
    "1E2",
    "1e-2",
    "1e300",
    "-1e300",
    "1e308",
    "1.7976931348623157e308",
    "1e309",
    "1e400",
    "-1e400",
    "4.9e-324",
    "1e-400",
    "9007199254740993",
    "9223372036854775807",
    "9223372036854775808",
    "-9223372036854775808",
    "-9223372036854775809",
    "18446744073709551615",
    "18446744073709551616",
    "99999999999999999999999999999",
    "1000000",
    "1000001",
    "10000000000",
    "10000000000.01",
    "0.30000000000000004",
    "123456789.123456789123456789",
    "3.141592653589793238462643383279502884197",
];

/// Path segments (already as they appear in a URI): not UUIDs, numbers past
/// i64, percent-encoded NUL and invalid UTF-8, dot segments, encoded slashes.
pub const NASTY_SEGMENTS: &[&str] = &[
    "not-a-uuid",
    "0",
    "-1",
    "1",
    "+1",
    "%201",
    "1.0",
    "9223372036854775807",
    "9223372036854775808",
    "-9223372036854775809",
    "1e300",
    "99999999999999999999999999",
    "%00",
    "1%00",
    "%FF",
    "%C3%28",
    "%E2%82",
    "%ED%A0%80",
    "..",
    ".",
    "%2e%2e",
    "%2F",
    "%2f..%2f",
    "%25",
    "%",
    "%zz",
    "00000000-0000-0000-0000-000000000000",
    "ffffffff-ffff-ffff-ffff-ffffffffffff",
    "0000000g-0000-0000-0000-000000000000",
    "%7Border_id%7D",
    "'%20OR%201=1--",
    "null",
];

/// Raw query values: invalid percent-encoding and UTF-8, signs, exponents,
/// whitespace, overflow.
pub const NASTY_QUERY_VALUES: &[&str] = &[
    "",
    "0",
    "1",
    "-1",
    "1000",
    "1001",
    "100",
    "%FF",
    "%C3%28",
    "%",
    "%%",
    "%zz",
    "%00",
    "5%00",
    "%205",
    "5%20",
    "+5",
    "%2B5",
    "1e3",
    "0x10",
    "1.5",
    "abc",
    "NaN",
    "null",
    "true",
    "PAID",
    "%27%3B%20DROP%20TABLE%20orders%3B%20--",
    "9223372036854775807",
    "9223372036854775808",
    "-9223372036854775809",
    "99999999999999999999",
];

/// Quote as a JSON string (escapes `"`, `\` and control characters).
pub fn quote(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| "\"\"".into())
}

/// Every byte outside RFC 3986's unreserved set as `%XX`.
pub fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Hostile strings: the list above, arbitrary Unicode (NUL and control
/// characters included), SQL-ish ASCII, and long runs up to past 256 KiB.
pub fn hostile_string() -> BoxedStrategy<String> {
    prop_oneof![
        4 => select(NASTY_STRINGS).prop_map(str::to_string),
        4 => any::<String>(),
        2 => "[a-zA-Z0-9 '\";%_()=*-]{0,40}",
        1 => (0usize..2_000, any::<char>()).prop_map(|(n, c)| c.to_string().repeat(n)),
        1 => (1usize..300_000).prop_map(|n| "x".repeat(n)),
    ]
    .boxed()
}

/// Number literals: the list above, any i64, any finite f64, and decimals
/// with more digits than an f64 has.
pub fn number_literal() -> BoxedStrategy<String> {
    prop_oneof![
        4 => select(NASTY_NUMBERS).prop_map(str::to_string),
        2 => any::<i64>().prop_map(|n| n.to_string()),
        2 => any::<f64>()
            .prop_filter("JSON has no NaN or infinity", |f| f.is_finite())
            .prop_map(|f| format!("{f:?}")),
        1 => (1usize..40, 1usize..40, any::<bool>()).prop_map(|(i, f, neg)| {
            format!("{}{}.{}", if neg { "-" } else { "" }, "9".repeat(i), "3".repeat(f))
        }),
    ]
    .boxed()
}

/// Any JSON value as text, nested a little.
pub fn json_text() -> BoxedStrategy<String> {
    let leaf = prop_oneof![
        Just("null".to_string()),
        Just("true".to_string()),
        Just("false".to_string()),
        number_literal(),
        hostile_string().prop_map(|s| quote(&s)),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(|v| format!("[{}]", v.join(","))),
            prop::collection::vec((hostile_string(), inner), 0..6).prop_map(|fields| {
                let fields: Vec<String> = fields
                    .iter()
                    .map(|(k, v)| format!("{}:{v}", quote(k)))
                    .collect();
                format!("{{{}}}", fields.join(","))
            }),
        ]
    })
    .boxed()
}

/// A JSON object shaped like an endpoint's input: each field is, at random,
/// present with a plausible value, present with any JSON value, absent, or
/// present twice; some objects get extra fields.
pub fn object_of(fields: Vec<(&'static str, BoxedStrategy<String>)>) -> BoxedStrategy<String> {
    let per_field: Vec<BoxedStrategy<Vec<String>>> = fields
        .into_iter()
        .map(|(name, plausible)| {
            let key = quote(name);
            let (k1, k2, k3) = (key.clone(), key.clone(), key);
            prop_oneof![
                12 => plausible.clone().prop_map(move |v| vec![format!("{k1}:{v}")]),
                2 => json_text().prop_map(move |v| vec![format!("{k2}:{v}")]),
                2 => Just(Vec::new()),
                1 => (plausible, json_text())
                    .prop_map(move |(a, b)| vec![format!("{k3}:{a}"), format!("{k3}:{b}")]),
            ]
            .boxed()
        })
        .collect();
    let extra = prop::collection::vec((hostile_string(), json_text()), 0..2);
    (per_field, extra, any::<bool>())
        .prop_map(|(present, extra, with_extra)| {
            let mut parts: Vec<String> = present.into_iter().flatten().collect();
            if with_extra {
                parts.extend(extra.iter().map(|(k, v)| format!("{}:{v}", quote(k))));
            }
            format!("{{{}}}", parts.join(","))
        })
        .boxed()
}

/// An `application/x-www-form-urlencoded` body shaped like an endpoint's form:
/// each field present with a `plausible` value (already encoded), present with
/// a hostile (percent-encoded) or malformed value, absent, or present twice;
/// sometimes with junk pairs.
pub fn form_of(fields: Vec<(&'static str, BoxedStrategy<String>)>) -> BoxedStrategy<String> {
    let malformed = || {
        prop_oneof![
            2 => hostile_string().prop_map(|s| percent_encode(&s)),
            1 => select(&["", "%FF", "%", "%zz", "a%00", "+", "%2B", "a=b"][..]).prop_map(str::to_string),
        ]
    };
    let per_field: Vec<BoxedStrategy<Vec<String>>> = fields
        .into_iter()
        .map(|(name, plausible)| {
            prop_oneof![
                12 => plausible.clone().prop_map(move |v| vec![format!("{name}={v}")]),
                2 => malformed().prop_map(move |v| vec![format!("{name}={v}")]),
                2 => Just(Vec::new()),
                1 => (malformed(), plausible)
                    .prop_map(move |(a, b)| vec![format!("{name}={a}"), format!("{name}={b}")]),
            ]
            .boxed()
        })
        .collect();
    let junk = prop::collection::vec(
        prop_oneof![
            (hostile_string(), hostile_string()).prop_map(|(k, v)| format!(
                "{}={}",
                percent_encode(&k),
                percent_encode(&v)
            )),
            select(&["", "=", "&", "==", "a=b=c", "%FF=%FF", "\u{0}"][..]).prop_map(str::to_string),
        ],
        0..3,
    );
    (per_field, junk)
        .prop_map(|(present, junk)| {
            let mut parts: Vec<String> = present.into_iter().flatten().collect();
            parts.extend(junk);
            parts.join("&")
        })
        .boxed()
}

/// `[` repeated `depth` times, a value, then the closers (arrays or objects).
pub fn nested(depth: usize, objects: bool) -> String {
    if objects {
        format!("{}1{}", "{\"a\":".repeat(depth), "}".repeat(depth))
    } else {
        format!("{}{}", "[".repeat(depth), "]".repeat(depth))
    }
}

/// Request bodies: mostly `plausible` (the endpoint's shape), else any JSON,
/// random bytes (rarely UTF-8), `plausible` truncated or with an invalid UTF-8
/// byte spliced in, nesting up to 150 000 levels, and bodies past 256 KiB.
pub fn raw_body(plausible: BoxedStrategy<String>) -> BoxedStrategy<Vec<u8>> {
    prop_oneof![
        10 => plausible.clone().prop_map(String::into_bytes),
        3 => json_text().prop_map(String::into_bytes),
        1 => prop::collection::vec(any::<u8>(), 0..2048),
        1 => (plausible.clone(), any::<Index>()).prop_map(|(text, at)| {
            let bytes = text.into_bytes();
            let cut = at.index(bytes.len() + 1);
            bytes[..cut].to_vec()
        }),
        1 => (plausible, any::<Index>(), 0x80u8..=0xFF).prop_map(|(text, at, byte)| {
            let mut bytes = text.into_bytes();
            let pos = at.index(bytes.len() + 1);
            bytes.insert(pos, byte);
            bytes
        }),
        1 => (1usize..150_000, any::<bool>()).prop_map(|(depth, objects)| {
            nested(depth, objects).into_bytes()
        }),
        1 => (256 * 1024 - 16..300_000usize).prop_map(|n| {
            let mut body = b"{\"items\":[],\"pad\":\"".to_vec();
            body.resize(n, b'x');
            body.extend_from_slice(b"\"}");
            body
        }),
    ]
    .boxed()
}

/// `Content-Type` values: mostly JSON (in several spellings), sometimes not,
/// sometimes absent.
pub fn json_content_type() -> BoxedStrategy<Option<String>> {
    prop_oneof![
        8 => Just(Some("application/json".to_string())),
        3 => select(&[
            "application/json; charset=utf-8",
            "APPLICATION/JSON",
            "application/problem+json",
            "application/json; charset=latin1",
            "text/plain",
            "text/html",
            "application/x-www-form-urlencoded",
            "multipart/form-data; boundary=x",
            "application/xml",
            "",
            ";;;",
            "application/jsonx",
        ][..])
        .prop_map(|s| Some(s.to_string())),
        1 => Just(None),
    ]
    .boxed()
}

/// Path segments as they appear in a URI: mostly the `valid` ones, else the
/// list above, percent-encoded arbitrary strings and long digit runs.
pub fn path_segment(valid: Vec<String>) -> BoxedStrategy<String> {
    let valid = if valid.is_empty() {
        vec!["1".to_string()]
    } else {
        valid
    };
    prop_oneof![
        3 => select(valid),
        3 => select(NASTY_SEGMENTS).prop_map(str::to_string),
        2 => any::<String>()
            .prop_filter("a segment is not empty", |s| !s.is_empty())
            .prop_map(|s| percent_encode(&s)),
        1 => (1usize..20_000).prop_map(|n| "9".repeat(n)),
        1 => any::<u128>().prop_map(|n| uuid::Uuid::from_u128(n).to_string()),
    ]
    .boxed()
}

/// Query strings (without `?`) over `keys` plus junk keys: repeated keys,
/// invalid percent-encoding, numbers past i64, empty values, stray `&`/`=`.
pub fn query_string(keys: &'static [&'static str]) -> BoxedStrategy<String> {
    let key = prop_oneof![
        6 => select(keys).prop_map(str::to_string),
        1 => hostile_string().prop_map(|s| percent_encode(&s)),
        1 => select(&["", "%FF", "%", "limit[]", "a%00b"][..]).prop_map(str::to_string),
    ];
    let value = prop_oneof![
        4 => select(NASTY_QUERY_VALUES).prop_map(str::to_string),
        2 => number_literal().prop_map(|s| percent_encode(&s)),
        1 => any::<i64>().prop_map(|n| n.to_string()),
        1 => hostile_string()
            .prop_filter("a URI stays short", |s| s.len() < 2_000)
            .prop_map(|s| percent_encode(&s)),
    ];
    let pair = prop_oneof![
        8 => (key, value).prop_map(|(k, v)| format!("{k}={v}")),
        1 => select(&["", "=", "&", "limit", "limit=", "==", "a=b=c"][..]).prop_map(str::to_string),
    ];
    prop::collection::vec(pair, 0..6)
        .prop_map(|pairs| pairs.join("&"))
        .boxed()
}

/// `Authorization` header values that are not a valid token.
pub fn bad_authorization() -> BoxedStrategy<String> {
    prop_oneof![
        2 => "[ -~]{0,200}",
        2 => "Bearer [ -~]{0,400}",
        1 => "Bearer [A-Za-z0-9_-]{1,60}\\.[A-Za-z0-9_-]{1,200}\\.[A-Za-z0-9_-]{0,100}",
        1 => "Bearer v4\\.public\\.[A-Za-z0-9_-]{0,300}",
        1 => select(&["Bearer", "Bearer ", "bearer  x", "Basic dXNlcjpwdw==", "Token x", "Bearer null"][..])
            .prop_map(str::to_string),
    ]
    .boxed()
}

/// How many cases a property runs: `PROPTEST_CASES` when set, else `default`.
pub fn cases(default: u32) -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A runner for `cases` cases that writes no regression files into the tree.
pub fn runner(cases: u32) -> proptest::test_runner::TestRunner {
    proptest::test_runner::TestRunner::new(proptest::test_runner::Config {
        cases,
        failure_persistence: None,
        max_shrink_iters: 200,
        ..proptest::test_runner::Config::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting_and_encoding_are_reversible_enough() {
        assert_eq!(quote("a\"b\0"), r#""a\"b\u0000""#);
        assert_eq!(percent_encode("a b/é"), "a%20b%2F%C3%A9");
        assert_eq!(nested(2, false), "[[]]");
        assert_eq!(nested(2, true), r#"{"a":{"a":1}}"#);
    }
}
