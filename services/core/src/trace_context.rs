//! W3C Trace Context (`traceparent`) for every request.
//!
//! A request carrying a valid `traceparent` continues that trace; one with none
//! or an invalid one (wrong length, non-hex or upper-case hex, all-zero ids,
//! version `ff`) starts a new trace. Either way the service takes a span id of
//! its own: the resulting context is stored in the request's extensions (handlers
//! read it with `Extension<TraceContext>` and hand
//! [`TraceContext::traceparent`] to the events they write), its trace id is on
//! the request's log span, and the response carries it as `traceparent`
//! (`orderly_http::edge` does this for every request). Events and jobs carry
//! it on, so consumer and worker continue the same trace.

use rand::Rng;

/// The header's name (lower case, as HTTP/2 sends it).
pub const TRACEPARENT: &str = "traceparent";

/// `sampled`, the only flag W3C defines so far.
const SAMPLED: u8 = 0x01;

/// One hop of a trace: the trace id, this hop's span id and the trace flags.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TraceContext {
    trace_id: [u8; 16],
    span_id: [u8; 8],
    flags: u8,
}

fn hex_digit(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        // The specification allows lower-case hex only.
        _ => None,
    }
}

fn parse_hex<const N: usize>(s: &[u8]) -> Option<[u8; N]> {
    if s.len() != 2 * N {
        return None;
    }
    let mut out = [0u8; N];
    for (i, pair) in s.chunks_exact(2).enumerate() {
        out[i] = hex_digit(pair[0])? << 4 | hex_digit(pair[1])?;
    }
    Some(out)
}

const HEX_DIGITS: &[u8; 16] = b"0123456789abcdef";

fn hex(bytes: &[u8]) -> String {
    Hex(bytes).to_string()
}

/// Bytes displayed as lower-case hex.
struct Hex<'a>(&'a [u8]);

impl std::fmt::Display for Hex<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut digits = [0u8; 64];
        let n = self.0.len().min(32);
        for (i, b) in self.0[..n].iter().enumerate() {
            digits[2 * i] = HEX_DIGITS[usize::from(b >> 4)];
            digits[2 * i + 1] = HEX_DIGITS[usize::from(b & 0x0f)];
        }
        // Only ASCII digits were written.
        f.write_str(std::str::from_utf8(&digits[..2 * n]).unwrap_or_default())
    }
}

fn random_nonzero<const N: usize>() -> [u8; N] {
    let mut rng = rand::rng();
    loop {
        let mut bytes = [0u8; N];
        rng.fill(&mut bytes[..]);
        if bytes != [0u8; N] {
            return bytes;
        }
    }
}

impl TraceContext {
    /// Parse a `traceparent` value; `None` when it is not valid.
    ///
    /// Version `00` is exactly `00-<32 hex>-<16 hex>-<2 hex>`. A later version
    /// may append fields after another `-` (read as version 00, as the
    /// specification asks); version `ff` is invalid.
    pub fn parse(value: &str) -> Option<Self> {
        let b = value.trim().as_bytes();
        if b.len() < 55 || b[2] != b'-' || b[35] != b'-' || b[52] != b'-' {
            return None;
        }
        let version = parse_hex::<1>(&b[0..2])?[0];
        match version {
            0xff => return None,
            0x00 if b.len() != 55 => return None,
            _ if b.len() > 55 && b[55] != b'-' => return None,
            _ => {}
        }
        let trace_id = parse_hex::<16>(&b[3..35])?;
        let span_id = parse_hex::<8>(&b[36..52])?;
        let flags = parse_hex::<1>(&b[53..55])?[0];
        if trace_id == [0; 16] || span_id == [0; 8] {
            return None;
        }
        Some(Self {
            trace_id,
            span_id,
            flags,
        })
    }

    /// A new trace (random ids), sampled.
    pub fn new_root() -> Self {
        Self {
            trace_id: random_nonzero(),
            span_id: random_nonzero(),
            flags: SAMPLED,
        }
    }

    /// The next hop of the same trace: a new span id, the same trace id and flags.
    pub fn child(&self) -> Self {
        Self {
            span_id: random_nonzero(),
            ..*self
        }
    }

    /// Continue the trace `value` names, or start one when it is absent or invalid.
    pub fn continue_or_start(value: Option<&str>) -> Self {
        value
            .and_then(Self::parse)
            .map(|parent| parent.child())
            .unwrap_or_else(Self::new_root)
    }

