//! Damaged segment files on a real file system: flipped bytes, files cut short. The store always
//! opens, serves what is intact, reports the damage and keeps the damaged files.

use std::fs;
use std::path::Path;

use bytes::Bytes;
use holdfast_store::{
    verify, Durability, LogOptions, LogStore, Op, OutEntry, SessionRecord, Store, StoredMessage,
    StoredState,
};

use crate::common::*;

fn opts() -> LogOptions {
    LogOptions {
        segment_size: 2048,
        ..LogOptions::default()
    }
}

/// A log of 150 sessions, each written in one batch, across several segments and a snapshot.
fn build(dir: &Path) -> StoredState {
    let (store, _) = LogStore::open(dir, opts()).unwrap();
    for i in 0..150u64 {
        let c: holdfast_core::ClientId = format!("client-{i:03}").into();
        let message = StoredMessage {
            topic: format!("t/{i}").into(),
            payload: Bytes::from(vec![i as u8; 40]),
            qos: 1,
            ..StoredMessage::default()
        };
        let ops = vec![
            Op::PutSession {
                client_id: c.clone(),
                record: SessionRecord {
                    protocol: 5,
                    expiry: i as u32,
                    ..SessionRecord::default()
                },
            },
            Op::PutSubscription {
                client_id: c.clone(),
                filter: format!("t/{i}/#"),
                options: 1,
                id: Some(i as u32 + 1),
            },
            Op::PutMessage { id: i, message },
            Op::PutOutbound {
                client_id: c,
                seq: i,
                entry: OutEntry {
                    message_id: i,
                    qos: 1,
                    ..OutEntry::default()
                },
            },
        ];
        commit(&store, ops, Durability::Flush).unwrap();
    }
    store.close();
    store.load()
}

fn copy_dir(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for e in fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_file() {
            fs::copy(e.path(), to.join(e.file_name())).unwrap();
        }
    }
}

fn segments(dir: &Path) -> Vec<String> {
    let mut names: Vec<_> = fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.unwrap().file_name().into_string().ok())
        .filter(|n| n.ends_with(".log"))
        .collect();
    names.sort();
    names
}

/// Every session, message and entry served is one that was written, unchanged.
fn assert_intact(state: &StoredState, model: &StoredState) -> usize {
    let mut whole = 0;
    for (c, s) in &state.sessions {
        let m = &model.sessions[c];
        assert_eq!(s.record, m.record, "{c}");
        assert!(
            s.subscriptions
                .iter()
                .all(|(f, o)| m.subscriptions.get(f) == Some(o)),
            "{c}"
        );
        assert!(
            s.outbound.iter().all(|(q, e)| m.outbound.get(q) == Some(e)),
            "{c}"
        );
        whole += usize::from(s == m);
    }
    for (id, msg) in &state.messages {
        assert_eq!(Some(msg), model.messages.get(id));
    }
    whole
}

#[test]
fn damaged_segments_never_stop_the_store() {
    let base = tempfile::tempdir().unwrap();
    let model = build(base.path());
    let names = segments(base.path());
    assert!(names.len() >= 3, "{names:?}");
    let clean = verify(base.path()).unwrap();
    assert!(!clean.is_damaged() && clean.torn_bytes == 0, "{clean}");
    assert_eq!(clean.counts.sessions, 150);

    let mut rng = Rng(0x5eed);
    for variant in 0..30 {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        copy_dir(base.path(), dir);
        let mut events = 0;
        let mut must_detect = false;
        // Flip 1-3 bytes.
        if variant % 3 != 2 {
            for _ in 0..=rng.below(3) {
                let name = &names[rng.below(names.len() as u64) as usize];
                let path = dir.join(name);
                let mut bytes = fs::read(&path).unwrap();
                let at = rng.below(bytes.len() as u64) as usize;
                bytes[at] ^= (rng.below(255) + 1) as u8;
                fs::write(&path, bytes).unwrap();
                events += 1;
                must_detect = true;
            }
        }
        // Cut a file short.
        if variant % 3 != 0 {
            let i = rng.below(names.len() as u64) as usize;
            let path = dir.join(&names[i]);
            let len = fs::metadata(&path).unwrap().len();
            let at = rng.below(len);
            fs::OpenOptions::new()
                .write(true)
                .open(&path)
                .unwrap()
                .set_len(at)
                .unwrap();
            events += 1;
            must_detect |= i + 1 < names.len();
        }
        let report = verify(dir).unwrap();
        if must_detect {
            assert!(
                report.is_damaged() || report.torn_bytes > 0,
                "variant {variant}: undetected\n{report}"
            );
        }
        assert!(report.to_string().contains("data directory"));

        let (store, recovery) = LogStore::open(dir, opts()).unwrap();
        let state = store.load();
        let whole = assert_intact(&state, &model);
        // A damaged record loses at most the ops it held (snapshot records hold up to 4 KiB).
        assert!(
            whole + events * 40 >= 150,
            "variant {variant}: {whole} whole sessions\n{recovery}"
        );
        assert_eq!(
            recovery.corrupt_records.len() as u64,
            store.stats().corrupt_records_skipped
        );
        assert_eq!(
            recovery.corrupt_records, report.corrupt_records,
            "open finds what verify found"
        );
        if !recovery.corrupt_records.is_empty() {
            assert!(!recovery.moved_aside.is_empty(), "{recovery:?}");
            for p in &recovery.moved_aside {
                assert!(p.starts_with(dir.join("damaged")) && p.exists(), "{p:?}");
            }
        }
        // The log is whole again, and the next start finds the same.
        let now = verify(dir).unwrap();
        assert!(
            !now.is_damaged() && now.torn_bytes == 0,
            "variant {variant}\n{now}"
        );
        assert_eq!(now.moved_aside.len(), recovery.moved_aside.len());
        drop(store);
        let (again, second) = LogStore::open(dir, opts()).unwrap();
        assert_eq!(again.load(), state);
        assert!(
            second.corrupt_records.is_empty() && second.torn_bytes_truncated == 0,
            "{second:?}"
        );
    }
}

#[test]
fn a_torn_tail_is_cut_off() {
    let tmp = tempfile::tempdir().unwrap();
    let model = build(tmp.path());
    let last = tmp.path().join(segments(tmp.path()).last().unwrap());
    let mut f = fs::OpenOptions::new().append(true).open(&last).unwrap();
    std::io::Write::write_all(&mut f, &[0xA5, 0x40, 0, 0, 0, 1, 2, 3]).unwrap();
    drop(f);
    let report = verify(tmp.path()).unwrap();
    assert_eq!(report.torn_bytes, 8);
    assert!(!report.is_damaged());
    let (store, recovery) = LogStore::open(tmp.path(), opts()).unwrap();
    assert_eq!(recovery.torn_bytes_truncated, 8);
    assert!(recovery.moved_aside.is_empty());
    assert_eq!(store.load(), model);
}

#[test]
fn garbage_files_in_the_directory_are_left_alone() {
    let tmp = tempfile::tempdir().unwrap();
    let model = build(tmp.path());
    fs::write(tmp.path().join("README"), b"not a segment").unwrap();
    fs::write(tmp.path().join("zzzz.log"), b"not ours either").unwrap();
    let (store, _) = LogStore::open(tmp.path(), opts()).unwrap();
    assert_eq!(store.load(), model);
    assert!(tmp.path().join("README").exists() && tmp.path().join("zzzz.log").exists());
}
