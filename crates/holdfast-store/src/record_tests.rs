use super::*;
use crate::codec::Reader;
use bytes::Bytes;
use holdfast_proto::Properties;

fn full_properties() -> Properties {
    Properties::from(holdfast_proto::PropertySet {
        payload_format_indicator: Some(1),
        message_expiry_interval: Some(3600),
        content_type: Some("application/json".into()),
        response_topic: Some("reply/here".into()),
        correlation_data: Some(Bytes::from_static(b"\x00\x01corr")),
        subscription_identifiers: vec![1, 268_435_455],
        session_expiry_interval: Some(u32::MAX),
        assigned_client_identifier: Some("auto-1".into()),
        server_keep_alive: Some(30),
        authentication_method: Some("SCRAM".into()),
        authentication_data: Some(Bytes::from_static(b"secret")),
        request_problem_information: Some(0),
        will_delay_interval: Some(10),
        request_response_information: Some(1),
        response_information: Some("info".into()),
        server_reference: Some("other:1883".into()),
        reason_string: Some("why".into()),
        receive_maximum: Some(100),
        topic_alias_maximum: Some(10),
        topic_alias: Some(3),
        maximum_qos: Some(1),
        retain_available: Some(1),
        user_properties: vec![
            ("k".into(), "v".into()),
            ("k".into(), "v2".into()),
            ("".into(), "ü".into()),
        ],
        maximum_packet_size: Some(1 << 20),
        wildcard_subscription_available: Some(0),
        subscription_identifier_available: Some(1),
        shared_subscription_available: Some(1),
    })
}

pub(crate) fn every_op() -> Vec<Op> {
    let will = StoredWill {
        topic: "will/topic".into(),
        payload: Bytes::from_static(b"gone"),
        qos: 2,
        retain: true,
        properties: full_properties(),
    };
    let record = SessionRecord {
        protocol: 5,
        expiry: u32::MAX,
        disconnected_at: Some(1_700_000_000_000),
        will: Some(will),
        will_due: Some(u64::MAX),
    };
    let message = StoredMessage {
        topic: "a/b/c".into(),
        payload: Bytes::from(vec![0xA5; 300]),
        qos: 1,
        retain: true,
        properties: full_properties(),
        expires_at: Some(0),
        publisher: Some("pub".into()),
    };
    let entry = OutEntry {
        message_id: u64::MAX,
        qos: 2,
        retain: true,
        subscription_ids: vec![1, 2, 268_435_455],
        packet_id: Some(65535),
        released: true,
    };
    let c = || holdfast_core::ClientId::from("client-é");
    vec![
        Op::PutSession {
            client_id: c(),
            record,
        },
        Op::PutSession {
            client_id: "".into(),
            record: SessionRecord::default(),
        },
        Op::DeleteSession { client_id: c() },
        Op::PutSubscription {
            client_id: c(),
            filter: "$share/g/a/+".into(),
            options: 0b10_1110,
            id: Some(268_435_455),
        },
        Op::PutSubscription {
            client_id: c(),
            filter: "#".into(),
            options: 0,
            id: None,
        },
        Op::DeleteSubscription {
            client_id: c(),
            filter: "#".into(),
        },
        Op::PutMessage { id: 7, message },
        Op::PutMessage {
            id: 0,
            message: StoredMessage::default(),
        },
        Op::DeleteMessage { id: u64::MAX },
        Op::PutOutbound {
            client_id: c(),
            seq: 1 << 40,
            entry,
        },
        Op::PutOutbound {
            client_id: c(),
            seq: 0,
            entry: OutEntry::default(),
        },
        Op::DeleteOutbound {
            client_id: c(),
            seq: 3,
        },
        Op::PutInboundQos2 {
            client_id: c(),
            packet_id: 1,
        },
        Op::DeleteInboundQos2 {
            client_id: c(),
            packet_id: 65535,
        },
        Op::PutRetained {
            topic: "r/t".into(),
            message_id: 7,
        },
        Op::DeleteRetained {
            topic: "r/t".into(),
        },
    ]
}

#[test]
fn every_op_and_every_property_round_trips() {
    let ops = every_op();
    let mut buf = Vec::new();
    encode_batch(&mut buf, &ops);
    encode_batch(&mut buf, &ops[..1]);
    let (rec, next) = read_record(&buf, 0).unwrap();
    assert_eq!(rec, Record::Batch(ops.clone()));
    let (rec, end) = read_record(&buf, next).unwrap();
    assert_eq!(rec, Record::Batch(ops[..1].to_vec()));
    assert_eq!(end, buf.len());
}

#[test]
fn an_empty_batch_writes_nothing() {
    let mut buf = Vec::new();
    encode_batch(&mut buf, &[]);
    assert!(buf.is_empty());
}

