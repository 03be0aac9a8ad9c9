//! The subscription tree: which subscriptions match a topic name.
//!
//! One node per filter level, holding a map of literal children and a dedicated `+` child, so
//! routing a topic costs one hash probe per level plus the wildcard branches that actually exist.
//! `#` is always the last level [MQTT-4.7.1-1], so its subscriptions live beside the parent node
//! instead of in a node of their own. Every walk is iterative (matching keeps its stack in the
//! reusable [`Matches`]) and nodes drop iteratively, so a legal filter of 30,000 empty levels
//! cannot overflow a thread's stack.

use std::collections::HashMap;
use std::fmt;
use std::mem;
use std::sync::atomic::{AtomicUsize, Ordering};

use super::ClientId;

/// A subscriber list keeps a map by client id only above this many entries: most filters have a few
/// subscribers, for which a scan is cheaper in time and memory than a map.
const INDEX_ABOVE: usize = 16;

/// Matching stack position meaning "every topic level has been consumed".
const END: usize = usize::MAX;

/// Subscriptions of every client, by topic filter and shared group. `V` is what a subscription
/// carries (its options); the tree only routes.
pub struct SubscriptionTree<V> {
    root: Node<V>,
    len: usize,
}

/// The result of [`SubscriptionTree::matches`]. Keep one per routing thread and
/// [`clear`](Self::clear) it between messages: its vectors, and the walk's own stack, are reused
/// instead of reallocated.
pub struct Matches<'a, V> {
    /// Non-shared subscriptions, one per matching filter: a client whose filters overlap appears
    /// once per filter, and the caller decides to deliver once or per subscription [MQTT-3.3.4-2].
    pub direct: Vec<(&'a ClientId, &'a V)>,
    /// Each matching shared group once, whichever member the caller then picks [MQTT-4.8.2-3].
    pub shared: Vec<&'a SharedGroup<V>>,
    /// How many filters contributed to `direct`: with one, no client appears twice in it.
    pub direct_filters: usize,
    stack: Vec<(&'a Node<V>, usize)>,
}

/// The members of one shared subscription (`$share/{name}/{filter}`): each message goes to one.
pub struct SharedGroup<V> {
    name: Box<str>,
    filter: Box<str>,
    members: Slots<V>,
    /// Round robin position; atomic so that routers can pick while holding the tree by `&`.
    cursor: AtomicUsize,
}

struct Node<V> {
    children: HashMap<Box<str>, Node<V>>,
    plus: Option<Box<Node<V>>>,
    /// Subscriptions to this node's path followed by `/#` (or to `#` at the root).
    hash: Option<Box<Subs<V>>>,
    /// Subscriptions to exactly this node's path.
    subs: Option<Box<Subs<V>>>,
}

/// What subscribed to one filter.
struct Subs<V> {
    direct: Slots<V>,
    groups: Vec<SharedGroup<V>>,
}

/// Subscribers in a Vec for fast fan-out, with an index by client id once there are many, so that
/// subscribing thousands of clients to one filter is not quadratic.
struct Slots<V> {
    entries: Vec<(ClientId, V)>,
    index: Option<HashMap<ClientId, usize>>,
}

impl<V> SubscriptionTree<V> {
    pub fn new() -> Self {
        SubscriptionTree {
            root: Node::default(),
            len: 0,
        }
    }

    /// Add or replace the subscription of `client` to `filter` (in share group `group`, if any).
    /// `filter` is a plain, validated filter, never `$share/...`. Returns the replaced value: a
    /// client subscribing to a filter it already has replaces that subscription [MQTT-3.8.4-3].
    pub fn insert(
        &mut self,
        filter: &str,
        group: Option<&str>,
        client: &ClientId,
        value: V,
    ) -> Option<V> {
        let (path, hash) = split_filter(filter);
        let mut node = &mut self.root;
        for level in levels(path) {
            node = node.child_or_insert(level);
        }
        let slot = if hash { &mut node.hash } else { &mut node.subs };
        let old = slot
            .get_or_insert_with(Default::default)
            .insert(filter, group, client, value);
        if old.is_none() {
            self.len += 1;
        }
        old
    }

