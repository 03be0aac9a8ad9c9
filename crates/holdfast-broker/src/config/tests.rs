use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use holdfast_core::config::{CoreConfig, QueuePolicy};
use holdfast_proto::QoS;

use super::*;

const EXAMPLE: &str = include_str!("../../../../holdfast.example.toml");
const DOCS: &str = include_str!("../../../../docs/configuration.md");

fn parse(src: &str) -> Result<Config, ConfigError> {
    Config::from_toml_str(src, "holdfast.toml")
}

/// Parses `src`, expecting an `Invalid` error about `key` on `line` whose message contains `needle`.
#[track_caller]
fn assert_invalid(src: &str, key: &str, line: usize, needle: &str) {
    let err = parse(src).expect_err("config should be refused");
    let text = err.to_string();
    assert_eq!(err.key(), Some(key), "key in: {text}");
    assert_eq!(err.line(), Some(line), "line in: {text}");
    assert!(
        text.starts_with(&format!("holdfast.toml line {line}: {key}: ")),
        "prefix of: {text}"
    );
    assert!(text.contains(needle), "{needle:?} not in: {text}");
}

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

#[test]
fn defaults_are_the_embedded_ones() {
    let config = Config::default();
    assert_eq!(
        config.listeners,
        vec![ListenerConfig::tcp(addr("0.0.0.0:1883"))]
    );
    assert_eq!(config.listeners[0].path, "/mqtt");
    assert_eq!(config.core, CoreConfig::default());
    assert_eq!(config.max_connections, 0);
    assert_eq!(config.shutdown_timeout, Duration::from_secs(5));
    assert_eq!(config.storage.data_dir, PathBuf::from("./holdfast-data"));
    assert_eq!(config.storage.durability, Durability::Flush);
    assert_eq!(config.storage.flush_interval, Duration::from_secs(1));
    assert!(config.storage.rules.is_empty());
    assert_eq!(config.storage.max_bytes, 0);
    assert_eq!(config.storage.quota_policy, QuotaPolicy::Reject);
    assert_eq!(config.log.level, "info");
    assert_eq!(config.log.format, LogFormat::Text);
}

#[test]
fn empty_file_and_empty_sections_give_the_defaults() {
    assert_eq!(parse("").unwrap(), Config::default());
    let sections = "[limits]\n[mqtt]\n[server]\n[storage]\n[log]\n";
    assert_eq!(parse(sections).unwrap(), Config::default());
}

