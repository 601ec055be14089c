//! The subscription trie ("sublist", after nats-server's `sublist.go`): which
//! subscriptions a published subject reaches, with a bounded cache of answers.

use std::collections::HashMap;
use std::sync::Arc;

use crate::subject::{FULL_WILDCARD, PARTIAL_WILDCARD, matches, validate_filter};

/// The cache holds at most this many subjects, then is swept to [`CACHE_SWEEP_TO`].
const CACHE_MAX: usize = 1024;
const CACHE_SWEEP_TO: usize = 256;

/// What a subject matched: plain subscribers, and per queue group its members
/// (the caller picks one member of each group).
#[derive(Debug)]
pub(crate) struct SublistResult<T> {
    pub psubs: Vec<T>,
    pub qsubs: Vec<(String, Vec<T>)>,
}

impl<T> Default for SublistResult<T> {
    fn default() -> Self {
        Self {
            psubs: Vec::new(),
            qsubs: Vec::new(),
        }
    }
}

struct Level<T> {
    nodes: HashMap<String, Node<T>>,
    // Wildcards get their own slots so a match never has to scan `nodes`.
    pwc: Option<Box<Node<T>>>,
    fwc: Option<Box<Node<T>>>,
}

impl<T> Default for Level<T> {
    fn default() -> Self {
        Self {
            nodes: HashMap::new(),
            pwc: None,
            fwc: None,
        }
    }
}

impl<T> Level<T> {
    fn is_empty(&self) -> bool {
        self.nodes.is_empty() && self.pwc.is_none() && self.fwc.is_none()
    }
}

struct Node<T> {
    next: Option<Box<Level<T>>>,
    psubs: Vec<(u64, T)>,
    qsubs: HashMap<String, Vec<(u64, T)>>,
}

impl<T> Default for Node<T> {
    fn default() -> Self {
        Self {
            next: None,
            psubs: Vec::new(),
            qsubs: HashMap::new(),
        }
    }
}

impl<T> Node<T> {
    fn is_empty(&self) -> bool {
        self.psubs.is_empty()
            && self.qsubs.is_empty()
            && self.next.as_ref().is_none_or(|l| l.is_empty())
    }
}

/// The subscription trie with a bounded cache of match results.
pub(crate) struct Sublist<T> {
    root: Level<T>,
    cache: HashMap<String, Arc<SublistResult<T>>>,
    count: usize,
    hits: u64,
}

impl<T: Clone> Default for Sublist<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T: Clone> Sublist<T> {
    pub(crate) fn new() -> Self {
        Self {
            root: Level::default(),
            cache: HashMap::new(),
            count: 0,
            hits: 0,
        }
    }

    #[cfg(test)]
    pub(crate) fn count(&self) -> usize {
        self.count
    }

    #[cfg(test)]
    pub(crate) fn cache_len(&self) -> usize {
        self.cache.len()
    }

    #[cfg(test)]
    pub(crate) fn cache_hits(&self) -> u64 {
        self.hits
    }