    /// Remove one subscription, pruning nodes left empty so memory follows the live subscriptions.
    pub fn remove(&mut self, filter: &str, group: Option<&str>, client: &str) -> Option<V> {
        let (path, hash) = split_filter(filter);
        // Descend, noting the deepest node that stays whatever is cut below it.
        let (mut node, mut depth, mut keep) = (&mut self.root, 0, 0);
        for level in levels(path) {
            if node.subs.is_some() || node.hash.is_some() || node.branches() > 1 {
                keep = depth;
            }
            node = node.child_mut(level)?;
            depth += 1;
        }
        let slot = if hash { &mut node.hash } else { &mut node.subs };
        let subs = slot.as_mut()?;
        let old = subs.remove(group, client)?;
        if subs.is_empty() {
            *slot = None;
        }
        self.len -= 1;
        if depth > 0 && node.is_empty() {
            // Everything below `keep` is now a chain of empty nodes: cut it off whole.
            let mut levels = levels(path);
            let mut node = &mut self.root;
            for level in levels.by_ref().take(keep) {
                node = node.child_mut(level).expect("walked above");
            }
            node.remove_child(levels.next().expect("depth > keep"));
        }
        Some(old)
    }

    pub fn get(&self, filter: &str, group: Option<&str>, client: &str) -> Option<&V> {
        let (path, hash) = split_filter(filter);
        let mut node = &self.root;
        for level in levels(path) {
            node = node.child(level)?;
        }
        let subs = if hash { &node.hash } else { &node.subs };
        subs.as_ref()?.get(group, client)
    }

    /// Append every subscription matching the topic name to `out` (call [`Matches::clear`] first to
    /// reuse it). Allocates nothing once `out` has grown to the usual fan-out.
    pub fn matches<'a>(&'a self, topic: &str, out: &mut Matches<'a, V>) {
        out.stack.clear();
        // [MQTT-4.7.2-1] Wildcards at the first level do not match topics starting with `$`.
        step(&self.root, topic, 0, !topic.starts_with('$'), out);
        while let Some((node, pos)) = out.stack.pop() {
            step(node, topic, pos, true, out);
        }
    }

    /// Number of (filter, group, client) subscriptions.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Nodes in the tree, and how many of those below the root are empty (pruning missed them).
    #[cfg(test)]
    pub(super) fn node_count(&self) -> (usize, usize) {
        let (mut stack, mut nodes, mut empty) = (vec![&self.root], 0, 0);
        while let Some(node) = stack.pop() {
            nodes += 1;
            empty += usize::from(node.is_empty());
            stack.extend(node.children.values());
            stack.extend(node.plus.as_deref());
        }
        (nodes, empty - usize::from(self.root.is_empty()))
    }
}

/// One matching step: `node` was reached by the topic levels before `pos`.
#[inline]
fn step<'a, V>(node: &'a Node<V>, topic: &str, pos: usize, wild: bool, out: &mut Matches<'a, V>) {
    // `#` also matches the parent level: "sport/#" matches "sport" (MQTT 5.0 section 4.7.1.2).
    if let (true, Some(subs)) = (wild, &node.hash) {
        subs.collect(out);
    }
    if pos == END {
        if let Some(subs) = &node.subs {
            subs.collect(out);
        }
        return;
    }
    // Levels are split on the fly: an empty level is a level too ("/a" is "" then "a").
    let rest = &topic[pos..];
    let (level, next) = match rest.find('/') {
        Some(i) => (&rest[..i], pos + i + 1),
        None => (rest, END),
    };
    if !node.children.is_empty() {
        if let Some(child) = node.children.get(level) {
            out.stack.push((child, next));
        }
    }
    if let (true, Some(plus)) = (wild, &node.plus) {
        out.stack.push((plus, next));
    }
}

/// A filter's node path (`None`: the root) and whether it ends in `#`.
fn split_filter(filter: &str) -> (Option<&str>, bool) {
    if filter == "#" {
        (None, true)
    } else if let Some(path) = filter.strip_suffix("/#") {
        (Some(path), true)
    } else {
        (Some(filter), false)
    }
}

