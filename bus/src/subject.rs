//! The subject grammar every adapter shares: validation, wildcard matching, and
//! the relations between two subscription filters.
//!
//! A subject is dot-separated non-empty tokens. In a subscription `*` matches one
//! token and `>` one or more, and `>` may only be the last token. Wildcards are
//! whole tokens; published subjects have none.

use crate::BusError;

/// The wildcard token that matches exactly one token.
pub const PARTIAL_WILDCARD: &str = "*";
/// The wildcard token that matches one or more trailing tokens.
pub const FULL_WILDCARD: &str = ">";

/// Checks a subscription subject (wildcards allowed).
pub fn validate_filter(subject: &str) -> Result<(), &'static str> {
    validate(subject, true)
}

/// Checks a subject to publish to (no wildcards).
pub fn validate_literal(subject: &str) -> Result<(), &'static str> {
    validate(subject, false)
}

/// [`validate_filter`] as the error a [`crate::Bus`] returns.
pub fn check_filter(subject: &str) -> Result<(), BusError> {
    validate_filter(subject).map_err(|why| BusError::InvalidSubject(subject.to_string(), why))
}

/// [`validate_literal`] as the error a [`crate::Bus`] returns.
pub fn check_literal(subject: &str) -> Result<(), BusError> {
    validate_literal(subject).map_err(|why| BusError::InvalidSubject(subject.to_string(), why))
}

/// Byte classes for [`validate`]'s one pass over a subject.
const CONTROL: u8 = 1;
const WILDCARD: u8 = 2;
const NON_ASCII: u8 = 4;
const CLASS: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut i = 0;
    while i < 256 {
        let b = i as u8;
        t[i] = if b <= b' ' || b == 0x7f {
            CONTROL
        } else if b == b'*' || b == b'>' {
            WILDCARD
        } else if b >= 0x80 {
            NON_ASCII
        } else {
            0
        };
        i += 1;
    }
    t
};

fn validate(subject: &str, wildcards: bool) -> Result<(), &'static str> {
    let bytes = subject.as_bytes();
    let (Some(&first), Some(&last)) = (bytes.first(), bytes.last()) else {
        return Err("empty subject");
    };
    // Every publish checks its subject: one table lookup per byte tells the
    // common case (plain ASCII tokens) apart.
    let class = bytes
        .iter()
        .fold(0u8, |acc, &b| acc | CLASS[usize::from(b)]);
    if class & CONTROL != 0
        || (class & NON_ASCII != 0 && subject.chars().any(|c| c.is_whitespace() || c.is_control()))
    {
        return Err("whitespace in subject");
    }
    if class & WILDCARD == 0 {
        return if first == b'.' || last == b'.' || subject.contains("..") {
            Err("empty token")
        } else {
            Ok(())
        };
    }
    let mut tokens = subject.split('.').peekable();
    while let Some(t) = tokens.next() {
        if t.is_empty() {
            return Err("empty token");
        }
        let is_wildcard = t == PARTIAL_WILDCARD || t == FULL_WILDCARD;
        if is_wildcard && !wildcards {
            return Err("wildcards are not allowed here");
        }
        if !is_wildcard && (t.contains('*') || t.contains('>')) {
            return Err("a wildcard must be a whole token");
        }
        if t == FULL_WILDCARD && tokens.peek().is_some() {
            return Err("'>' must be the last token");
        }
    }
    Ok(())
}

