//! An MQTT 3.1.1 test client: rumqttc's `AsyncClient` with its event loop polled by a task
//! that forwards every event to the test. It never reconnects: a closed connection is an
//! event the test can assert on.

use std::collections::VecDeque;
use std::time::Duration;

use rumqttc::{
    AsyncClient, ConnAck, Event, Incoming, LastWill, MqttOptions, Outgoing, Publish, QoS,
    SubscribeReasonCode,
};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::{timeout_at, Instant};

use super::{QUIET, TIMEOUT};

/// Options for client `id` on the test broker's port (keep alive 30 s, clean session).
pub fn options(port: u16, id: &str) -> MqttOptions {
    let mut o = MqttOptions::new(id, "127.0.0.1", port);
    o.set_keep_alive(Duration::from_secs(30));
    o.set_max_packet_size(1024 * 1024, 1024 * 1024);
    o
}

/// Options for a persistent session (`CleanSession = 0`).
pub fn persistent(port: u16, id: &str) -> MqttOptions {
    let mut o = options(port, id);
    o.set_clean_session(false);
    o
}

pub fn with_will(
    mut o: MqttOptions,
    topic: &str,
    payload: &str,
    qos: QoS,
    retain: bool,
) -> MqttOptions {
    o.set_last_will(LastWill::new(
        topic,
        payload.as_bytes().to_vec(),
        qos,
        retain,
    ));
    o
}

pub struct Client3 {
    pub client: AsyncClient,
    pub connack: ConnAck,
    id: String,
    events: mpsc::UnboundedReceiver<Result<Event, String>>,
    task: JoinHandle<()>,
    /// PUBLISH packets that arrived while the test waited for something else.
    buffered: VecDeque<Publish>,
    closed: Option<String>,
}

impl Client3 {
    /// Connects and waits for a successful CONNACK (panics otherwise).
    pub async fn connect(opts: MqttOptions) -> Client3 {
        let id = opts.client_id();
        match Client3::try_connect(opts).await {
            Ok(c) => c,
            Err(e) => panic!("client {id:?}: connect failed: {e}"),
        }
    }

    /// Connects; `Err` describes a refused CONNACK, a closed connection or a timeout.
    pub async fn try_connect(opts: MqttOptions) -> Result<Client3, String> {
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
                        let _ = tx.send(Err(e.to_string()));
                        break;
                    }
                }
            }
        });
        let deadline = Instant::now() + TIMEOUT;
        let mut buffered = VecDeque::new();
        loop {
            match timeout_at(deadline, events.recv()).await {
                Ok(Some(Ok(Event::Incoming(Incoming::ConnAck(connack))))) => {
                    return Ok(Client3 {
                        client,
                        connack,
                        id,
                        events,
                        task,
                        buffered,
                        closed: None,
                    })
                }
                Ok(Some(Ok(Event::Incoming(Incoming::Publish(p))))) => buffered.push_back(p),
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

    /// The next event before `deadline`: `Ok(None)` on timeout, `Err` when the connection
    /// closed (with the reason).
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

    /// Waits for an event matching `pred`, keeping PUBLISHes seen on the way.
    async fn wait_for<T>(&mut self, what: &str, mut pred: impl FnMut(&Event) -> Option<T>) -> T {
        let deadline = Instant::now() + TIMEOUT;
        loop {
            match self.next_event(deadline).await {
                Ok(Some(ev)) => {
                    if let Some(t) = pred(&ev) {
                        return t;
                    }
                    if let Event::Incoming(Incoming::Publish(p)) = ev {
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

    /// Subscribes and returns the SUBACK return codes.
    pub async fn subscribe(&mut self, filter: &str, qos: QoS) -> Vec<SubscribeReasonCode> {
        self.client
            .subscribe(filter, qos)
            .await
            .expect("queue SUBSCRIBE");
        self.wait_for("SUBACK", |ev| match ev {
            Event::Incoming(Incoming::SubAck(ack)) => Some(ack.return_codes.clone()),
            _ => None,
        })
        .await
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
            matches!(ev, Event::Incoming(Incoming::UnsubAck(_))).then_some(())
        })
        .await
    }

    /// Publishes and waits until the broker completed the flow for `qos`
    /// (sent for 0, PUBACK for 1, PUBCOMP for 2).
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

    /// Waits for the completion of the next outgoing publish flow at `qos`.
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
                    matches!(ev, Event::Incoming(Incoming::PubAck(_))).then_some(())
                })
                .await
            }
            QoS::ExactlyOnce => {
                self.wait_for("PUBCOMP", |ev| {
                    matches!(ev, Event::Incoming(Incoming::PubComp(_))).then_some(())
                })
                .await
            }
        }
    }

    /// The next PUBLISH from the broker (panics after `TIMEOUT`).
    pub async fn recv(&mut self) -> Publish {
        match self.recv_within(TIMEOUT).await {
            Some(p) => p,
            None => panic!("client {:?}: no PUBLISH within {TIMEOUT:?}", self.id),
        }
    }

    /// The next PUBLISH within `d`, or `None`. Panics if the connection closes.
    pub async fn recv_within(&mut self, d: Duration) -> Option<Publish> {
        if let Some(p) = self.buffered.pop_front() {
            return Some(p);
        }
        let deadline = Instant::now() + d;
        loop {
            match self.next_event(deadline).await {
                Ok(Some(Event::Incoming(Incoming::Publish(p)))) => return Some(p),
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

    /// Asserts that no PUBLISH arrives within `QUIET`.
    pub async fn expect_nothing(&mut self) {
        if let Some(p) = self.recv_within(QUIET).await {
            panic!("client {:?}: unexpected PUBLISH {p:?}", self.id);
        }
    }

    /// Waits for the broker to close the connection; returns the event loop's reason, or
    /// `None` if it is still open after `d`.
    pub async fn closed_within(&mut self, d: Duration) -> Option<String> {
        let deadline = Instant::now() + d;
        loop {
            match self.next_event(deadline).await {
                Ok(Some(Event::Incoming(Incoming::Publish(p)))) => self.buffered.push_back(p),
                Ok(Some(_)) => {}
                Ok(None) => return None,
                Err(e) => return Some(e),
            }
        }
    }

    /// Normal disconnect: sends DISCONNECT and waits (bounded) for the connection to close.
    pub async fn disconnect(mut self) {
        self.client.disconnect().await.expect("queue DISCONNECT");
        self.wait_for("outgoing DISCONNECT", |ev| {
            matches!(ev, Event::Outgoing(Outgoing::Disconnect)).then_some(())
        })
        .await;
        // The server closes the connection on DISCONNECT; don't fail if it is slow to.
        let _ = self.closed_within(TIMEOUT).await;
        self.task.abort();
        let _ = (&mut self.task).await;
    }

    /// Abnormal end: drops the TCP connection without sending DISCONNECT.
    pub async fn kill(mut self) {
        self.task.abort();
        let _ = (&mut self.task).await; // the event loop, and with it the socket, is dropped
    }
}

impl Drop for Client3 {
    fn drop(&mut self) {
        self.task.abort();
    }
}
