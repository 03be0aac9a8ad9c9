//! ACLs: denied PUBLISH gets v5 PUBACK/PUBREC 0x87 and is acknowledged and dropped in 3.1.1;
//! denied SUBSCRIBE gets SUBACK 0x87 / 0x80; %u and %c; $SYS only with an explicit rule.

mod support;

use support::raw::{publish, subscribe, RawConn, RawPacket};
use support::secure::{connect_with, passwd_add, temp_dir, Server};

const ACL: &str = r#"
# the alive check of the test harness
[[rule]]
access = "all"
topics = ["alive/#"]

[[rule]]
action = "deny"
access = "all"
topics = ["shared/secret"]

[[rule]]
user = "alice"
access = "all"
topics = ["shared/#", "home/%u/#"]

[[rule]]
access = "subscribe"
topics = ["shared/#"]

[[rule]]
access = "publish"
topics = ["clients/%c"]

[[rule]]
user = "admin"
access = "subscribe"
topics = ["$SYS/#"]
"#;

fn server() -> Server {
    let dir = temp_dir();
    std::fs::write(dir.path().join("acl.toml"), ACL).unwrap();
    let file = dir.path().join("passwords");
    passwd_add(&file, "alice", "a");
    passwd_add(&file, "bob", "b");
    passwd_add(&file, "admin", "x");
    Server::start(
        "[[listener]]\nbind = \"127.0.0.1:{port0}\"\n[storage]\ndurability = \"volatile\"\n\
         [auth]\nallow_anonymous = true\npassword_file = \"{dir}/passwords\"\n\
         acl_file = \"{dir}/acl.toml\"\n",
        dir,
    )
}

fn client(server: &Server, level: u8, id: &str, user: Option<(&str, &str)>) -> RawConn {
    let mut c = RawConn::open(server.addr(0));
    c.send(&connect_with(
        level,
        id,
        user.map(|u| u.0),
        user.map(|u| u.1),
    ));
    let ack = c.expect_packet("CONNACK");
    assert_eq!(ack.reason(), 0, "CONNACK {ack:?}");
    c
}

fn suback_codes(c: &mut RawConn, filter: &str, v5: bool) -> Vec<u8> {
    c.send(&subscribe(0x82, 7, filter.as_bytes(), 1, v5));
    let ack = c.expect_packet("SUBACK");
    assert_eq!(ack.first, 0x90);
    let skip = if v5 { 3 } else { 2 };
    ack.body[skip..].to_vec()
}

/// A PUBACK's reason (0 when absent, as in 3.1.1).
fn puback_reason(p: &RawPacket) -> u8 {
    assert_eq!(p.first, 0x40, "expected PUBACK, got {p:?}");
    p.body.get(2).copied().unwrap_or(0)
}

#[test] // denied SUBSCRIBE: v5 SUBACK 0x87, 3.1.1 SUBACK 0x80; allowed ones granted
fn subscribe_denied_both_versions() {
    let server = server();
    let mut bob5 = client(&server, 5, "bob5", Some(("bob", "b")));
    assert_eq!(suback_codes(&mut bob5, "home/alice/#", true), [0x87]);
    assert_eq!(suback_codes(&mut bob5, "shared/news", true), [1]);
    // A broad filter that overlaps a deny rule is refused: it could receive shared/secret.
    assert_eq!(suback_codes(&mut bob5, "shared/#", true), [0x87]);
    let mut bob4 = client(&server, 4, "bob4", Some(("bob", "b")));
    assert_eq!(suback_codes(&mut bob4, "home/alice/#", false), [0x80]);
    assert_eq!(suback_codes(&mut bob4, "shared/news", false), [1]);
    let mut alice = client(&server, 4, "alice4", Some(("alice", "a")));
    assert_eq!(suback_codes(&mut alice, "home/alice/#", false), [1]);
    assert_eq!(suback_codes(&mut alice, "home/bob/#", false), [0x80], "%u");
    support::raw::assert_broker_alive(server.addr(0));
}

