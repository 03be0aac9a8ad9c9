//! The public handle: [`Client`], [`Outgoing`], [`Delivery`], [`Subscription`], [`Message`].

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use holdfast_core::persist::SessionRecord;
use holdfast_core::Durability;
use holdfast_proto::{Properties, QoS, SubscriptionOptions};
use holdfast_store::{LogOptions, LogStore, Store, StoreError};
use tokio::sync::{mpsc, oneshot};

use crate::eventloop::{Command, EventLoop};
use crate::session::Session;
use crate::transport::Transport;
use crate::{ClientError, ClientOptions};

/// A message received on a [`Subscription`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub topic: String,
    pub payload: Bytes,
    pub qos: QoS,
    pub retain: bool,
    pub dup: bool,
    /// MQTT 5 properties (empty for 3.1.1).
    pub properties: Properties,
}

/// A message to publish, with its QoS, retain flag and durability class.
///
/// ```
/// use holdfast_client::{Outgoing, QoS, Durability};
/// let m = Outgoing::new("payments/terminal-7", "EUR 12.50")
///     .qos(QoS::AtLeastOnce)
///     .durability(Durability::Sync);
/// assert_eq!(m.topic, "payments/terminal-7");
/// ```
#[derive(Debug, Clone)]
pub struct Outgoing {
    pub topic: String,
    pub payload: Bytes,
    pub qos: QoS,
    pub retain: bool,
    pub properties: Properties,
    /// None: the client's default ([`ClientOptions::durability`]).
    pub durability: Option<Durability>,
}

impl Outgoing {
    pub fn new(topic: impl Into<String>, payload: impl Into<Bytes>) -> Outgoing {
        Outgoing {
            topic: topic.into(),
            payload: payload.into(),
            qos: QoS::AtMostOnce,
            retain: false,
            properties: Properties::default(),
            durability: None,
        }
    }
    pub fn qos(mut self, qos: QoS) -> Self {
        self.qos = qos;
        self
    }
    pub fn retain(mut self, retain: bool) -> Self {
        self.retain = retain;
        self
    }
    pub fn durability(mut self, d: Durability) -> Self {
        self.durability = Some(d);
        self
    }
    pub fn properties(mut self, p: Properties) -> Self {
        self.properties = p;
        self
    }
}

/// Completes when the server acknowledged a message: PUBACK (QoS 1), PUBCOMP (QoS 2), or written to
/// the socket (QoS 0). Dropping it does not cancel the delivery.
#[derive(Debug)]
pub struct Delivery {
    rx: oneshot::Receiver<Result<(), ClientError>>,
}

impl Future for Delivery {
    type Output = Result<(), ClientError>;
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Pin::new(&mut self.rx)
            .poll(cx)
            .map(|r| r.unwrap_or(Err(ClientError::Closed)))
    }
}

/// The messages matching the filters of one [`Client::subscribe`] call, in order of arrival.
///
/// It holds at most [`ClientOptions::subscription_capacity`] messages the application has not
/// taken yet; while it is full the client acknowledges no new message, so the server holds them
/// (see `docs/client.md`, back-pressure). Dropping it drops its messages; the subscription stays
/// on the server until [`Client::unsubscribe`].
#[derive(Debug)]
pub struct Subscription {
    rx: mpsc::Receiver<Message>,
    granted: Vec<u8>,
}

impl Subscription {
    /// The next message; None once the client is closed.
    pub async fn recv(&mut self) -> Option<Message> {
        self.rx.recv().await
    }
    /// The QoS the server granted, per filter.
    pub fn granted(&self) -> &[u8] {
        &self.granted
    }
}

/// An MQTT client. Cheap to clone; the connection and session live in a background task that
/// reconnects with backoff until [`Client::disconnect`] or until every handle is dropped.
///
/// ```no_run
/// # async fn demo() -> Result<(), holdfast_client::ClientError> {
/// use holdfast_client::{Client, ClientOptions, QoS};
/// let client = Client::connect(ClientOptions::new("127.0.0.1", 1883, "demo")).await?;
/// let mut sub = client.subscribe("greetings/#", QoS::AtLeastOnce).await?;
/// client.publish("greetings/world", "hello", QoS::AtLeastOnce, false).await?;
/// let msg = sub.recv().await.expect("a message");
/// assert_eq!(&msg.payload[..], b"hello");
/// client.disconnect().await?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct Client {
    tx: mpsc::UnboundedSender<Command>,
    subscription_capacity: usize,
}

