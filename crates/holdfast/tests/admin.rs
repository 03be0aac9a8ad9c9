//! The admin HTTP API and `holdfast ctl` against a real broker with real sessions (rumqttc
//! clients). MQTT 5.0 section 4.1: "Stored Session state can be discarded as a result of an
//! administrator action"; discarding a connected session sends DISCONNECT 0x98 (Administrative
//! action) [MQTT-3.14.2.1], and a discarded session stays gone after a crash and restart.

mod support;

use std::time::Duration;

use rumqttc::v5::mqttbytes::QoS;
use serde_json::Value;
use support::http::{admin_config, Admin};
use support::mqtt5::{self, Client5};
use support::process::{run_with_timeout, CmdOutput};
use support::{holdfast_command, holdfast_only, mqtt3, Broker, TIMEOUT};

fn start(extra: &str) -> (Broker, Admin) {
    let (config, port) = admin_config(extra);
    (Broker::start_with(&config), Admin::new(port))
}

fn ctl(admin: &Admin, args: &[&str]) -> CmdOutput {
    let mut cmd = holdfast_command();
    cmd.arg("ctl")
        .env_remove("HOLDFAST_ADMIN_TOKEN")
        .env("HOLDFAST_ADMIN", admin.url());
    if let Some(t) = &admin.token {
        cmd.env("HOLDFAST_ADMIN_TOKEN", t);
    }
    run_with_timeout(cmd.args(args), Duration::from_secs(30))
}

