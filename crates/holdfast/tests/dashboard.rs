//! The admin dashboard in headless Chromium (Debian's `chromium`, driven by playwright-core from
//! tests/browser/dashboard.mjs): the page loads, shows a session created by a test client, and
//! its Discard button removes it.
//!
//! scripts/test installs Chromium (apt) and playwright-core (npm, into target/browser) and sets
//! HOLDFAST_TEST_REQUIRE_BROWSER=1; without that the test prints SKIPPED when a piece is missing.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use rumqttc::v5::mqttbytes::QoS;
use support::http::{admin_config, Admin};
use support::mqtt5::{self, Client5};
use support::process::run_with_timeout;
use support::{holdfast_only, Broker};

fn find_chromium() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("HOLDFAST_TEST_CHROMIUM") {
        return Some(PathBuf::from(p));
    }
    ["chromium", "chromium-browser", "google-chrome"]
        .iter()
        .find_map(|name| {
            let out = Command::new("sh")
                .args(["-c", &format!("command -v {name}")])
                .output()
                .ok()?;
            let path = String::from_utf8_lossy(&out.stdout).trim().to_string();
            (out.status.success() && !path.is_empty()).then(|| PathBuf::from(path))
        })
}

/// The folder whose node_modules holds playwright-core (scripts/test: target/browser).
fn playwright_dir() -> PathBuf {
    std::env::var_os("HOLDFAST_TEST_PLAYWRIGHT_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/browser"))
}

fn missing_piece() -> Option<String> {
    if find_chromium().is_none() {
        return Some("no chromium".into());
    }
    if Command::new("node").arg("--version").output().is_err() {
        return Some("no node".into());
    }
    let pw = playwright_dir().join("node_modules/playwright-core");
    if !pw.exists() {
        return Some(format!("no {}", pw.display()));
    }
    None
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_shows_a_session_and_discards_it() {
    if holdfast_only("admin dashboard") {
        return;
    }
    if let Some(why) = missing_piece() {
        if std::env::var("HOLDFAST_TEST_REQUIRE_BROWSER").as_deref() == Ok("1") {
            panic!("browser test required but {why} (scripts/test installs it)");
        }
        eprintln!("SKIPPED dashboard browser test: {why} (scripts/test installs Chromium and playwright-core)");
        return;
    }
    let (config, port) = admin_config("sys_interval = 0\n");
    let broker = Broker::start_with(&config);
    let admin = Admin::new(port);
    // The session to discard: offline, one subscription, one queued message.
    let mut victim = Client5::connect(mqtt5::persistent(broker.port(), "dash/victim", 600)).await;
    victim.subscribe_ok("dash/t", QoS::AtLeastOnce).await;
    victim.disconnect().await;
    let mut live = Client5::connect(mqtt5::options(broker.port(), "dash-live")).await;
    live.publish("dash/t", QoS::AtLeastOnce, false, "queued")
        .await;
    assert_eq!(
        admin.get("/api/v1/sessions/dash%2Fvictim").json()["queued"],
        1
    );

    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser/dashboard.mjs");
    let screenshot =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/browser/dashboard.png");
    let out = run_with_timeout(
        Command::new("node")
            .arg(&script)
            .arg(format!("{}/", admin.url()))
            .arg("dash/victim")
            .env("CHROMIUM", find_chromium().unwrap())
            .env("PLAYWRIGHT_DIR", playwright_dir())
            .env("SCREENSHOT", &screenshot),
        Duration::from_secs(90),
    );
    assert!(out.success(), "browser test failed:\n{}", out.describe());
    assert!(out.stdout.contains("OK"), "{}", out.describe());
    let r = admin.get("/api/v1/sessions/dash%2Fvictim");
    assert_eq!(
        r.status, 404,
        "the Discard button discarded the session: {}",
        r.body
    );
    drop(live);
}
