//! CONNECT validation: client identifier rules, session expiry and keep-alive caps, will checks, and
//! the CONNACK properties that tell a v5 client what the server decided.

use std::sync::Arc;

use holdfast_proto::{ConnAck, Connect, Properties, ProtocolVersion, QoS, ReasonCode, Will};

use crate::{ClientId, CoreConfig, EXPIRY_NEVER};

/// What the server decided about a CONNECT, before any session is looked up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectParams {
    pub client_id: ClientId,
    /// The server chose the client id (v5 Assigned Client Identifier) [MQTT-3.2.2-16].
    pub assigned_id: bool,
    pub protocol: ProtocolVersion,
    pub clean_start: bool,
    /// Effective Session Expiry Interval in seconds, after the configured cap.
    pub session_expiry: u32,
    /// The expiry the client asked for (to tell a v5 client when the cap changed it).
    pub requested_expiry: u32,
    /// Effective keep alive in seconds (0 = none).
    pub keep_alive: u16,
    /// Set when the server overrides the client's keep alive [MQTT-3.2.2-21].
    pub server_keep_alive: Option<u16>,
    /// The client's Receive Maximum: QoS 1/2 publishes the server may have in flight to it.
    pub receive_maximum: u16,
    /// The client's Maximum Packet Size.
    pub max_packet_size: Option<u32>,
    /// Topic aliases the server may use towards the client.
    pub topic_alias_maximum: u16,
    pub request_problem_information: bool,
    pub will: Option<Will>,
    /// The authenticated user name (set by the caller after authentication), for ACL decisions.
    pub username: Option<Arc<str>>,
}

/// Check a CONNECT against the rules and the configuration. `Err` carries the reason code for the
/// refusing CONNACK. `new_id` makes a client id when the server must assign one.
pub fn validate_connect(
    c: Connect,
    cfg: &CoreConfig,
    new_id: impl FnOnce() -> String,
) -> Result<ConnectParams, ReasonCode> {
    let v5 = c.protocol.is_v5();
    if v5 && c.properties.authentication_method.is_some() {
        // No enhanced authentication method is supported [MQTT-4.12.0-1].
        return Err(ReasonCode::BAD_AUTHENTICATION_METHOD);
    }
    let mut assigned_id = false;
    let client_id = if c.client_id.is_empty() {
        // 3.1.1: a zero-length id needs Clean Session = 1 [MQTT-3.1.3-8]; 3.1 allows none at all.
        let allowed = cfg.allow_zero_length_client_id
            && match c.protocol {
                ProtocolVersion::V3_1 => false,
                ProtocolVersion::V3_1_1 => c.clean_start,
                ProtocolVersion::V5 => true,
            };
        if !allowed {
            return Err(ReasonCode::CLIENT_IDENTIFIER_NOT_VALID);
        }
        assigned_id = true;
        new_id()
    } else {
        c.client_id
    };
    if client_id.len() > cfg.max_client_id_len {
        return Err(ReasonCode::CLIENT_IDENTIFIER_NOT_VALID);
    }
    if let Some(w) = &c.will {
        if w.qos > cfg.maximum_qos {
            return Err(ReasonCode::QOS_NOT_SUPPORTED); // [MQTT-3.2.2-12]
        }
        if w.retain && !cfg.retain_available {
            return Err(ReasonCode::RETAIN_NOT_SUPPORTED); // [MQTT-3.2.2-13]
        }
    }
    let requested_expiry = if v5 {
        c.properties.session_expiry_interval.unwrap_or(0)
    } else if c.clean_start {
        0
    } else {
        EXPIRY_NEVER
    };
    let session_expiry = match cfg.session_expiry_max {
        Some(max) => requested_expiry.min(max),
        None => requested_expiry,
    };
    let (keep_alive, server_keep_alive) = match cfg.max_keep_alive {
        0 => (c.keep_alive, None),
        // A 3.1/3.1.1 client cannot be told another keep alive, and holding it to one it never
        // agreed to would cut it off unexpectedly: refuse it, as Mosquitto does (return code 2).
        max if (c.keep_alive == 0 || c.keep_alive > max) && !v5 => {
            return Err(ReasonCode::CLIENT_IDENTIFIER_NOT_VALID);
        }
        max if c.keep_alive == 0 || c.keep_alive > max => (max, Some(max)),
        _ => (c.keep_alive, None),
    };
    Ok(ConnectParams {
        client_id: Arc::from(client_id),
        assigned_id,
        protocol: c.protocol,
        clean_start: c.clean_start,
        session_expiry,
        requested_expiry,
        keep_alive,
        server_keep_alive: server_keep_alive.filter(|_| v5),
        receive_maximum: c.properties.receive_maximum.unwrap_or(u16::MAX),
        max_packet_size: c.properties.maximum_packet_size,
        topic_alias_maximum: c.properties.topic_alias_maximum.unwrap_or(0),
        request_problem_information: c.properties.request_problem_information != Some(0),
        will: c.will,
        username: None,
    })
}