#[test]
fn every_key_parses() {
    let src = r#"
[[listener]]
bind = "127.0.0.1:1884"
protocol = "tcp"

[[listener]]
bind = "[::1]:8883"
protocol = "tls"
cert = "certs/server.crt"
key = "certs/server.key"
client_ca = "certs/ca.crt"

[[listener]]
bind = "0.0.0.0:9001"
protocol = "ws"
path = "/ws"

[[listener]]
protocol = "wss"
cert = "c.pem"
key = "k.pem"

[limits]
max_connections = 10000
max_packet_size = "256KiB"
receive_maximum = 100
max_inflight = 32
max_queued_messages = 5000
max_queued_bytes = "64MiB"
queue_full_policy = "drop-oldest"
session_expiry_max = "2h"
message_expiry_max = "1d"
max_keep_alive = "10m"
max_client_id_len = 128
max_subscriptions = 50
topic_alias_maximum = 0

[mqtt]
maximum_qos = 1
retain_available = false
wildcard_subscriptions = false
shared_subscriptions = false
subscription_identifiers = false
allow_zero_length_client_id = false

[server]
shutdown_timeout = "30s"

[storage]
data_dir = "/var/lib/holdfast"
durability = "sync"
flush_interval = "250ms"
max_bytes = "10GB"
quota_policy = "discard-oldest"

[[storage.rule]]
topics = ["telemetry/#", "+/debug"]
durability = "volatile"

[[storage.rule]]
topics = ["billing/#"]
durability = "flush"

[log]
level = "warn,holdfast_broker=debug"
format = "json"
"#;
    let config = parse(src).unwrap();

    let l = &config.listeners;
    assert_eq!(l.len(), 4);
    assert_eq!(l[0], ListenerConfig::tcp(addr("127.0.0.1:1884")));
    assert_eq!(l[1].bind, addr("[::1]:8883"));
    assert_eq!(l[1].protocol, ListenerProtocol::Tls);
    assert_eq!(l[1].cert, Some(PathBuf::from("certs/server.crt")));
    assert_eq!(l[1].key, Some(PathBuf::from("certs/server.key")));
    assert_eq!(l[1].client_ca, Some(PathBuf::from("certs/ca.crt")));
    assert_eq!(l[2].protocol, ListenerProtocol::Ws);
    assert_eq!(l[2].path, "/ws");
    assert_eq!(l[3].bind, addr("0.0.0.0:8084"), "default port of wss");
    assert_eq!(l[3].path, "/mqtt");
    assert_eq!(l[3].client_ca, None);

    let expected_core = CoreConfig {
        max_packet_size: 256 * 1024,
        receive_maximum: 100,
        max_inflight: 32,
        max_queued_messages: 5000,
        max_queued_bytes: 64 << 20,
        queue_policy: QueuePolicy::DropOldest,
        session_expiry_max: Some(7200),
        message_expiry_max: Some(86_400),
        maximum_qos: QoS::AtLeastOnce,
        retain_available: false,
        wildcard_subscription_available: false,
        shared_subscription_available: false,
        subscription_identifiers_available: false,
        topic_alias_maximum: 0,
        max_keep_alive: 600,
        allow_zero_length_client_id: false,
        max_client_id_len: 128,
        max_subscriptions: 50,
        max_topic_levels: 200,
        max_topic_len: 0,
        durability: holdfast_core::durability::DurabilityRules {
            default: holdfast_core::Durability::Sync,
            rules: vec![
                ("telemetry/#".into(), holdfast_core::Durability::Volatile),
                ("+/debug".into(), holdfast_core::Durability::Volatile),
                ("billing/#".into(), holdfast_core::Durability::Flush),
            ],
        },
        acl: None,
    };
    assert_eq!(config.core, expected_core);
    assert_eq!(config.max_connections, 10_000);
    assert_eq!(config.shutdown_timeout, Duration::from_secs(30));

    let s = &config.storage;
    assert_eq!(s.data_dir, PathBuf::from("/var/lib/holdfast"));
    assert_eq!(s.durability, Durability::Sync);
    assert_eq!(s.flush_interval, Duration::from_millis(250));
    assert_eq!(s.max_bytes, 10_000_000_000);
    assert_eq!(s.quota_policy, QuotaPolicy::DiscardOldest);
    assert_eq!(
        s.rules,
        vec![
            DurabilityRule {
                topics: vec!["telemetry/#".into(), "+/debug".into()],
                durability: Durability::Volatile,
            },
            DurabilityRule {
                topics: vec!["billing/#".into()],
                durability: Durability::Flush,
            },
        ]
    );
    assert_eq!(config.log.level, "warn,holdfast_broker=debug");
    assert_eq!(config.log.format, LogFormat::Json);
}

#[test]
fn dotted_keys_and_inline_tables_work_too() {
    let config = parse("limits.max_inflight = 7\nmqtt = { maximum_qos = 0 }\n").unwrap();
    assert_eq!(config.core.max_inflight, 7);
    assert_eq!(config.core.maximum_qos, QoS::AtMostOnce);
}