#[test]
fn every_single_bit_flip_is_detected() {
    let mut buf = Vec::new();
    encode_batch(&mut buf, &every_op()[..4]);
    for i in 0..buf.len() {
        for bit in 0..8 {
            let mut b = buf.clone();
            b[i] ^= 1 << bit;
            assert!(
                read_record(&b, 0).is_err(),
                "flip of bit {bit} at {i} went unnoticed"
            );
        }
    }
}

#[test] // replay appends a batch's ops to one vector: a bad batch leaves none of its ops there
fn a_batch_that_does_not_decode_adds_no_ops() {
    let ops = every_op();
    let mut buf = Vec::new();
    encode_batch(&mut buf, &ops[..3]);
    // Damage the last op's tag behind a valid checksum: the first two ops decode, the third not.
    let mut last = Vec::new();
    encode_op(&mut last, &ops[2]);
    let at = buf.len() - last.len();
    buf[at] = 0xEE;
    let crc = crc32c::crc32c_append(crc32c::crc32c(&buf[1..5]), &buf[RECORD_HEADER_LEN..]);
    buf[5..9].copy_from_slice(&crc.to_le_bytes());
    let mut got = vec![ops[5].clone()];
    let mut arena = crate::codec::PayloadArena::default();
    assert_eq!(
        read_record_in(&buf, 0, &mut arena, &mut got).unwrap_err(),
        Bad::Corrupt("unknown op")
    );
    assert_eq!(got, [ops[5].clone()]);
}

#[test]
fn every_truncation_is_incomplete() {
    let mut buf = Vec::new();
    encode_batch(&mut buf, &every_op()[..3]);
    for len in 1..buf.len() {
        assert_eq!(
            read_record(&buf[..len], 0).unwrap_err(),
            Bad::Incomplete,
            "cut at {len}"
        );
    }
}

#[test]
fn segment_header_round_trips_and_detects_damage() {
    let h = SegmentHeader {
        version: FORMAT_VERSION,
        flags: FLAG_SNAPSHOT,
        seq: 0x1234_5678_9abc,
    };
    let bytes = h.encode();
    assert_eq!(SegmentHeader::decode(&bytes), Some(h));
    assert!(h.is_snapshot());
    for i in 0..HEADER_LEN {
        let mut b = bytes;
        b[i] ^= 0x10;
        assert_eq!(SegmentHeader::decode(&b), None, "flip at {i}");
    }
    assert_eq!(SegmentHeader::decode(&bytes[..HEADER_LEN - 1]), None);
}

#[test]
fn varints_round_trip_and_overlong_ones_are_rejected() {
    for v in [
        0,
        1,
        127,
        128,
        16_383,
        16_384,
        u64::from(u32::MAX),
        u64::MAX - 1,
        u64::MAX,
    ] {
        let mut buf = Vec::new();
        put_varint(&mut buf, v);
        let mut r = Reader { buf: &buf };
        assert_eq!(r.varint(), Ok(v));
        assert!(r.buf.is_empty());
    }
    let mut r = Reader { buf: &[0xff; 11] };
    assert!(r.varint().is_err());
    let mut r = Reader {
        buf: &[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02],
    };
    assert!(r.varint().is_err(), "more than 64 bits");
}

#[test]
fn a_snapshot_replays_to_the_same_state() {
    let mut state = StoredState::default();
    for op in every_op() {
        state.apply(&op);
    }
    state.apply(&Op::PutSession {
        client_id: "x".into(),
        record: SessionRecord::default(),
    });
    state.apply(&Op::PutInboundQos2 {
        client_id: "x".into(),
        packet_id: 9,
    });
    state.apply(&Op::PutSubscription {
        client_id: "x".into(),
        filter: "f".into(),
        options: 1,
        id: None,
    });
    state.apply(&Op::PutOutbound {
        client_id: "x".into(),
        seq: 1,
        entry: OutEntry {
            message_id: 0,
            ..OutEntry::default()
        },
    });
    state.apply(&Op::PutRetained {
        topic: "r".into(),
        message_id: 7,
    });
    let mut buf = Vec::new();
    let mut records = Vec::new();
    // A tiny chunk size: one record per op.
    let ops = encode_state(&state, &mut buf, 1, 1, |b| {
        records.extend_from_slice(b);
        b.clear();
        Ok::<_, ()>(())
    })
    .unwrap();
    assert_eq!(ops as usize, state.to_ops().len());
    let mut replayed = StoredState::default();
    let mut pos = 0;
    let mut n = 0;
    while pos < records.len() {
        let (rec, next) = read_record(&records, pos).unwrap();
        let Record::Batch(ops) = rec else {
            panic!("not a batch")
        };
        for op in &ops {
            replayed.apply(op);
        }
        pos = next;
        n += 1;
    }
    assert_eq!(n, ops);
    assert_eq!(replayed, state);
}
