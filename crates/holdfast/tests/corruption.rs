//! Corruption tests on the real binary (issue 3, "How it is tested"; docs/durability.md, "Against
//! each failure"): real sessions, queued messages and retained messages are stored, the broker is
//! stopped, bytes of the segment files are flipped and the files truncated at random offsets
//! (seeded RNG, several rounds; `HOLDFAST_TEST_SEED` replays), and then:
//! - `holdfast store verify --data-dir` reports the damage with its file and offset (exit 1), or
//!   a torn tail for a file cut short (exit 0: that is what a crash leaves, not damage);
//! - the broker always starts, and serves every session whose records were not touched;
//! - a damaged segment is moved to `damaged/`, byte for byte, never deleted;
//! - the next restart is clean: `store verify` exits 0 and nothing more is moved aside.
//!
//! To know which records belong to whom, every name a client uses carries its marker `-NN-`,
//! and the test reads the record framing of docs/storage.md
//! (`record = 0xA5 len:u32 crc:u32 body[len]` after a 24-byte segment header).

mod support;

use std::fs;
use std::path::{Path, PathBuf};

use rumqttc::QoS;
use support::mqtt3::{options, persistent, Client3};
use support::raw::assert_broker_alive;
use support::rng::Rng;
use support::{holdfast_only, store_verify, Broker};

/// Clients (each with a session, a subscription, two queued messages and a retained message).
const CLIENTS: usize = 6;
const SEGMENT_HEADER: usize = 24;
const RECORD_HEADER: usize = 9;
const RECORD_MAGIC: u8 = 0xA5;

fn marker(k: usize) -> String {
    format!("-{k:02}-")
}
fn client_id(k: usize) -> String {
    format!("cc{}x", marker(k))
}
fn queue_topic(k: usize) -> String {
    format!("corr/t{}/q", marker(k))
}
fn retained_topic(k: usize) -> String {
    format!("corr/r{}", marker(k))
}
fn queued_payload(k: usize, i: usize) -> String {
    format!("m{}{i}", marker(k))
}

/// Stores the state of every client, then stops the broker gracefully.
async fn populate(broker: &mut Broker) {
    let port = broker.port();
    let mut publisher = Client3::connect(options(port, "corr-pub")).await;
    for k in 0..CLIENTS {
        let mut c = Client3::connect(persistent(port, &client_id(k))).await;
        c.subscribe_ok(&format!("corr/t{}/#", marker(k)), QoS::AtLeastOnce)
            .await;
        c.disconnect().await;
        for i in 0..2 {
            publisher
                .publish(
                    &queue_topic(k),
                    QoS::AtLeastOnce,
                    false,
                    queued_payload(k, i),
                )
                .await;
        }
        publisher
            .publish(
                &retained_topic(k),
                QoS::AtLeastOnce,
                true,
                format!("r{}", marker(k)),
            )
            .await;
    }
    publisher.disconnect().await;
    let status = broker.terminate(std::time::Duration::from_secs(15));
    assert!(status.is_some_and(|s| s.success()), "SIGTERM: {status:?}");
}

/// Asserts that client `k`'s session is intact: resumed, its two queued messages in order, its
/// retained message there.
async fn assert_intact(port: u16, k: usize, context: &str) {
    let mut c = Client3::connect(persistent(port, &client_id(k))).await;
    assert!(
        c.session_present(),
        "{context}: client {k}'s records were not touched: its session must be served"
    );
    for i in 0..2 {
        let p = c.recv().await;
        assert_eq!(
            String::from_utf8_lossy(&p.payload),
            queued_payload(k, i),
            "{context}: client {k}'s queued messages"
        );
    }
    c.disconnect().await;
    let mut r = Client3::connect(options(port, &format!("corr-check{}", marker(k)))).await;
    r.subscribe_ok(&retained_topic(k), QoS::AtLeastOnce).await;
    let p = r.recv().await;
    assert_eq!(
        (String::from_utf8_lossy(&p.payload).into_owned(), p.retain),
        (format!("r{}", marker(k)), true),
        "{context}: client {k}'s retained message"
    );
    r.disconnect().await;
}

// ---------------------------------------------------------------- files and records