#[test]
fn unknown_key_error_names_key_and_line() {
    assert_invalid(
        "[limits]\nmax_inflight = 5\n\nmax_inflght = 5\n",
        "limits.max_inflght",
        4,
        "unknown key (did you mean `max_inflight`?); expected one of: max_connections,",
    );
    assert_invalid("\n[limit]\n", "limit", 2, "did you mean `limits`?");
    assert_invalid(
        "[[listener]]\nbind = \"0.0.0.0:1883\"\n[[listener]]\nbnd = \"0.0.0.0:1884\"\n",
        "listener[1].bnd",
        4,
        "did you mean `bind`?",
    );
    assert_invalid(
        "mqtt = { retain = true }\n",
        "mqtt.retain",
        1,
        "unknown key",
    );
    assert_invalid(
        "[storage]\n[[storage.rule]]\ntopics = [\"a\"]\ndurability = \"sync\"\nqos = 1\n",
        "storage.rule[0].qos",
        5,
        "expected one of: topics, durability",
    );
    // No far-fetched suggestion.
    let text = parse("zzz = 1\n").unwrap_err().to_string();
    assert!(!text.contains("did you mean"), "{text}");
}

#[test]
fn type_error_names_key_and_line() {
    let src = "# comment\n[limits]\nmax_connections = 10\n\n\n\n\n\n\n\n\nmax_inflight = -1\n";
    let err = parse(src).unwrap_err();
    assert_eq!(
        err.to_string(),
        "holdfast.toml line 12: limits.max_inflight: invalid value: integer `-1`, expected u16"
    );
    assert_invalid(
        "[limits]\nmax_inflight = 70000\n",
        "limits.max_inflight",
        2,
        "expected u16",
    );
    assert_invalid(
        "[mqtt]\nretain_available = \"yes\"\n",
        "mqtt.retain_available",
        2,
        "expected a boolean",
    );
    assert_invalid(
        "[[listener]]\nbind = 1883\n",
        "listener[0].bind",
        2,
        "expected a string",
    );
    assert_invalid(
        "[[listener]]\nprotocol = \"mqtts\"\n",
        "listener[0].protocol",
        2,
        "unknown variant `mqtts`, expected one of `tcp`, `tls`, `ws`, `wss`",
    );
    assert_invalid(
        "[storage]\ndurability = \"fsync\"\n",
        "storage.durability",
        2,
        "`sync`",
    );
    assert_invalid("[log]\nformat = \"xml\"\n", "log.format", 2, "`json`");
    assert_invalid(
        "[limits]\nqueue_full_policy = \"drop\"\n",
        "limits.queue_full_policy",
        2,
        "`drop-oldest`",
    );
    assert_invalid(
        "[storage]\nquota_policy = \"drop\"\n",
        "storage.quota_policy",
        2,
        "`discard-oldest`",
    );
    assert_invalid("limits = 5\n", "limits", 1, "expected a table");
    assert_invalid(
        "[storage]\n[[storage.rule]]\ntopics = \"a/#\"\ndurability = \"sync\"\n",
        "storage.rule[0].topics",
        3,
        "expected a sequence",
    );
    assert_invalid(
        "[storage]\n[[storage.rule]]\ndurability = \"sync\"\n",
        "storage.rule[0]",
        2,
        "missing required key `topics`",
    );
}

