//! MQTT over WebSocket [MQTT-6.0.0]: paho-mqtt over ws and wss, a tokio-tungstenite client that
//! splits a packet across frames and packs several packets into one frame, subprotocol and path
//! checks.

mod support;

use futures_util::{SinkExt, StreamExt};
use support::raw::{publish, subscribe, Connect, RawPacket};
use support::secure::{make_pki, run_py, temp_dir, Server};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

const WS_CONFIG: &str = r#"
[[listener]]
bind = "127.0.0.1:{port0}"
[[listener]]
bind = "127.0.0.1:{port1}"
protocol = "ws"
[[listener]]
bind = "127.0.0.1:{port2}"
protocol = "wss"
path = "/ws"
cert = "{dir}/server.pem"
key = "{dir}/server.key"
[storage]
durability = "volatile"
"#;

fn start() -> (Server, support::secure::Pki) {
    let dir = temp_dir();
    let pki = make_pki(dir.path(), "", "c");
    (Server::start(WS_CONFIG, dir), pki)
}

fn paho_ws(protocol: &str) {
    let (server, pki) = start();
    run_py(
        "secure_client.py",
        &[
            "--port".into(),
            server.ports[1].to_string(),
            "--protocol".into(),
            protocol.into(),
            "--transport".into(),
            "websockets".into(),
        ],
    );
    run_py(
        "secure_client.py",
        &[
            "--port".into(),
            server.ports[2].to_string(),
            "--protocol".into(),
            protocol.into(),
            "--transport".into(),
            "websockets".into(),
            "--path".into(),
            "/ws".into(),
            "--ca".into(),
            pki.ca.display().to_string(),
        ],
    );
}

#[test] // paho-mqtt 3.1.1 over ws (path /mqtt) and wss (path /ws)
fn paho_over_websocket_v311() {
    paho_ws("311");
}

#[test] // paho-mqtt 5 over ws (path /mqtt) and wss (path /ws)
fn paho_over_websocket_v5() {
    paho_ws("5");
}

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn ws_open(port: u16, path: &str, protocol: Option<&str>) -> Result<Ws, String> {
    let mut req = format!("ws://127.0.0.1:{port}{path}")
        .into_client_request()
        .unwrap();
    if let Some(p) = protocol {
        req.headers_mut()
            .insert("Sec-WebSocket-Protocol", p.parse().unwrap());
    }
    match tokio_tungstenite::connect_async(req).await {
        Ok((ws, resp)) => {
            if protocol.is_some() {
                assert_eq!(
                    resp.headers()
                        .get("Sec-WebSocket-Protocol")
                        .map(|v| v.to_str().unwrap()),
                    Some("mqtt"),
                    "[MQTT-6.0.0-4] the server selects the mqtt subprotocol"
                );
            }
            Ok(ws)
        }
        Err(e) => Err(e.to_string()),
    }
}

/// Reads packets out of binary frames until one whole packet is buffered.
async fn next_packet(ws: &mut Ws, buf: &mut Vec<u8>) -> RawPacket {
    let deadline = tokio::time::Instant::now() + support::TIMEOUT;
    loop {
        if buf.len() >= 2 {
            if let Some((len, n)) = support::raw::read_varint(&buf[1..]) {
                if buf.len() >= 1 + n + len {
                    let p = RawPacket {
                        first: buf[0],
                        body: buf[1 + n..1 + n + len].to_vec(),
                    };
                    buf.drain(..1 + n + len);
                    return p;
                }
            }
        }
        match tokio::time::timeout_at(deadline, ws.next()).await {
            Ok(Some(Ok(Message::Binary(b)))) => buf.extend_from_slice(&b),
            Ok(Some(Ok(Message::Ping(_) | Message::Pong(_)))) => {}
            other => panic!("expected a binary frame, got {other:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
// [MQTT-6.0.0-2] a packet may span frames; one frame may hold several packets.
async fn packets_split_across_frames_and_packed_into_one() {
    let (server, _pki) = start();
    let mut ws = ws_open(server.ports[1], "/mqtt", Some("mqtt"))
        .await
        .unwrap();
    let connect = Connect::v5("ws-split").encode();
    for piece in connect.chunks(3) {
        ws.send(Message::Binary(piece.to_vec())).await.unwrap();
    }
    let mut buf = Vec::new();
    let ack = next_packet(&mut ws, &mut buf).await;
    assert_eq!((ack.first, ack.body[1]), (0x20, 0), "CONNACK {ack:?}");
    let mut both = subscribe(0x82, 1, b"ws/t", 1, true);
    both.extend(publish(b"ws/t", 1, false, 2, b"hello", Some(&[])));
    ws.send(Message::Binary(both)).await.unwrap();
    let mut kinds = Vec::new();
    for _ in 0..3 {
        kinds.push(next_packet(&mut ws, &mut buf).await.first >> 4);
    }
    kinds.sort();
    assert_eq!(kinds, [3, 4, 9], "PUBLISH, PUBACK and SUBACK");
    // A text frame is a protocol violation: the connection is closed [MQTT-6.0.0-1].
    ws.send(Message::Text("not mqtt".into())).await.unwrap();
    let closed = tokio::time::timeout(support::TIMEOUT, async {
        while let Some(Ok(_)) = ws.next().await {}
    })
    .await;
    assert!(closed.is_ok(), "text frame did not close the connection");
    support::raw::assert_broker_alive(server.addr(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
// Wrong path: HTTP 404; a subprotocol other than mqtt: refused; no subprotocol header: accepted.
async fn path_and_subprotocol_are_checked() {
    let (server, _pki) = start();
    let e = ws_open(server.ports[1], "/other", Some("mqtt"))
        .await
        .unwrap_err();
    assert!(e.contains("404"), "{e}");
    let e = ws_open(server.ports[1], "/mqtt", Some("chat"))
        .await
        .unwrap_err();
    assert!(e.contains("400"), "{e}");
    let mut ws = ws_open(server.ports[1], "/mqtt", None).await.unwrap();
    ws.send(Message::Binary(Connect::v4("no-proto").encode()))
        .await
        .unwrap();
    let mut buf = Vec::new();
    assert_eq!(next_packet(&mut ws, &mut buf).await.first, 0x20);
    support::raw::assert_broker_alive(server.addr(0));
}
