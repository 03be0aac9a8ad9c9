//! Authentication: `holdfast passwd`, the password file, allow_anonymous, wrong passwords in
//! MQTT 3.1.1 (return codes 4 and 5) and 5 (0x86, 0x87), reload on SIGHUP, failed-login slow-down.

mod support;

use std::path::Path;
use std::time::{Duration, Instant};

use support::raw::RawConn;
use support::secure::{connect_with, passwd_add, run_py, temp_dir, Server};

fn config(extra: &str) -> String {
    format!(
        "[[listener]]\nbind = \"127.0.0.1:{{port0}}\"\n[storage]\ndurability = \"volatile\"\n\
         [auth]\npassword_file = \"{{dir}}/passwords\"\n{extra}"
    )
}

fn server_with_users(extra: &str) -> Server {
    let dir = temp_dir();
    let file = dir.path().join("passwords");
    passwd_add(&file, "alice", "wonderland");
    passwd_add(&file, "bob", "builder");
    Server::start(&config(extra), dir)
}

/// The CONNACK reason (v5) or return code (3.1.1) for a CONNECT with these credentials.
fn connack(server: &Server, level: u8, user: Option<&str>, pass: Option<&str>) -> u8 {
    let mut c = RawConn::open(server.addr(0));
    c.send(&connect_with(level, "auth-test", user, pass));
    let ack = c.expect_packet("CONNACK");
    assert!(ack.is_connack(), "{ack:?}");
    ack.body[1]
}

#[test] // the password file is made by `holdfast passwd`: salted argon2id, no clear text
fn passwd_writes_salted_hashes_and_deletes() {
    let dir = temp_dir();
    let file = dir.path().join("pw");
    passwd_add(&file, "alice", "secret");
    passwd_add(&file, "bob", "secret");
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(!text.contains("secret"), "{text}");
    let hashes: Vec<&str> = text.lines().map(|l| l.split_once(':').unwrap().1).collect();
    assert_eq!(hashes.len(), 2);
    assert!(hashes.iter().all(|h| h.starts_with("$argon2id$")));
    assert_ne!(hashes[0], hashes[1], "same password, different salt");
    let out = support::holdfast_command()
        .args(["passwd", "--delete"])
        .arg(&file)
        .arg("alice")
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(!text.contains("alice:") && text.contains("bob:"));
    let out = support::holdfast_command()
        .args(["passwd", "--delete"])
        .arg(&file)
        .arg("nobody")
        .output()
        .unwrap();
    assert!(!out.status.success(), "deleting a missing user fails");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&file).unwrap().permissions().mode();
        assert_eq!(
            mode & 0o077,
            0,
            "password file readable by others: {mode:o}"
        );
    }
}

#[test] // [MQTT-3.1.4-2] wrong password 0x86 / 4; no user name without allow_anonymous 0x87 / 5
fn wrong_password_and_anonymous_refused_both_versions() {
    let server = server_with_users("");
    assert_eq!(connack(&server, 5, Some("alice"), Some("wonderland")), 0);
    assert_eq!(connack(&server, 4, Some("bob"), Some("builder")), 0);
    assert_eq!(connack(&server, 5, Some("alice"), Some("nope")), 0x86);
    assert_eq!(connack(&server, 4, Some("alice"), Some("nope")), 4);
    assert_eq!(connack(&server, 5, Some("mallory"), Some("x")), 0x86);
    assert_eq!(connack(&server, 4, Some("alice"), None), 4);
    assert_eq!(connack(&server, 5, None, None), 0x87);
    assert_eq!(connack(&server, 4, None, None), 5);
}

#[test] // allow_anonymous = true with a password file: anonymous in, wrong passwords still out
fn allow_anonymous_with_password_file() {
    let server = server_with_users("allow_anonymous = true\n");
    assert_eq!(connack(&server, 4, None, None), 0);
    assert_eq!(connack(&server, 5, Some("bob"), Some("wrong")), 0x86);
    support::raw::assert_broker_alive(server.addr(0));
}

fn paho(server: &Server, protocol: &str, user: &str, pass: &str, expect: &str) {
    run_py(
        "secure_client.py",
        &[
            "--port".into(),
            server.ports[0].to_string(),
            "--protocol".into(),
            protocol.into(),
            "--username".into(),
            user.into(),
            "--password".into(),
            pass.into(),
            "--expect".into(),
            expect.into(),
        ],
    );
}

#[test] // paho-mqtt with right and wrong passwords, 3.1.1 and 5
fn paho_passwords_both_versions() {
    let server = server_with_users("");
    for protocol in ["311", "5"] {
        paho(&server, protocol, "alice", "wonderland", "0");
        paho(&server, protocol, "alice", "wrong", "0x86");
    }
}

#[test] // SIGHUP re-reads the password file: a deleted user can no longer log in
fn password_file_reloads_on_sighup() {
    let server = server_with_users("");
    assert_eq!(connack(&server, 5, Some("bob"), Some("builder")), 0);
    let file = server.path("passwords");
    let out = support::holdfast_command()
        .args(["passwd", "--delete"])
        .arg(&file)
        .arg("bob")
        .output()
        .unwrap();
    assert!(out.status.success());
    passwd_add(Path::new(&file), "carol", "c4r0l");
    server.hangup();
    let deadline = Instant::now() + Duration::from_secs(5);
    while !server.log().contains("password file reloaded") {
        assert!(Instant::now() < deadline, "no reload logged");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(connack(&server, 5, Some("bob"), Some("builder")), 0x86);
    assert_eq!(connack(&server, 5, Some("carol"), Some("c4r0l")), 0);
}

#[test] // failed logins from one address are slowed down, and counted in the log
fn failed_logins_are_slowed_down() {
    let server = server_with_users("allow_anonymous = true\n");
    let start = Instant::now();
    for _ in 0..2 {
        assert_eq!(connack(&server, 5, Some("alice"), Some("guess")), 0x86);
    }
    let first_two = start.elapsed();
    let t = Instant::now();
    for _ in 0..3 {
        assert_eq!(connack(&server, 5, Some("alice"), Some("guess")), 0x86);
    }
    let next_three = t.elapsed();
    // Delays of 100, 200 and 400 ms before the 3rd, 4th and 5th tries.
    assert!(
        next_three >= Duration::from_millis(700),
        "3 more failures took {next_three:?} (first two {first_two:?})"
    );
    assert!(server.log().contains("login failed"));
    // A well-behaved anonymous client is served meanwhile.
    support::raw::assert_broker_alive(server.addr(0));
}
