//! MQTT 5 topic aliases (section 3.3.2.3.4), one table per direction and per connection: a new
//! connection starts with both empty [MQTT-3.3.2-7].

use std::collections::{BTreeMap, HashMap};

use holdfast_proto::{Publish, ReasonCode};

/// The aliases this client gives the topics it publishes to. Least recently used first out: a
/// new topic takes a free alias, or the one used longest ago when all are taken.
#[derive(Debug, Default)]
pub(crate) struct OutAliases {
    max: u16,
    /// topic -> (alias, last use)
    by_topic: HashMap<String, (u16, u64)>,
    /// alias -> topic
    by_alias: HashMap<u16, String>,
    /// last use -> topic, oldest first
    lru: BTreeMap<u64, String>,
    tick: u64,
}

/// How a PUBLISH goes out: decided by [`OutAliases::plan`], recorded by [`OutAliases::commit`]
/// only once the packet is really written, so the table always matches what the server saw.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Plan {
    /// No alias: the full topic.
    Plain,
    /// Topic and alias: sets (or moves) the mapping on the server.
    Set(u16),
    /// Empty topic and alias: the mapping is known to the server.
    Use(u16),
}

impl OutAliases {
    /// `max`: the smaller of the server's Topic Alias Maximum and ours; 0 sends none
    /// [MQTT-3.2.2-18].
    pub fn new(max: u16) -> OutAliases {
        OutAliases {
            max,
            ..OutAliases::default()
        }
    }

    pub fn plan(&self, topic: &str) -> Plan {
        if self.max == 0 || topic.is_empty() {
            return Plan::Plain;
        }
        if let Some(&(alias, _)) = self.by_topic.get(topic) {
            return Plan::Use(alias);
        }
        if self.by_topic.len() < usize::from(self.max) {
            // Aliases are handed out 1, 2, ... and never freed, so the next is len + 1.
            return Plan::Set(self.by_topic.len() as u16 + 1);
        }
        match self.lru.first_key_value() {
            Some((_, oldest)) => Plan::Set(self.by_topic[oldest].0),
            None => Plan::Plain,
        }
    }

    /// Rewrites `p` as `plan` says.
    pub fn apply(plan: Plan, p: &mut Publish) {
        match plan {
            // Written only when set: writing a property may allocate the property set.
            Plan::Plain if p.properties.topic_alias.is_some() => p.properties.topic_alias = None,
            Plan::Plain => {}
            Plan::Set(a) => p.properties.topic_alias = Some(a),
            Plan::Use(a) => {
                p.topic = holdfast_proto::empty_topic();
                p.properties.topic_alias = Some(a);
            }
        }
    }

    /// `plan` for `topic` was written to the connection.
    pub fn commit(&mut self, topic: &str, plan: Plan) {
        let alias = match plan {
            Plan::Plain => return,
            Plan::Set(a) | Plan::Use(a) => a,
        };
        self.tick += 1;
        if let Plan::Set(_) = plan {
            // The alias may have belonged to another topic: that topic loses it.
            if let Some(old) = self.by_alias.insert(alias, topic.to_string()) {
                if let Some((_, used)) = self.by_topic.remove(&old) {
                    self.lru.remove(&used);
                }
            }
        }
        if let Some((_, used)) = self.by_topic.get(topic) {
            self.lru.remove(used);
        }
        self.by_topic.insert(topic.to_string(), (alias, self.tick));
        self.lru.insert(self.tick, topic.to_string());
    }
}

/// The aliases the server set for topics it sends us.
#[derive(Debug, Default)]
pub(crate) struct InAliases {
    max: u16,
    topics: HashMap<u16, std::sync::Arc<str>>,
}

impl InAliases {
    /// `max`: the Topic Alias Maximum this client announced in CONNECT.
    pub fn new(max: u16) -> InAliases {
        InAliases {
            max,
            topics: HashMap::new(),
        }
    }

