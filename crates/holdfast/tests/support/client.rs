//! Helpers for the tests of `holdfast-client` against a broker.

use std::time::Duration;

use holdfast_client::{ClientOptions, Message, Subscription};

use super::TIMEOUT;

/// Options for a client of the broker on `port`, reconnecting quickly so tests stay short.
pub fn opts(port: u16, id: &str) -> ClientOptions {
    ClientOptions::new("127.0.0.1", port, id)
        .with_reconnect(Duration::from_millis(50), Duration::from_millis(500))
}

/// The next message of `sub`; fails the test after [`TIMEOUT`] or if the subscription ended.
pub async fn recv(sub: &mut Subscription) -> Message {
    tokio::time::timeout(TIMEOUT, sub.recv())
        .await
        .expect("a message within the timeout")
        .expect("subscription open")
}