    /// Adds subscription `id` on `subject`, in queue group `queue` if given.
    pub(crate) fn insert(
        &mut self,
        subject: &str,
        queue: Option<&str>,
        id: u64,
        value: T,
    ) -> Result<(), &'static str> {
        validate_filter(subject)?;
        let mut level = &mut self.root;
        let mut tokens = subject.split('.').peekable();
        let node = loop {
            let t = tokens.next().ok_or("empty subject")?;
            let node: &mut Node<T> = match t {
                PARTIAL_WILDCARD => level.pwc.get_or_insert_with(Box::default),
                FULL_WILDCARD => level.fwc.get_or_insert_with(Box::default),
                _ => level.nodes.entry(t.to_string()).or_default(),
            };
            if tokens.peek().is_none() {
                break node;
            }
            level = node.next.get_or_insert_with(Box::default);
        };
        match queue {
            Some(q) => node
                .qsubs
                .entry(q.to_string())
                .or_default()
                .push((id, value)),
            None => node.psubs.push((id, value)),
        }
        self.count += 1;
        self.invalidate(subject);
        Ok(())
    }

    /// Removes subscription `id`; `false` if it was not there.
    pub(crate) fn remove(&mut self, subject: &str, queue: Option<&str>, id: u64) -> bool {
        let tokens: Vec<&str> = subject.split('.').collect();
        let removed = remove_from(&mut self.root, &tokens, queue, id);
        if removed {
            self.count -= 1;
            self.invalidate(subject);
        }
        removed
    }

    /// Every subscription whose subject matches the literal `subject`.
    pub(crate) fn match_subject(&mut self, subject: &str) -> Arc<SublistResult<T>> {
        if let Some(r) = self.cache.get(subject) {
            self.hits += 1;
            return r.clone();
        }
        let tokens: Vec<&str> = subject.split('.').collect();
        let mut psubs = Vec::new();
        let mut qsubs: Vec<(String, Vec<T>)> = Vec::new();
        match_level(&self.root, &tokens, &mut psubs, &mut qsubs);
        let result = Arc::new(SublistResult { psubs, qsubs });
        if self.cache.len() >= CACHE_MAX {
            // Which entries survive does not matter much; bounding memory does.
            let excess = self.cache.len() - CACHE_SWEEP_TO;
            let victims: Vec<String> = self.cache.keys().take(excess).cloned().collect();
            for v in victims {
                self.cache.remove(&v);
            }
        }
        self.cache.insert(subject.to_string(), result.clone());
        result
    }

    /// Every subscription, e.g. to close them all.
    pub(crate) fn clear(&mut self) {
        self.root = Level::default();
        self.cache.clear();
        self.count = 0;
    }

    fn invalidate(&mut self, filter: &str) {
        self.cache.retain(|subject, _| !matches(filter, subject));
    }
}

fn collect<T: Clone>(node: &Node<T>, psubs: &mut Vec<T>, qsubs: &mut Vec<(String, Vec<T>)>) {
    psubs.extend(node.psubs.iter().map(|(_, v)| v.clone()));
    for (name, members) in &node.qsubs {
        let values = members.iter().map(|(_, v)| v.clone());
        match qsubs.iter_mut().find(|(n, _)| n == name) {
            Some((_, existing)) => existing.extend(values),
            None => qsubs.push((name.clone(), values.collect())),
        }
    }
}

fn match_level<T: Clone>(
    level: &Level<T>,
    tokens: &[&str],
    psubs: &mut Vec<T>,
    qsubs: &mut Vec<(String, Vec<T>)>,
) {
    let Some((first, rest)) = tokens.split_first() else {
        return;
    };
    if let Some(fwc) = &level.fwc {
        collect(fwc, psubs, qsubs);
    }
    let literal = level.nodes.get(*first);
    for node in level.pwc.as_deref().into_iter().chain(literal) {
        if rest.is_empty() {
            collect(node, psubs, qsubs);
        } else if let Some(next) = &node.next {
            match_level(next, rest, psubs, qsubs);
        }
    }
}