#[test] // denied PUBLISH: v5 PUBACK 0x87 / PUBREC 0x87; 3.1.1 acknowledged and dropped
fn publish_denied_both_versions() {
    let server = server();
    let mut alice = client(&server, 5, "alice-sub", Some(("alice", "a")));
    assert_eq!(suback_codes(&mut alice, "home/alice/#", true), [1]);

    let mut bob5 = client(&server, 5, "bob5", Some(("bob", "b")));
    bob5.send(&publish(
        b"home/alice/door",
        1,
        false,
        1,
        b"open",
        Some(&[]),
    ));
    assert_eq!(puback_reason(&bob5.expect_packet("PUBACK")), 0x87);
    bob5.send(&publish(
        b"home/alice/door",
        2,
        false,
        2,
        b"open",
        Some(&[]),
    ));
    let rec = bob5.expect_packet("PUBREC");
    assert_eq!((rec.first, rec.body[2]), (0x50, 0x87));
    let mut bob4 = client(&server, 4, "bob4", Some(("bob", "b")));
    bob4.send(&publish(b"home/alice/door", 1, false, 3, b"open", None));
    assert_eq!(puback_reason(&bob4.expect_packet("PUBACK")), 0);
    bob4.send(&publish(b"home/alice/door", 0, false, 0, b"open", None));

    // The owner may publish there; it is the only message alice receives.
    let mut owner = client(&server, 4, "alice-pub", Some(("alice", "a")));
    owner.send(&publish(b"home/alice/door", 1, false, 4, b"mine", None));
    assert_eq!(puback_reason(&owner.expect_packet("PUBACK")), 0);
    let got = alice.expect_packet("PUBLISH");
    assert_eq!(got.first >> 4, 3);
    assert!(got.body.ends_with(b"mine"), "{got:?}");
    assert!(
        alice.packets_within(support::QUIET).is_empty(),
        "denied publishes were delivered"
    );
}

#[test] // %c: a client may publish to clients/<its id>; anonymous clients follow the rules too
fn client_id_substitution_and_anonymous() {
    let server = server();
    let mut anon = client(&server, 5, "dev42", None);
    anon.send(&publish(b"clients/dev42", 1, false, 1, b"x", Some(&[])));
    assert_ne!(puback_reason(&anon.expect_packet("PUBACK")), 0x87);
    anon.send(&publish(b"clients/dev43", 1, false, 2, b"x", Some(&[])));
    assert_eq!(puback_reason(&anon.expect_packet("PUBACK")), 0x87);
    // A will the client may not publish refuses the connection (0x87).
    let mut c = RawConn::open(server.addr(0));
    let mut connect = support::raw::Connect::v5("will-client");
    connect.will = Some(support::raw::Will {
        topic: b"home/alice/x".to_vec(),
        payload: b"bye".to_vec(),
        qos: 0,
        retain: false,
        properties: vec![],
    });
    c.send(&connect.encode());
    assert_eq!(c.expect_packet("CONNACK").reason(), 0x87);
}

#[test] // $SYS/# is readable only where a rule names it: not through # or +
fn sys_topics_need_an_explicit_rule() {
    let server = server();
    let mut alice = client(&server, 5, "alice", Some(("alice", "a")));
    assert_eq!(suback_codes(&mut alice, "$SYS/#", true), [0x87]);
    let mut admin = client(&server, 5, "admin", Some(("admin", "x")));
    assert_eq!(suback_codes(&mut admin, "$SYS/#", true), [1]);
}

/// Waits until the server's log contains `text`.
fn wait_for_log(server: &Server, text: &str) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while !server.log().contains(text) {
        assert!(std::time::Instant::now() < deadline, "not logged: {text}");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

#[test] // SIGHUP re-reads the ACL file for sessions already connected; a broken file keeps the rules
fn acl_file_reloads_on_sighup() {
    let server = server();
    let mut bob = client(&server, 5, "bob-reload", Some(("bob", "b")));
    let door = |c: &mut RawConn, id: u16| {
        c.send(&publish(
            b"home/alice/door",
            1,
            false,
            id,
            b"knock",
            Some(&[]),
        ));
        puback_reason(&c.expect_packet("PUBACK"))
    };
    assert_eq!(door(&mut bob, 1), 0x87);

    let acl = server.path("acl.toml");
    let grant =
        "\n[[rule]]\nuser = \"bob\"\naccess = \"publish\"\ntopics = [\"home/alice/door\"]\n";
    std::fs::write(&acl, format!("{ACL}{grant}")).unwrap();
    server.hangup();
    wait_for_log(&server, "ACL reloaded");
    // Allowed now: 0x10 No matching subscribers (nobody listens there).
    assert_eq!(
        door(&mut bob, 2),
        0x10,
        "the new rule applies to a connected session"
    );

    // A file that does not parse is reported and the rules in force stay.
    std::fs::write(&acl, "[[rule]]\naccess = \"sometimes\"\n").unwrap();
    server.hangup();
    wait_for_log(&server, "ACL not reloaded");
    assert_eq!(door(&mut bob, 3), 0x10);
    support::raw::assert_broker_alive(server.addr(0));
}
