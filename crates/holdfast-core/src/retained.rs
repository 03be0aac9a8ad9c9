//! The retained message index: the last retained message of each topic, looked up by topic filter
//! when a client subscribes (MQTT 5.0 section 3.3.1.3).
//!
//! A trie over topic levels, so a filter walks only the branches its levels select instead of
//! testing every retained topic. Walks and drops are iterative: a topic of 30,000 empty levels is
//! legal and must not overflow a thread's stack.

use std::collections::HashMap;
use std::fmt;
use std::mem;

/// Matching stack position meaning "every filter level has been consumed".
const END: usize = usize::MAX;
/// Matching stack position meaning "this node and everything below it" (the filter reached `#`).
const ALL: usize = usize::MAX - 1;

/// Retained messages by topic name. `M` is the stored message; the index only finds it.
pub struct RetainedIndex<M> {
    root: Node<M>,
    len: usize,
}

struct Node<M> {
    children: HashMap<Box<str>, Node<M>>,
    /// The message retained on exactly this node's topic, with that topic so matches can name it.
    entry: Option<(Box<str>, M)>,
}

impl<M> RetainedIndex<M> {
    pub fn new() -> Self {
        RetainedIndex {
            root: Node::default(),
            len: 0,
        }
    }

    /// Retain `msg` on `topic`, replacing (and returning) what was retained there before: only the
    /// last retained message of a topic is kept [MQTT-3.3.1-5].
    pub fn insert(&mut self, topic: &str, msg: M) -> Option<M> {
        let mut node = &mut self.root;
        for level in topic.split('/') {
            node = node.child_or_insert(level);
        }
        if let Some((_, old)) = &mut node.entry {
            return Some(mem::replace(old, msg));
        }
        node.entry = Some((topic.into(), msg));
        self.len += 1;
        None
    }

    /// Delete the message retained on `topic` (a retained PUBLISH with an empty payload
    /// [MQTT-3.3.1-6], expiry, or an administrator), pruning nodes left empty.
    pub fn remove(&mut self, topic: &str) -> Option<M> {
        // Descend, noting the deepest node that stays whatever is cut below it.
        let (mut node, mut depth, mut keep) = (&mut self.root, 0, 0);
        for level in topic.split('/') {
            if node.entry.is_some() || node.children.len() > 1 {
                keep = depth;
            }
            node = node.children.get_mut(level)?;
            depth += 1;
        }
        let (_, msg) = node.entry.take()?;
        self.len -= 1;
        if node.children.is_empty() {
            // Everything below `keep` is now a chain of empty nodes: cut it off whole.
            let mut levels = topic.split('/');
            let mut node = &mut self.root;
            for level in levels.by_ref().take(keep) {
                node = node.children.get_mut(level).expect("walked above");
            }
            node.children.remove(levels.next().expect("depth > keep"));
        }
        Some(msg)
    }

    pub fn get(&self, topic: &str) -> Option<&M> {
        let mut node = &self.root;
        for level in topic.split('/') {
            node = node.children.get(level)?;
        }
        node.entry.as_ref().map(|(_, msg)| msg)
    }

    /// Append every retained message whose topic matches the plain, validated `filter`, with its
    /// topic, in no particular order.
    pub fn matching<'a>(&'a self, filter: &str, out: &mut Vec<(&'a str, &'a M)>) {
        let mut stack = Vec::new();
        step(&self.root, filter, 0, true, &mut stack, out);
        while let Some((node, pos)) = stack.pop() {
            if pos == ALL {
                if let Some((topic, msg)) = &node.entry {
                    out.push((topic, msg));
                }
                stack.extend(node.children.values().map(|child| (child, ALL)));
            } else {
                step(node, filter, pos, false, &mut stack, out);
            }
        }
    }

    /// Number of retained messages.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Every retained message with its topic, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &M)> {
        let mut stack = vec![&self.root];
        std::iter::from_fn(move || loop {
            let node = stack.pop()?;
            stack.extend(node.children.values());
            if let Some((topic, msg)) = &node.entry {
                return Some((&**topic, msg));
            }
        })
    }

    /// Remove every message for which `keep` is false (message expiry, administrative discards);
    /// returns how many were removed.
    pub fn retain(&mut self, mut keep: impl FnMut(&str, &M) -> bool) -> usize {
        let doomed: Vec<Box<str>> = self
            .iter()
            .filter(|(topic, msg)| !keep(topic, msg))
            .map(|(topic, _)| topic.into())
            .collect();
        for topic in &doomed {
            self.remove(topic);
        }
        doomed.len()
    }

    /// Nodes in the trie, and how many of those below the root are empty (pruning missed them).
    #[cfg(test)]
    fn node_count(&self) -> (usize, usize) {
        let (mut stack, mut nodes, mut empty) = (vec![&self.root], 0, 0);
        while let Some(node) = stack.pop() {
            nodes += 1;
            empty += usize::from(node.entry.is_none() && node.children.is_empty());
            stack.extend(node.children.values());
        }
        (nodes, empty - usize::from(self.root.children.is_empty()))
    }
}

