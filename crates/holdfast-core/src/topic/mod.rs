//! Topic routing: the subscription tree that finds who receives a PUBLISH, and its shared groups
//! (MQTT 5.0 sections 4.7 and 4.8.2). Filter syntax and the reference matcher live in
//! `holdfast_proto::topic`.

use std::sync::Arc;

mod trie;

pub use trie::{Matches, SharedGroup, SubscriptionTree};

/// A client identifier, shared (`Arc`) so that the session, its subscription entries and routing
/// results all point at one allocation instead of copying the string per subscription or message.
pub type ClientId = Arc<str>;

#[cfg(test)]
mod tests {
    use super::*;
    use holdfast_proto::topic::matches as reference;
    use proptest::prelude::*;
    use std::collections::BTreeMap;

    fn id(s: &str) -> ClientId {
        s.into()
    }

    /// Sorted (client, value) of the non-shared matches.
    fn route(tree: &SubscriptionTree<u32>, topic: &str) -> Vec<(String, u32)> {
        actual(tree, topic).0
    }

    /// Sorted (filter, group) of the shared matches.
    fn groups(tree: &SubscriptionTree<u32>, topic: &str) -> Vec<(String, String)> {
        actual(tree, topic)
            .1
            .into_iter()
            .map(|(f, g, _)| (f, g))
            .collect()
    }

    fn subscribed(filters: &[&str], topic: &str) -> Vec<u32> {
        let mut tree = SubscriptionTree::new();
        for (i, f) in filters.iter().enumerate() {
            tree.insert(f, None, &id("c"), i as u32);
        }
        route(&tree, topic).into_iter().map(|(_, v)| v).collect()
    }

    #[test] // [MQTT-4.7.1-2] `+` matches exactly one level, which may be empty.
    fn plus_matches_one_level() {
        let filters = ["sport/+", "+/+", "+", "/+", "sport/+/player1"];
        assert_eq!(subscribed(&filters, "sport/tennis"), vec![0, 1]);
        assert_eq!(subscribed(&filters, "sport/"), vec![0, 1]);
        assert_eq!(subscribed(&filters, "sport"), vec![2]);
        assert_eq!(subscribed(&filters, "/finance"), vec![1, 3]);
        assert_eq!(subscribed(&filters, "sport/tennis/player1"), vec![4]);
    }

    #[test] // [MQTT-4.7.1-1] `#` matches the parent level and any number of child levels.
    fn hash_matches_parent_and_children() {
        let filters = ["sport/#", "#", "sport/tennis/#", "/#"];
        assert_eq!(subscribed(&filters, "sport"), vec![0, 1]);
        assert_eq!(subscribed(&filters, "sport/tennis"), vec![0, 1, 2]);
        assert_eq!(
            subscribed(&filters, "sport/tennis/player1/ranking"),
            vec![0, 1, 2]
        );
        assert_eq!(subscribed(&filters, "sports"), vec![1]);
        assert_eq!(subscribed(&filters, "/"), vec![1, 3]);
    }

    #[test] // Empty levels are levels: "a//b" has three, "/a" has two (MQTT 5.0 section 4.7.3).
    fn empty_levels_are_levels() {
        let filters = ["a//b", "a/+/b", "a/b", "//", "+/+/+"];
        assert_eq!(subscribed(&filters, "a//b"), vec![0, 1, 4]);
        assert_eq!(subscribed(&filters, "a/b"), vec![2]);
        assert_eq!(subscribed(&filters, "//"), vec![3, 4]);
    }

    #[test] // [MQTT-4.7.2-1] Wildcards at the first level do not match topics starting with `$`.
    fn dollar_topics_skip_leading_wildcards() {
        let filters = ["#", "+/uptime", "$SYS/#", "$SYS/+", "$SYS/uptime", "+"];
        assert_eq!(subscribed(&filters, "$SYS/uptime"), vec![2, 3, 4]);
        assert_eq!(subscribed(&filters, "$SYS"), vec![2]);
        assert_eq!(subscribed(&filters, "a/uptime"), vec![0, 1]);
        assert_eq!(subscribed(&["a/+", "a/#"], "a/$x"), vec![0, 1]);
    }

