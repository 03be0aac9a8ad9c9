use bytes::Bytes;

/// The properties of a packet, every MQTT 5 property as a field of [`PropertySet`]
/// (`properties.topic_alias`, through `Deref`/`DerefMut`).
///
/// Most packets carry no property at all, so the set is boxed and only allocated when a property
/// is set: a packet (and a routed message) stays small, which keeps it cheap to move and queue.
/// Reading a field of an empty set reads [`PropertySet::EMPTY`]; writing allocates.
#[derive(Clone, Default)]
pub struct Properties(Option<Box<PropertySet>>);

impl Properties {
    pub fn is_empty(&self) -> bool {
        self.0.as_deref().is_none_or(|p| *p == PropertySet::EMPTY)
    }

    /// The set, when any property was ever set: for clearing fields without allocating.
    pub fn existing_mut(&mut self) -> Option<&mut PropertySet> {
        self.0.as_deref_mut()
    }

    /// Free the set if no property is left in it.
    pub fn shrink(&mut self) {
        if self.is_empty() {
            self.0 = None;
        }
    }
}

impl From<PropertySet> for Properties {
    fn from(p: PropertySet) -> Properties {
        Properties(Some(Box::new(p)))
    }
}

impl std::ops::Deref for Properties {
    type Target = PropertySet;
    fn deref(&self) -> &PropertySet {
        static EMPTY: PropertySet = PropertySet::EMPTY;
        self.0.as_deref().unwrap_or(&EMPTY)
    }
}

impl std::ops::DerefMut for Properties {
    fn deref_mut(&mut self) -> &mut PropertySet {
        self.0.get_or_insert_with(Box::default)
    }
}

impl PartialEq for Properties {
    fn eq(&self, other: &Properties) -> bool {
        **self == **other
    }
}
impl Eq for Properties {}

impl std::fmt::Debug for Properties {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        (**self).fmt(f)
    }
}

/// Every MQTT 5 property. Which ones a packet may carry is checked by the codec (spec table 2-4);
/// a property given more than once where that is not allowed is a Protocol Error.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PropertySet {
    /// 0x01
    pub payload_format_indicator: Option<u8>,
    /// 0x02, seconds
    pub message_expiry_interval: Option<u32>,
    /// 0x03
    pub content_type: Option<String>,
    /// 0x08
    pub response_topic: Option<String>,
    /// 0x09
    pub correlation_data: Option<Bytes>,
    /// 0x0B, may appear several times in PUBLISH (server to client), once in SUBSCRIBE; 1..=268,435,455
    pub subscription_identifiers: Vec<u32>,
    /// 0x11, seconds
    pub session_expiry_interval: Option<u32>,
    /// 0x12
    pub assigned_client_identifier: Option<String>,
    /// 0x13, seconds
    pub server_keep_alive: Option<u16>,
    /// 0x15
    pub authentication_method: Option<String>,
    /// 0x16
    pub authentication_data: Option<Bytes>,
    /// 0x17
    pub request_problem_information: Option<u8>,
    /// 0x18, seconds
    pub will_delay_interval: Option<u32>,
    /// 0x19
    pub request_response_information: Option<u8>,
    /// 0x1A
    pub response_information: Option<String>,
    /// 0x1C
    pub server_reference: Option<String>,
    /// 0x1F
    pub reason_string: Option<String>,
    /// 0x21
    pub receive_maximum: Option<u16>,
    /// 0x22
    pub topic_alias_maximum: Option<u16>,
    /// 0x23
    pub topic_alias: Option<u16>,
    /// 0x24
    pub maximum_qos: Option<u8>,
    /// 0x25
    pub retain_available: Option<u8>,
    /// 0x26, in order, may repeat
    pub user_properties: Vec<(String, String)>,
    /// 0x27
    pub maximum_packet_size: Option<u32>,
    /// 0x28
    pub wildcard_subscription_available: Option<u8>,
    /// 0x29
    pub subscription_identifier_available: Option<u8>,
    /// 0x2A
    pub shared_subscription_available: Option<u8>,
}

impl PropertySet {
    /// No property set.
    pub const EMPTY: PropertySet = PropertySet {
        payload_format_indicator: None,
        message_expiry_interval: None,
        content_type: None,
        response_topic: None,
        correlation_data: None,
        subscription_identifiers: Vec::new(),
        session_expiry_interval: None,
        assigned_client_identifier: None,
        server_keep_alive: None,
        authentication_method: None,
        authentication_data: None,
        request_problem_information: None,
        will_delay_interval: None,
        request_response_information: None,
        response_information: None,
        server_reference: None,
        reason_string: None,
        receive_maximum: None,
        topic_alias_maximum: None,
        topic_alias: None,
        maximum_qos: None,
        retain_available: None,
        user_properties: Vec::new(),
        maximum_packet_size: None,
        wildcard_subscription_available: None,
        subscription_identifier_available: None,
        shared_subscription_available: None,
    };
}
