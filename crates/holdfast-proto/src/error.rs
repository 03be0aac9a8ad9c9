use crate::ReasonCode;

/// Why bytes could not be decoded into a packet. Every variant maps to the reason code the server
/// sends before closing (MQTT 5) [MQTT-4.13.1-1].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("packet of {size} bytes exceeds maximum packet size {max}")]
    TooLarge { size: usize, max: usize },
    #[error("malformed {packet}: {why}")]
    Malformed {
        packet: &'static str,
        why: &'static str,
    },
    #[error("protocol error in {packet}: {why}")]
    Protocol {
        packet: &'static str,
        why: &'static str,
    },
    #[error("unsupported protocol: {0}")]
    UnsupportedProtocol(&'static str),
    #[error("invalid topic name in {packet}: {why}")]
    TopicName {
        packet: &'static str,
        why: &'static str,
    },
}

impl DecodeError {
    pub fn reason_code(&self) -> ReasonCode {
        match self {
            DecodeError::TooLarge { .. } => ReasonCode::PACKET_TOO_LARGE,
            DecodeError::Malformed { .. } => ReasonCode::MALFORMED_PACKET,
            DecodeError::Protocol { .. } => ReasonCode::PROTOCOL_ERROR,
            DecodeError::UnsupportedProtocol(_) => ReasonCode::UNSUPPORTED_PROTOCOL_VERSION,
            DecodeError::TopicName { .. } => ReasonCode::TOPIC_NAME_INVALID,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    #[error("packet of {size} bytes exceeds maximum packet size {max}")]
    TooLarge { size: usize, max: usize },
    #[error("cannot encode {packet}: {why}")]
    Invalid {
        packet: &'static str,
        why: &'static str,
    },
}
