//! An async MQTT 3.1.1 / 5.0 client that keeps its own Session state (MQTT 5.0 section 4.1) — in
//! memory, or with a persistence directory in the same embedded store as the Holdfast broker
//! (`holdfast-store`), with the same durability classes:
//!
//! | class | a published QoS 1/2 message is kept | survives `kill -9` of the client |
//! |---|---|---|
//! | `volatile` | in memory | no |
//! | `flush` | written to the OS before its first transmission | yes |
//! | `sync` | fsync'd before its first transmission | yes, and power loss |
//!
//! After a crash, starting again with the same client id and directory resumes the session: messages
//! not acknowledged are sent again with DUP and their packet ids, QoS 2 exchanges complete exactly
//! once, messages published while offline go out in order.
//!
//! Transports: TCP; TLS with the `tls` cargo feature ([`TlsOptions`], the system's root
//! certificates unless a CA file is given); WebSocket (`ws://`, `wss://` with `tls`) with the
//! `ws` cargo feature ([`ClientOptions::with_websocket`]). See `docs/client.md`.
//!
//! ```no_run
//! # async fn demo() -> Result<(), holdfast_client::ClientError> {
//! use holdfast_client::{Client, ClientOptions, Durability, Outgoing, QoS};
//!
//! let opts = ClientOptions::new("127.0.0.1", 1883, "terminal-7")
//!     .with_clean_start(false)
//!     .with_persistence("/var/lib/terminal-7", Durability::Sync);
//! let client = Client::connect(opts).await?;
//! // Returns once the payment is fsync'd; from then on the client delivers it, even across a crash.
//! let delivery = client
//!     .enqueue(Outgoing::new("payments/terminal-7", "EUR 12.50").qos(QoS::AtLeastOnce))
//!     .await?;
//! delivery.await?; // PUBACK
//! client.disconnect().await?;
//! # Ok(()) }
//! ```

mod alias;
mod client;
mod conn;
mod error;
mod eventloop;
mod inbound;
mod options;
mod outbound;
mod session;
mod transport;

pub use client::{Client, Delivery, Message, Outgoing, Subscription};
pub use error::ClientError;
pub use holdfast_core::Durability;
pub use holdfast_proto::{Properties, ProtocolVersion, QoS, RetainHandling, SubscriptionOptions};
pub use options::{ClientOptions, LastWill, TlsOptions};