    /// 32 lower-case hex digits.
    pub fn trace_id(&self) -> String {
        hex(&self.trace_id)
    }

    /// The trace id as 32 lower-case hex digits, written where it is
    /// displayed (a log span's field) without a string of its own.
    pub fn trace_id_hex(&self) -> impl std::fmt::Display + '_ {
        Hex(&self.trace_id)
    }

    /// 16 lower-case hex digits.
    pub fn span_id(&self) -> String {
        hex(&self.span_id)
    }

    /// Whether the trace is sampled (the only W3C flag).
    pub fn sampled(&self) -> bool {
        self.flags & SAMPLED != 0
    }

    /// The `traceparent` value for the next hop: `00-<trace id>-<span id>-<flags>`.
    pub fn traceparent(&self) -> String {
        use std::fmt::Write;
        let mut value = String::with_capacity(55);
        // Writing to a String cannot fail.
        let _ = write!(value, "{self}");
        value
    }
}

impl std::fmt::Display for TraceContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "00-{}-{}-{}",
            Hex(&self.trace_id),
            Hex(&self.span_id),
            Hex(&[self.flags])
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const VALID: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn a_valid_traceparent_is_read_field_by_field() {
        let t = TraceContext::parse(VALID).expect("valid");
        assert_eq!(t.trace_id(), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(t.span_id(), "00f067aa0ba902b7");
        assert!(t.sampled());
        assert_eq!(t.traceparent(), VALID);
        assert_eq!(t.to_string(), VALID);
        let unsampled = TraceContext::parse(&VALID.replace("-01", "-00")).unwrap();
        assert!(!unsampled.sampled());
        assert!(unsampled.traceparent().ends_with("-00"));
    }

    #[test]
    fn invalid_traceparents_are_refused() {
        let cases = [
            ("", "empty"),
            (
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
                "no flags",
            ),
            (
                "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
                "short trace id",
            ),
            (
                "00-4bf92f3577b34da6a3ce929d0e0e47366-00f067aa0ba902b7-01",
                "long trace id",
            ),
            (
                "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
                "all-zero trace id",
            ),
            (
                "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
                "all-zero span id",
            ),
            (
                "00-4bf92f3577b34da6a3ce929d0e0e473g-00f067aa0ba902b7-01",
                "non-hex",
            ),
            (
                "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
                "upper case",
            ),
            (
                "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
                "version ff",
            ),
            (
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
                "version 00 with more fields",
            ),
            (
                "00_4bf92f3577b34da6a3ce929d0e0e4736_00f067aa0ba902b7_01",
                "wrong separators",
            ),
            (
                "0x-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
                "bad version",
            ),
            (
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-zz",
                "bad flags",
            ),
        ];
        for (value, why) in cases {
            assert_eq!(TraceContext::parse(value), None, "{why}: {value:?}");
        }
    }

    #[test]
    fn a_later_version_is_read_as_version_00() {
        let later = "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-future";
        let t = TraceContext::parse(later).expect("a later version with more fields");
        assert_eq!(t.traceparent(), VALID);
        assert_eq!(
            TraceContext::parse("01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01x"),
            None
        );
    }

    #[test]
    fn a_request_continues_a_valid_trace_with_a_span_of_its_own() {
        let parent = TraceContext::parse(VALID).unwrap();
        let ours = TraceContext::continue_or_start(Some(VALID));
        assert_eq!(ours.trace_id(), parent.trace_id());
        assert_ne!(ours.span_id(), parent.span_id());
        assert!(ours.sampled());
    }

    #[test]
    fn a_missing_or_invalid_traceparent_starts_a_new_well_formed_trace() {
        for incoming in [None, Some("garbage"), Some("00-0-0-01")] {
            let t = TraceContext::continue_or_start(incoming);
            let value = t.traceparent();
            assert_eq!(value.len(), 55, "{value}");
            assert!(
                value.starts_with("00-") && value.ends_with("-01"),
                "{value}"
            );
            assert_eq!(TraceContext::parse(&value), Some(t), "it parses back");
        }
        let (a, b) = (TraceContext::new_root(), TraceContext::new_root());
        assert_ne!(a.trace_id(), b.trace_id(), "random trace ids");
        assert_eq!(a.trace_id_hex().to_string(), a.trace_id());
    }
}
