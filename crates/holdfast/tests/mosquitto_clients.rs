//! Interoperability with the Mosquitto command-line clients (`mosquitto_pub`, `mosquitto_sub`)
//! in MQTT 3.1, 3.1.1 and 5. Each test starts its own broker.

mod support;

use std::process::Command;
use std::time::Duration;

use support::process::{run_with_timeout, BgProcess};
use support::{Broker, TIMEOUT};

const VERSIONS: [&str; 3] = ["mqttv31", "mqttv311", "mqttv5"];
/// mosquitto_sub output format: marker, topic, QoS, retain flag, payload.
const FORMAT: &str = "MSG|%t|%q|%r|%p";

/// `program` with line-buffered stdout (coreutils `stdbuf`), so a piped mosquitto_sub shows
/// its debug lines (the SUBACK) as they happen.
fn client(program: &str, broker: &Broker, version: &str) -> Command {
    let mut cmd = Command::new("stdbuf");
    cmd.args(["-oL", "-eL", program]);
    cmd.args([
        "-h",
        "127.0.0.1",
        "-p",
        &broker.port().to_string(),
        "-V",
        version,
    ]);
    cmd
}

fn mosquitto_pub(broker: &Broker, version: &str, args: &[&str]) {
    let out = run_with_timeout(client("mosquitto_pub", broker, version).args(args), TIMEOUT);
    assert!(
        out.success(),
        "mosquitto_pub {args:?} failed:\n{}",
        out.describe()
    );
}

/// Starts a mosquitto_sub (with `-d`) and waits until its SUBACK arrived.
fn mosquitto_sub(broker: &Broker, version: &str, args: &[&str]) -> BgProcess {
    let mut cmd = client("mosquitto_sub", broker, version);
    cmd.args(["-d", "-F", FORMAT, "-W", "10"]).args(args);
    let mut sub = BgProcess::spawn(&mut cmd);
    if sub
        .wait_for_line(TIMEOUT, |l| l.contains("received SUBACK"))
        .is_none()
    {
        panic!("mosquitto_sub got no SUBACK:\n{}", sub.describe());
    }
    sub
}

/// Waits for the subscriber to exit successfully; returns its message lines.
fn messages(sub: &mut BgProcess) -> Vec<String> {
    let status = sub.wait_exit(TIMEOUT + Duration::from_secs(1));
    assert!(
        status.is_some_and(|s| s.success()),
        "mosquitto_sub did not finish ({status:?}):\n{}",
        sub.describe()
    );
    sub.lines()
        .iter()
        .filter(|l| l.starts_with("MSG|"))
        .cloned()
        .collect()
}

#[test] // [MQTT-3.3.5-1] [MQTT-4.3.1-1] [MQTT-4.3.2-2] [MQTT-4.3.3-2] Round trip at QoS 0, 1 and
        // 2 in every protocol version, received at the published QoS by a QoS 2 subscriber.
fn pub_sub_round_trip_each_qos_and_version() {
    let broker = Broker::start();
    for v in VERSIONS {
        let mut sub = mosquitto_sub(&broker, v, &["-t", "rt/t", "-q", "2", "-C", "3"]);
        for q in ["0", "1", "2"] {
            mosquitto_pub(
                &broker,
                v,
                &["-t", "rt/t", "-q", q, "-m", &format!("hello {v} q{q}")],
            );
        }
        let got = messages(&mut sub);
        let want: Vec<String> = ["0", "1", "2"]
            .iter()
            .map(|q| format!("MSG|rt/t|{q}|0|hello {v} q{q}"))
            .collect();
        assert_eq!(got, want, "{v}:\n{}", sub.describe());
    }
}

#[test] // [MQTT-3.3.1-5] [MQTT-3.3.1-8] A retained message reaches a later subscriber with the
        // retain flag; [MQTT-3.3.1-10] [MQTT-3.3.1-11] a zero-byte retained message deletes it.
fn retained_message_with_r_flag() {
    let broker = Broker::start();
    for v in VERSIONS {
        let topic = format!("ret/{v}");
        mosquitto_pub(&broker, v, &["-t", &topic, "-q", "1", "-r", "-m", "kept"]);
        let out = run_with_timeout(
            client("mosquitto_sub", &broker, v)
                .args(["-t", &topic, "-q", "1", "-C", "1", "-W", "5", "-F", FORMAT]),
            TIMEOUT + Duration::from_secs(1),
        );
        assert!(out.success(), "{}", out.describe());
        assert_eq!(
            out.stdout.trim_end(),
            format!("MSG|{topic}|1|1|kept"),
            "{}",
            out.describe()
        );

        mosquitto_pub(&broker, v, &["-t", &topic, "-q", "1", "-r", "-n"]);
        // The subscriber prints nothing: it waits up to 1 s, then times out.
        let out = run_with_timeout(
            client("mosquitto_sub", &broker, v)
                .args(["-t", &topic, "-q", "1", "-C", "1", "-W", "1", "-F", FORMAT]),
            TIMEOUT,
        );
        assert!(
            !out.timed_out && out.stdout.trim().is_empty(),
            "retained message not deleted:\n{}",
            out.describe()
        );
    }
}

#[test] // [MQTT-3.1.2-4] [MQTT-3.2.2-2] A persistent session (`-c -i id`) keeps its subscription
        // and receives the QoS 1 messages published while it was away, in order.
fn persistent_session_with_c_and_i() {
    let broker = Broker::start();
    for v in VERSIONS {
        let id = format!("ps-{v}");
        let topic = format!("ps/{v}");
        let out = run_with_timeout(
            client("mosquitto_sub", &broker, v)
                .args(["-c", "-i", &id, "-q", "1", "-t", &topic, "-E"]),
            TIMEOUT,
        );
        assert!(out.success(), "subscribe and exit:\n{}", out.describe());
        for m in ["one", "two", "three"] {
            mosquitto_pub(&broker, v, &["-t", &topic, "-q", "1", "-m", m]);
        }
        let out = run_with_timeout(
            client("mosquitto_sub", &broker, v).args([
                "-c", "-i", &id, "-q", "1", "-t", &topic, "-C", "3", "-W", "5", "-F", FORMAT,
            ]),
            TIMEOUT + Duration::from_secs(1),
        );
        assert!(out.success(), "{}", out.describe());
        let want: Vec<String> = ["one", "two", "three"]
            .iter()
            .map(|m| format!("MSG|{topic}|1|0|{m}"))
            .collect();
        assert_eq!(
            out.stdout.lines().collect::<Vec<_>>(),
            want,
            "{}",
            out.describe()
        );
    }
}

#[test] // [MQTT-4.7.1-2] `#` matches every topic at every level; [MQTT-4.7.2-1] but not topics
        // beginning with `$`.
fn hash_wildcard_subscription() {
    let broker = Broker::start();
    for v in VERSIONS {
        let mut sub = mosquitto_sub(&broker, v, &["-t", "#", "-q", "1", "-C", "4"]);
        for t in ["$dollar/t", "a", "a/b", "a/b/c", "/leading"] {
            mosquitto_pub(&broker, v, &["-t", t, "-q", "1", "-m", t]);
        }
        let got = messages(&mut sub);
        let want: Vec<String> = ["a", "a/b", "a/b/c", "/leading"]
            .iter()
            .map(|t| format!("MSG|{t}|1|0|{t}"))
            .collect();
        assert_eq!(got, want, "{v}:\n{}", sub.describe());
    }
}
