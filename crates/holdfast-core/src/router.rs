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
    matches.direct.sort_unstable_by(|a, b| a.0.cmp(b.0));
    for &(client, value) in &matches.direct {
        let sub = value.subscription();
        if sub.options.no_local && publisher == Some(&**client) {
            continue;
        }
        let qos = msg.qos.min(sub.options.qos);
        let retain = msg.retain && sub.options.retain_as_published;
        match out.last_mut() {
            Some(last) if last.client == client => {
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