/// One matching step: `node` was reached by the filter levels before `pos`.
fn step<'a, M>(
    node: &'a Node<M>,
    filter: &str,
    pos: usize,
    root: bool,
    stack: &mut Vec<(&'a Node<M>, usize)>,
    out: &mut Vec<(&'a str, &'a M)>,
) {
    if pos == END {
        if let Some((topic, msg)) = &node.entry {
            out.push((topic, msg));
        }
        return;
    }
    let rest = &filter[pos..];
    let (level, next) = match rest.find('/') {
        Some(i) => (&rest[..i], pos + i + 1),
        None => (rest, END),
    };
    match level {
        // `#` matches the parent level too: "sport/#" matches "sport" (MQTT 5.0 section 4.7.1.2).
        "#" if !root => stack.push((node, ALL)),
        "#" | "+" => {
            let pos = if level == "#" { ALL } else { next };
            // [MQTT-4.7.2-1] Wildcards at the first level do not match topics starting with `$`.
            let visible = node
                .children
                .iter()
                .filter(|(name, _)| !root || !name.starts_with('$'));
            stack.extend(visible.map(|(_, child)| (child, pos)));
        }
        _ => stack.extend(node.children.get(level).map(|child| (child, next))),
    }
}

impl<M> Default for RetainedIndex<M> {
    fn default() -> Self {
        Self::new()
    }
}

impl<M> fmt::Debug for RetainedIndex<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RetainedIndex")
            .field("len", &self.len)
            .finish_non_exhaustive()
    }
}

impl<M> Node<M> {
    fn child_or_insert(&mut self, level: &str) -> &mut Node<M> {
        if !self.children.contains_key(level) {
            self.children.insert(level.into(), Node::default());
        }
        self.children.get_mut(level).expect("inserted above")
    }
}

impl<M> Default for Node<M> {
    fn default() -> Self {
        Node {
            children: HashMap::new(),
            entry: None,
        }
    }
}