    #[test] // [MQTT-3.8.4-3] Subscribing again to the same filter replaces the subscription.
    fn resubscribe_replaces() {
        let mut tree = SubscriptionTree::new();
        assert_eq!(tree.insert("a/+", None, &id("c"), 1), None);
        assert_eq!(tree.insert("a/+", None, &id("c"), 2), Some(1));
        assert_eq!(tree.insert("a/+", Some("g"), &id("c"), 3), None);
        assert_eq!(tree.len(), 2);
        assert_eq!(tree.get("a/+", None, "c"), Some(&2));
        assert_eq!(tree.get("a/+", Some("g"), "c"), Some(&3));
        assert_eq!(tree.get("a/+", Some("h"), "c"), None);
        assert_eq!(route(&tree, "a/b"), vec![("c".into(), 2)]);
    }

    #[test] // [MQTT-4.8.2-3] Each shared group on a matching filter gets the message once.
    fn two_groups_on_one_filter_each_match_once() {
        let mut tree = SubscriptionTree::new();
        for (group, client) in [("g", "c1"), ("g", "c2"), ("h", "c1"), ("h", "c3")] {
            tree.insert("a/+", Some(group), &id(client), 0);
        }
        tree.insert("a/+", None, &id("c4"), 1);
        tree.insert("a/#", Some("g"), &id("c5"), 2);
        let (direct, shared) = actual(&tree, "a/b");
        assert_eq!(direct, [("c4".into(), 1)]);
        let member = |c: &str, v| (c.to_string(), v);
        let want = [
            ("a/#", "g", vec![member("c5", 2)]),
            ("a/+", "g", vec![member("c1", 0), member("c2", 0)]),
            ("a/+", "h", vec![member("c1", 0), member("c3", 0)]),
        ];
        assert_eq!(shared, want.map(|(f, g, m)| (f.into(), g.into(), m)));
    }

    #[test]
    fn pick_round_robins_and_skips_ineligible() {
        let mut tree = SubscriptionTree::new();
        for c in ["a", "b", "c"] {
            tree.insert("t", Some("g"), &id(c), 0);
        }
        let mut m = Matches::new();
        tree.matches("t", &mut m);
        let group = m.shared[0];
        let pick = |eligible: &dyn Fn(&str) -> bool| {
            group.pick(|c, _| eligible(c)).map(|(c, _)| c.to_string())
        };
        let all: Vec<_> = (0..4).map(|_| pick(&|_| true).unwrap()).collect();
        assert_eq!(all, ["a", "b", "c", "a"]);
        let some: Vec<_> = (0..4).map(|_| pick(&|c| c != "c").unwrap()).collect();
        assert_eq!(some, ["b", "a", "b", "a"]);
        assert_eq!(pick(&|_| false), None);
    }

    #[test]
    fn removing_members_keeps_order_and_drops_empty_groups() {
        let mut tree = SubscriptionTree::new();
        for c in ["a", "b", "c"] {
            tree.insert("t/#", Some("g"), &id(c), 0);
        }
        assert_eq!(tree.remove("t/#", Some("g"), "b"), Some(0));
        assert_eq!(tree.remove("t/#", Some("g"), "b"), None);
        assert_eq!(tree.remove("t/#", None, "a"), None);
        let mut m = Matches::new();
        tree.matches("t/x", &mut m);
        let members: Vec<_> = m.shared[0].members().map(|(c, _)| c.to_string()).collect();
        assert_eq!(members, ["a", "c"]);
        tree.remove("t/#", Some("g"), "a");
        tree.remove("t/#", Some("g"), "c");
        assert_eq!(
            (route(&tree, "t/x"), groups(&tree, "t/x")),
            (vec![], vec![])
        );
        assert!(tree.is_empty());
        assert_eq!(tree.node_count(), (1, 0));
    }