    /// Gives `p` its full topic, recording a new mapping. Errors carry the DISCONNECT reason.
    pub fn resolve(&mut self, p: &mut Publish) -> Result<(), (ReasonCode, String)> {
        let Some(alias) = p.properties.topic_alias else {
            return Ok(());
        };
        p.properties.topic_alias = None;
        // [MQTT-3.3.2-10] every alias from 1 to our maximum is accepted; others are invalid
        // (0x94 Topic Alias invalid, the codec already refuses alias 0 as a protocol error).
        if alias == 0 || alias > self.max {
            return Err((
                ReasonCode::TOPIC_ALIAS_INVALID,
                format!("topic alias {alias} outside 1..={}", self.max),
            ));
        }
        if p.topic.is_empty() {
            match self.topics.get(&alias) {
                Some(t) => p.topic.clone_from(t),
                None => {
                    return Err((
                        ReasonCode::PROTOCOL_ERROR,
                        format!("topic alias {alias} used before it was set"),
                    ))
                }
            }
        } else {
            self.topics.insert(alias, p.topic.clone());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use holdfast_proto::QoS;

    fn publish(topic: &str, alias: Option<u16>) -> Publish {
        let mut p = Publish {
            dup: false,
            qos: QoS::AtMostOnce,
            retain: false,
            topic: topic.into(),
            packet_id: None,
            payload: Default::default(),
            properties: Default::default(),
        };
        p.properties.topic_alias = alias;
        p
    }

    fn send(a: &mut OutAliases, topic: &str) -> (String, Option<u16>) {
        let mut p = publish(topic, None);
        let plan = a.plan(topic);
        OutAliases::apply(plan, &mut p);
        a.commit(topic, plan);
        (p.topic.to_string(), p.properties.topic_alias)
    }

    #[test] // Topic and alias the first time, the alias alone afterwards.
    fn outbound_sets_then_uses() {
        let mut a = OutAliases::new(2);
        assert_eq!(send(&mut a, "a/b"), ("a/b".into(), Some(1)));
        assert_eq!(send(&mut a, "a/b"), ("".into(), Some(1)));
        assert_eq!(send(&mut a, "c"), ("c".into(), Some(2)));
        assert_eq!(send(&mut a, "a/b"), ("".into(), Some(1)));
        assert_eq!(send(&mut a, "c"), ("".into(), Some(2)));
    }

    #[test] // [MQTT-3.3.2-9] never above the maximum: the least recently used alias moves.
    fn outbound_reuses_least_recently_used() {
        let mut a = OutAliases::new(2);
        send(&mut a, "x");
        send(&mut a, "y");
        send(&mut a, "x");
        // "y" is the oldest: "z" takes its alias 2, and "y" must be sent in full again.
        assert_eq!(send(&mut a, "z"), ("z".into(), Some(2)));
        assert_eq!(send(&mut a, "x"), ("".into(), Some(1)));
        assert_eq!(send(&mut a, "y"), ("y".into(), Some(2)));
        assert_eq!(send(&mut a, "z"), ("z".into(), Some(1)));
        for _ in 0..100 {
            for t in ["p", "q", "r"] {
                let (_, alias) = send(&mut a, t);
                assert!(matches!(alias, Some(1..=2)), "{alias:?}");
            }
        }
    }

    #[test] // [MQTT-3.2.2-18] no aliases when the server allows none.
    fn outbound_off() {
        let mut a = OutAliases::new(0);
        assert_eq!(send(&mut a, "a"), ("a".into(), None));
        assert_eq!(send(&mut a, "a"), ("a".into(), None));
    }

    #[test] // A plan not committed (the write failed) leaves the table as it was.
    fn outbound_plan_without_commit_changes_nothing() {
        let a = OutAliases::new(4);
        assert_eq!(a.plan("t"), Plan::Set(1));
        assert_eq!(a.plan("t"), Plan::Set(1));
    }

    #[test] // [MQTT-3.3.2-10] aliases 1..=max are accepted and resolved; the alias is removed.
    fn inbound_resolves() {
        let mut a = InAliases::new(3);
        let mut p = publish("s/1", Some(3));
        a.resolve(&mut p).unwrap();
        assert_eq!((&*p.topic, p.properties.topic_alias), ("s/1", None));
        let mut p = publish("", Some(3));
        a.resolve(&mut p).unwrap();
        assert_eq!(&*p.topic, "s/1");
        // A new topic for the same alias replaces the mapping.
        a.resolve(&mut publish("s/2", Some(3))).unwrap();
        let mut p = publish("", Some(3));
        a.resolve(&mut p).unwrap();
        assert_eq!(&*p.topic, "s/2");
    }

    #[test] // Above our maximum: 0x94; unknown alias with an empty topic: 0x82.
    fn inbound_errors() {
        let mut a = InAliases::new(2);
        let e = a.resolve(&mut publish("t", Some(3))).unwrap_err();
        assert_eq!(e.0, ReasonCode::TOPIC_ALIAS_INVALID);
        let e = a.resolve(&mut publish("", Some(2))).unwrap_err();
        assert_eq!(e.0, ReasonCode::PROTOCOL_ERROR);
        let mut off = InAliases::new(0);
        let e = off.resolve(&mut publish("t", Some(1))).unwrap_err();
        assert_eq!(e.0, ReasonCode::TOPIC_ALIAS_INVALID);
    }
}
