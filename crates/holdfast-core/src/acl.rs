//! Access control decisions: may this client publish to a topic, may it subscribe to a filter.
//!
//! An [`Acl`] is an ordered list of [`Rule`]s. For a request, the rules are tried in order and the
//! **first rule that applies decides**; when none applies, the request is denied. A rule applies when
//! its subject matches the client (a user name, a client id, anonymous clients, or everyone), its
//! access covers the request (publish, subscribe, or both) and its topic filter matches:
//!
//! - publish to topic `t`: the rule's filter matches `t` (MQTT wildcard matching);
//! - subscribe to filter `f`, allow rule: the rule's filter covers every topic `f` could match
//!   (`a/#` covers `a/b/+`; `a/+` does not cover `a/#`);
//! - subscribe to filter `f`, deny rule: the rule's filter and `f` could match a common topic
//!   (`a/secret` denies a subscription to `a/#`), so a broad subscription never slips past a deny.
//!
//! `%u` in a rule's filter stands for the client's user name and `%c` for its client id. A rule whose
//! filter needs a user name does not apply to a client without one, and an identity containing `/`,
//! `+` or `#` never substitutes (it could otherwise widen the rule).
//!
//! Topics starting with `$` are not matched by a leading wildcard [MQTT-4.7.2-1], so `$SYS/#` is
//! readable only through a rule that names `$SYS` explicitly.

use holdfast_proto::topic::parse_shared;

/// Who a rule is for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Subject {
    /// Every client, with or without a user name.
    All,
    /// Clients that connected without a user name.
    Anonymous,
    /// Clients authenticated as this user name.
    User(String),
    /// The client with this client id.
    ClientId(String),
}

/// What a rule governs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    Publish,
    Subscribe,
    Both,
}

impl Access {
    fn covers(self, request: Access) -> bool {
        self == Access::Both || self == request
    }
}

/// One ACL line: for `subject`, `allow` (or deny) `access` on `filter`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    pub subject: Subject,
    pub access: Access,
    /// A topic filter, possibly with `%u` and `%c`.
    pub filter: String,
    pub allow: bool,
}

/// The ACL in force, replaceable while sessions use it: a reload (SIGHUP) applies to the next
/// PUBLISH or SUBSCRIBE of every session, connected or not.
#[derive(Debug, Default)]
pub struct SharedAcl(std::sync::RwLock<std::sync::Arc<Acl>>);

impl SharedAcl {
    pub fn new(acl: Acl) -> SharedAcl {
        SharedAcl(std::sync::RwLock::new(std::sync::Arc::new(acl)))
    }

    /// The rules now in force.
    pub fn current(&self) -> std::sync::Arc<Acl> {
        // A panic while replacing cannot leave a half-written Arc: use what is there.
        self.0.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub fn replace(&self, acl: Acl) {
        *self.0.write().unwrap_or_else(|e| e.into_inner()) = std::sync::Arc::new(acl);
    }
}

impl PartialEq for SharedAcl {
    fn eq(&self, other: &SharedAcl) -> bool {
        self.current() == other.current()
    }
}

impl Eq for SharedAcl {}

/// The identity a decision is made for.
#[derive(Debug, Clone, Copy)]
pub struct Identity<'a> {
    pub username: Option<&'a str>,
    pub client_id: &'a str,
}

/// Ordered access rules; first applicable rule wins, default deny.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Acl {
    pub rules: Vec<Rule>,
}

impl Acl {
    pub fn new(rules: Vec<Rule>) -> Acl {
        Acl { rules }
    }

    /// May `who` publish to `topic`?
    pub fn may_publish(&self, who: Identity<'_>, topic: &str) -> bool {
        self.decide(who, Access::Publish, |rule_filter, _allow| {
            holdfast_proto::topic::matches(rule_filter, topic)
        })
    }