/// Whether the literal `subject` matches the subscription `filter`.
pub fn matches(filter: &str, subject: &str) -> bool {
    let mut f = filter.split('.');
    let mut s = subject.split('.');
    loop {
        match (f.next(), s.next()) {
            (Some(FULL_WILDCARD), Some(_)) => return true,
            (Some(PARTIAL_WILDCARD), Some(_)) => {}
            (Some(ft), Some(st)) if ft == st => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

/// Whether every subject matched by `inner` is also matched by `outer`.
pub fn is_subset(inner: &str, outer: &str) -> bool {
    let mut i = inner.split('.');
    let mut o = outer.split('.');
    loop {
        match (i.next(), o.next()) {
            (Some(_), Some(FULL_WILDCARD)) => return true,
            (Some(FULL_WILDCARD), Some(_)) => return false,
            (Some(it), Some(PARTIAL_WILDCARD)) if it != FULL_WILDCARD => {}
            (Some(PARTIAL_WILDCARD), Some(_)) => return false,
            (Some(it), Some(ot)) if it == ot => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

/// Whether some subject is matched by both filters.
pub fn overlap(a: &str, b: &str) -> bool {
    let mut a = a.split('.');
    let mut b = b.split('.');
    loop {
        match (a.next(), b.next()) {
            (Some(FULL_WILDCARD), Some(_)) | (Some(_), Some(FULL_WILDCARD)) => return true,
            (Some(x), Some(y)) if x == PARTIAL_WILDCARD || y == PARTIAL_WILDCARD || x == y => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn valid_and_invalid_subjects_are_told_apart() {
        for ok in [
            "a",
            "orders.eu.created",
            "a.*.c",
            "a.>",
            ">",
            "*",
            "new_order",
        ] {
            assert_eq!(validate_filter(ok), Ok(()), "{ok}");
        }
        for bad in [
            "", ".", "a.", ".a", "a..b", "a.>.b", "a b", "a.b*", "a.>b", "a.\tb",
        ] {
            assert!(validate_filter(bad).is_err(), "{bad:?} should be rejected");
        }
        assert!(validate_literal("a.*").is_err());
        assert!(validate_literal("a.>").is_err());
        assert_eq!(validate_literal("a.b"), Ok(()));
    }

    #[test]
    fn star_matches_exactly_one_token_and_gt_one_or_more() {
        assert!(matches("a.*.c", "a.b.c"));
        assert!(!matches("a.*.c", "a.b.b.c"));
        assert!(!matches("a.*", "a"));
        assert!(matches("a.>", "a.b"));
        assert!(matches("a.>", "a.b.c.d"));
        assert!(!matches("a.>", "a"));
        assert!(matches(">", "x"));
        assert!(matches("a.b", "a.b"));
        assert!(!matches("a.b", "a.b.c"));
        assert!(!matches("a.b.c", "a.b"));
    }

    #[test]
    fn subsets_and_overlaps_follow_the_wildcards() {
        assert!(is_subset("orders.eu.created", "orders.>"));
        assert!(is_subset("orders.*.created", "orders.>"));
        assert!(is_subset("orders.>", "orders.>"));
        assert!(is_subset("orders.*", "orders.*"));
        assert!(!is_subset("orders.>", "orders.*"));
        assert!(!is_subset("orders.*", "orders.eu"));
        assert!(!is_subset("orders", "orders.>"));
        assert!(overlap("orders.*", "orders.eu"));
        assert!(overlap("a.>", "*.b.c"));
        assert!(!overlap("a.>", "a"));
        assert!(!overlap("jobs.>", "orders.>"));
    }
}

/// Subject validation, matching, `is_subset` and `overlap` against a
/// reference model: filters and subjects as token lists, matched recursively,
/// and set relations decided by enumerating every subject over the alphabet.
#[cfg(test)]
pub(crate) mod model {
    use proptest::prelude::*;

    use super::*;

    /// Filters use a, b, c and wildcards; subjects also use d, a token no
    /// filter names, so `*` and `>` are told apart from literals.
    const SUBJECT_TOKENS: [&str; 4] = ["a", "b", "c", "d"];
    const MAX_FILTER_LEN: usize = 4;

    pub(crate) fn ref_match(f: &[String], s: &[&str]) -> bool {
        match (f.first().map(String::as_str), s.first()) {
            (None, None) => true,
            (Some(">"), Some(_)) => true,
            (Some("*"), Some(_)) => ref_match(&f[1..], &s[1..]),
            (Some(ft), Some(st)) if ft == *st => ref_match(&f[1..], &s[1..]),
            _ => false,
        }
    }

    /// Every subject of up to one token more than the longest filter: enough
    /// to witness any difference between two filters of at most that length.
    fn all_subjects() -> Vec<Vec<&'static str>> {
        let mut all: Vec<Vec<&str>> = Vec::new();
        let mut level: Vec<Vec<&str>> = vec![Vec::new()];
        for _ in 0..=MAX_FILTER_LEN {
            level = level
                .iter()
                .flat_map(|p| {
                    SUBJECT_TOKENS.iter().map(move |t| {
                        let mut n = p.clone();
                        n.push(*t);
                        n
                    })
                })
                .collect();
            all.extend(level.iter().cloned());
        }
        all
    }

    pub(crate) fn filter() -> impl Strategy<Value = Vec<String>> {
        let token = prop_oneof![
            Just("a".to_string()),
            Just("b".to_string()),
            Just("c".to_string()),
            Just("*".to_string()),
        ];
        (
            proptest::collection::vec(token, 1..MAX_FILTER_LEN),
            any::<bool>(),
        )
            .prop_map(|(mut t, fwc)| {
                if fwc {
                    t.push(">".into());
                }
                t
            })
    }

    pub(crate) fn subject() -> impl Strategy<Value = Vec<&'static str>> {
        proptest::collection::vec(
            proptest::sample::select(SUBJECT_TOKENS.to_vec()),
            1..=MAX_FILTER_LEN + 1,
        )
    }

    /// `validate` as first written: chars, then tokens.
    fn validate_reference(subject: &str, wildcards: bool) -> Result<(), &'static str> {
        if subject.is_empty() {
            return Err("empty subject");
        }
        if subject.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err("whitespace in subject");
        }
        let mut tokens = subject.split('.').peekable();
        while let Some(t) = tokens.next() {
            if t.is_empty() {
                return Err("empty token");
            }
            let is_wildcard = t == PARTIAL_WILDCARD || t == FULL_WILDCARD;
            if is_wildcard && !wildcards {
                return Err("wildcards are not allowed here");
            }
            if !is_wildcard && (t.contains('*') || t.contains('>')) {
                return Err("a wildcard must be a whole token");
            }
            if t == FULL_WILDCARD && tokens.peek().is_some() {
                return Err("'>' must be the last token");
            }
        }
        Ok(())
    }

    fn any_subject() -> impl Strategy<Value = String> {
        let piece = prop_oneof![
            Just(".".to_string()),
            Just("*".to_string()),
            Just(">".to_string()),
            Just(" ".to_string()),
            Just("\u{a0}".to_string()),
            Just("\u{85}".to_string()),
            Just("\u{7f}".to_string()),
            Just("\t".to_string()),
            Just("é".to_string()),
            "[a-z0-9_-]{1,4}",
        ];
        proptest::collection::vec(piece, 0..8).prop_map(|v| v.concat())
    }

    proptest! {
        #[test]
        fn validation_agrees_with_the_reference(s in any_subject(), wildcards in any::<bool>()) {
            prop_assert_eq!(validate(&s, wildcards), validate_reference(&s, wildcards));
        }

        #[test]
        fn matches_agrees_with_the_model(f in filter(), s in subject()) {
            let (fs, ss) = (f.join("."), s.join("."));
            prop_assert!(validate_filter(&fs).is_ok());
            prop_assert!(validate_literal(&ss).is_ok());
            prop_assert_eq!(matches(&fs, &ss), ref_match(&f, &s), "{} vs {}", fs, ss);
        }

        #[test]
        fn subset_and_overlap_agree_with_enumeration(a in filter(), b in filter()) {
            let (fa, fb) = (a.join("."), b.join("."));
            let subjects = all_subjects();
            let in_a: Vec<bool> = subjects.iter().map(|s| ref_match(&a, s)).collect();
            let in_b: Vec<bool> = subjects.iter().map(|s| ref_match(&b, s)).collect();
            let subset = in_a.iter().zip(&in_b).all(|(x, y)| !x || *y);
            let overlaps = in_a.iter().zip(&in_b).any(|(x, y)| *x && *y);
            prop_assert_eq!(is_subset(&fa, &fb), subset, "{} ⊆ {}", fa, fb);
            prop_assert_eq!(overlap(&fa, &fb), overlaps, "{} ∩ {}", fa, fb);
        }
    }
}