/// The segment files (`*.log`) of a data directory, in order.
fn segments(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .map(|e| e.path())
                .filter(|p| p.is_file() && p.extension().is_some_and(|e| e == "log"))
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

fn damaged_files(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dir.join("damaged"))
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// A record of a segment: where it starts and how long it is (header included).
#[derive(Clone, Copy, Debug)]
struct Rec {
    offset: usize,
    len: usize,
}

impl Rec {
    fn end(&self) -> usize {
        self.offset + self.len
    }
}

/// The records of an intact segment, by their framing.
fn records(bytes: &[u8]) -> Vec<Rec> {
    let mut out = Vec::new();
    let mut pos = SEGMENT_HEADER;
    while pos + RECORD_HEADER <= bytes.len() && bytes[pos] == RECORD_MAGIC {
        let len = u32::from_le_bytes(bytes[pos + 1..pos + 5].try_into().unwrap()) as usize;
        if pos + RECORD_HEADER + len > bytes.len() {
            break;
        }
        out.push(Rec {
            offset: pos,
            len: RECORD_HEADER + len,
        });
        pos += RECORD_HEADER + len;
    }
    assert_eq!(
        pos,
        bytes.len(),
        "the pristine segment must parse to its end"
    );
    out
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

/// The clients whose marker appears in `rec`.
fn owners(bytes: &[u8], rec: Rec) -> Vec<usize> {
    let body = &bytes[rec.offset..rec.end()];
    (0..CLIENTS)
        .filter(|&k| contains(body, marker(k).as_bytes()))
        .collect()
}

/// A copy of a data directory's files (top level and `damaged/`).
fn copy_dir(from: &Path, to: &Path) {
    let _ = fs::remove_dir_all(to);
    fs::create_dir_all(to).unwrap();
    for e in fs::read_dir(from).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            copy_dir(&p, &to.join(e.file_name()));
        } else {
            fs::copy(&p, to.join(e.file_name())).unwrap();
        }
    }
}

/// The stored data as `populate` left it: one segment (the store rolls over at 64 MiB).
struct Pristine {
    _keep: tempfile::TempDir,
    dir: PathBuf,
    name: String,
    bytes: Vec<u8>,
    records: Vec<Rec>,
}

async fn pristine(broker: &mut Broker) -> Pristine {
    populate(broker).await;
    let segs = segments(&broker.data_dir());
    assert_eq!(
        segs.len(),
        1,
        "one segment expected after populate: {segs:?}"
    );
    let keep = tempfile::tempdir().unwrap();
    let dir = keep.path().join("data");
    copy_dir(&broker.data_dir(), &dir);
    let bytes = fs::read(&segs[0]).unwrap();
    let records = records(&bytes);
    for k in 0..CLIENTS {
        assert!(
            records.iter().any(|r| owners(&bytes, *r) == [k]),
            "client {k} has no record of its own: {records:?}"
        );
    }
    let out = store_verify(&dir);
    assert!(
        out.success(),
        "the pristine data must verify clean:\n{}",
        out.describe()
    );
    Pristine {
        _keep: keep,
        name: segs[0].file_name().unwrap().to_string_lossy().into_owned(),
        dir,
        bytes,
        records,
    }
}

/// Puts the pristine data, with `segment` as its segment's content, into the broker's data dir.
fn install(broker: &Broker, p: &Pristine, segment: &[u8]) {
    copy_dir(&p.dir, &broker.data_dir());
    fs::write(broker.data_dir().join(&p.name), segment).unwrap();
}

/// After a damaged start: stop, `store verify` must be clean, and the next start must find no
/// damage and move nothing more aside.
fn assert_next_restart_clean(broker: &mut Broker, context: &str) {
    let aside = damaged_files(&broker.data_dir());
    broker.kill();
    let out = store_verify(&broker.data_dir());
    assert!(
        out.success(),
        "{context}: after the repairing start, `store verify` must exit 0:\n{}",
        out.describe()
    );
    assert!(
        !out.stdout.contains("torn tail"),
        "{context}: the torn tail was cut off at the repairing start:\n{}",
        out.describe()
    );
    broker.restart();
    let log = broker.log_of_last_start();
    for bad in ["corrupt", "torn tail", "damaged segment", "panicked"] {
        assert!(
            !log.contains(bad),
            "{context}: the start after the repair must be clean, but its log mentions {bad:?}"
        );
    }
    assert_eq!(
        damaged_files(&broker.data_dir()),
        aside,
        "{context}: nothing more is moved aside"
    );
    assert_broker_alive(broker.addr());
    broker.kill();
}