fn ids(list: &Value) -> Vec<String> {
    list["sessions"]
        .as_array()
        .expect("sessions array")
        .iter()
        .map(|s| s["client_id"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_are_listed_filtered_paged_and_shown() {
    if holdfast_only("admin API") {
        return;
    }
    let (broker, admin) = start("sys_interval = 0\n");
    let port = broker.port();
    // A connected MQTT 5 session whose client id holds a '/', with two subscriptions.
    let mut online = Client5::connect(mqtt5::persistent(port, "room/1", 600)).await;
    online.subscribe_ok("a/+", QoS::AtLeastOnce).await;
    online.subscribe_ok("b/#", QoS::AtMostOnce).await;
    // An offline MQTT 3.1.1 session with two messages queued.
    let mut away = mqtt3::Client3::connect(mqtt3::persistent(port, "away")).await;
    away.subscribe_ok("q/t", rumqttc::QoS::AtLeastOnce).await;
    away.disconnect().await;
    let mut publisher = Client5::connect(mqtt5::options(port, "pub")).await;
    publisher
        .publish("q/t", QoS::AtLeastOnce, false, "one")
        .await;
    publisher
        .publish("q/t", QoS::AtLeastOnce, false, "two!")
        .await;

    let all = admin.get("/api/v1/sessions").json();
    assert_eq!(all["total"], 3, "{all}");
    assert_eq!(ids(&all), ["away", "pub", "room/1"]);

    let connected = admin.get("/api/v1/sessions?connected=true").json();
    assert_eq!(ids(&connected), ["pub", "room/1"]);
    let offline = admin.get("/api/v1/sessions?connected=false").json();
    assert_eq!(ids(&offline), ["away"]);
    let prefixed = admin.get("/api/v1/sessions?prefix=roo").json();
    assert_eq!(ids(&prefixed), ["room/1"]);
    let page = admin.get("/api/v1/sessions?offset=1&limit=1").json();
    assert_eq!(
        (page["total"].as_u64(), ids(&page)),
        (Some(3), vec!["pub".to_string()])
    );

    let s = admin.get("/api/v1/sessions/room%2F1").json();
    assert_eq!(s["client_id"], "room/1");
    assert_eq!(s["protocol"], "5.0");
    assert_eq!(s["connected"], true);
    assert!(s["connected_at"].as_str().unwrap().ends_with('Z'), "{s}");
    assert_eq!(s["expiry_interval"], 600);
    let subs = s["subscriptions"].as_array().unwrap();
    assert_eq!(subs.len(), 2, "{s}");
    let a = subs.iter().find(|x| x["filter"] == "a/+").unwrap();
    assert_eq!(
        (a["qos"].as_u64(), a["no_local"].as_bool()),
        (Some(1), Some(false))
    );

    let s = admin.get("/api/v1/sessions/away").json();
    assert_eq!(s["protocol"], "3.1.1");
    assert_eq!(s["connected"], false);
    assert_eq!(s["queued"], 2, "{s}");
    assert_eq!(
        s["queued_bytes"],
        2 * 3 + 3 + 4,
        "topic + payload of each: {s}"
    );
    assert!(s["disconnected_at"].is_string(), "{s}");
    assert_eq!(s["durability"], "flush");
    assert_eq!(s["stored"], true);

    let missing = admin.get("/api/v1/sessions/nobody");
    assert_eq!(missing.status, 404);
    assert_eq!(missing.json()["error"], "no session 'nobody'");
    for bad in [
        "/api/v1/sessions?limit=0",
        "/api/v1/sessions?limit=x",
        "/api/v1/sessions?connected=maybe",
        "/api/v1/sessions?colour=red",
        "/api/v1/retained?filter=a/%23/b",
    ] {
        let r = admin.get(bad);
        assert_eq!(r.status, 400, "{bad}: {}", r.body);
        assert!(r.json()["error"].is_string(), "{bad}: {}", r.body);
    }
    let r = admin.get("/api/v1/nothing");
    assert_eq!((r.status, r.json()["error"].is_string()), (404, true));
    drop(online);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discarded_sessions_are_gone_after_a_restart_and_kept_ones_stay() {
    if holdfast_only("admin API") {
        return;
    }
    let (mut broker, admin) = start("sys_interval = 0\n");
    let port = broker.port();
    let mut online = Client5::connect(mqtt5::persistent(port, "online", 3600)).await;
    online.subscribe_ok("t/online", QoS::AtLeastOnce).await;
    for id in ["offline", "keeper"] {
        let mut c = Client5::connect(mqtt5::persistent(port, id, 3600)).await;
        c.subscribe_ok(&format!("t/{id}"), QoS::AtLeastOnce).await;
        c.disconnect().await;
    }

    // Discarding a connected session: its client is told 0x98 Administrative action.
    let r = admin.delete("/api/v1/sessions/online");
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["discarded"], "online");
    let why = online
        .closed_within(TIMEOUT)
        .await
        .expect("the connection of a discarded session is closed");
    assert!(
        why.contains("AdministrativeAction"),
        "expected 0x98, got {why}"
    );
    // And an offline one.
    assert_eq!(admin.delete("/api/v1/sessions/offline").status, 200);
    for id in ["online", "offline"] {
        assert_eq!(admin.get(&format!("/api/v1/sessions/{id}")).status, 404);
        assert_eq!(admin.delete(&format!("/api/v1/sessions/{id}")).status, 404);
    }
    assert_eq!(admin.get("/api/v1/sessions").json()["total"], 1);
    let stats = admin.get("/api/v1/stats").json();
    assert_eq!(stats["discarded_sessions"]["admin"], 2, "{stats}");

    // SIGKILL: only what was fsync'd survives; the API answered only after the fsync.
    broker.restart();
    for (id, present) in [("online", false), ("offline", false), ("keeper", true)] {
        let c = Client5::connect(mqtt5::persistent(port, id, 3600)).await;
        assert_eq!(c.session_present(), present, "session {id} after restart");
        c.disconnect().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kick_disconnects_and_keeps_the_session() {
    if holdfast_only("admin API") {
        return;
    }
    let (broker, admin) = start("sys_interval = 0\n");
    let port = broker.port();
    let mut c = Client5::connect(mqtt5::persistent(port, "kicked", 600)).await;
    c.subscribe_ok("k/t", QoS::AtLeastOnce).await;
    let r = admin.post("/api/v1/sessions/kicked/kick");
    assert_eq!(
        (r.status, r.json()["kicked"].as_str()),
        (200, Some("kicked"))
    );
    let why = c
        .closed_within(TIMEOUT)
        .await
        .expect("kicked client closed");
    assert!(
        why.contains("AdministrativeAction"),
        "expected 0x98, got {why}"
    );
    let s = admin.get("/api/v1/sessions/kicked").json();
    assert_eq!(s["connected"], false);
    assert_eq!(s["subscriptions"].as_array().unwrap().len(), 1);
    let c = Client5::connect(mqtt5::persistent(port, "kicked", 600)).await;
    assert!(c.session_present(), "a kick keeps the session");
    assert_eq!(admin.post("/api/v1/sessions/nobody/kick").status, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retained_messages_are_listed_and_deleted_durably() {
    if holdfast_only("admin API") {
        return;
    }
    let (mut broker, admin) = start("sys_interval = 0\n");
    let port = broker.port();
    let mut p = Client5::connect(mqtt5::options(port, "p")).await;
    for topic in ["a/b", "a/c", "x", "/lead"] {
        p.publish(topic, QoS::AtLeastOnce, true, "payload").await;
    }
    p.disconnect().await;
    let all = admin.get("/api/v1/retained").json();
    assert_eq!(all["total"], 4, "{all}");
    let a = admin.get("/api/v1/retained?filter=a%2F%23").json();
    let topics: Vec<&str> = a["retained"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["topic"].as_str().unwrap())
        .collect();
    assert_eq!(topics, ["a/b", "a/c"]);
    assert_eq!(a["retained"][0]["payload_bytes"], 7);

    assert_eq!(admin.delete("/api/v1/retained/a%2Fb").status, 200);
    assert_eq!(
        admin.delete("/api/v1/retained/a/c").status,
        200,
        "raw '/' works too"
    );
    assert_eq!(admin.delete("/api/v1/retained/%2Flead").status, 200);
    let r = admin.delete("/api/v1/retained/a%2Fb");
    assert_eq!(r.status, 404, "{}", r.body);

    broker.restart();
    let all = admin.get("/api/v1/retained").json();
    assert_eq!(all["total"], 1, "only x is left after the restart: {all}");
    assert_eq!(all["retained"][0]["topic"], "x");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stats_and_probes() {
    if holdfast_only("admin API") {
        return;
    }
    let (broker, admin) = start("sys_interval = 0\n");
    let mut c = Client5::connect(mqtt5::persistent(broker.port(), "s", 60)).await;
    c.subscribe_ok("s/t", QoS::AtMostOnce).await;
    c.publish("s/t", QoS::AtMostOnce, false, "hi").await;
    c.recv().await;
    assert_eq!(admin.get("/healthz").status, 200);
    assert_eq!(admin.get("/readyz").status, 200);
    let st = admin.get("/api/v1/stats").json();
    for (key, want) in [
        ("connections", 1),
        ("sessions", 1),
        ("sessions_online", 1),
        ("subscriptions", 1),
        ("messages_received", 1),
        ("messages_sent", 1),
        ("retained_messages", 0),
    ] {
        assert_eq!(st[key], want, "{key} in {st}");
    }
    assert!(st["store"]["disk_bytes"].as_u64().unwrap() > 0, "{st}");
    assert!(st["store"]["fsyncs"].is_u64(), "{st}");
    assert!(st["uptime_seconds"].is_u64(), "{st}");
    assert_eq!(st["ready"], true);
    assert_eq!(st["dropped"]["queue_full"], 0);
    let page = admin.get("/");
    assert_eq!(page.status, 200);
    assert!(page.body.contains("<html"), "the dashboard is served at /");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_configured_token_is_required_for_the_api_and_metrics() {
    if holdfast_only("admin API") {
        return;
    }
    let (broker, mut admin) = start("token = \"s3cret\"\nsys_interval = 0\n");
    let _c = Client5::connect(mqtt5::options(broker.port(), "t")).await;
    for path in ["/api/v1/sessions", "/api/v1/stats", "/metrics"] {
        let r = admin.request("GET", path, None);
        assert_eq!(r.status, 401, "{path} without a token");
        assert_eq!(r.header("www-authenticate"), Some("Bearer"));
        assert!(r.json()["error"].is_string());
        assert_eq!(admin.request("GET", path, Some("wrong")).status, 401);
        assert_eq!(
            admin.request("GET", path, Some("s3cret")).status,
            200,
            "{path}"
        );
    }
    assert_eq!(
        admin.request("DELETE", "/api/v1/sessions/t", None).status,
        401
    );
    assert_eq!(admin.request("GET", "/healthz", None).status, 200);
    assert_eq!(admin.request("GET", "/readyz", None).status, 200);

    let out = ctl(&admin, &["sessions", "list"]);
    assert_eq!(
        out.status.and_then(|s| s.code()),
        Some(1),
        "{}",
        out.describe()
    );
    assert!(
        out.stderr.contains("HOLDFAST_ADMIN_TOKEN"),
        "{}",
        out.describe()
    );
    admin.token = Some("s3cret".into());
    let out = ctl(&admin, &["sessions", "list"]);
    assert!(out.success(), "{}", out.describe());
    assert!(out.stdout.contains("1 of 1 sessions"), "{}", out.describe());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctl_wraps_every_endpoint() {
    if holdfast_only("admin API") {
        return;
    }
    let (mut broker, admin) = start("sys_interval = 0\n");
    let port = broker.port();
    let mut live = Client5::connect(mqtt5::persistent(port, "dev/live", 600)).await;
    live.subscribe_ok("d/#", QoS::AtLeastOnce).await;
    for id in ["dev/gone", "dev/kept"] {
        let mut c = Client5::connect(mqtt5::persistent(port, id, 600)).await;
        c.subscribe_ok("d/x", QoS::AtLeastOnce).await;
        c.disconnect().await;
    }
    let mut p = Client5::connect(mqtt5::options(port, "p")).await;
    p.publish("d/x", QoS::AtLeastOnce, true, "retained").await;
    p.disconnect().await;

    let out = ctl(&admin, &["sessions", "list"]);
    assert!(out.success(), "{}", out.describe());
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert!(lines[0].starts_with("CLIENT ID"), "{}", out.stdout);
    assert!(lines[1].starts_with("dev/gone") && lines[1].contains("offline since"));
    assert!(lines[3].starts_with("dev/live") && lines[3].contains("connected since"));
    assert!(out.stdout.contains("3 of 3 sessions"), "{}", out.stdout);

    let out = ctl(&admin, &["sessions", "list", "--offline", "--json"]);
    let json: Value = serde_json::from_str(&out.stdout).expect("--json prints JSON");
    assert_eq!(ids(&json), ["dev/gone", "dev/kept"]);
    let out = ctl(
        &admin,
        &["sessions", "list", "--connected", "--prefix", "dev/"],
    );
    assert!(out.stdout.contains("1 of 1 sessions"), "{}", out.stdout);

    let out = ctl(&admin, &["sessions", "show", "dev/kept"]);
    assert!(out.success(), "{}", out.describe());
    assert!(
        out.stdout.contains("client id        dev/kept"),
        "{}",
        out.stdout
    );
    assert!(out.stdout.contains("queued           1"), "{}", out.stdout);
    assert!(out.stdout.contains("  d/x"), "{}", out.stdout);
    let out = ctl(&admin, &["--json", "sessions", "show", "dev/kept"]);
    let json: Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(json["queued"], 1);

    let out = ctl(&admin, &["sessions", "show", "nobody"]);
    assert_eq!(out.status.and_then(|s| s.code()), Some(1));
    assert_eq!(out.stderr.trim(), "error: no session 'nobody'");

    let out = ctl(&admin, &["sessions", "kick", "dev/live"]);
    assert!(out.success(), "{}", out.describe());
    let why = live.closed_within(TIMEOUT).await.expect("kicked");
    assert!(why.contains("AdministrativeAction"), "{why}");
    let out = ctl(&admin, &["sessions", "discard", "dev/gone"]);
    assert!(out.success(), "{}", out.describe());
    assert_eq!(out.stdout, "discarded session 'dev/gone'\n");
    let out = ctl(&admin, &["sessions", "discard", "dev/gone"]);
    assert_eq!(out.stderr.trim(), "error: no session 'dev/gone'");

    let out = ctl(&admin, &["retained", "list", "--filter", "d/#"]);
    assert!(out.stdout.contains("d/x"), "{}", out.describe());
    assert!(out.stdout.contains("1 retained messages"), "{}", out.stdout);
    let out = ctl(&admin, &["retained", "delete", "d/x"]);
    assert!(out.success(), "{}", out.describe());
    let out = ctl(&admin, &["retained", "delete", "d/x"]);
    assert_eq!(out.status.and_then(|s| s.code()), Some(1));
    assert!(
        out.stderr.contains("no retained message on 'd/x'"),
        "{}",
        out.stderr
    );

    let out = ctl(&admin, &["stats"]);
    assert!(out.success(), "{}", out.describe());
    assert!(out.stdout.contains("sessions "), "{}", out.stdout);
    assert!(out.stdout.contains("store.disk_bytes"), "{}", out.stdout);
    let out = ctl(&admin, &["stats", "--json"]);
    let json: Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(json["sessions"], 2, "dev/kept and dev/live: {json}");
    assert_eq!(json["discarded_sessions"]["admin"], 1);

    broker.restart();
    let out = ctl(&admin, &["sessions", "list", "--json"]);
    let json: Value = serde_json::from_str(&out.stdout).expect("JSON after restart");
    assert_eq!(ids(&json), ["dev/kept", "dev/live"]);

    // Nothing listening there.
    let nowhere = Admin::new(support::free_port());
    let out = ctl(&nowhere, &["stats"]);
    assert_eq!(out.status.and_then(|s| s.code()), Some(1));
    assert!(
        out.stderr.starts_with(&format!(
            "error: cannot reach the admin API at {}: ",
            nowhere.url()
        )),
        "{}",
        out.stderr
    );
}

#[test]
fn admin_listen_flag_and_token_rule() {
    if holdfast_only("admin API") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("h.toml");
    std::fs::write(&config, "").unwrap();
    let out = run_with_timeout(
        holdfast_command()
            .args(["serve", "--admin-listen", "0.0.0.0:0", "--config"])
            .arg(&config),
        Duration::from_secs(30),
    );
    assert_eq!(
        out.status.and_then(|s| s.code()),
        Some(2),
        "{}",
        out.describe()
    );
    assert!(
        out.stderr.contains("--admin-listen") && out.stderr.contains("token"),
        "{}",
        out.describe()
    );
}

/// Polls until `GET path` answers `status` (bounded).
async fn wait_status(admin: &Admin, path: &str, status: u16) {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let got = admin.get(path).status;
        if got == status {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "GET {path}: still {got}, expected {status}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
// MQTT 5.0 section 4.1: state discarded "as a result of an automated response to defined conditions".
async fn idle_rule_discards_offline_sessions_and_logs_why() {
    if holdfast_only("[discard] rules") {
        return;
    }
    let (config, port) = admin_config("sys_interval = 0\n[discard]\nidle_after = 1\n");
    let mut broker = Broker::start_with(&config);
    let admin = Admin::new(port);
    let mut idle = Client5::connect(mqtt5::persistent(broker.port(), "idle", 3600)).await;
    idle.subscribe_ok("i/t", QoS::AtLeastOnce).await;
    idle.disconnect().await;
    let _online = Client5::connect(mqtt5::persistent(broker.port(), "online", 3600)).await;
    assert_eq!(admin.get("/api/v1/sessions/idle").status, 200);
    wait_status(&admin, "/api/v1/sessions/idle", 404).await;
    assert_eq!(
        admin.get("/api/v1/sessions/online").status,
        200,
        "connected: kept"
    );
    let st = admin.get("/api/v1/stats").json();
    assert_eq!(st["discarded_sessions"]["idle"], 1, "{st}");
    assert_eq!(st["discarded_sessions"]["admin"], 0, "{st}");
    assert!(
        broker.log().contains("session discarded") && broker.log().contains("idle"),
        "each discard is logged with its reason"
    );
    broker.restart();
    let c = Client5::connect(mqtt5::persistent(broker.port(), "idle", 3600)).await;
    assert!(!c.session_present(), "the discard was stored");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_high_water_rule_discards_offline_sessions() {
    if holdfast_only("[discard] rules") {
        return;
    }
    // A high-water mark of 1 byte: any stored state is over it. The offline session holding the
    // most queued bytes goes first; a connected one is never discarded.
    let (config, port) = admin_config("sys_interval = 0\n[discard]\nstore_high_water = 1\n");
    let broker = Broker::start_with(&config);
    let admin = Admin::new(port);
    let mut online = Client5::connect(mqtt5::persistent(broker.port(), "online", 3600)).await;
    for id in ["big", "small"] {
        let mut c = Client5::connect(mqtt5::persistent(broker.port(), id, 3600)).await;
        c.subscribe_ok(&format!("hw/{id}"), QoS::AtLeastOnce).await;
        c.disconnect().await;
    }
    for _ in 0..3 {
        online
            .publish("hw/big", QoS::AtLeastOnce, false, vec![7u8; 2000])
            .await;
    }
    wait_status(&admin, "/api/v1/sessions/big", 404).await;
    assert_eq!(admin.get("/api/v1/sessions/online").status, 200);
    let st = admin.get("/api/v1/stats").json();
    assert!(
        st["discarded_sessions"]["store_high_water"].as_u64() >= Some(1),
        "{st}"
    );
    assert_eq!(st["discarded_sessions"]["admin"], 0, "{st}");
}
