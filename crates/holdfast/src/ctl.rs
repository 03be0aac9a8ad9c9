//! `holdfast ctl`: the admin HTTP API (docs/admin-api.md) from the command line, with tables for
//! people and `--json` for scripts. A tiny blocking HTTP/1.1 client is enough here: one request
//! per run, to a plain-HTTP listener (put a TLS proxy in front for remote use).

use std::fmt::Write as _;
use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Subcommand};
use serde_json::Value;

#[derive(Debug, Args)]
pub struct CtlArgs {
    /// Base URL of the admin API ([admin] bind of the broker)
    #[arg(
        long,
        value_name = "URL",
        env = "HOLDFAST_ADMIN",
        default_value = "http://127.0.0.1:8080"
    )]
    pub admin: String,
    /// Bearer token ([admin] token of the broker)
    #[arg(
        long,
        value_name = "TOKEN",
        env = "HOLDFAST_ADMIN_TOKEN",
        hide_env_values = true
    )]
    pub token: Option<String>,
    /// Print the API's JSON answer instead of a table
    #[arg(long, global = true)]
    pub json: bool,
    #[command(subcommand)]
    pub command: CtlCommand,
}

#[derive(Debug, Subcommand)]
pub enum CtlCommand {
    /// List, inspect, discard or disconnect sessions.
    #[command(subcommand)]
    Sessions(SessionsCommand),
    /// List or delete retained messages.
    #[command(subcommand)]
    Retained(RetainedCommand),
    /// The broker's figures: connections, sessions, queues, store, counters.
    Stats,
}

#[derive(Debug, Subcommand)]
pub enum SessionsCommand {
    /// List sessions, sorted by client id.
    List {
        /// Only client ids starting with this
        #[arg(long)]
        prefix: Option<String>,
        /// Only sessions whose client is connected
        #[arg(long, conflicts_with = "offline")]
        connected: bool,
        /// Only sessions whose client is not connected
        #[arg(long)]
        offline: bool,
        /// Skip this many
        #[arg(long, default_value_t = 0)]
        offset: usize,
        /// Show at most this many (1 to 1000)
        #[arg(long, default_value_t = 1000)]
        limit: usize,
    },
    /// Show one session: protocol, connection times, expiry, subscriptions, queue.
    Show { client_id: String },
    /// Discard a session: disconnect its client (MQTT 5: reason 0x98) and delete its state durably.
    Discard { client_id: String },
    /// Disconnect a session's client (MQTT 5: reason 0x98), keeping the session.
    Kick { client_id: String },
}

#[derive(Debug, Subcommand)]
pub enum RetainedCommand {
    /// List retained messages whose topic matches a filter.
    List {
        /// Topic filter
        #[arg(long, default_value = "#")]
        filter: String,
    },
    /// Delete the retained message of a topic.
    Delete { topic: String },
}

