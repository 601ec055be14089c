//! Variables in the environment that look like orderly's but are not: a
//! typo (`ORDERS_RATE_LIMT`) would otherwise leave the default in force
//! without a word.

use super::env::Env;
use super::names::ENV_NAMES;

/// The prefixes of orderly's own variables; anything else in the
/// environment (PATH, HOSTNAME, another program's settings) is none of ours.
pub const OWN_PREFIXES: &[&str] = &["ORDERLY_", "AUTH_", "ORDERS_", "JOB_", "WORKER_"];

/// Variables with one of [`OWN_PREFIXES`] that belong to the project's test
/// and benchmark tooling, which passes its environment on to the binary.
const TOOLING_PREFIXES: &[&str] = &["ORDERLY_TEST_", "ORDERLY_BENCH_"];
const TOOLING_NAMES: &[&str] = &[
    "ORDERLY_BIN",
    "ORDERLY_CHAOS_SEED",
    "ORDERLY_AUTH_URL",
    "ORDERLY_ORDERS_URL",
    "ORDERLY_WITH_TANSU",
    "ORDERLY_CONFORMANCE_REPORT",
];

/// A variable with one of [`OWN_PREFIXES`] that orderly does not read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownVariable {
    /// Its name.
    pub name: String,
    /// The known variable with the fewest edits from it.
    pub closest: &'static str,
}

/// Every unknown variable in `env`, by name.
pub fn unknown_variables(env: &Env) -> Vec<UnknownVariable> {
    let mut unknown: Vec<UnknownVariable> = env
        .names()
        .filter(|n| OWN_PREFIXES.iter().any(|p| n.starts_with(p)))
        .filter(|n| !ENV_NAMES.contains(n))
        .filter(|n| {
            !TOOLING_NAMES.contains(n) && !TOOLING_PREFIXES.iter().any(|p| n.starts_with(p))
        })
        .map(|n| UnknownVariable {
            name: n.to_string(),
            closest: closest(n),
        })
        .collect();
    unknown.sort_by(|a, b| a.name.cmp(&b.name));
    unknown
}

/// The known name with the smallest edit distance to `name` (the first
/// listed among equals).
fn closest(name: &str) -> &'static str {
    ENV_NAMES
        .iter()
        .copied()
        .min_by_key(|known| edit_distance(name, known))
        .unwrap_or_default()
}

/// Levenshtein distance: insertions, deletions and substitutions.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    let mut current = vec![0; b.len() + 1];
    for (i, ca) in a.chars().enumerate() {
        current[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let substitute = previous[j] + usize::from(ca != *cb);
            current[j + 1] = substitute.min(previous[j + 1] + 1).min(current[j] + 1);
        }
        std::mem::swap(&mut previous, &mut current);
    }
    previous[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn edit_distance_counts_insertions_deletions_and_substitutions() {
        assert_eq!(edit_distance("", ""), 0);
        assert_eq!(edit_distance("abc", "abc"), 0);
        assert_eq!(edit_distance("abc", "abd"), 1);
        assert_eq!(edit_distance("abc", "ab"), 1);
        assert_eq!(edit_distance("ab", "abc"), 1);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
    }

    #[test]
    fn a_misspelt_variable_is_reported_with_the_closest_known_name() {
        let env = Env::from_pairs([
            ("ORDERS_RATE_LIMT", "5/minute"),
            ("WORKER_CONCURENCY", "8"),
            ("JOB_MAX_RETRIES", "3"),
            ("PATH", "/usr/bin"),
            ("KAFKA_HEAP_OPTS", "-Xmx1G"),
            ("ORDERLY_TEST_KAFKA", "localhost:9092"),
        ]);
        assert_eq!(
            unknown_variables(&env),
            vec![
                UnknownVariable {
                    name: "ORDERS_RATE_LIMT".into(),
                    closest: "ORDERS_RATE_LIMIT",
                },
                UnknownVariable {
                    name: "WORKER_CONCURENCY".into(),
                    closest: "WORKER_CONCURRENCY",
                },
            ]
        );
    }

    #[test]
    fn every_known_variable_passes() {
        let env = Env::from_pairs(ENV_NAMES.iter().map(|n| (*n, "x")));
        assert_eq!(unknown_variables(&env), Vec::new());
    }
}
