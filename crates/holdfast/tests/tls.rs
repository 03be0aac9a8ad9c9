//! MQTT over TLS: paho-mqtt with a CA and client certificate made by rcgen, refusal of clients
//! without a certificate, certificate identity as user name, and certificate reload on SIGHUP
//! without dropping open connections.

mod support;

use std::time::{Duration, Instant};

use support::raw::{Connect, PINGREQ};
use support::secure::{
    make_pki, read_packet, run_py, temp_dir, tls_client_config, tls_connect, Server,
};
use tokio::io::AsyncWriteExt;

const TLS_CONFIG: &str = r#"
[[listener]]
bind = "127.0.0.1:{port0}"
[[listener]]
bind = "127.0.0.1:{port1}"
protocol = "tls"
cert = "{dir}/server.pem"
key = "{dir}/server.key"
client_ca = "{dir}/ca.pem"
[storage]
durability = "volatile"
"#;

fn paho_tls(protocol: &str) {
    let dir = temp_dir();
    let pki = make_pki(dir.path(), "", "device-1");
    let server = Server::start(TLS_CONFIG, dir);
    let args = [
        "--port".to_string(),
        server.ports[1].to_string(),
        "--protocol".into(),
        protocol.into(),
        "--ca".into(),
        pki.ca.display().to_string(),
        "--cert".into(),
        pki.client_cert.display().to_string(),
        "--key".into(),
        pki.client_key.display().to_string(),
    ];
    run_py("secure_client.py", &args);
    // Without a client certificate the handshake fails, and the broker carries on.
    let args = [
        "--port".to_string(),
        server.ports[1].to_string(),
        "--protocol".into(),
        protocol.into(),
        "--ca".into(),
        pki.ca.display().to_string(),
        "--expect".into(),
        "tls-error".into(),
    ];
    run_py("secure_client.py", &args);
    support::raw::assert_broker_alive(server.addr(0));
}

#[test] // paho-mqtt 3.1.1 over TLS, server and client certificates from a test CA
fn paho_over_tls_with_client_certificate_v311() {
    paho_tls("311");
}

#[test] // paho-mqtt 5 over TLS, server and client certificates from a test CA
fn paho_over_tls_with_client_certificate_v5() {
    paho_tls("5");
}

#[test] // [auth] use_identity_as_username: the certificate's CN is the user name the ACL sees
fn certificate_identity_is_the_user_name() {
    let dir = temp_dir();
    let pki = make_pki(dir.path(), "", "device-7");
    std::fs::write(
        dir.path().join("acl.toml"),
        "[[rule]]\naccess = \"all\"\ntopics = [\"devices/%u/#\"]\n",
    )
    .unwrap();
    let config = format!(
        "{TLS_CONFIG}\n[auth]\nallow_anonymous = false\nuse_identity_as_username = true\n\
         acl_file = \"{{dir}}/acl.toml\"\n"
    );
    let server = Server::start(&config, dir);
    let args = [
        "--port".to_string(),
        server.ports[1].to_string(),
        "--ca".into(),
        pki.ca.display().to_string(),
        "--cert".into(),
        pki.client_cert.display().to_string(),
        "--key".into(),
        pki.client_key.display().to_string(),
        "--topic".into(),
        "devices/device-7/temp".into(),
    ];
    run_py("secure_client.py", &args);
    // On plain TCP there is no certificate, so no identity: anonymous, refused (0x87 / 5).
    let mut c = support::raw::RawConn::open(server.addr(0));
    c.send(&Connect::v5("anon").encode());
    let ack = c.expect_packet("CONNACK");
    assert_eq!(ack.reason(), 0x87, "{ack:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
// Certificates reload on SIGHUP; open connections stay up, new ones see the new certificate.
async fn certificates_reload_on_sighup_without_dropping_connections() {
    let dir = temp_dir();
    let old = make_pki(dir.path(), "", "device-1");
    let new = make_pki(dir.path(), "new-", "device-1");
    let config = TLS_CONFIG.replace("client_ca = \"{dir}/ca.pem\"\n", "");
    let server = Server::start(&config, dir);
    let addr = server.addr(1);

    let mut s = tls_connect(addr, tls_client_config(&old.ca, None))
        .await
        .expect("TLS with the old CA");
    let mut buf = Vec::new();
    s.write_all(&Connect::v4("keeps-open").encode())
        .await
        .unwrap();
    let ack = read_packet(&mut s, &mut buf).await.expect("CONNACK");
    assert_eq!(ack.first, 0x20);

    std::fs::copy(&new.server_cert, &old.server_cert).unwrap();
    std::fs::copy(&new.server_key, &old.server_key).unwrap();
    server.hangup();
    let deadline = Instant::now() + Duration::from_secs(5);
    while !server.log().contains("TLS certificates reloaded") {
        assert!(Instant::now() < deadline, "no reload logged");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // The open connection still works.
    s.write_all(&PINGREQ).await.unwrap();
    let pong = read_packet(&mut s, &mut buf)
        .await
        .expect("PINGRESP after reload");
    assert_eq!(pong.first, 0xD0);
    // New connections get the new certificate: the old CA no longer verifies it.
    assert!(tls_connect(addr, tls_client_config(&old.ca, None))
        .await
        .is_err());
    let mut s2 = tls_connect(addr, tls_client_config(&new.ca, None))
        .await
        .expect("TLS with the new CA");
    s2.write_all(&Connect::v5("after-reload").encode())
        .await
        .unwrap();
    let mut buf2 = Vec::new();
    let ack = read_packet(&mut s2, &mut buf2).await.expect("CONNACK");
    assert_eq!((ack.first, ack.body[1]), (0x20, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
// A TLS client that stalls its handshake is dropped after connect_timeout; others are served.
async fn stalled_tls_handshake_is_dropped() {
    let dir = temp_dir();
    make_pki(dir.path(), "", "x");
    let config = format!("{TLS_CONFIG}\n[limits]\nconnect_timeout = \"1s\"\n");
    let server = Server::start(&config, dir);
    let mut tcp = tokio::net::TcpStream::connect(server.addr(1))
        .await
        .unwrap();
    tcp.write_all(&[0x16, 0x03, 0x01]).await.unwrap(); // the start of a ClientHello, then nothing
    let mut b = [0u8; 64];
    let closed = tokio::time::timeout(Duration::from_secs(5), async {
        use tokio::io::AsyncReadExt;
        loop {
            match tcp.read(&mut b).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await;
    assert!(closed.is_ok(), "stalled handshake not dropped");
    support::raw::assert_broker_alive(server.addr(0));
}