    #[test] // Pruning only cuts what no other subscription needs.
    fn remove_prunes_empty_nodes_only() {
        let mut tree = SubscriptionTree::new();
        for f in ["a/b/c/d", "a/b", "a/+/c", "a/#", "+/+", "#"] {
            tree.insert(f, None, &id("x"), 0);
        }
        assert_eq!(tree.node_count(), (9, 0));
        tree.remove("a/b/c/d", None, "x");
        assert_eq!(tree.node_count(), (7, 0));
        assert_eq!(tree.remove("a/b/c", None, "x"), None);
        assert_eq!(tree.get("a/+/c", None, "x"), Some(&0));
        for f in ["a/b", "a/+/c", "a/#", "+/+", "#"] {
            assert_eq!(tree.remove(f, None, "x"), Some(0), "{f}");
        }
        assert_eq!((tree.len(), tree.node_count()), (0, (1, 0)));
    }

    #[test] // Many subscribers on one filter go through the client id index.
    fn wide_filters_index_their_subscribers() {
        for group in [None, Some("g")] {
            let mut tree = SubscriptionTree::new();
            for i in 0..100 {
                tree.insert("all", group, &id(&i.to_string()), i);
            }
            assert_eq!(tree.insert("all", group, &id("42"), 1042), Some(42));
            for i in (0..100).step_by(2) {
                assert!(tree.remove("all", group, &i.to_string()).is_some());
                assert_eq!(tree.get("all", group, &i.to_string()), None);
            }
            let odd: Vec<_> = (1..100).step_by(2).map(|i| (i.to_string(), i)).collect();
            for (c, v) in &odd {
                assert_eq!(tree.get("all", group, c), Some(v));
            }
            let (mut direct, shared) = actual(&tree, "all");
            if group.is_some() {
                assert_eq!(shared[0].2, odd, "members stay in join order");
            } else {
                direct.sort_by_key(|(_, v)| *v);
                assert_eq!(direct, odd);
            }
            for (c, _) in &odd {
                assert!(tree.remove("all", group, c).is_some());
            }
            assert!(tree.is_empty());
        }
    }

    #[test] // A legal 65,535-byte filter of empty levels must not overflow the stack anywhere.
    fn deep_filters_do_not_overflow() {
        let deep = "/".repeat(65_534);
        let mut tree = SubscriptionTree::new();
        tree.insert(&deep, None, &id("c"), 1);
        tree.insert(&format!("{deep}/#"), None, &id("c"), 2);
        assert_eq!(route(&tree, &deep), vec![("c".into(), 1), ("c".into(), 2)]);
        assert_eq!(tree.remove(&deep, None, "c"), Some(1));
        tree.insert(&deep[1..], None, &id("c"), 3);
        drop(tree);
    }

    #[derive(Debug, Clone)]
    enum Op {
        Insert(String, Option<&'static str>, &'static str),
        RemoveExisting(usize),
        Remove(String, Option<&'static str>, &'static str),
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

    fn topic() -> impl Strategy<Value = String> {
        let level = prop::sample::select(vec!["a", "b", "$x", ""]);
        prop::collection::vec(level, 1..5)
            .prop_map(|l| l.join("/"))
            .prop_filter("empty", |t| !t.is_empty())
    }

    fn op() -> impl Strategy<Value = Op> {
        let group = prop::sample::select(vec![None, Some("g"), Some("h")]);
        let client = prop::sample::select(vec!["c1", "c2", "c3"]);
        prop_oneof![
            3 => (filter(), group.clone(), client.clone())
                .prop_map(|(f, g, c)| Op::Insert(f, g, c)),
            2 => any::<usize>().prop_map(Op::RemoveExisting),
            1 => (filter(), group, client).prop_map(|(f, g, c)| Op::Remove(f, g, c)),
        ]
    }