    /// May `who` subscribe to `filter` (a `$share/group/` prefix is looked through)?
    pub fn may_subscribe(&self, who: Identity<'_>, filter: &str) -> bool {
        let plain = match parse_shared(filter) {
            Some(Ok((_, inner))) => inner,
            Some(Err(_)) => return false,
            None => filter,
        };
        self.decide(who, Access::Subscribe, |rule_filter, allow| {
            if allow {
                covers(rule_filter, plain)
            } else {
                overlaps(rule_filter, plain)
            }
        })
    }

    fn decide(
        &self,
        who: Identity<'_>,
        access: Access,
        applies: impl Fn(&str, bool) -> bool,
    ) -> bool {
        for rule in &self.rules {
            if !rule.access.covers(access) || !subject_matches(&rule.subject, who) {
                continue;
            }
            let Some(filter) = substitute(&rule.filter, who) else {
                continue;
            };
            if applies(&filter, rule.allow) {
                return rule.allow;
            }
        }
        false
    }
}

fn subject_matches(subject: &Subject, who: Identity<'_>) -> bool {
    match subject {
        Subject::All => true,
        Subject::Anonymous => who.username.is_none(),
        Subject::User(u) => who.username == Some(u.as_str()),
        Subject::ClientId(c) => who.client_id == c,
    }
}

/// The rule's filter with `%u` and `%c` replaced; `None` when an identity it needs is missing or
/// unsafe to substitute.
fn substitute(filter: &str, who: Identity<'_>) -> Option<String> {
    if !filter.contains('%') {
        return Some(filter.to_string());
    }
    let safe = |s: &str| !s.is_empty() && !s.contains(['/', '+', '#']);
    let mut out = filter.to_string();
    if out.contains("%u") {
        let user = who.username.filter(|u| safe(u))?;
        out = out.replace("%u", user);
    }
    if out.contains("%c") {
        if !safe(who.client_id) {
            return None;
        }
        out = out.replace("%c", who.client_id);
    }
    Some(out)
}

/// Whether a first level is a `$` topic level, which leading wildcards never match.
fn dollar(level: Option<&str>) -> bool {
    level.is_some_and(|l| l.starts_with('$'))
}

/// Does `rule` match every topic `sub` can match?
pub fn covers(rule: &str, sub: &str) -> bool {
    let mut r = rule.split('/');
    let mut s = sub.split('/');
    let mut first = true;
    loop {
        match (r.next(), s.next()) {
            (Some("#"), sl) => return !(first && (dollar(sl) || sl.is_some_and(is_wild))),
            (Some("+"), Some(sl)) => {
                if sl == "#" || (first && (sl.starts_with('$') || is_wild(sl))) {
                    return false;
                }
            }
            (Some(rl), Some(sl)) => {
                if rl != sl {
                    return false;
                }
            }
            (None, None) => return true,
            _ => return false,
        }
        first = false;
    }
}

fn is_wild(level: &str) -> bool {
    level == "+" || level == "#"
}