// ---------------------------------------------------------------- the tests

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
// docs/durability.md "corrupt record in the middle": bytes flipped inside one record of one client
// are found by the checksum; `store verify` exits 1 and names the file and offset; the broker
// starts, skips the record, logs it with its location, moves the segment (byte for byte) to
// damaged/, and serves every other client's session, queue and retained message
// ([MQTT-4.1.0-1]: state that was not damaged is not discarded).
async fn flipped_bytes_in_one_record_lose_only_that_record() {
    if holdfast_only("the Holdfast store format") {
        return;
    }
    let (mut rng, seed) = Rng::from_env("corruption: flipped bytes");
    let mut broker = Broker::start();
    let p = pristine(&mut broker).await;
    let last = p.records.len() - 1;
    for round in 0..8 {
        // A record of one client only, not the last one of the file (damage at the very end is
        // indistinguishable from a torn write; the truncation test covers that).
        let candidates: Vec<(usize, Rec)> = p.records[..last]
            .iter()
            .filter_map(|r| match owners(&p.bytes, *r)[..] {
                [k] => Some((k, *r)),
                _ => None,
            })
            .collect();
        let (victim, rec) = candidates[rng.usize(0, candidates.len())];
        let mut bytes = p.bytes.clone();
        let flips = rng.usize(1, 4);
        for _ in 0..flips {
            let at = rng.usize(rec.offset, rec.end());
            bytes[at] ^= rng.range(1, 256) as u8;
        }
        let context = format!(
            "seed {seed} round {round}: {flips} byte(s) flipped in the record at offset {} \
             ({} bytes) of client {victim}",
            rec.offset, rec.len
        );
        eprintln!("{context}");
        install(&broker, &p, &bytes);

        let out = store_verify(&broker.data_dir());
        assert_eq!(
            out.status.and_then(|s| s.code()),
            Some(1),
            "{context}: `store verify` must exit 1 on damage:\n{}",
            out.describe()
        );
        let location = format!("{} at offset {}", p.name, rec.offset);
        assert!(
            out.stdout.contains("DAMAGED") && out.stdout.contains(&location),
            "{context}: `store verify` must report the damage at {location:?}:\n{}",
            out.describe()
        );

        broker.restart(); // never refuses: restart panics if the broker does not come up
        let log = broker.log_of_last_start();
        assert!(
            log.contains("skipping a corrupt record")
                && log.contains(&format!("offset={}", rec.offset)),
            "{context}: the start must log the corrupt record with its location"
        );
        let aside = broker.data_dir().join("damaged").join(&p.name);
        assert_eq!(
            fs::read(&aside).ok().as_deref(),
            Some(&bytes[..]),
            "{context}: the damaged segment must be in damaged/, byte for byte"
        );
        assert!(
            !broker.data_dir().join(&p.name).exists(),
            "{context}: the damaged segment is moved aside, replaced by a snapshot"
        );
        for k in (0..CLIENTS).filter(|&k| k != victim) {
            assert_intact(broker.port(), k, &context).await;
        }
        assert_broker_alive(broker.addr());
        assert_next_restart_clean(&mut broker, &context);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
// docs/durability.md "torn write at the end of the log": a segment cut short at a random offset
// (inside the header, or anywhere in the records) is a torn tail: `store verify` reports it
// (exit 0: not damage, what a crash leaves), the broker starts, cuts it off, and serves every
// client whose records all lie before the cut.
async fn truncated_segment_keeps_everything_before_the_cut() {
    if holdfast_only("the Holdfast store format") {
        return;
    }
    let (mut rng, seed) = Rng::from_env("corruption: truncation");
    let mut broker = Broker::start();
    let p = pristine(&mut broker).await;
    let first_record = p.records[0].offset;
    for round in 0..8 {
        let cut = if round == 0 {
            rng.usize(1, SEGMENT_HEADER)
        } else {
            rng.usize(first_record + 1, p.bytes.len())
        };
        let on_boundary = cut == SEGMENT_HEADER || p.records.iter().any(|r| r.end() == cut);
        let intact: Vec<usize> = (0..CLIENTS)
            .filter(|&k| {
                p.records
                    .iter()
                    .filter(|r| owners(&p.bytes, **r).contains(&k))
                    .all(|r| r.end() <= cut)
            })
            .collect();
        let context = format!(
            "seed {seed} round {round}: segment of {} bytes cut at {cut} (intact clients \
             {intact:?})",
            p.bytes.len()
        );
        eprintln!("{context}");
        install(&broker, &p, &p.bytes[..cut]);

        let out = store_verify(&broker.data_dir());
        assert!(
            out.success(),
            "{context}: a torn tail is not damage: `store verify` exits 0:\n{}",
            out.describe()
        );
        if !on_boundary {
            assert!(
                out.stdout.contains("torn tail"),
                "{context}: `store verify` must report the torn tail:\n{}",
                out.describe()
            );
        }
        broker.restart();
        if !on_boundary {
            assert!(
                broker.log_of_last_start().contains("torn tail"),
                "{context}: the start must log that it cut off a torn tail"
            );
        }
        for &k in &intact {
            assert_intact(broker.port(), k, &context).await;
        }
        assert_broker_alive(broker.addr());
        assert_next_restart_clean(&mut broker, &context);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
// DESIGN.md "Failures": the broker never refuses to start because of corrupt data. Random damage
// anywhere (header included): several flipped bytes, sometimes a truncation, sometimes garbage
// appended. `store verify` never fails to run, the broker starts and serves clients, a damaged
// segment is moved aside (never deleted), and the next restart is clean.
async fn random_damage_never_stops_the_broker() {
    if holdfast_only("the Holdfast store format") {
        return;
    }
    let (mut rng, seed) = Rng::from_env("corruption: random damage");
    let mut broker = Broker::start();
    let p = pristine(&mut broker).await;
    for round in 0..12 {
        let mut bytes = p.bytes.clone();
        let mut what = Vec::new();
        for _ in 0..rng.usize(1, 7) {
            let at = rng.usize(0, bytes.len());
            bytes[at] ^= rng.range(1, 256) as u8;
            what.push(format!("flip@{at}"));
        }
        if rng.chance(30) {
            let cut = rng.usize(1, bytes.len());
            bytes.truncate(cut);
            what.push(format!("cut@{cut}"));
        }
        if rng.chance(25) {
            let n = rng.usize(1, 64);
            bytes.extend((0..n).map(|_| rng.range(0, 256) as u8));
            what.push(format!("garbage+{n}"));
        }
        let context = format!("seed {seed} round {round}: {}", what.join(" "));
        eprintln!("{context}");
        install(&broker, &p, &bytes);

        let out = store_verify(&broker.data_dir());
        let code = out.status.and_then(|s| s.code());
        assert!(
            !out.timed_out && matches!(code, Some(0) | Some(1)) && out.stdout.contains("segments"),
            "{context}: `store verify` must run and report (exit 0 or 1):\n{}",
            out.describe()
        );
        let damaged = code == Some(1);
        broker.restart();
        let log = broker.log_of_last_start();
        assert!(!log.contains("panicked"), "{context}: the broker panicked");
        assert_broker_alive(broker.addr());
        // Every stored client can still connect and resume or start its session.
        for k in 0..CLIENTS {
            let c = Client3::connect(persistent(broker.port(), &client_id(k))).await;
            c.disconnect().await;
        }
        if damaged {
            // Byte for byte, except a torn tail: that is cut off before the copy (docs: "torn
            // write at the end of the log: cut off at start").
            let copy =
                fs::read(broker.data_dir().join("damaged").join(&p.name)).unwrap_or_else(|e| {
                    panic!(
                        "{context}: verify reported damage: the segment must be in damaged/: {e}"
                    )
                });
            assert!(
                copy.len() > SEGMENT_HEADER.min(bytes.len()) / 2 && bytes.starts_with(&copy),
                "{context}: damaged/{} must hold the damaged segment ({} bytes), holds {} bytes",
                p.name,
                bytes.len(),
                copy.len()
            );
        }
        assert_next_restart_clean(&mut broker, &context);
    }
}
