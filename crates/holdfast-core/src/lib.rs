//! Sans-I/O broker logic: connection and session state machines, topic tree, retained index, routing
//! decisions and limits. Nothing here awaits, touches a socket or a file, or reads a clock: the caller
//! passes the time in (milliseconds since the UNIX epoch, so expiry survives restarts) and performs the
//! returned [`Action`]s.

pub mod acl;
pub mod action;
pub mod config;
pub mod connect;
pub mod durability;
pub mod fuzzing;
pub mod message;
pub mod persist;
pub mod retained;
pub mod router;
pub mod session;
pub mod topic;

pub use action::{Action, DropReason};
pub use config::{CoreConfig, Durability, QueuePolicy};
pub use message::Message;
pub use session::Session;
pub use topic::ClientId;

/// Milliseconds since the UNIX epoch. Wall-clock, so session and message expiry can count the time the
/// broker was down.
pub type Millis = u64;

/// Session Expiry Interval value meaning "never expires" [MQTT-3.1.2-?]: 0xFFFFFFFF.
pub const EXPIRY_NEVER: u32 = u32::MAX;