impl Client {
    /// Starts the client and waits for the first CONNACK. Fails if that first attempt fails; later
    /// connection losses are repaired by reconnecting. Must run inside a tokio runtime (the
    /// connection lives in a spawned task).
    pub async fn connect(opts: ClientOptions) -> Result<Client, ClientError> {
        let (ready_tx, ready_rx) = oneshot::channel();
        let client = Client::spawn(opts, Some(ready_tx))?;
        ready_rx.await.unwrap_or(Err(ClientError::Closed))?;
        Ok(client)
    }

    /// Starts the client without waiting: messages published before the first connection are kept
    /// (and stored, with a persistence directory) and sent once connected.
    pub fn start(opts: ClientOptions) -> Result<Client, ClientError> {
        Client::spawn(opts, None)
    }

    fn spawn(
        opts: ClientOptions,
        ready: Option<oneshot::Sender<Result<bool, ClientError>>>,
    ) -> Result<Client, ClientError> {
        let transport = Transport::new(&opts)?;
        let mut lock = None;
        let store: Option<Arc<dyn Store>> = match &opts.persist_dir {
            Some(dir) => {
                if opts.client_id.is_empty() {
                    return Err(ClientError::Invalid(
                        "a persistence directory needs a client id".into(),
                    ));
                }
                let store_err = |e: &dyn std::fmt::Display| {
                    ClientError::Store(format!("persistence directory {}: {e}", dir.display()))
                };
                // Held (flock) until the client ends, so two processes never write one log; the OS
                // releases it with the process, also on `kill -9`.
                let dir_lock = holdfast_store::lock_dir(dir).map_err(|e| match e {
                    StoreError::Locked(dir) => ClientError::Locked(dir),
                    e => store_err(&e),
                })?;
                lock = Some(dir_lock.into_file());
                let (store, report) =
                    LogStore::open(dir, LogOptions::default()).map_err(|e| store_err(&e))?;
                tracing::debug!(dir = %dir.display(), "client store opened: {report}");
                Some(Arc::new(store))
            }
            None => None,
        };
        let record = SessionRecord {
            protocol: opts.protocol.level(),
            expiry: opts.session_expiry,
            ..SessionRecord::default()
        };
        let (committed_tx, committed_rx) = mpsc::unbounded_channel();
        let session = Session::load(&opts.client_id, store, record, committed_tx);
        let (tx, rx) = mpsc::unbounded_channel();
        let subscription_capacity = opts.subscription_capacity.max(1);
        let ev = EventLoop::new(opts, transport, lock, session, rx, committed_rx, ready);
        tokio::spawn(ev.run());
        Ok(Client {
            tx,
            subscription_capacity,
        })
    }

    fn send(&self, cmd: Command) -> Result<(), ClientError> {
        self.tx.send(cmd).map_err(|_| ClientError::Closed)
    }

    /// Publishes and waits for PUBACK (QoS 1) / PUBCOMP (QoS 2), or for the write (QoS 0).
    pub async fn publish(
        &self,
        topic: impl Into<String>,
        payload: impl Into<Bytes>,
        qos: QoS,
        retain: bool,
    ) -> Result<(), ClientError> {
        let m = Outgoing::new(topic, payload).qos(qos).retain(retain);
        self.enqueue(m).await?.await
    }

    /// Hands a message to the session and returns once it is kept as its durability class asks
    /// (`sync`: fsync'd; `flush`: written to the OS; `volatile`: in memory). From then on the
    /// client delivers it, across reconnects and (unless volatile) restarts of the process. The
    /// returned [`Delivery`] completes on the acknowledgement.
    pub async fn enqueue(&self, m: Outgoing) -> Result<Delivery, ClientError> {
        holdfast_proto::topic::validate_topic_name(&m.topic)
            .map_err(|why| ClientError::Invalid(format!("topic {:?}: {why}", m.topic)))?;
        let (stored_tx, stored_rx) = oneshot::channel();
        let (done_tx, done_rx) = oneshot::channel();
        self.send(Command::Publish {
            message: Box::new(m),
            stored: stored_tx,
            done: done_tx,
        })?;
        stored_rx.await.unwrap_or(Err(ClientError::Closed))?;
        Ok(Delivery { rx: done_rx })
    }

    /// Subscribes to one filter; see [`Client::subscribe_many`].
    pub async fn subscribe(
        &self,
        filter: impl Into<String>,
        qos: QoS,
    ) -> Result<Subscription, ClientError> {
        self.subscribe_many(vec![(filter.into(), qos)]).await
    }

