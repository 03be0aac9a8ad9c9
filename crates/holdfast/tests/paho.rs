//! Interoperability with Eclipse Paho (Python paho-mqtt 2.x) in MQTT 3.1.1 and 5. The scripts
//! in `tests/py/` do the checking (each names the rules it proves) and exit 0 on success;
//! this file starts a broker per script run and asserts that exit status.
//!
//! `python3` on PATH must have paho-mqtt (`scripts/test` prepares a venv from
//! tests-requirements.txt); `HOLDFAST_TEST_PYTHON` overrides the interpreter.

mod support;

use std::process::Command;
use std::time::Duration;

use support::process::run_with_timeout;
use support::{tests_dir, Broker};

fn run_script(script: &str, protocol: &str) {
    let broker = Broker::start();
    let python = std::env::var("HOLDFAST_TEST_PYTHON").unwrap_or_else(|_| "python3".into());
    let path = tests_dir().join("py").join(script);
    let mut cmd = Command::new(&python);
    cmd.arg(&path)
        .args(["--port", &broker.port().to_string(), "--protocol", protocol])
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .env("PYTHONUNBUFFERED", "1");
    let out = run_with_timeout(&mut cmd, Duration::from_secs(30));
    assert!(
        out.success(),
        "{script} --protocol {protocol} failed (no paho-mqtt? run scripts/test, or put a venv \
         with tests-requirements.txt first on PATH):\n{}",
        out.describe()
    );
}

#[test] // [MQTT-3.3.5-1] [MQTT-3.8.4-6]: QoS 0/1/2 round trips and downgrade, 3.1.1
fn paho_qos_roundtrip_v311() {
    run_script("qos_roundtrip.py", "311");
}

#[test] // [MQTT-3.3.5-1] [MQTT-3.8.4-8]: QoS 0/1/2 round trips and downgrade, 5
fn paho_qos_roundtrip_v5() {
    run_script("qos_roundtrip.py", "5");
}

#[test] // [MQTT-3.1.2-4] [MQTT-3.2.2-2]: offline queue of a persistent session, 3.1.1
fn paho_persistent_session_v311() {
    run_script("persistent_session.py", "311");
}

#[test] // [MQTT-3.1.2-5] [MQTT-3.1.2-23] [MQTT-3.2.2-3]: offline queue of a persistent session, 5
fn paho_persistent_session_v5() {
    run_script("persistent_session.py", "5");
}

#[test] // [MQTT-3.3.1-5] [MQTT-3.3.1-8] [MQTT-3.3.1-9] [MQTT-3.3.1-10]: retained messages, 3.1.1
fn paho_retained_v311() {
    run_script("retained.py", "311");
}

#[test] // [MQTT-3.3.1-5] [MQTT-3.3.1-6] [MQTT-3.3.1-7]: retained messages, 5
fn paho_retained_v5() {
    run_script("retained.py", "5");
}

#[test] // [MQTT-3.1.2-8] [MQTT-3.1.2-10]: will on abnormal close, none on DISCONNECT, 3.1.1
fn paho_will_v311() {
    run_script("will.py", "311");
}

#[test] // [MQTT-3.1.2-8] [MQTT-3.14.4-3]: will on abnormal close and on DISCONNECT 0x04, 5
fn paho_will_v5() {
    run_script("will.py", "5");
}

#[test] // MQTT 5 section 4.8.2: shared subscription delivers each message to one member
fn paho_shared_subscription_v5() {
    run_script("shared_subscription.py", "5");
}

#[test] // [MQTT-3.3.2-15..20] [MQTT-3.2.2-16]: v5 properties and request/response
fn paho_v5_properties() {
    run_script("v5_properties.py", "5");
}