pub fn run(args: CtlArgs) -> ExitCode {
    match execute(&args) {
        Ok(text) => {
            print!("{text}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn execute(args: &CtlArgs) -> Result<String, String> {
    let api = Api::new(&args.admin, args.token.clone())?;
    let (method, path) = match &args.command {
        CtlCommand::Sessions(SessionsCommand::List {
            prefix,
            connected,
            offline,
            offset,
            limit,
        }) => {
            let mut q = format!("/api/v1/sessions?offset={offset}&limit={limit}");
            if let Some(p) = prefix {
                let _ = write!(q, "&prefix={}", encode(p));
            }
            if *connected || *offline {
                let _ = write!(q, "&connected={connected}");
            }
            ("GET", q)
        }
        CtlCommand::Sessions(SessionsCommand::Show { client_id }) => {
            ("GET", format!("/api/v1/sessions/{}", encode(client_id)))
        }
        CtlCommand::Sessions(SessionsCommand::Discard { client_id }) => {
            ("DELETE", format!("/api/v1/sessions/{}", encode(client_id)))
        }
        CtlCommand::Sessions(SessionsCommand::Kick { client_id }) => (
            "POST",
            format!("/api/v1/sessions/{}/kick", encode(client_id)),
        ),
        CtlCommand::Retained(RetainedCommand::List { filter }) => {
            ("GET", format!("/api/v1/retained?filter={}", encode(filter)))
        }
        CtlCommand::Retained(RetainedCommand::Delete { topic }) => {
            ("DELETE", format!("/api/v1/retained/{}", encode(topic)))
        }
        CtlCommand::Stats => ("GET", "/api/v1/stats".to_string()),
    };
    let body = api.call(method, &path)?;
    if args.json {
        let mut s = serde_json::to_string_pretty(&body).unwrap_or_default();
        s.push('\n');
        return Ok(s);
    }
    Ok(match &args.command {
        CtlCommand::Sessions(SessionsCommand::List { .. }) => sessions_table(&body),
        CtlCommand::Sessions(SessionsCommand::Show { .. }) => session_detail(&body),
        CtlCommand::Sessions(SessionsCommand::Discard { client_id }) => {
            format!("discarded session '{client_id}'\n")
        }
        CtlCommand::Sessions(SessionsCommand::Kick { client_id }) => {
            format!("disconnected the client of session '{client_id}'\n")
        }
        CtlCommand::Retained(RetainedCommand::List { .. }) => retained_table(&body),
        CtlCommand::Retained(RetainedCommand::Delete { topic }) => {
            format!("deleted the retained message of '{topic}'\n")
        }
        CtlCommand::Stats => stats_text(&body, ""),
    })
}

/// Percent-encodes everything but RFC 3986's unreserved characters (so '/' becomes %2F).
fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

struct Api {
    url: String,
    host: String,
    port: u16,
    base: String,
    token: Option<String>,
}

impl Api {
    fn new(url: &str, token: Option<String>) -> Result<Api, String> {
        let rest = url.strip_prefix("http://").ok_or_else(|| {
            format!("admin URL \"{url}\" must start with http:// (e.g. http://127.0.0.1:8080)")
        })?;
        let (authority, base) = match rest.find('/') {
            Some(i) => (&rest[..i], rest[i..].trim_end_matches('/')),
            None => (rest, ""),
        };
        let (host, port) = match authority.rsplit_once(':') {
            Some((h, p)) if !h.ends_with(']') || authority.starts_with('[') => {
                let port = p
                    .parse::<u16>()
                    .map_err(|_| format!("admin URL \"{url}\": bad port \"{p}\""))?;
                (h, port)
            }
            _ => (authority, 80),
        };
        if host.is_empty() {
            return Err(format!("admin URL \"{url}\" has no host"));
        }
        Ok(Api {
            url: url.to_string(),
            host: host
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_string(),
            port,
            base: base.to_string(),
            token: token.filter(|t| !t.is_empty()),
        })
    }

    /// One request; the JSON answer of a 2xx, else the API's error message.
    fn call(&self, method: &str, path: &str) -> Result<Value, String> {
        let unreachable =
            |e: &dyn std::fmt::Display| format!("cannot reach the admin API at {}: {e}", self.url);
        let addr = (self.host.as_str(), self.port)
            .to_socket_addrs()
            .map_err(|e| unreachable(&e))?
            .next()
            .ok_or_else(|| unreachable(&"no address"))?;
        let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
            .map_err(|e| unreachable(&e))?;
        let _ = stream.set_read_timeout(Some(Duration::from_secs(60)));
        let mut req = format!(
            "{method} {}{path} HTTP/1.1\r\nHost: {}:{}\r\nAccept: application/json\r\n\
             Connection: close\r\nContent-Length: 0\r\nUser-Agent: holdfast-ctl/{}\r\n",
            self.base,
            self.host,
            self.port,
            env!("CARGO_PKG_VERSION")
        );
        if let Some(t) = &self.token {
            let _ = write!(req, "Authorization: Bearer {t}\r\n");
        }
        req.push_str("\r\n");
        stream
            .write_all(req.as_bytes())
            .map_err(|e| unreachable(&e))?;
        let mut raw = Vec::new();
        stream
            .read_to_end(&mut raw)
            .map_err(|e| format!("reading the answer of {}: {e}", self.url))?;
        let (status, body) = parse_response(&raw)
            .ok_or_else(|| format!("{} sent an answer that is not HTTP", self.url))?;
        let json: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        if (200..300).contains(&status) {
            return Ok(json);
        }
        let message = json
            .get("error")
            .and_then(Value::as_str)
            .map(str::to_string)
            .unwrap_or_else(|| String::from_utf8_lossy(&body).trim().to_string());
        Err(match status {
            401 => format!(
                "the admin API refused the request: {message} (give --token or set \
                 HOLDFAST_ADMIN_TOKEN)"
            ),
            _ => message,
        })
    }
}

/// Status and body of an HTTP/1.1 response read to its end (Content-Length or chunked).
fn parse_response(raw: &[u8]) -> Option<(u16, Vec<u8>)> {
    let end = raw.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = std::str::from_utf8(&raw[..end]).ok()?;
    let mut lines = head.split("\r\n");
    let status: u16 = lines.next()?.split(' ').nth(1)?.parse().ok()?;
    let mut chunked = false;
    for line in lines {
        if let Some((k, v)) = line.split_once(':') {
            if k.eq_ignore_ascii_case("transfer-encoding")
                && v.trim().eq_ignore_ascii_case("chunked")
            {
                chunked = true;
            }
        }
    }
    let body = &raw[end + 4..];
    if !chunked {
        return Some((status, body.to_vec()));
    }
    let mut out = Vec::new();
    let mut rest = body;
    loop {
        let eol = rest.windows(2).position(|w| w == b"\r\n")?;
        let size_text = std::str::from_utf8(&rest[..eol]).ok()?;
        let size = usize::from_str_radix(size_text.split(';').next()?.trim(), 16).ok()?;
        rest = &rest[eol + 2..];
        if size == 0 {
            return Some((status, out));
        }
        out.extend_from_slice(rest.get(..size)?);
        rest = rest.get(size + 2..)?;
    }
}

fn s(v: &Value, key: &str) -> String {
    match v.get(key) {
        None | Some(Value::Null) => "-".to_string(),
        Some(Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
    }
}

/// Left-aligned columns, two spaces apart.
fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let mut line = |cells: Vec<&str>| {
        let mut l = String::new();
        for (i, (cell, w)) in cells.iter().zip(&widths).enumerate() {
            if i + 1 == cells.len() {
                l.push_str(cell);
            } else {
                let _ = write!(l, "{cell:<w$}  ");
            }
        }
        out.push_str(l.trim_end());
        out.push('\n');
    };
    line(header.to_vec());
    for row in rows {
        line(row.iter().map(String::as_str).collect());
    }
    out
}

fn sessions_table(body: &Value) -> String {
    let empty = Vec::new();
    let list = body["sessions"].as_array().unwrap_or(&empty);
    let rows: Vec<Vec<String>> = list
        .iter()
        .map(|x| {
            let state = if x["connected"].as_bool() == Some(true) {
                format!("connected since {}", s(x, "connected_at"))
            } else {
                format!("offline since {}", s(x, "disconnected_at"))
            };
            vec![
                s(x, "client_id"),
                s(x, "protocol"),
                x["subscriptions"]
                    .as_array()
                    .map_or(0, Vec::len)
                    .to_string(),
                s(x, "queued"),
                s(x, "queued_bytes"),
                s(x, "inflight"),
                s(x, "durability"),
                state,
            ]
        })
        .collect();
    let mut out = table(
        &[
            "CLIENT ID",
            "PROTOCOL",
            "SUBS",
            "QUEUED",
            "BYTES",
            "INFLIGHT",
            "DURABILITY",
            "STATE",
        ],
        &rows,
    );
    let _ = writeln!(out, "{} of {} sessions", rows.len(), s(body, "total"));
    out
}

fn session_detail(x: &Value) -> String {
    let mut out = String::new();
    let expiry = match &x["expiry_interval"] {
        Value::Null => "never".to_string(),
        v => format!("{v}s"),
    };
    for (k, v) in [
        ("client id", s(x, "client_id")),
        ("protocol", s(x, "protocol")),
        ("connected", s(x, "connected")),
        ("connected at", s(x, "connected_at")),
        ("disconnected at", s(x, "disconnected_at")),
        ("expiry interval", expiry),
        ("expires at", s(x, "expires_at")),
        ("queued", s(x, "queued")),
        ("queued bytes", s(x, "queued_bytes")),
        ("inflight", s(x, "inflight")),
        ("durability", s(x, "durability")),
        ("stored", s(x, "stored")),
        ("will", s(x, "has_will")),
    ] {
        let _ = writeln!(out, "{k:<16} {v}");
    }
    let empty = Vec::new();
    let subs = x["subscriptions"].as_array().unwrap_or(&empty);
    let _ = writeln!(out, "subscriptions    {}", subs.len());
    if !subs.is_empty() {
        let rows: Vec<Vec<String>> = subs
            .iter()
            .map(|sub| {
                vec![
                    s(sub, "filter"),
                    s(sub, "qos"),
                    s(sub, "no_local"),
                    s(sub, "retain_as_published"),
                    s(sub, "retain_handling"),
                    s(sub, "subscription_id"),
                ]
            })
            .collect();
        for line in table(
            &["  FILTER", "QOS", "NO LOCAL", "RAP", "RH", "ID"],
            &rows
                .into_iter()
                .map(|mut r| {
                    r[0] = format!("  {}", r[0]);
                    r
                })
                .collect::<Vec<_>>(),
        )
        .lines()
        {
            let _ = writeln!(out, "{line}");
        }
    }
    out
}

fn retained_table(body: &Value) -> String {
    let empty = Vec::new();
    let list = body["retained"].as_array().unwrap_or(&empty);
    let rows: Vec<Vec<String>> = list
        .iter()
        .map(|x| {
            vec![
                s(x, "topic"),
                s(x, "qos"),
                s(x, "payload_bytes"),
                s(x, "durability"),
                s(x, "expires_at"),
            ]
        })
        .collect();
    let mut out = table(&["TOPIC", "QOS", "BYTES", "DURABILITY", "EXPIRES"], &rows);
    let _ = writeln!(out, "{} retained messages", rows.len());
    out
}

/// `key value` lines, nested objects as `outer.inner`.
fn stats_text(v: &Value, prefix: &str) -> String {
    let mut out = String::new();
    if let Value::Object(map) = v {
        for (k, v) in map {
            let key = if prefix.is_empty() {
                k.clone()
            } else {
                format!("{prefix}.{k}")
            };
            match v {
                Value::Object(_) => out.push_str(&stats_text(v, &key)),
                Value::String(s) => {
                    let _ = writeln!(out, "{key:<32} {s}");
                }
                other => {
                    let _ = writeln!(out, "{key:<32} {other}");
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_everything_but_unreserved() {
        assert_eq!(encode("a/b c+#"), "a%2Fb%20c%2B%23");
        assert_eq!(encode("Az09-._~"), "Az09-._~");
    }

    #[test]
    fn parses_urls() {
        let a = Api::new("http://127.0.0.1:9/x/", None).unwrap();
        assert_eq!(
            (a.host.as_str(), a.port, a.base.as_str()),
            ("127.0.0.1", 9, "/x")
        );
        let a = Api::new("http://[::1]:8080", None).unwrap();
        assert_eq!((a.host.as_str(), a.port), ("::1", 8080));
        assert!(Api::new("https://h", None).is_err());
        assert!(Api::new("http://h:x", None).is_err());
    }

    #[test]
    fn parses_plain_and_chunked_responses() {
        let r = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}";
        assert_eq!(parse_response(r), Some((200, b"{}".to_vec())));
        let r = b"HTTP/1.1 404 Not Found\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n1\r\nd\r\n0\r\n\r\n";
        assert_eq!(parse_response(r), Some((404, b"abcd".to_vec())));
    }
}
