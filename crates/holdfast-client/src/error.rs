//! What can fail, with what the caller needs to react.

use holdfast_proto::ReasonCode;

/// Why a client operation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClientError {
    /// TCP connect, read or write failed.
    #[error("I/O error: {0}")]
    Io(String),
    /// The server answered CONNECT with an error reason code (MQTT 5) or return code (3.1.1).
    #[error("connection refused: reason code {0:#04x}")]
    Refused(u8),
    /// The server broke the protocol, or sent something this client could not decode.
    #[error("protocol error: {0}")]
    Protocol(String),
    /// PUBACK/PUBREC/PUBCOMP carried an error reason code (MQTT 5): the message was not accepted.
    #[error("publish rejected: reason code {0:#04x}")]
    PublishRejected(u8),
    /// SUBACK refused the filter (0x80 in 3.1.1, or an MQTT 5 error reason).
    #[error("subscribe rejected: reason code {0:#04x}")]
    SubscribeRejected(u8),
    /// The server closed the connection with DISCONNECT and this reason code (MQTT 5).
    #[error("disconnected by the server: reason code {0:#04x}")]
    ServerDisconnect(u8),
    /// The persistence directory could not be opened or a commit failed.
    #[error("session store: {0}")]
    Store(String),
    /// Another client (in this or another process) uses the persistence directory.
    #[error("persistence directory {} is in use by another client (its LOCK file is locked)", .0.display())]
    Locked(std::path::PathBuf),
    /// An argument is invalid (topic, QoS, packet too large...).
    #[error("invalid argument: {0}")]
    Invalid(String),
    /// The message's Message Expiry Interval (MQTT 5) ran out before it could be sent.
    #[error("message expired before it could be sent")]
    Expired,
    /// The client was disconnected by [`Client::disconnect`](crate::Client::disconnect) or dropped.
    #[error("client is closed")]
    Closed,
}

impl ClientError {
    pub(crate) fn reason(r: ReasonCode) -> u8 {
        r.0
    }
}

impl From<std::io::Error> for ClientError {
    fn from(e: std::io::Error) -> ClientError {
        ClientError::Io(e.to_string())
    }
}

impl From<holdfast_store::StoreError> for ClientError {
    fn from(e: holdfast_store::StoreError) -> ClientError {
        ClientError::Store(e.to_string())
    }
}
