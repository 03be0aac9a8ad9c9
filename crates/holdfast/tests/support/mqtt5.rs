//! An MQTT 5 test client: `rumqttc::v5::AsyncClient` with its event loop polled by a task that
//! forwards every event to the test. It never reconnects.

use std::collections::VecDeque;
use std::time::Duration;

use rumqttc::v5::mqttbytes::v5::{
    ConnAck, ConnectProperties, Filter, LastWill, LastWillProperties, Packet, Publish,
    PublishProperties, SubscribeProperties, SubscribeReasonCode,
};
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::{AsyncClient, Event, MqttOptions};
use rumqttc::Outgoing;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::{timeout_at, Instant};

use super::{QUIET, TIMEOUT};

/// Options for client `id` (keep alive 30 s, Clean Start 1, no session expiry).
pub fn options(port: u16, id: &str) -> MqttOptions {
    let mut o = MqttOptions::new(id, "127.0.0.1", port);
    o.set_keep_alive(Duration::from_secs(30));
    o
}

fn connect_props(o: &MqttOptions) -> ConnectProperties {
    o.connect_properties().unwrap_or_default()
}

/// Sets the Session Expiry Interval (seconds) of the CONNECT.
pub fn set_session_expiry(o: &mut MqttOptions, secs: u32) {
    let mut p = connect_props(o);
    p.session_expiry_interval = Some(secs);
    o.set_connect_properties(p);
}

/// Options that resume a session (Clean Start 0) and keep it `expiry` seconds after a close.
pub fn persistent(port: u16, id: &str, expiry: u32) -> MqttOptions {
    let mut o = options(port, id);
    o.set_clean_start(false);
    set_session_expiry(&mut o, expiry);
    o
}

pub fn set_will(
    o: &mut MqttOptions,
    topic: &str,
    payload: &str,
    qos: QoS,
    props: Option<LastWillProperties>,
) {
    o.set_last_will(LastWill::new(
        topic,
        payload.as_bytes().to_vec(),
        qos,
        false,
        props,
    ));
}

pub fn will_delay(secs: u32) -> LastWillProperties {
    LastWillProperties {
        delay_interval: Some(secs),
        payload_format_indicator: None,
        message_expiry_interval: None,
        content_type: None,
        response_topic: None,
        correlation_data: None,
        user_properties: vec![],
    }
}

pub fn props() -> PublishProperties {
    PublishProperties::default()
}

pub struct Client5 {
    pub client: AsyncClient,
    pub connack: ConnAck,
    id: String,
    events: mpsc::UnboundedReceiver<Result<Event, String>>,
    task: JoinHandle<()>,
    buffered: VecDeque<Publish>,
    closed: Option<String>,
}

impl Client5 {
    pub async fn connect(opts: MqttOptions) -> Client5 {
        let id = opts.client_id();
        match Client5::try_connect(opts).await {
            Ok(c) => c,
            Err(e) => panic!("client {id:?}: connect failed: {e}"),
        }
    }