/// The CONNACK accepting `p`. v5 properties announce every limit the client must respect.
pub fn connack(p: &ConnectParams, session_present: bool, cfg: &CoreConfig) -> ConnAck {
    let mut props = Properties::default();
    if p.protocol.is_v5() {
        if p.session_expiry != p.requested_expiry {
            props.session_expiry_interval = Some(p.session_expiry); // [MQTT-3.2.2-?] server's value wins
        }
        if cfg.receive_maximum != u16::MAX {
            props.receive_maximum = Some(cfg.receive_maximum);
        }
        if cfg.maximum_qos != QoS::ExactlyOnce {
            props.maximum_qos = Some(cfg.maximum_qos.as_u8());
        }
        if !cfg.retain_available {
            props.retain_available = Some(0);
        }
        props.maximum_packet_size = Some(cfg.max_packet_size);
        if p.assigned_id {
            props.assigned_client_identifier = Some(p.client_id.to_string());
        }
        if cfg.topic_alias_maximum > 0 {
            props.topic_alias_maximum = Some(cfg.topic_alias_maximum);
        }
        if !cfg.wildcard_subscription_available {
            props.wildcard_subscription_available = Some(0);
        }
        if !cfg.subscription_identifiers_available {
            props.subscription_identifier_available = Some(0);
        }
        if !cfg.shared_subscription_available {
            props.shared_subscription_available = Some(0);
        }
        props.server_keep_alive = p.server_keep_alive;
    }
    ConnAck {
        session_present,
        reason: ReasonCode::SUCCESS,
        properties: props,
    }
}

/// The CONNACK refusing a connection. 3.1.1 never has Session Present set on a refusal [MQTT-3.2.2-4].
pub fn connack_refused(reason: ReasonCode) -> ConnAck {
    ConnAck {
        session_present: false,
        reason,
        properties: Properties::default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn connect(protocol: ProtocolVersion, id: &str, clean: bool) -> Connect {
        Connect {
            protocol,
            clean_start: clean,
            keep_alive: 30,
            client_id: id.into(),
            will: None,
            username: None,
            password: None,
            properties: Properties::default(),
        }
    }

    #[test] // [MQTT-3.1.3-8] zero-length id with Clean Session 0 is rejected with return code 0x02
    fn v311_empty_id_needs_clean_session() {
        let cfg = CoreConfig::default();
        let err = validate_connect(connect(ProtocolVersion::V3_1_1, "", false), &cfg, || {
            "x".into()
        });
        assert_eq!(err.unwrap_err(), ReasonCode::CLIENT_IDENTIFIER_NOT_VALID);
        let ok = validate_connect(connect(ProtocolVersion::V3_1_1, "", true), &cfg, || {
            "gen".into()
        })
        .unwrap();
        assert_eq!(&*ok.client_id, "gen");
    }

    #[test] // [MQTT-3.1.3-7] [MQTT-3.2.2-16] v5 assigns an id and returns it in CONNACK
    fn v5_assigns_client_id() {
        let cfg = CoreConfig::default();
        let p = validate_connect(connect(ProtocolVersion::V5, "", false), &cfg, || {
            "auto-1".into()
        })
        .unwrap();
        assert!(p.assigned_id);
        let ack = connack(&p, false, &cfg);
        assert_eq!(
            ack.properties.assigned_client_identifier.as_deref(),
            Some("auto-1")
        );
    }

    #[test] // 3.1.1 persistent sessions take the configured session expiry maximum
    fn session_expiry_cap_applies_to_v311() {
        let cfg = CoreConfig {
            session_expiry_max: Some(60),
            ..CoreConfig::default()
        };
        let p = validate_connect(
            connect(ProtocolVersion::V3_1_1, "a", false),
            &cfg,
            String::new,
        )
        .unwrap();
        assert_eq!(p.session_expiry, 60);
        let p = validate_connect(
            connect(ProtocolVersion::V3_1_1, "a", true),
            &cfg,
            String::new,
        )
        .unwrap();
        assert_eq!(p.session_expiry, 0);
    }

    #[test] // [MQTT-3.2.2-?] a capped v5 expiry is announced in CONNACK
    fn capped_v5_expiry_is_announced() {
        let cfg = CoreConfig {
            session_expiry_max: Some(60),
            ..CoreConfig::default()
        };
        let mut c = connect(ProtocolVersion::V5, "a", false);
        c.properties.session_expiry_interval = Some(3600);
        let p = validate_connect(c, &cfg, String::new).unwrap();
        assert_eq!(
            connack(&p, false, &cfg).properties.session_expiry_interval,
            Some(60)
        );
    }

    #[test] // [MQTT-3.2.2-12] will QoS above Maximum QoS is refused with 0x9B
    fn will_qos_above_maximum_refused() {
        let cfg = CoreConfig {
            maximum_qos: QoS::AtLeastOnce,
            ..CoreConfig::default()
        };
        let mut c = connect(ProtocolVersion::V5, "a", true);
        c.will = Some(Will {
            topic: "w".into(),
            payload: Bytes::new(),
            qos: QoS::ExactlyOnce,
            retain: false,
            properties: Properties::default(),
        });
        assert_eq!(
            validate_connect(c, &cfg, String::new).unwrap_err(),
            ReasonCode::QOS_NOT_SUPPORTED
        );
    }

    #[test] // [MQTT-3.2.2-21] server keep alive overrides the client's
    fn keep_alive_capped() {
        let cfg = CoreConfig {
            max_keep_alive: 10,
            ..CoreConfig::default()
        };
        let p =
            validate_connect(connect(ProtocolVersion::V5, "a", true), &cfg, String::new).unwrap();
        assert_eq!((p.keep_alive, p.server_keep_alive), (10, Some(10)));
        let v3 = validate_connect(
            connect(ProtocolVersion::V3_1_1, "a", true),
            &cfg,
            String::new,
        );
        assert_eq!(v3.unwrap_err(), ReasonCode::CLIENT_IDENTIFIER_NOT_VALID);
    }

    #[test] // [MQTT-4.12.0-1] unsupported authentication method gets 0x8C
    fn unknown_auth_method_refused() {
        let mut c = connect(ProtocolVersion::V5, "a", true);
        c.properties.authentication_method = Some("SCRAM-SHA-1".into());
        let err = validate_connect(c, &CoreConfig::default(), String::new).unwrap_err();
        assert_eq!(err, ReasonCode::BAD_AUTHENTICATION_METHOD);
    }
}
