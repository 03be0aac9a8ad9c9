//! `verify` and `check`.

use std::time::Duration;

use holdfast_store::{check, verify, Durability, LogStore, Op, SessionRecord};

use crate::common::*;

#[test]
fn verify_reports_contents_and_changes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let (store, _) = LogStore::open_dir(tmp.path()).unwrap();
    for i in 0..10 {
        let op = Op::PutSession {
            client_id: format!("c{i}").into(),
            record: SessionRecord::default(),
        };
        commit(&store, vec![op], Durability::Flush).unwrap();
    }
    drop(store);
    let listing = |p: &std::path::Path| {
        let mut v: Vec<_> = std::fs::read_dir(p)
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                (e.file_name(), e.metadata().unwrap().len())
            })
            .collect();
        v.sort();
        v
    };
    let before = listing(tmp.path());
    let report = verify(tmp.path()).unwrap();
    assert_eq!(listing(tmp.path()), before);
    assert_eq!(report.counts.sessions, 10);
    assert!(!report.is_damaged());
    let text = report.to_string();
    assert!(
        text.contains("10 sessions") && text.contains("no damage found"),
        "{text}"
    );
    assert!(verify(&tmp.path().join("missing")).is_err());
}

#[test]
fn check_measures_the_disk() {
    let tmp = tempfile::tempdir().unwrap();
    let report = check(tmp.path(), Duration::from_millis(200)).unwrap();
    assert!(report.fsyncs > 0 && report.write_mb_per_s > 0.0);
    assert!(report.fsync_p50 <= report.fsync_p99 && report.fsync_p99 <= report.fsync_max);
    assert_eq!(report.rates.len(), 3);
    assert!(report.rates[2].messages_per_s > report.rates[0].messages_per_s);
    let text = report.to_string();
    assert!(
        text.contains("fdatasync") && text.contains("msg/s"),
        "{text}"
    );
    assert_eq!(
        std::fs::read_dir(tmp.path()).unwrap().count(),
        0,
        "the temporary file is gone"
    );
}
