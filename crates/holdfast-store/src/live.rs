//! How many bytes the live state takes in a snapshot, kept up to date op by op, so compaction (and
//! the quota) can tell garbage in the log from live data without writing a snapshot to find out.

use crate::record::{
    self, put_inbound, put_message, put_outbound, put_retained, put_session, put_subscription,
};
use crate::{Op, StoredState};

/// Bytes of a snapshot of `state` (without its framing).
pub(crate) fn state_bytes(state: &StoredState) -> u64 {
    // Encoded a piece at a time into one small buffer: only the sizes are wanted.
    const PIECE: usize = 64 << 10;
    let mut ops = 0u64;
    let mut buf = Vec::with_capacity(2 * PIECE);
    let _ = record::encode_state(state, &mut buf, PIECE, PIECE, |b| {
        ops += record::batch_op_bytes(b);
        b.clear();
        Ok::<_, ()>(())
    });
    ops
}

fn len(scratch: &mut Vec<u8>, put: impl FnOnce(&mut Vec<u8>)) -> i64 {
    scratch.clear();
    put(scratch);
    scratch.len() as i64
}

/// How much applying `op` to `state` changes [`state_bytes`] (call it before applying).
pub(crate) fn delta(state: &StoredState, op: &Op, s: &mut Vec<u8>) -> i64 {
    match op {
        Op::PutSession { client_id, record } => {
            let old = state
                .sessions
                .get(client_id)
                .map_or(0, |x| len(s, |b| put_session(b, client_id, &x.record)));
            len(s, |b| put_session(b, client_id, record)) - old
        }
        Op::DeleteSession { client_id } => {
            let Some(x) = state.sessions.get(client_id) else {
                return 0;
            };
            let mut old = len(s, |b| put_session(b, client_id, &x.record));
            for (f, (o, id)) in &x.subscriptions {
                old += len(s, |b| put_subscription(b, client_id, f, *o, *id));
            }
            for (seq, e) in &x.outbound {
                old += len(s, |b| put_outbound(b, client_id, *seq, e));
            }
            old += x.inbound_qos2.len() as i64 * len(s, |b| put_inbound(b, client_id, 0));
            -old
        }
        Op::PutSubscription {
            client_id,
            filter,
            options,
            id,
        } => {
            let Some(x) = state.sessions.get(client_id) else {
                return 0;
            };
            let old = x.subscriptions.get(filter).map_or(0, |(o, i)| {
                len(s, |b| put_subscription(b, client_id, filter, *o, *i))
            });
            len(s, |b| put_subscription(b, client_id, filter, *options, *id)) - old
        }
        Op::DeleteSubscription { client_id, filter } => {
            let Some((o, i)) = state
                .sessions
                .get(client_id)
                .and_then(|x| x.subscriptions.get(filter))
            else {
                return 0;
            };
            -len(s, |b| put_subscription(b, client_id, filter, *o, *i))
        }
        Op::PutMessage { id, message } => {
            let old = state
                .messages
                .get(id)
                .map_or(0, |m| len(s, |b| put_message(b, *id, m)));
            len(s, |b| put_message(b, *id, message)) - old
        }
        Op::DeleteMessage { id } => -state
            .messages
            .get(id)
            .map_or(0, |m| len(s, |b| put_message(b, *id, m))),
        Op::PutOutbound {
            client_id,
            seq,
            entry,
        } => {
            let Some(x) = state.sessions.get(client_id) else {
                return 0;
            };
            let old = x
                .outbound
                .get(seq)
                .map_or(0, |e| len(s, |b| put_outbound(b, client_id, *seq, e)));
            len(s, |b| put_outbound(b, client_id, *seq, entry)) - old
        }
        Op::DeleteOutbound { client_id, seq } => {
            let Some(e) = state
                .sessions
                .get(client_id)
                .and_then(|x| x.outbound.get(seq))
            else {
                return 0;
            };
            -len(s, |b| put_outbound(b, client_id, *seq, e))
        }
        Op::PutInboundQos2 {
            client_id,
            packet_id,
        } => match state.sessions.get(client_id) {
            Some(x) if !x.inbound_qos2.contains(packet_id) => {
                len(s, |b| put_inbound(b, client_id, *packet_id))
            }
            _ => 0,
        },
        Op::DeleteInboundQos2 {
            client_id,
            packet_id,
        } => match state.sessions.get(client_id) {
            Some(x) if x.inbound_qos2.contains(packet_id) => {
                -len(s, |b| put_inbound(b, client_id, *packet_id))
            }
            _ => 0,
        },
        Op::PutRetained { topic, message_id } => {
            let old = state
                .retained
                .get(topic)
                .map_or(0, |m| len(s, |b| put_retained(b, topic, *m)));
            len(s, |b| put_retained(b, topic, *message_id)) - old
        }
        Op::DeleteRetained { topic } => -state
            .retained
            .get(topic)
            .map_or(0, |m| len(s, |b| put_retained(b, topic, *m))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test] // counted a piece at a time, it is what one record of the whole state would hold
    fn a_large_state_is_counted_across_pieces() {
        let mut state = StoredState::default();
        let ops = crate::record::tests::every_op();
        for i in 0..2000u64 {
            for op in &ops {
                let mut op = op.clone();
                match &mut op {
                    Op::PutMessage { id, .. } => *id = id.wrapping_add(i * 10),
                    Op::PutOutbound { seq, entry, .. } => {
                        *seq = seq.wrapping_add(i);
                        entry.message_id = entry.message_id.wrapping_add(i * 10);
                    }
                    _ => {}
                }
                state.apply_owned(op);
            }
        }
        let mut whole = Vec::new();
        record::encode_state(&state, &mut whole, usize::MAX, usize::MAX, |_| {
            Ok::<_, ()>(())
        })
        .unwrap();
        assert!(whole.len() > 4 * (64 << 10));
        let framing = record::RECORD_HEADER_LEN + 5;
        assert_eq!(state_bytes(&state), (whole.len() - framing) as u64);
    }

    #[test]
    fn the_running_count_matches_a_fresh_one() {
        let ops = crate::record::tests::every_op();
        let mut state = StoredState::default();
        let mut live = 0i64;
        let mut scratch = Vec::new();
        for round in 0..3 {
            for op in ops.iter().skip(round) {
                live += delta(&state, op, &mut scratch);
                state.apply(op);
                assert_eq!(live as u64, state_bytes(&state), "after {op:?}");
            }
        }
    }
}