/// Could `a` and `b` both match some topic?
pub fn overlaps(a: &str, b: &str) -> bool {
    let mut x = a.split('/');
    let mut y = b.split('/');
    let mut first = true;
    loop {
        match (x.next(), y.next()) {
            (Some("#"), other) | (other, Some("#")) => {
                // `#` also matches the parent level; a leading wildcard never matches `$` topics.
                return !(first && dollar(other));
            }
            (Some(p), Some(q)) => {
                let wild_p = p == "+";
                let wild_q = q == "+";
                if first && ((wild_p && q.starts_with('$')) || (wild_q && p.starts_with('$'))) {
                    return false;
                }
                if !wild_p && !wild_q && p != q {
                    return false;
                }
            }
            (None, None) => return true,
            _ => return false,
        }
        first = false;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(subject: Subject, access: Access, filter: &str, allow: bool) -> Rule {
        Rule {
            subject,
            access,
            filter: filter.into(),
            allow,
        }
    }

    fn alice() -> Identity<'static> {
        Identity {
            username: Some("alice"),
            client_id: "c1",
        }
    }

    #[test]
    fn covers_is_subset() {
        assert!(covers("a/#", "a/b/+"));
        assert!(covers("a/#", "a"));
        assert!(covers("a/+", "a/b"));
        assert!(!covers("a/+", "a/#"));
        assert!(!covers("a/b", "a/+"));
        assert!(covers("#", "x/y"));
        assert!(!covers("#", "$SYS/#"));
        assert!(!covers("+/#", "$SYS/x"));
        assert!(covers("$SYS/#", "$SYS/broker/+"));
    }

    #[test]
    fn overlaps_is_intersection() {
        assert!(overlaps("a/secret", "a/#"));
        assert!(overlaps("a/+", "+/b"));
        assert!(!overlaps("a/b", "a/c"));
        assert!(overlaps("a/#", "a"));
        assert!(!overlaps("#", "$SYS/x"));
        assert!(!overlaps("a/b/c", "a/+"));
    }

    #[test]
    fn first_applicable_rule_decides_default_deny() {
        let acl = Acl::new(vec![
            rule(Subject::All, Access::Both, "a/secret", false),
            rule(Subject::User("alice".into()), Access::Both, "a/#", true),
            rule(Subject::All, Access::Subscribe, "public/#", true),
        ]);
        assert!(acl.may_publish(alice(), "a/b"));
        assert!(!acl.may_publish(alice(), "a/secret"));
        assert!(!acl.may_subscribe(alice(), "a/#"), "overlaps the deny");
        assert!(acl.may_subscribe(alice(), "a/b/+"));
        assert!(!acl.may_publish(alice(), "public/x"), "subscribe-only rule");
        assert!(acl.may_subscribe(alice(), "public/x"));
        assert!(!acl.may_publish(alice(), "other"), "default deny");
        let bob = Identity {
            username: Some("bob"),
            client_id: "c2",
        };
        assert!(!acl.may_publish(bob, "a/b"));
    }

    #[test]
    fn substitution_of_user_and_client_id() {
        let acl = Acl::new(vec![
            rule(Subject::All, Access::Both, "users/%u/#", true),
            rule(Subject::All, Access::Publish, "clients/%c", true),
        ]);
        assert!(acl.may_publish(alice(), "users/alice/x"));
        assert!(!acl.may_publish(alice(), "users/bob/x"));
        assert!(acl.may_publish(alice(), "clients/c1"));
        let anon = Identity {
            username: None,
            client_id: "c+",
        };
        assert!(!acl.may_publish(anon, "users//x"));
        assert!(
            !acl.may_publish(anon, "clients/c+"),
            "wildcard ids never substitute"
        );
    }

    #[test]
    fn anonymous_and_client_id_subjects() {
        let acl = Acl::new(vec![
            rule(Subject::Anonymous, Access::Subscribe, "open/#", true),
            rule(
                Subject::ClientId("c1".into()),
                Access::Publish,
                "dev/1",
                true,
            ),
        ]);
        let anon = Identity {
            username: None,
            client_id: "x",
        };
        assert!(acl.may_subscribe(anon, "open/a"));
        assert!(!acl.may_subscribe(alice(), "open/a"));
        assert!(acl.may_publish(alice(), "dev/1"));
        assert!(!acl.may_publish(anon, "dev/1"));
    }

    #[test]
    fn sys_needs_an_explicit_rule_and_shared_is_looked_through() {
        let acl = Acl::new(vec![
            rule(
                Subject::User("admin".into()),
                Access::Subscribe,
                "$SYS/#",
                true,
            ),
            rule(Subject::All, Access::Subscribe, "#", true),
        ]);
        assert!(!acl.may_subscribe(alice(), "$SYS/#"));
        assert!(acl.may_subscribe(alice(), "x/#"));
        assert!(acl.may_subscribe(alice(), "$share/g/x/#"));
        let admin = Identity {
            username: Some("admin"),
            client_id: "a",
        };
        assert!(acl.may_subscribe(admin, "$SYS/broker/uptime"));
    }
}