    /// Subscribes and waits for SUBACK. The subscription's stream gets every message whose topic
    /// matches one of `filters`. Fails if the server refused every filter.
    pub async fn subscribe_many(
        &self,
        filters: Vec<(String, QoS)>,
    ) -> Result<Subscription, ClientError> {
        let filters = filters
            .into_iter()
            .map(|(f, qos)| {
                let o = SubscriptionOptions {
                    qos,
                    ..SubscriptionOptions::default()
                };
                (f, o)
            })
            .collect();
        self.subscribe_with(filters).await
    }

    /// Like [`Client::subscribe_many`] with all MQTT 5 subscription options (No Local, Retain As
    /// Published, Retain Handling; 3.1.1 sends only the QoS).
    pub async fn subscribe_with(
        &self,
        filters: Vec<(String, SubscriptionOptions)>,
    ) -> Result<Subscription, ClientError> {
        self.subscribe_request(filters, None).await
    }

    /// Like [`Client::subscribe_with`], with an MQTT 5 Subscription Identifier (1 to
    /// 268,435,455). Messages the server sends for this subscription carry the id in
    /// `properties.subscription_identifiers`, and the client routes by it: a message that
    /// carries ids goes to the subscriptions with those ids, not to every one whose filter
    /// matches (overlapping subscriptions then get each message once). Needs MQTT 5 and a server
    /// that has Subscription Identifiers available.
    ///
    /// ```no_run
    /// # async fn demo(client: holdfast_client::Client) -> Result<(), holdfast_client::ClientError> {
    /// use holdfast_client::{QoS, SubscriptionOptions};
    /// let o = SubscriptionOptions { qos: QoS::AtLeastOnce, ..Default::default() };
    /// let mut alarms = client.subscribe_with_id(vec![("alarms/#".into(), o)], 7).await?;
    /// let m = alarms.recv().await;
    /// # Ok(()) }
    /// ```
    pub async fn subscribe_with_id(
        &self,
        filters: Vec<(String, SubscriptionOptions)>,
        id: u32,
    ) -> Result<Subscription, ClientError> {
        if !(1..=268_435_455).contains(&id) {
            return Err(ClientError::Invalid(format!(
                "subscription identifier {id}: must be 1 to 268,435,455"
            )));
        }
        self.subscribe_request(filters, Some(id)).await
    }

    async fn subscribe_request(
        &self,
        filters: Vec<(String, SubscriptionOptions)>,
        id: Option<u32>,
    ) -> Result<Subscription, ClientError> {
        if filters.is_empty() {
            return Err(ClientError::Invalid(
                "SUBSCRIBE needs at least one filter".into(),
            ));
        }
        for (f, _) in &filters {
            holdfast_proto::topic::validate_topic_filter(f)
                .map_err(|why| ClientError::Invalid(format!("filter {f:?}: {why}")))?;
        }
        let (sink, rx) = mpsc::channel(self.subscription_capacity);
        let (reply, reply_rx) = oneshot::channel();
        self.send(Command::Subscribe {
            filters,
            id,
            sink,
            reply,
        })?;
        let granted = reply_rx.await.unwrap_or(Err(ClientError::Closed))?;
        if let Some(bad) = granted.iter().find(|g| **g >= 0x80) {
            if granted.iter().all(|g| *g >= 0x80) {
                return Err(ClientError::SubscribeRejected(*bad));
            }
        }
        Ok(Subscription { rx, granted })
    }

    /// Unsubscribes and waits for UNSUBACK; the streams of these filters get no more messages.
    pub async fn unsubscribe(&self, filter: impl Into<String>) -> Result<(), ClientError> {
        let (reply, rx) = oneshot::channel();
        self.send(Command::Unsubscribe {
            filters: vec![filter.into()],
            reply,
        })?;
        rx.await.unwrap_or(Err(ClientError::Closed))
    }

    /// Waits until every QoS 1/2 message of the session (including those recovered from the
    /// persistence directory) is acknowledged.
    pub async fn wait_idle(&self) -> Result<(), ClientError> {
        let (reply, rx) = oneshot::channel();
        self.send(Command::Idle { reply })?;
        rx.await.map_err(|_| ClientError::Closed)
    }

    /// Sends DISCONNECT, closes the connection and the store. Messages not yet acknowledged stay in
    /// the store (if any) for the next start with the same client id.
    pub async fn disconnect(&self) -> Result<(), ClientError> {
        let (reply, rx) = oneshot::channel();
        self.send(Command::Disconnect { reply })?;
        let _ = rx.await;
        Ok(())
    }
}