    type Key = (String, Option<&'static str>, &'static str);
    /// A matching shared group as (filter, name, members in join order).
    type Group = (String, String, Vec<(String, u32)>);

    /// What the reference matcher says `topic` routes to, given the model's subscriptions.
    fn expected(
        model: &BTreeMap<Key, (usize, u32)>,
        topic: &str,
    ) -> (Vec<(String, u32)>, Vec<Group>) {
        let mut direct = Vec::new();
        let mut groups: BTreeMap<(&str, &str), Vec<_>> = BTreeMap::new();
        for ((f, g, c), (joined, v)) in model.iter().filter(|((f, ..), _)| reference(f, topic)) {
            match g {
                None => direct.push((c.to_string(), *v)),
                Some(g) => groups
                    .entry((f, g))
                    .or_default()
                    .push((*joined, c.to_string(), *v)),
            }
        }
        direct.sort();
        let shared = groups.into_iter().map(|((f, g), mut members)| {
            members.sort();
            let members = members.into_iter().map(|(_, c, v)| (c, v)).collect();
            (f.to_string(), g.to_string(), members)
        });
        (direct, shared.collect())
    }

    fn actual(tree: &SubscriptionTree<u32>, topic: &str) -> (Vec<(String, u32)>, Vec<Group>) {
        let mut m = Matches::new();
        tree.matches(topic, &mut m);
        let mut direct: Vec<_> = m.direct.iter().map(|(c, v)| (c.to_string(), **v)).collect();
        direct.sort();
        let shared = m.shared.iter().map(|g| {
            let members = g.members().map(|(c, v)| (c.to_string(), *v)).collect();
            (g.filter().to_string(), g.name().to_string(), members)
        });
        let mut shared: Vec<_> = shared.collect();
        shared.sort();
        (direct, shared)
    }

    fn check(ops: Vec<Op>, topics: Vec<String>) -> Result<(), TestCaseError> {
        let mut tree = SubscriptionTree::new();
        let mut model: BTreeMap<Key, (usize, u32)> = BTreeMap::new(); // key -> (join order, value)
        for (n, op) in ops.into_iter().enumerate() {
            let v = n as u32;
            match op {
                Op::Insert(f, g, c) => {
                    let prev = model.get(&(f.clone(), g, c)).copied();
                    prop_assert_eq!(tree.insert(&f, g, &id(c), v), prev.map(|p| p.1));
                    model.insert((f, g, c), (prev.map_or(n, |p| p.0), v));
                }
                Op::RemoveExisting(i) if !model.is_empty() => {
                    let key = model.keys().nth(i % model.len()).unwrap().clone();
                    let want = model.remove(&key).map(|p| p.1);
                    prop_assert_eq!(tree.remove(&key.0, key.1, key.2), want);
                }
                Op::RemoveExisting(_) => {}
                Op::Remove(f, g, c) => {
                    let want = model.remove(&(f.clone(), g, c)).map(|p| p.1);
                    prop_assert_eq!(tree.remove(&f, g, c), want);
                }
            }
            prop_assert_eq!(tree.len(), model.len());
            prop_assert_eq!(tree.node_count().1, 0, "empty nodes left after op {}", n);
        }
        for ((f, g, c), (_, v)) in &model {
            prop_assert_eq!(tree.get(f, *g, c), Some(v));
        }
        for t in &topics {
            prop_assert_eq!(actual(&tree, t), expected(&model, t), "routing {}", t);
        }
        for (f, g, c) in model.keys() {
            prop_assert!(tree.remove(f, *g, c).is_some());
        }
        prop_assert_eq!((tree.len(), tree.node_count()), (0, (1, 0)));
        Ok(())
    }

    proptest! {
        /// Routing agrees with `holdfast_proto::topic::matches` after any insert/remove sequence.
        #[test]
        fn agrees_with_reference(
            ops in prop::collection::vec(op(), 0..60),
            topics in prop::collection::vec(topic(), 1..12),
        ) {
            check(ops, topics)?;
        }
    }
}