    pub async fn try_connect(opts: MqttOptions) -> Result<Client5, String> {
        let id = opts.client_id();
        let (client, mut eventloop) = AsyncClient::new(opts, 1000);
        let (tx, mut events) = mpsc::unbounded_channel();
        let task = tokio::spawn(async move {
            loop {
                match eventloop.poll().await {
                    Ok(ev) => {
                        if tx.send(Ok(ev)).is_err() {
                            break;
                        }
                    }
                    Err(e) => {
                        let _ = tx.send(Err(format!("{e} ({e:?})")));
                        break;
                    }
                }
            }
        });
        let deadline = Instant::now() + TIMEOUT;
        let mut buffered = VecDeque::new();
        loop {
            match timeout_at(deadline, events.recv()).await {
                Ok(Some(Ok(Event::Incoming(Packet::ConnAck(connack))))) => {
                    return Ok(Client5 {
                        client,
                        connack,
                        id,
                        events,
                        task,
                        buffered,
                        closed: None,
                    })
                }
                Ok(Some(Ok(Event::Incoming(Packet::Publish(p))))) => buffered.push_back(p),
                Ok(Some(Ok(_))) => {}
                Ok(Some(Err(e))) => {
                    task.abort();
                    return Err(e);
                }
                Ok(None) => return Err("event loop ended before CONNACK".into()),
                Err(_) => {
                    task.abort();
                    return Err(format!("no CONNACK within {TIMEOUT:?}"));
                }
            }
        }
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    pub fn session_present(&self) -> bool {
        self.connack.session_present
    }

    async fn next_event(&mut self, deadline: Instant) -> Result<Option<Event>, String> {
        if let Some(reason) = &self.closed {
            return Err(reason.clone());
        }
        match timeout_at(deadline, self.events.recv()).await {
            Ok(Some(Ok(ev))) => Ok(Some(ev)),
            Ok(Some(Err(e))) => {
                self.closed = Some(e.clone());
                Err(e)
            }
            Ok(None) => {
                self.closed = Some("event loop ended".into());
                Err("event loop ended".into())
            }
            Err(_) => Ok(None),
        }
    }

    async fn wait_for<T>(&mut self, what: &str, mut pred: impl FnMut(&Event) -> Option<T>) -> T {
        let deadline = Instant::now() + TIMEOUT;
        loop {
            match self.next_event(deadline).await {
                Ok(Some(ev)) => {
                    if let Some(t) = pred(&ev) {
                        return t;
                    }
                    if let Event::Incoming(Packet::Publish(p)) = ev {
                        self.buffered.push_back(p);
                    }
                }
                Ok(None) => panic!("client {:?}: no {what} within {TIMEOUT:?}", self.id),
                Err(e) => panic!(
                    "client {:?}: connection closed while waiting for {what}: {e}",
                    self.id
                ),
            }
        }
    }

    /// Subscribes with full options (and an optional Subscription Identifier); returns the
    /// SUBACK reason codes.
    pub async fn subscribe_with(
        &mut self,
        filter: Filter,
        id: Option<usize>,
    ) -> Vec<SubscribeReasonCode> {
        let res = match id {
            Some(id) => {
                let props = SubscribeProperties {
                    id: Some(id),
                    user_properties: vec![],
                };
                self.client
                    .subscribe_many_with_properties(vec![filter], props)
                    .await
            }
            None => self.client.subscribe_many(vec![filter]).await,
        };
        res.expect("queue SUBSCRIBE");
        self.wait_for("SUBACK", |ev| match ev {
            Event::Incoming(Packet::SubAck(ack)) => Some(ack.return_codes.clone()),
            _ => None,
        })
        .await
    }

    pub async fn subscribe(&mut self, filter: &str, qos: QoS) -> Vec<SubscribeReasonCode> {
        self.subscribe_with(Filter::new(filter, qos), None).await
    }

    /// Subscribes and asserts the server granted exactly `qos`.
    pub async fn subscribe_ok(&mut self, filter: &str, qos: QoS) {
        let codes = self.subscribe(filter, qos).await;
        assert_eq!(
            codes,
            vec![SubscribeReasonCode::Success(qos)],
            "SUBACK for {filter:?}"
        );
    }

    pub async fn unsubscribe(&mut self, filter: &str) {
        self.client
            .unsubscribe(filter)
            .await
            .expect("queue UNSUBSCRIBE");
        self.wait_for("UNSUBACK", |ev| {
            matches!(ev, Event::Incoming(Packet::UnsubAck(_))).then_some(())
        })
        .await
    }

    pub async fn publish(
        &mut self,
        topic: &str,
        qos: QoS,
        retain: bool,
        payload: impl Into<Vec<u8>>,
    ) {
        self.client
            .publish(topic, qos, retain, payload.into())
            .await
            .expect("queue PUBLISH");
        self.wait_publish_done(qos).await;
    }

    pub async fn publish_with(
        &mut self,
        topic: &str,
        qos: QoS,
        retain: bool,
        payload: impl Into<Vec<u8>>,
        props: PublishProperties,
    ) {
        self.client
            .publish_with_properties(topic, qos, retain, payload.into(), props)
            .await
            .expect("queue PUBLISH");
        self.wait_publish_done(qos).await;
    }

    pub async fn wait_publish_done(&mut self, qos: QoS) {
        match qos {
            QoS::AtMostOnce => {
                self.wait_for("outgoing PUBLISH", |ev| {
                    matches!(ev, Event::Outgoing(Outgoing::Publish(_))).then_some(())
                })
                .await
            }
            QoS::AtLeastOnce => {
                self.wait_for("PUBACK", |ev| {
                    matches!(ev, Event::Incoming(Packet::PubAck(_))).then_some(())
                })
                .await
            }
            QoS::ExactlyOnce => {
                self.wait_for("PUBCOMP", |ev| {
                    matches!(ev, Event::Incoming(Packet::PubComp(_))).then_some(())
                })
                .await
            }
        }
    }

    pub async fn recv(&mut self) -> Publish {
        match self.recv_within(TIMEOUT).await {
            Some(p) => p,
            None => panic!("client {:?}: no PUBLISH within {TIMEOUT:?}", self.id),
        }
    }

    pub async fn recv_within(&mut self, d: Duration) -> Option<Publish> {
        if let Some(p) = self.buffered.pop_front() {
            return Some(p);
        }
        let deadline = Instant::now() + d;
        loop {
            match self.next_event(deadline).await {
                Ok(Some(Event::Incoming(Packet::Publish(p)))) => return Some(p),
                Ok(Some(_)) => {}
                Ok(None) => return None,
                Err(e) => panic!(
                    "client {:?}: connection closed while waiting for PUBLISH: {e}",
                    self.id
                ),
            }
        }
    }

    /// Receives PUBLISHes until one on `topic` arrives; returns the ones before it.
    pub async fn recv_until_topic(&mut self, topic: &str) -> Vec<Publish> {
        let mut before = Vec::new();
        loop {
            let p = self.recv().await;
            if p.topic == topic {
                return before;
            }
            before.push(p);
        }
    }

    pub async fn expect_nothing(&mut self) {
        self.expect_nothing_for(QUIET).await
    }

    pub async fn expect_nothing_for(&mut self, d: Duration) {
        if let Some(p) = self.recv_within(d).await {
            panic!("client {:?}: unexpected PUBLISH {p:?}", self.id);
        }
    }

    pub async fn closed_within(&mut self, d: Duration) -> Option<String> {
        let deadline = Instant::now() + d;
        loop {
            match self.next_event(deadline).await {
                Ok(Some(Event::Incoming(Packet::Publish(p)))) => self.buffered.push_back(p),
                Ok(Some(_)) => {}
                Ok(None) => return None,
                Err(e) => return Some(e),
            }
        }
    }

    /// Normal disconnect (reason 0x00): sends DISCONNECT, waits (bounded) for the close.
    pub async fn disconnect(mut self) {
        self.client.disconnect().await.expect("queue DISCONNECT");
        self.wait_for("outgoing DISCONNECT", |ev| {
            matches!(ev, Event::Outgoing(Outgoing::Disconnect)).then_some(())
        })
        .await;
        let _ = self.closed_within(TIMEOUT).await;
        self.task.abort();
        let _ = (&mut self.task).await;
    }

    /// Abnormal end: drops the TCP connection without DISCONNECT.
    pub async fn kill(mut self) {
        self.task.abort();
        let _ = (&mut self.task).await;
    }
}

impl Drop for Client5 {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The Subscription Identifiers carried by a PUBLISH, sorted.
pub fn sub_ids(p: &Publish) -> Vec<usize> {
    let mut ids = p
        .properties
        .as_ref()
        .map(|p| p.subscription_identifiers.clone())
        .unwrap_or_default();
    ids.sort_unstable();
    ids
}