fn remove_from<T>(level: &mut Level<T>, tokens: &[&str], queue: Option<&str>, id: u64) -> bool {
    let Some((first, rest)) = tokens.split_first() else {
        return false;
    };
    let node = match *first {
        PARTIAL_WILDCARD => level.pwc.as_deref_mut(),
        FULL_WILDCARD => level.fwc.as_deref_mut(),
        t => level.nodes.get_mut(t),
    };
    let Some(node) = node else {
        return false;
    };
    let removed = if rest.is_empty() {
        match queue {
            Some(q) => {
                let mut removed = false;
                if let Some(members) = node.qsubs.get_mut(q) {
                    let before = members.len();
                    members.retain(|(i, _)| *i != id);
                    removed = members.len() != before;
                    if members.is_empty() {
                        node.qsubs.remove(q);
                    }
                }
                removed
            }
            None => {
                let before = node.psubs.len();
                node.psubs.retain(|(i, _)| *i != id);
                node.psubs.len() != before
            }
        }
    } else {
        match node.next.as_deref_mut() {
            Some(next) => remove_from(next, rest, queue, id),
            None => false,
        }
    };
    // Prune on the way back so that churn of subscriptions does not leak nodes.
    if removed && node.is_empty() {
        match *first {
            PARTIAL_WILDCARD => level.pwc = None,
            FULL_WILDCARD => level.fwc = None,
            t => {
                level.nodes.remove(t);
            }
        }
    }
    removed
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(r: &SublistResult<&'static str>) -> Vec<&'static str> {
        let mut v = r.psubs.clone();
        v.sort();
        v
    }

    #[test]
    fn the_trie_matches_literals_and_both_wildcards() {
        let mut s = Sublist::new();
        s.insert("a.b.c", None, 1, "literal").unwrap();
        s.insert("a.*.c", None, 2, "pwc").unwrap();
        s.insert("a.>", None, 3, "fwc").unwrap();
        s.insert(">", None, 4, "all").unwrap();
        s.insert("x.y", None, 5, "other").unwrap();
        assert_eq!(
            names(&s.match_subject("a.b.c")),
            vec!["all", "fwc", "literal", "pwc"]
        );
        assert_eq!(names(&s.match_subject("a.z.c")), vec!["all", "fwc", "pwc"]);
        assert_eq!(names(&s.match_subject("a")), vec!["all"]);
        assert_eq!(names(&s.match_subject("x.y")), vec!["all", "other"]);
        assert!(s.insert("a..b", None, 6, "bad").is_err());
        assert_eq!(s.count(), 5);
    }

    #[test]
    fn queue_subscribers_are_grouped_apart_from_plain_ones() {
        let mut s = Sublist::new();
        s.insert("a.*", None, 1, "plain").unwrap();
        s.insert("a.b", Some("workers"), 2, "w1").unwrap();
        s.insert("a.*", Some("workers"), 3, "w2").unwrap();
        s.insert("a.>", Some("audit"), 4, "a1").unwrap();
        let r = s.match_subject("a.b");
        assert_eq!(r.psubs, vec!["plain"]);
        let mut groups: Vec<(String, Vec<&str>)> = r.qsubs.clone();
        groups.iter_mut().for_each(|(_, m)| m.sort());
        groups.sort();
        assert_eq!(
            groups,
            vec![
                ("audit".to_string(), vec!["a1"]),
                ("workers".to_string(), vec!["w1", "w2"])
            ]
        );
    }

    #[test]
    fn the_match_cache_is_invalidated_on_insert_and_remove() {
        let mut s = Sublist::new();
        s.insert("a.b", None, 1, "first").unwrap();
        assert_eq!(names(&s.match_subject("a.b")), vec!["first"]);
        assert_eq!(names(&s.match_subject("a.b")), vec!["first"]);
        assert_eq!(s.cache_hits(), 1, "the second match comes from the cache");
        s.insert("a.*", None, 2, "second").unwrap();
        assert_eq!(names(&s.match_subject("a.b")), vec!["first", "second"]);
        assert!(s.remove("a.b", None, 1));
        assert_eq!(names(&s.match_subject("a.b")), vec!["second"]);
        assert!(!s.remove("a.b", None, 1), "already gone");
        assert!(s.remove("a.*", None, 2));
        assert!(s.match_subject("a.b").psubs.is_empty());
        assert!(s.root.is_empty(), "empty nodes are pruned");
    }

    #[test]
    fn the_match_cache_stays_bounded() {
        let mut s = Sublist::new();
        s.insert(">", None, 1, "all").unwrap();
        for i in 0..(CACHE_MAX * 3) {
            s.match_subject(&format!("s.{i}"));
        }
        assert!(s.cache_len() <= CACHE_MAX);
    }
}

/// The sublist against the reference model of the subject grammar.
#[cfg(test)]
mod model {
    use proptest::prelude::*;

    use super::*;
    use crate::subject::model::{filter, ref_match, subject};

    proptest! {
        #[test]
        fn the_sublist_returns_exactly_the_matching_subscriptions(
            filters in proptest::collection::vec(filter(), 1..8),
            s in subject(),
        ) {
            let mut list: Sublist<u64> = Sublist::new();
            for (id, f) in filters.iter().enumerate() {
                list.insert(&f.join("."), None, id as u64, id as u64).unwrap();
            }
            let ss = s.join(".");
            // Twice: the second answer comes from the cache.
            for _ in 0..2 {
                let mut got: Vec<u64> = list.match_subject(&ss).psubs.clone();
                got.sort_unstable();
                let want: Vec<u64> = filters
                    .iter()
                    .enumerate()
                    .filter(|(_, f)| ref_match(f, &s))
                    .map(|(id, _)| id as u64)
                    .collect();
                prop_assert_eq!(got, want, "{}", ss);
            }
        }
    }
}
