//! A tiny blocking HTTP/1.1 client for the admin API tests (one request per connection).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::thread;
use std::time::{Duration, Instant};

/// An answer: status, headers (lower-case names) and body.
#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Response {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?} {}", self.status, self.body))
    }
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Where an admin API listens, and the token to send.
#[derive(Debug, Clone)]
pub struct Admin {
    pub addr: SocketAddr,
    pub token: Option<String>,
}

impl Admin {
    pub fn new(port: u16) -> Admin {
        Admin {
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            token: None,
        }
    }
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
    pub fn get(&self, path: &str) -> Response {
        self.request("GET", path, self.token.as_deref())
    }
    pub fn delete(&self, path: &str) -> Response {
        self.request("DELETE", path, self.token.as_deref())
    }
    pub fn post(&self, path: &str) -> Response {
        self.request("POST", path, self.token.as_deref())
    }

    /// One request, retried while the listener is not up yet (bounded).
    pub fn request(&self, method: &str, path: &str, token: Option<&str>) -> Response {
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut stream = loop {
            match TcpStream::connect_timeout(&self.addr, Duration::from_secs(1)) {
                Ok(s) => break s,
                Err(e) if Instant::now() >= deadline => {
                    panic!("admin API at {}: {e}", self.addr)
                }
                Err(_) => thread::sleep(Duration::from_millis(50)),
            }
        };
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        let mut req = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\nContent-Length: 0\r\n",
            self.addr
        );
        if let Some(t) = token {
            req.push_str(&format!("Authorization: Bearer {t}\r\n"));
        }
        req.push_str("\r\n");
        stream.write_all(req.as_bytes()).expect("send request");
        let mut raw = Vec::new();
        stream.read_to_end(&mut raw).expect("read response");
        parse(&raw).unwrap_or_else(|| {
            panic!(
                "bad HTTP response to {method} {path}: {:?}",
                String::from_utf8_lossy(&raw)
            )
        })
    }
}

fn parse(raw: &[u8]) -> Option<Response> {
    let end = raw.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = std::str::from_utf8(&raw[..end]).ok()?;
    let mut lines = head.split("\r\n");
    let status = lines.next()?.split(' ').nth(1)?.parse().ok()?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let mut body = raw[end + 4..].to_vec();
    if headers
        .iter()
        .any(|(k, v)| k == "transfer-encoding" && v.eq_ignore_ascii_case("chunked"))
    {
        let mut out = Vec::new();
        let mut rest = &body[..];
        loop {
            let eol = rest.windows(2).position(|w| w == b"\r\n")?;
            let size =
                usize::from_str_radix(std::str::from_utf8(&rest[..eol]).ok()?.trim(), 16).ok()?;
            rest = &rest[eol + 2..];
            if size == 0 {
                break;
            }
            out.extend_from_slice(rest.get(..size)?);
            rest = rest.get(size + 2..)?;
        }
        body = out;
    }
    Some(Response {
        status,
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    })
}

/// A broker config with the admin API on a free port; returns the config text and the port.
pub fn admin_config(extra: &str) -> (String, u16) {
    let port = super::free_port();
    (
        format!("[admin]\nbind = \"127.0.0.1:{port}\"\n{extra}"),
        port,
    )
}
