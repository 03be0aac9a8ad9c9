//! MQTT 3.1, 3.1.1 and 5.0 codec. No I/O: bytes in, packets out, and back.
//!
//! Decoding is strict: every reserved bit, length, UTF-8 rule and property placement is checked, and the
//! Maximum Packet Size is enforced from the fixed header before the body is buffered. Encoding applies
//! the same rules, so whatever [`encode_packet`] writes, [`decode_packet`] accepts.

mod decode;
mod encode;
mod error;
#[doc(hidden)]
pub mod fuzzing;
mod packet;
mod properties;
mod props_codec;
mod reason;
pub mod topic;
mod types;
mod wire;

#[cfg(test)]
mod tests;

pub use decode::{decode_packet, packet_type_name, read_fixed_header, FixedHeader};
pub use encode::{encode_packet, encoded_len};
pub use error::{DecodeError, EncodeError};
pub use packet::*;
pub use properties::{Properties, PropertySet};
pub use types::{ProtocolVersion, QoS, ReasonCode};
pub use wire::{MAX_PACKET_SIZE, MAX_REMAINING_LENGTH};