/// Iterative, so dropping a deep chain of levels cannot overflow the stack.
impl<M> Drop for Node<M> {
    fn drop(&mut self) {
        if self.children.is_empty() {
            return;
        }
        let mut stack: Vec<Node<M>> = self.children.drain().map(|(_, child)| child).collect();
        while let Some(mut node) = stack.pop() {
            stack.extend(node.children.drain().map(|(_, child)| child));
            // `node` drops here with no children left, so this never recurses.
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use holdfast_proto::topic::matches as reference;
    use proptest::prelude::*;
    use std::collections::BTreeMap;

    fn index(topics: &[&str]) -> RetainedIndex<usize> {
        let mut index = RetainedIndex::new();
        for (i, t) in topics.iter().enumerate() {
            index.insert(t, i);
        }
        index
    }

    fn found(index: &RetainedIndex<usize>, filter: &str) -> Vec<usize> {
        let mut out = Vec::new();
        index.matching(filter, &mut out);
        let mut found: Vec<_> = out
            .into_iter()
            .map(|(t, m)| {
                assert_eq!(index.get(t), Some(m));
                *m
            })
            .collect();
        found.sort();
        found
    }

    const TOPICS: [&str; 8] = [
        "sport",
        "sport/tennis",
        "sport/tennis/p1",
        "sport/",
        "/a",
        "a//b",
        "$SYS/up",
        "a/$x",
    ];

    #[test] // [MQTT-3.3.1-5] Only the last retained message of a topic is kept.
    fn insert_replaces_and_remove_deletes() {
        let mut index = RetainedIndex::new();
        assert_eq!(index.insert("a/b", 1), None);
        assert_eq!(index.insert("a/b", 2), Some(1));
        assert_eq!(index.insert("a", 3), None);
        assert_eq!(
            (index.len(), index.get("a/b"), index.get("a/c")),
            (2, Some(&2), None)
        );
        assert_eq!(index.remove("a/b"), Some(2));
        assert_eq!(index.remove("a/b"), None);
        assert_eq!(index.remove("a/b/c"), None);
        assert_eq!((index.len(), index.get("a")), (1, Some(&3)));
    }

    #[test] // [MQTT-4.7.1-1] [MQTT-4.7.1-2] `#`: the parent and all child levels; `+`: one level.
    fn wildcards_select_branches() {
        let index = index(&TOPICS);
        assert_eq!(found(&index, "sport/#"), [0, 1, 2, 3]);
        assert_eq!(found(&index, "sport/+"), [1, 3]);
        assert_eq!(found(&index, "sport/+/+"), [2]);
        assert_eq!(found(&index, "+/+"), [1, 3, 4, 7]);
        assert_eq!(found(&index, "a/+/b"), [5]);
        assert_eq!(found(&index, "a/+"), [7]);
        assert_eq!(found(&index, "sport/tennis"), [1]);
        assert_eq!(found(&index, "nothing/#"), Vec::<usize>::new());
    }

    #[test] // [MQTT-4.7.2-1] Wildcards at the first level do not match topics starting with `$`.
    fn leading_wildcards_skip_dollar_topics() {
        let index = index(&TOPICS);
        assert_eq!(found(&index, "#"), [0, 1, 2, 3, 4, 5, 7]);
        assert_eq!(found(&index, "+/up"), Vec::<usize>::new());
        assert_eq!(found(&index, "$SYS/#"), [6]);
        assert_eq!(found(&index, "$SYS/+"), [6]);
    }

    #[test] // Expiry sweeps remove what they reject and prune the emptied branches.
    fn retain_removes_and_prunes() {
        let mut index = index(&TOPICS);
        assert_eq!(index.retain(|t, m| !t.starts_with("sport") || *m == 1), 3);
        let mut left: Vec<_> = index.iter().map(|(_, m)| *m).collect();
        left.sort();
        assert_eq!(left, [1, 4, 5, 6, 7]);
        assert_eq!(index.node_count().1, 0);
        assert_eq!(index.retain(|_, _| false), 5);
        assert_eq!((index.len(), index.node_count()), (0, (1, 0)));
    }

    #[test] // A legal 65,535-byte topic of empty levels must not overflow the stack anywhere.
    fn deep_topics_do_not_overflow() {
        let deep = "/".repeat(65_534);
        let mut index = RetainedIndex::new();
        index.insert(&deep, 1);
        index.insert(&deep[1..], 2);
        assert_eq!(found(&index, "#"), [1, 2]);
        assert_eq!(found(&index, &deep), [1]);
        assert_eq!(index.remove(&deep), Some(1));
        drop(index);
    }

    #[derive(Debug, Clone)]
    enum Op {
        Insert(String),
        RemoveExisting(usize),
        Remove(String),
        Retain(u32),
    }

    fn topic() -> impl Strategy<Value = String> {
        let level = prop::sample::select(vec!["a", "b", "$x", ""]);
        prop::collection::vec(level, 1..5)
            .prop_map(|l| l.join("/"))
            .prop_filter("empty", |t| !t.is_empty())
    }

    fn filter() -> impl Strategy<Value = String> {
        let level = prop::sample::select(vec!["a", "b", "$x", "", "+", "#"]);
        prop::collection::vec(level, 1..5).prop_map(|levels| {
            let end = levels
                .iter()
                .position(|l| *l == "#")
                .map_or(levels.len(), |i| i + 1);
            levels[..end].join("/") // `#` only last [MQTT-4.7.1-1]
        })
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            4 => topic().prop_map(Op::Insert),
            2 => any::<usize>().prop_map(Op::RemoveExisting),
            1 => topic().prop_map(Op::Remove),
            1 => (2..5u32).prop_map(Op::Retain),
        ]
    }

    proptest! {
        /// The index agrees with `holdfast_proto::topic::matches` after any sequence of changes.
        #[test]
        fn agrees_with_reference(ops in prop::collection::vec(op(), 0..60),
                                 filters in prop::collection::vec(filter(), 1..12)) {
            let mut index = RetainedIndex::new();
            let mut model: BTreeMap<String, u32> = BTreeMap::new();
            for (n, op) in ops.into_iter().enumerate() {
                let v = n as u32;
                match op {
                    Op::Insert(t) => prop_assert_eq!(index.insert(&t, v), model.insert(t, v)),
                    Op::RemoveExisting(i) if !model.is_empty() => {
                        let t = model.keys().nth(i % model.len()).unwrap().clone();
                        prop_assert_eq!(index.remove(&t), model.remove(&t));
                    }
                    Op::RemoveExisting(_) => {}
                    Op::Remove(t) => prop_assert_eq!(index.remove(&t), model.remove(&t)),
                    Op::Retain(k) => {
                        let before = model.len();
                        model.retain(|_, m| *m % k != 0);
                        prop_assert_eq!(index.retain(|_, m| *m % k != 0), before - model.len());
                    }
                }
                prop_assert_eq!(index.len(), model.len());
                prop_assert_eq!(index.node_count().1, 0, "empty nodes left after op {}", n);
            }
            let mut all: Vec<_> = index.iter().map(|(t, m)| (t.to_string(), *m)).collect();
            all.sort();
            prop_assert_eq!(all, model.clone().into_iter().collect::<Vec<_>>());
            for f in &filters {
                let mut out = Vec::new();
                index.matching(f, &mut out);
                let mut got: Vec<_> = out.into_iter().map(|(t, m)| (t.to_string(), *m)).collect();
                got.sort();
                let want: Vec<_> = model.iter()
                    .filter(|(t, _)| reference(f, t))
                    .map(|(t, m)| (t.clone(), *m))
                    .collect();
                prop_assert_eq!(got, want, "matching {}", f);
            }
            for t in model.keys() {
                prop_assert!(index.remove(t).is_some());
            }
            prop_assert_eq!((index.len(), index.node_count()), (0, (1, 0)));
        }
    }
}
