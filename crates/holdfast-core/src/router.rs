//! Turning the subscriptions that match a topic into one delivery per receiving session.

use holdfast_proto::QoS;

use crate::session::Subscription;
use crate::topic::{Matches, SharedGroup};
use crate::{ClientId, Message};

/// A subscription value in the topic tree that can say what was subscribed.
pub trait SubscriberEntry {
    fn subscription(&self) -> &Subscription;
}

/// One copy of a message for one session.
#[derive(Debug)]
pub struct Target<'a, V> {
    pub client: &'a ClientId,
    pub value: &'a V,
    pub qos: QoS,
    pub retain: bool,
    pub subscription_ids: Vec<u32>,
}

/// Plan the deliveries of `msg` from the tree's matches.
///
/// Overlapping non-shared subscriptions of one session yield a single copy at the highest granted QoS
/// carrying every matching Subscription Identifier [MQTT-3.3.4-2] [MQTT-3.3.4-3] (3.1.1: one copy at the
/// maximum QoS). No Local subscriptions skip the publisher's own messages [MQTT-3.8.3-3]. Each shared
/// group gets the message once [MQTT-4.8.2-?], to a member `eligible` accepts (a connected one), or to
/// any member so it is queued when none is connected.
pub fn plan<'a, V: SubscriberEntry>(
    matches: &mut Matches<'a, V>,
    msg: &Message,
    mut eligible: impl FnMut(&ClientId, &V) -> bool,
    out: &mut Vec<Target<'a, V>>,
) {
    let publisher = msg.publisher.as_deref();
    // A client matching through several filters gets one copy [MQTT-3.3.4-2]: sorted, its matches
    // are consecutive. One filter has each client once, and the common case skips the sort.
    let merge = matches.direct_filters > 1;
    if merge {
        matches.direct.sort_unstable_by(|a, b| a.0.cmp(b.0));
    }
    for &(client, value) in &matches.direct {
        let sub = value.subscription();
        if sub.options.no_local && publisher == Some(&**client) {
            continue;
        }
        let qos = msg.qos.min(sub.options.qos);
        let retain = msg.retain && sub.options.retain_as_published;
        match out.last_mut() {
            Some(last) if merge && last.client == client => {
                last.qos = last.qos.max(qos);
                last.retain |= retain;
                last.subscription_ids.extend(sub.id);
            }
            _ => out.push(Target {
                client,
                value,
                qos,
                retain,
                subscription_ids: sub.id.into_iter().collect(),
            }),
        }
    }
    for group in &matches.shared {
        let group: &'a SharedGroup<V> = group;
        let picked = group
            .pick(&mut eligible)
            .or_else(|| group.pick(|_, _| true));
        if let Some((client, value)) = picked {
            let sub = value.subscription();
            out.push(Target {
                client,
                value,
                qos: msg.qos.min(sub.options.qos),
                retain: msg.retain && sub.options.retain_as_published,
                subscription_ids: sub.id.into_iter().collect(),
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use holdfast_proto::{Publish, QoS, SubscriptionOptions};

    use super::*;
    use crate::topic::SubscriptionTree;

    struct Entry(Subscription);
    impl SubscriberEntry for Entry {
        fn subscription(&self) -> &Subscription {
            &self.0
        }
    }

    fn sub(qos: QoS, id: Option<u32>) -> Entry {
        Entry(Subscription {
            options: SubscriptionOptions {
                qos,
                ..Default::default()
            },
            id,
        })
    }

    fn message(topic: &str) -> Message {
        let p = Publish {
            dup: false,
            qos: QoS::ExactlyOnce,
            retain: false,
            topic: topic.into(),
            packet_id: Some(1),
            payload: Default::default(),
            properties: Default::default(),
        };
        Message::from_publish(p, topic.into(), None, 0, &crate::CoreConfig::default())
    }

    /// (client, qos, subscription ids) of each planned delivery, in client and id order.
    fn planned(tree: &SubscriptionTree<Entry>, topic: &str) -> Vec<(String, QoS, Vec<u32>)> {
        let mut matches = crate::topic::Matches::new();
        tree.matches(topic, &mut matches);
        let mut out = Vec::new();
        plan(&mut matches, &message(topic), |_, _| true, &mut out);
        let mut got: Vec<_> = out
            .into_iter()
            .map(|mut t| {
                t.subscription_ids.sort();
                (t.client.to_string(), t.qos, t.subscription_ids)
            })
            .collect();
        got.sort();
        got
    }

    #[test] // [MQTT-3.3.4-2] [MQTT-3.3.4-3]
    fn overlapping_filters_give_one_copy_at_the_highest_qos_with_every_id() {
        let mut tree = SubscriptionTree::new();
        let (a, b): (ClientId, ClientId) = (Arc::from("a"), Arc::from("b"));
        tree.insert("s/+", None, &a, sub(QoS::AtMostOnce, Some(1)));
        tree.insert("s/#", None, &a, sub(QoS::ExactlyOnce, Some(2)));
        tree.insert("s/x", None, &b, sub(QoS::AtLeastOnce, None));
        tree.insert("s/#", None, &b, sub(QoS::AtMostOnce, Some(7)));
        assert_eq!(
            planned(&tree, "s/x"),
            [
                ("a".into(), QoS::ExactlyOnce, vec![1, 2]),
                ("b".into(), QoS::AtLeastOnce, vec![7]),
            ]
        );
    }

    #[test]
    fn one_filter_gives_each_subscriber_one_copy() {
        let mut tree = SubscriptionTree::new();
        let clients: Vec<ClientId> = (0..50).map(|i| Arc::from(format!("c{i:02}"))).collect();
        for c in &clients {
            tree.insert("t/1", None, c, sub(QoS::AtLeastOnce, None));
        }
        let got = planned(&tree, "t/1");
        assert_eq!(got.len(), 50);
        assert!(got.iter().zip(&clients).all(|((c, q, ids), want)| {
            c.as_str() == &**want && *q == QoS::AtLeastOnce && ids.is_empty()
        }));
    }
}