fn levels(path: Option<&str>) -> impl Iterator<Item = &str> {
    path.into_iter().flat_map(|p| p.split('/'))
}

impl<V> Default for SubscriptionTree<V> {
    fn default() -> Self {
        Self::new()
    }
}

impl<V> fmt::Debug for SubscriptionTree<V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SubscriptionTree")
            .field("len", &self.len)
            .finish_non_exhaustive()
    }
}

impl<V> Matches<'_, V> {
    pub fn new() -> Self {
        Matches {
            direct: Vec::new(),
            shared: Vec::new(),
            direct_filters: 0,
            stack: Vec::new(),
        }
    }

    pub fn clear(&mut self) {
        self.direct.clear();
        self.shared.clear();
        self.direct_filters = 0;
    }
}

impl<V> Default for Matches<'_, V> {
    fn default() -> Self {
        Self::new()
    }
}

impl<V> SharedGroup<V> {
    fn new(name: &str, filter: &str) -> Self {
        SharedGroup {
            name: name.into(),
            filter: filter.into(),
            members: Slots::default(),
            cursor: AtomicUsize::new(0),
        }
    }

    /// The share name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The topic filter, without the `$share/{name}/` prefix.
    pub fn filter(&self) -> &str {
        &self.filter
    }

    /// Members in the order they joined.
    pub fn members(&self) -> impl Iterator<Item = (&ClientId, &V)> {
        self.members.entries.iter().map(|(c, v)| (c, v))
    }

    pub fn len(&self) -> usize {
        self.members.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.members.entries.is_empty()
    }

    /// Round robin: the next member after the last one picked for which `eligible` holds (say,
    /// connected and under its Receive Maximum), or `None` if there is none. Concurrent pickers
    /// each claim a different starting member, so they spread the load instead of piling on one.
    pub fn pick(&self, mut eligible: impl FnMut(&ClientId, &V) -> bool) -> Option<(&ClientId, &V)> {
        let members = &self.members.entries;
        let n = members.len();
        if n == 0 {
            return None;
        }
        let start = self.cursor.fetch_add(1, Ordering::Relaxed) % n;
        for k in 0..n {
            let i = (start + k) % n;
            let (client, value) = &members[i];
            if eligible(client, value) {
                if k > 0 {
                    self.cursor.store(i + 1, Ordering::Relaxed);
                }
                return Some((client, value));
            }
        }
        None
    }
}

impl<V> fmt::Debug for SharedGroup<V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SharedGroup")
            .field("name", &self.name)
            .field("filter", &self.filter)
            .field("members", &self.len())
            .finish()
    }
}

impl<V> Node<V> {
    fn is_empty(&self) -> bool {
        self.subs.is_none() && self.hash.is_none() && self.branches() == 0
    }

    fn branches(&self) -> usize {
        self.children.len() + usize::from(self.plus.is_some())
    }

    fn child(&self, level: &str) -> Option<&Node<V>> {
        match level {
            "+" => self.plus.as_deref(),
            _ => self.children.get(level),
        }
    }

    fn child_mut(&mut self, level: &str) -> Option<&mut Node<V>> {
        match level {
            "+" => self.plus.as_deref_mut(),
            _ => self.children.get_mut(level),
        }
    }

    fn child_or_insert(&mut self, level: &str) -> &mut Node<V> {
        if level == "+" {
            return self.plus.get_or_insert_with(Default::default);
        }
        if !self.children.contains_key(level) {
            self.children.insert(level.into(), Node::default());
        }
        self.children.get_mut(level).expect("inserted above")
    }

    fn detach_children(&mut self, into: &mut Vec<Node<V>>) {
        into.extend(self.children.drain().map(|(_, child)| child));
        into.extend(self.plus.take().map(|plus| *plus));
    }

    fn remove_child(&mut self, level: &str) {
        match level {
            "+" => self.plus = None,
            _ => drop(self.children.remove(level)),
        }
    }
}

impl<V> Default for Node<V> {
    fn default() -> Self {
        Node {
            children: HashMap::new(),
            plus: None,
            hash: None,
            subs: None,
        }
    }
}

