//! Which durability class a message, subscription or session gets, from the configured rules: the
//! first rule whose topic filter matches a topic decides a message's class; a subscription takes the
//! strongest class of any message it could receive.

use holdfast_proto::topic::matches;

use crate::Durability;

/// `[[storage.rule]]` entries in order, and the default class.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DurabilityRules {
    pub default: Durability,
    pub rules: Vec<(String, Durability)>,
}

impl DurabilityRules {
    /// The class of a message published to `topic`: the first matching rule, else the default.
    pub fn for_topic(&self, topic: &str) -> Durability {
        self.rules
            .iter()
            .find(|(f, _)| matches(f, topic))
            .map_or(self.default, |(_, d)| *d)
    }

    /// The strongest class among the messages a (plain, non-shared) filter can receive.
    pub fn for_filter(&self, filter: &str) -> Durability {
        let mut strongest = None::<Durability>;
        for (rule, class) in &self.rules {
            if overlaps(rule, filter) {
                strongest = Some(strongest.map_or(*class, |s| s.max(*class)));
            }
            if covers(rule, filter) {
                // Every topic of the filter is decided by this rule or an earlier one.
                return strongest.unwrap_or(*class);
            }
        }
        strongest.map_or(self.default, |s| s.max(self.default))
    }
}

/// Is there a topic name that both filters match?
pub fn overlaps(a: &str, b: &str) -> bool {
    let dollar = |f: &str| f.starts_with('$');
    let wild_first = |f: &str| f.starts_with('+') || f.starts_with('#');
    // A leading wildcard never matches a `$` topic, so it cannot meet a filter whose first level
    // starts with `$` [MQTT-4.7.2-1].
    if (wild_first(a) && dollar(b)) || (wild_first(b) && dollar(a)) {
        return false;
    }
    let mut x = a.split('/');
    let mut y = b.split('/');
    loop {
        match (x.next(), y.next()) {
            (Some("#"), _) | (_, Some("#")) => return true,
            (None, None) => return true,
            (Some("+"), Some(_)) | (Some(_), Some("+")) => {}
            (Some(l), Some(r)) if l == r => {}
            _ => return false,
        }
    }
}

/// Does `rule` match every topic that `filter` matches?
pub fn covers(rule: &str, filter: &str) -> bool {
    if rule.starts_with(['+', '#']) && !filter.starts_with(['+', '#']) && filter.starts_with('$') {
        return false;
    }
    let mut r = rule.split('/');
    let mut f = filter.split('/');
    loop {
        match (r.next(), f.next()) {
            (Some("#"), _) => return true,
            (None, None) => return true,
            (Some("+"), Some(l)) if l != "#" => {}
            (Some(a), Some(b)) if a == b && b != "+" && b != "#" => {}
            _ => return false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Durability::*;

    fn rules() -> DurabilityRules {
        DurabilityRules {
            default: Flush,
            rules: vec![("payments/#".into(), Sync), ("meters/#".into(), Volatile)],
        }
    }

    #[test]
    fn first_matching_rule_decides_a_topic() {
        let r = rules();
        assert_eq!(r.for_topic("payments/eu/1"), Sync);
        assert_eq!(r.for_topic("meters/kitchen"), Volatile);
        assert_eq!(r.for_topic("other"), Flush);
        assert_eq!(r.for_topic("payments"), Sync);
    }

    #[test]
    fn a_filter_takes_the_strongest_class_it_can_receive() {
        let r = rules();
        assert_eq!(r.for_filter("payments/+"), Sync);
        assert_eq!(r.for_filter("meters/#"), Volatile);
        assert_eq!(r.for_filter("meters/a/b"), Volatile);
        assert_eq!(r.for_filter("#"), Sync);
        assert_eq!(r.for_filter("+/kitchen"), Sync);
        assert_eq!(r.for_filter("other/#"), Flush);
    }

    #[test]
    fn overlap_and_cover() {
        assert!(overlaps("a/+", "a/b"));
        assert!(overlaps("a/#", "a"));
        assert!(overlaps("+/b", "a/+"));
        assert!(!overlaps("a/b", "a/c"));
        assert!(!overlaps("a/b", "a/b/c"));
        assert!(!overlaps("#", "$SYS/x"));
        assert!(covers("a/#", "a/+/c"));
        assert!(covers("a/+", "a/b"));
        assert!(!covers("a/+", "a/#"));
        assert!(!covers("a/b", "a/+"));
        assert!(covers("#", "x/y"));
        assert!(!covers("#", "$SYS/y"));
    }
}