#[test]
fn syntax_error_names_line_and_column() {
    let err = parse("[limits]\nmax_inflight = \n").unwrap_err();
    assert!(
        matches!(
            err,
            ConfigError::Syntax {
                line: 2,
                column: 16,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(err
        .to_string()
        .starts_with("holdfast.toml line 2, column 16: invalid TOML: "));
    // Columns count characters, not bytes.
    let err = parse("# é\n[log]\nlevel = \"é\" x\n").unwrap_err();
    assert!(
        matches!(
            err,
            ConfigError::Syntax {
                line: 3,
                column: 13,
                ..
            }
        ),
        "{err:?}"
    );
    let err = parse("[limits]\n[limits]\n").unwrap_err();
    assert!(
        matches!(err, ConfigError::Syntax { line: 2, .. }),
        "{err:?}"
    );
}

#[test]
fn listener_validation() {
    assert_invalid(
        "[[listener]]\nbind = \"localhost\"\n",
        "listener[0].bind",
        2,
        "\"localhost\" is not an address and port",
    );
    assert_invalid(
        "[[listener]]\nbind = \"0.0.0.0\"\n",
        "listener[0].bind",
        2,
        "not an address and port",
    );
    assert_invalid(
        "[[listener]]\nbind = \"0.0.0.0:1883\"\n[[listener]]\nbind = \"0.0.0.0:1883\"\nprotocol = \"ws\"\n",
        "listener[1].bind",
        4,
        "already bound by listener[0]",
    );
    assert_invalid(
        "[[listener]]\nprotocol = \"tls\"\nkey = \"k.pem\"\n",
        "listener[0].cert",
        2,
        "a tls listener needs `cert`",
    );
    assert_invalid(
        "[[listener]]\nprotocol = \"wss\"\ncert = \"c.pem\"\n",
        "listener[0].key",
        2,
        "a wss listener needs `key`",
    );
    assert_invalid(
        "[[listener]]\nbind = \"0.0.0.0:1883\"\ncert = \"c.pem\"\n",
        "listener[0].cert",
        3,
        "only tls and wss listeners use `cert`, this one is tcp",
    );
    assert_invalid(
        "[[listener]]\nprotocol = \"ws\"\nclient_ca = \"ca.pem\"\n",
        "listener[0].client_ca",
        3,
        "only tls and wss",
    );
    assert_invalid(
        "[[listener]]\nprotocol = \"tls\"\ncert = \"\"\nkey = \"k\"\n",
        "listener[0].cert",
        3,
        "empty path",
    );
    assert_invalid(
        "[[listener]]\npath = \"/mqtt\"\n",
        "listener[0].path",
        2,
        "only ws and wss listeners use `path`",
    );
    assert_invalid(
        "[[listener]]\nprotocol = \"ws\"\npath = \"mqtt\"\n",
        "listener[0].path",
        3,
        "must start with '/'",
    );
    assert_invalid("listener = []\n", "listener", 1, "no listeners");
}

#[test]
fn limits_validation() {
    assert_invalid(
        "[limits]\nmax_inflight = 0\n",
        "limits.max_inflight",
        2,
        "between 1 and 65535",
    );
    assert_invalid(
        "[limits]\nreceive_maximum = 0\n",
        "limits.receive_maximum",
        2,
        "forbids a Receive Maximum of 0",
    );
    assert_invalid(
        "[limits]\nmax_packet_size = 0\n",
        "limits.max_packet_size",
        2,
        "out of range",
    );
    assert_invalid(
        "[limits]\nmax_packet_size = \"1GiB\"\n",
        "limits.max_packet_size",
        2,
        "between 1 and 268435460",
    );
    assert_invalid(
        "[limits]\nmax_packet_size = \"1 XB\"\n",
        "limits.max_packet_size",
        2,
        "unknown unit \"XB\"",
    );
    assert_invalid(
        "[limits]\nmax_queued_bytes = -5\n",
        "limits.max_queued_bytes",
        2,
        "must not be negative",
    );
    assert_invalid(
        "[limits]\nmax_client_id_len = 22\n",
        "limits.max_client_id_len",
        2,
        "between 23",
    );
    assert_invalid(
        "[limits]\nmax_client_id_len = 65536\n",
        "limits.max_client_id_len",
        2,
        "and 65535",
    );
    assert_invalid(
        "[limits]\nsession_expiry_max = \"2 fortnights\"\n",
        "limits.session_expiry_max",
        2,
        "invalid duration",
    );
    assert_invalid(
        "[limits]\nsession_expiry_max = \"1500ms\"\n",
        "limits.session_expiry_max",
        2,
        "whole number of seconds",
    );
    assert_invalid(
        "[limits]\nmessage_expiry_max = 0\n",
        "limits.message_expiry_max",
        2,
        "\"never\"",
    );
    assert_invalid(
        "[limits]\nmax_keep_alive = \"1d\"\n",
        "limits.max_keep_alive",
        2,
        "at most 65535 seconds",
    );
    assert_invalid(
        "[limits]\nmax_keep_alive = 65536\n",
        "limits.max_keep_alive",
        2,
        "at most 65535 seconds",
    );
    assert_invalid(
        "[mqtt]\nmaximum_qos = 3\n",
        "mqtt.maximum_qos",
        2,
        "must be 0, 1 or 2",
    );
    assert_invalid(
        "[server]\nshutdown_timeout = \"soon\"\n",
        "server.shutdown_timeout",
        2,
        "invalid duration",
    );
}

#[test]
fn storage_and_log_validation() {
    assert_invalid(
        "[storage]\nflush_interval = \"0s\"\n",
        "storage.flush_interval",
        2,
        "durability = \"sync\"",
    );
    assert_invalid(
        "[storage]\ndata_dir = \"\"\n",
        "storage.data_dir",
        2,
        "empty path",
    );
    assert_invalid(
        "[storage]\n[[storage.rule]]\ntopics = []\ndurability = \"sync\"\n",
        "storage.rule[0].topics",
        3,
        "at least one topic filter",
    );
    assert_invalid(
        "[[storage.rule]]\ntopics = [\"a/#\"]\ndurability = \"sync\"\n[[storage.rule]]\ntopics = [\n  \"ok\",\n  \"b/#/c\",\n]\ndurability = \"volatile\"\n",
        "storage.rule[1].topics",
        7,
        "\"b/#/c\" is not a valid topic filter",
    );
    assert_invalid(
        "[[storage.rule]]\ntopics = [\"$share/g/a\"]\ndurability = \"sync\"\n",
        "storage.rule[0].topics",
        2,
        "shared-subscription filter",
    );
    assert_invalid(
        "[log]\nlevel = \"inof\"\n",
        "log.level",
        2,
        "unknown log level \"inof\"",
    );
    assert_invalid("[log]\nlevel = \"\"\n", "log.level", 2, "empty log level");
    assert_invalid(
        "[log]\nlevel = \"holdfast=loud\"\n",
        "log.level",
        2,
        "invalid log level",
    );
}

#[test]
fn log_levels() {
    for ok in [
        "info",
        "DEBUG",
        "off",
        "warn,holdfast_broker=trace",
        "holdfast_core::session=debug",
    ] {
        assert_eq!(validate_log_level(ok), Ok(()), "{ok}");
    }
    for bad in ["", " ", "verbose", "info,chatty", "x=notalevel"] {
        assert!(validate_log_level(bad).is_err(), "{bad}");
    }
}

#[test]
fn byte_sizes() {
    let cases = [
        ("0", 0),
        ("512", 512),
        ("1B", 1),
        ("1KB", 1000),
        ("1KiB", 1024),
        ("256KiB", 256 * 1024),
        ("1 MiB", 1 << 20),
        ("1mib", 1 << 20),
        ("10MB", 10_000_000),
        ("2GiB", 2 << 30),
        ("3GB", 3_000_000_000),
        ("1TiB", 1 << 40),
        ("1TB", 1_000_000_000_000),
        (" 7 kb ", 7000),
    ];
    for (text, bytes) in cases {
        assert_eq!(parse_byte_size(text), Ok(bytes), "{text}");
    }
    for bad in [
        "",
        "MiB",
        "1.5MiB",
        "-1",
        "1 MiBs",
        "1k",
        "99999999999999999999",
        "20000000TiB",
    ] {
        assert!(parse_byte_size(bad).is_err(), "{bad}");
    }
    let config =
        parse("[limits]\nmax_packet_size = 268435460\nmax_queued_bytes = \"1TiB\"\n").unwrap();
    assert_eq!(config.core.max_packet_size, 268_435_460);
    assert_eq!(config.core.max_queued_bytes, 1 << 40);
}

#[test]
fn durations_and_expiry() {
    assert_eq!(parse_duration("5s"), Ok(Duration::from_secs(5)));
    assert_eq!(parse_duration("2h 30m"), Ok(Duration::from_secs(9000)));
    assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
    assert!(
        parse_duration("5").is_err(),
        "a bare number in a string has no unit"
    );

    let config = parse(
        "[limits]\nsession_expiry_max = \"never\"\nmessage_expiry_max = 3600\nmax_keep_alive = 65535\n\
         [server]\nshutdown_timeout = 0\n[storage]\nflush_interval = 2\n",
    )
    .unwrap();
    assert_eq!(config.core.session_expiry_max, None);
    assert_eq!(config.core.message_expiry_max, Some(3600));
    assert_eq!(config.core.max_keep_alive, 65_535);
    assert_eq!(config.shutdown_timeout, Duration::ZERO);
    assert_eq!(config.storage.flush_interval, Duration::from_secs(2));

    let config =
        parse("[limits]\nsession_expiry_max = 0\nmessage_expiry_max = \"NEVER\"\n").unwrap();
    assert_eq!(
        config.core.session_expiry_max,
        Some(0),
        "0: sessions end with the connection"
    );
    assert_eq!(config.core.message_expiry_max, None);
    let config = parse("[limits]\nsession_expiry_max = 4294967295\n").unwrap();
    assert_eq!(config.core.session_expiry_max, Some(u32::MAX));
    assert_invalid(
        "[limits]\nsession_expiry_max = 4294967296\n",
        "limits.session_expiry_max",
        2,
        "at most 4294967295",
    );
}

#[test]
fn default_ports_follow_the_protocol() {
    let src = "[[listener]]\n[[listener]]\nprotocol = \"tls\"\ncert = \"c\"\nkey = \"k\"\n[[listener]]\nprotocol = \"ws\"\n";
    let ports: Vec<u16> = parse(src)
        .unwrap()
        .listeners
        .iter()
        .map(|l| l.bind.port())
        .collect();
    assert_eq!(ports, [1883, 8883, 8083]);
}

#[test]
fn first_matching_rule_sets_the_durability() {
    let src = "[storage]\ndurability = \"flush\"\n\
               [[storage.rule]]\ntopics = [\"alarms/+/critical\"]\ndurability = \"sync\"\n\
               [[storage.rule]]\ntopics = [\"alarms/#\", \"telemetry/#\"]\ndurability = \"volatile\"\n";
    let storage = parse(src).unwrap().storage;
    assert_eq!(
        storage.durability_for("alarms/boiler/critical"),
        Durability::Sync
    );
    assert_eq!(
        storage.durability_for("alarms/boiler/minor"),
        Durability::Volatile
    );
    assert_eq!(storage.durability_for("telemetry/x"), Durability::Volatile);
    assert_eq!(storage.durability_for("orders/1"), Durability::Flush);
}

#[test]
fn load_reads_a_file_and_names_it_in_errors() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("holdfast.toml");
    std::fs::write(&path, "[limits]\nmax_inflight = 8\n").unwrap();
    assert_eq!(Config::load(&path).unwrap().core.max_inflight, 8);

    std::fs::write(&path, "[limits]\nmax_inflight = 0\n").unwrap();
    let text = Config::load(&path).unwrap_err().to_string();
    assert!(
        text.starts_with(&format!("{} line 2: limits.max_inflight: ", path.display())),
        "{text}"
    );

    let missing = dir.path().join("missing.toml");
    let err = Config::load(&missing).unwrap_err();
    assert!(matches!(err, ConfigError::Read { .. }));
    assert!(err
        .to_string()
        .starts_with(&format!("cannot read config file {}: ", missing.display())));
}

/// Lines like `#key = value` and `#[[listener]]` are the commented-out defaults.
fn uncomment_settings(text: &str) -> String {
    text.lines()
        .map(|line| match line.strip_prefix('#') {
            Some(rest) if rest.starts_with(|c: char| c.is_ascii_alphabetic() || c == '[') => rest,
            _ => line,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn example_file_parses_and_shows_the_defaults() {
    assert_eq!(parse(EXAMPLE).unwrap(), Config::default());
    let uncommented = uncomment_settings(EXAMPLE);
    assert!(
        uncommented.matches(" = ").count() >= 30,
        "settings were uncommented"
    );
    let config = Config::from_toml_str(&uncommented, "holdfast.example.toml (uncommented)");
    assert_eq!(config.unwrap(), Config::default());
}

#[test]
fn docs_examples_parse() {
    let mut blocks = 0;
    let mut rest = DOCS;
    while let Some(start) = rest.find("```toml\n") {
        let body = &rest[start + "```toml\n".len()..];
        let end = body.find("```").expect("closed code block");
        let block = &body[..end];
        if let Err(e) = Config::from_toml_str(block, "docs/configuration.md") {
            panic!("{e}\nin block:\n{block}");
        }
        blocks += 1;
        rest = &body[end..];
    }
    assert!(blocks >= 1, "docs/configuration.md has a toml example");
}

#[test]
fn admin_and_discard_sections() {
    let config = parse(
        "[admin]\nbind = \"0.0.0.0:8080\"\ntoken = \"t0ken\"\nsys_interval = \"30s\"\n\
         [discard]\nidle_after = \"7d\"\nstore_high_water = \"1GiB\"\nstore_low_water = \"512MiB\"\n\
         victims = \"oldest\"\n unsubscribed_messages = true\n",
    )
    .unwrap();
    assert_eq!(
        config.admin,
        AdminConfig {
            bind: Some(addr("0.0.0.0:8080")),
            token: Some("t0ken".into()),
            sys_interval: Duration::from_secs(30),
        }
    );
    assert_eq!(
        config.discard,
        DiscardRules {
            idle_after: Some(Duration::from_secs(7 * 86_400)),
            store_high_water: 1 << 30,
            store_low_water: 512 << 20,
            victims: DiscardOrder::Oldest,
            unsubscribed_messages: true,
        }
    );
    let config =
        parse("[admin]\nbind = \"\"\nsys_interval = 0\n[discard]\nstore_high_water = 1000\n")
            .unwrap();
    assert_eq!(
        (config.admin.bind, config.admin.sys_interval),
        (None, Duration::ZERO)
    );
    assert_eq!(
        config.discard.store_low_water, 800,
        "default: 80% of the high-water mark"
    );
    assert!(
        parse("[admin]\nbind = \"127.0.0.1:8080\"\n").is_ok(),
        "loopback needs no token"
    );
    assert!(parse("[admin]\nbind = \"[::1]:8080\"\n").is_ok());
}

#[test]
fn admin_and_discard_validation() {
    assert_invalid(
        "[admin]\nbind = \"0.0.0.0:8080\"\n",
        "admin.token",
        2,
        "reachable from other hosts without a token",
    );
    assert_invalid(
        "[admin]\nbind = \"localhost\"\n",
        "admin.bind",
        2,
        "not an address and port",
    );
    assert_invalid("[admin]\ntoken = \" \"\n", "admin.token", 2, "empty token");
    assert_invalid(
        "[discard]\nidle_after = 0\n",
        "discard.idle_after",
        2,
        "positive duration",
    );
    assert_invalid(
        "[discard]\nstore_high_water = 100\nstore_low_water = 100\n",
        "discard.store_low_water",
        3,
        "must be below",
    );
    assert!(parse("[discard]\nvictims = \"random\"\n").is_err());
}