/// Iterative, so dropping a deep chain of levels cannot overflow the stack.
impl<V> Drop for Node<V> {
    fn drop(&mut self) {
        if self.branches() == 0 {
            return;
        }
        let mut stack = Vec::new();
        self.detach_children(&mut stack);
        while let Some(mut node) = stack.pop() {
            node.detach_children(&mut stack);
            // `node` drops here with no children left, so this never recurses.
        }
    }
}

impl<V> Subs<V> {
    fn is_empty(&self) -> bool {
        self.direct.entries.is_empty() && self.groups.is_empty()
    }

    fn group(&self, name: &str) -> Option<usize> {
        self.groups.iter().position(|g| &*g.name == name)
    }

    fn get(&self, group: Option<&str>, client: &str) -> Option<&V> {
        match group {
            None => self.direct.get(client),
            Some(name) => self.groups[self.group(name)?].members.get(client),
        }
    }

    fn insert(
        &mut self,
        filter: &str,
        group: Option<&str>,
        client: &ClientId,
        value: V,
    ) -> Option<V> {
        let Some(name) = group else {
            return self.direct.insert(client, value);
        };
        let i = self.group(name).unwrap_or_else(|| {
            self.groups.push(SharedGroup::new(name, filter));
            self.groups.len() - 1
        });
        self.groups[i].members.insert(client, value)
    }

    fn remove(&mut self, group: Option<&str>, client: &str) -> Option<V> {
        let Some(name) = group else {
            return self.direct.remove(client, false);
        };
        let i = self.group(name)?;
        let old = self.groups[i].members.remove(client, true)?;
        if self.groups[i].is_empty() {
            self.groups.swap_remove(i);
        }
        Some(old)
    }

    fn collect<'a>(&'a self, out: &mut Matches<'a, V>) {
        if !self.direct.entries.is_empty() {
            out.direct_filters += 1;
            out.direct
                .extend(self.direct.entries.iter().map(|(c, v)| (c, v)));
        }
        out.shared.extend(self.groups.iter());
    }
}

impl<V> Default for Subs<V> {
    fn default() -> Self {
        Subs {
            direct: Slots::default(),
            groups: Vec::new(),
        }
    }
}

impl<V> Slots<V> {
    fn position(&self, client: &str) -> Option<usize> {
        match &self.index {
            Some(index) => index.get(client).copied(),
            None => self.entries.iter().position(|(c, _)| &**c == client),
        }
    }

    fn get(&self, client: &str) -> Option<&V> {
        self.position(client).map(|i| &self.entries[i].1)
    }

    /// Replace in place (keeping a group member's turn), or append.
    fn insert(&mut self, client: &ClientId, value: V) -> Option<V> {
        if let Some(i) = self.position(client) {
            return Some(mem::replace(&mut self.entries[i].1, value));
        }
        self.entries.push((client.clone(), value));
        if let Some(index) = &mut self.index {
            index.insert(client.clone(), self.entries.len() - 1);
        } else if self.entries.len() > INDEX_ABOVE {
            let index = self
                .entries
                .iter()
                .enumerate()
                .map(|(i, (c, _))| (c.clone(), i));
            self.index = Some(index.collect());
        }
        None
    }

    /// `keep_order` keeps insertion order (round robin of shared groups); otherwise the last entry
    /// fills the gap in O(1).
    fn remove(&mut self, client: &str, keep_order: bool) -> Option<V> {
        let i = self.position(client)?;
        let (_, value) = if keep_order {
            self.entries.remove(i)
        } else {
            self.entries.swap_remove(i)
        };
        let len = self.entries.len();
        if len <= INDEX_ABOVE / 2 {
            self.index = None;
        } else if let Some(index) = &mut self.index {
            index.remove(client);
            let moved = if keep_order {
                i..len
            } else {
                i..(i + 1).min(len)
            };
            for j in moved {
                if let Some(slot) = index.get_mut(&*self.entries[j].0) {
                    *slot = j;
                }
            }
        }
        Some(value)
    }
}

impl<V> Default for Slots<V> {
    fn default() -> Self {
        Slots {
            entries: Vec::new(),
            index: None,
        }
    }
}
