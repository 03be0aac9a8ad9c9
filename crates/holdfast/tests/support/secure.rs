//! Security tests: brokers with their own `[[listener]]` tables (TLS, WebSocket), test
//! certificates made by rcgen, MQTT CONNECTs with credentials, the broker's memory use.

use std::fs::{self, OpenOptions};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use rcgen::{BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair};

use super::raw::{lp, packet, props};
use super::{free_port, holdfast_command, process, tests_dir};

/// VmRSS of a process, in KiB.
pub fn rss_kib(pid: u32) -> Option<u64> {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// A broker run from a full config file (no `--listen`): `{port0}`, `{port1}`, ... in the
/// config are replaced by free ports; `{dir}` by its directory. Ready once every port accepts TCP
/// connections; `{port0}` should be a plain TCP listener. Killed on drop; its log is printed on
/// panic.
pub struct Server {
    pub dir: tempfile::TempDir,
    pub ports: Vec<u16>,
    child: Option<Child>,
}

impl Server {
    pub fn start(config: &str, dir: tempfile::TempDir) -> Server {
        let mut text = config.replace("{dir}", &dir.path().display().to_string());
        let mut ports = Vec::new();
        for i in 0..8 {
            let key = format!("{{port{i}}}");
            if text.contains(&key) {
                let p = free_port();
                text = text.replace(&key, &p.to_string());
                ports.push(p);
            }
        }
        let path = dir.path().join("holdfast.toml");
        fs::write(&path, &text).expect("write config");
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.path().join("broker.log"))
            .expect("log");
        let child = holdfast_command()
            .arg("serve")
            .arg("--config")
            .arg(&path)
            .arg("--data-dir")
            .arg(dir.path().join("data"))
            .arg("--log-level")
            .arg("debug")
            .stdin(Stdio::null())
            .stdout(Stdio::from(log.try_clone().unwrap()))
            .stderr(Stdio::from(log))
            .spawn()
            .expect("spawn holdfast");
        let mut s = Server {
            dir,
            ports,
            child: Some(child),
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(Ok(Some(status))) = s.child.as_mut().map(|c| c.try_wait()) {
                panic!("broker exited at start with {status}\n{}", s.log());
            }
            let up = |i| TcpStream::connect_timeout(&s.addr(i), Duration::from_millis(200)).is_ok();
            if (0..s.ports.len()).all(up) {
                break;
            }
            assert!(Instant::now() < deadline, "broker not ready\n{}", s.log());
            thread::sleep(Duration::from_millis(20));
        }
        s
    }

    pub fn addr(&self, i: usize) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.ports[i]))
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub fn log(&self) -> String {
        fs::read_to_string(self.path("broker.log")).unwrap_or_default()
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    pub fn rss_kib(&self) -> u64 {
        rss_kib(self.pid()).expect("VmRSS")
    }

    pub fn is_running(&mut self) -> bool {
        matches!(self.child.as_mut().map(|c| c.try_wait()), Some(Ok(None)))
    }

    /// SIGHUP: reload certificates and the password file.
    pub fn hangup(&self) {
        let ok = std::process::Command::new("kill")
            .args(["-HUP", &self.pid().to_string()])
            .status()
            .expect("kill")
            .success();
        assert!(ok, "kill -HUP");
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        if thread::panicking() {
            eprintln!("----- broker log -----\n{}\n----- end -----", self.log());
        }
    }
}

/// A temporary directory for a [`Server`] and its files.
pub fn temp_dir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("holdfast-sec-")
        .tempdir()
        .expect("tempdir")
}

/// A test PKI: a CA, a server certificate for localhost/127.0.0.1, a client certificate.
pub struct Pki {
    pub ca: PathBuf,
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
    pub client_cert: PathBuf,
    pub client_key: PathBuf,
}

/// Writes `{prefix}ca.pem`, `{prefix}server.pem`, ... into `dir`; the client certificate's CN is
/// `client_cn`.
pub fn make_pki(dir: &Path, prefix: &str, client_cn: &str) -> Pki {
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, format!("{prefix}Holdfast test CA"));
    let ca = ca_params.self_signed(&ca_key).unwrap();

    let server_key = KeyPair::generate().unwrap();
    let mut sp =
        CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()]).unwrap();
    sp.distinguished_name.push(DnType::CommonName, "localhost");
    sp.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let server = sp.signed_by(&server_key, &ca, &ca_key).unwrap();

    let client_key = KeyPair::generate().unwrap();
    let mut cp = CertificateParams::new(Vec::<String>::new()).unwrap();
    cp.distinguished_name.push(DnType::CommonName, client_cn);
    cp.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    let client = cp.signed_by(&client_key, &ca, &ca_key).unwrap();

    let write = |name: &str, text: String| {
        let p = dir.join(format!("{prefix}{name}"));
        fs::write(&p, text).unwrap();
        p
    };
    Pki {
        ca: write("ca.pem", ca.pem()),
        server_cert: write("server.pem", server.pem()),
        server_key: write("server.key", server_key.serialize_pem()),
        client_cert: write("client.pem", client.pem()),
        client_key: write("client.key", client_key.serialize_pem()),
    }
}

/// A CONNECT (level 4 or 5) with optional user name and password.
pub fn connect_with(level: u8, client_id: &str, user: Option<&str>, pass: Option<&str>) -> Vec<u8> {
    let mut flags = 0x02u8;
    if user.is_some() {
        flags |= 0x80;
    }
    if pass.is_some() {
        flags |= 0x40;
    }
    let mut body = lp(b"MQTT");
    body.push(level);
    body.push(flags);
    body.extend(30u16.to_be_bytes());
    if level >= 5 {
        body.extend(props(&[]));
    }
    body.extend(lp(client_id.as_bytes()));
    if let Some(u) = user {
        body.extend(lp(u.as_bytes()));
    }
    if let Some(p) = pass {
        body.extend(lp(p.as_bytes()));
    }
    packet(0x10, &body)
}

/// Runs `tests/py/<script>` with `args` (bounded), asserting it exits 0.
pub fn run_py(script: &str, args: &[String]) {
    let python = std::env::var("HOLDFAST_TEST_PYTHON").unwrap_or_else(|_| "python3".into());
    let mut cmd = std::process::Command::new(&python);
    cmd.arg(tests_dir().join("py").join(script))
        .args(args)
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .env("PYTHONUNBUFFERED", "1");
    let out = process::run_with_timeout(&mut cmd, Duration::from_secs(30));
    assert!(
        out.success(),
        "{script} {args:?} failed (needs paho-mqtt: run scripts/test):\n{}",
        out.describe()
    );
}

/// `holdfast passwd FILE USER --password-stdin` with `password` on standard input.
pub fn passwd_add(file: &Path, user: &str, password: &str) {
    use std::io::Write;
    let mut child = holdfast_command()
        .arg("passwd")
        .arg(file)
        .arg(user)
        .arg("--password-stdin")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("holdfast passwd");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(format!("{password}\n").as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "holdfast passwd: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Reads one MQTT packet (first byte, body) from an async stream, within `TIMEOUT`.
pub async fn read_packet<S: tokio::io::AsyncRead + Unpin>(
    s: &mut S,
    buf: &mut Vec<u8>,
) -> Option<super::raw::RawPacket> {
    use tokio::io::AsyncReadExt;
    let deadline = tokio::time::Instant::now() + super::TIMEOUT;
    loop {
        if buf.len() >= 2 {
            if let Some((len, n)) = super::raw::read_varint(&buf[1..]) {
                if buf.len() >= 1 + n + len {
                    let p = super::raw::RawPacket {
                        first: buf[0],
                        body: buf[1 + n..1 + n + len].to_vec(),
                    };
                    buf.drain(..1 + n + len);
                    return Some(p);
                }
            }
        }
        let mut chunk = [0u8; 4096];
        match tokio::time::timeout_at(deadline, s.read(&mut chunk)).await {
            Ok(Ok(0)) | Ok(Err(_)) | Err(_) => return None,
            Ok(Ok(n)) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

/// A rustls client configuration (ring) trusting `ca`, with an optional client certificate.
pub fn tls_client_config(ca: &Path, client: Option<(&Path, &Path)>) -> rustls::ClientConfig {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(ca).unwrap() {
        roots.add(c.unwrap()).unwrap();
    }
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots);
    match client {
        Some((cert, key)) => {
            let certs = CertificateDer::pem_file_iter(cert)
                .unwrap()
                .collect::<Result<Vec<_>, _>>()
                .unwrap();
            let key = PrivateKeyDer::from_pem_file(key).unwrap();
            builder.with_client_auth_cert(certs, key).unwrap()
        }
        None => builder.with_no_client_auth(),
    }
}

/// Opens a TLS connection to `addr` as "localhost".
pub async fn tls_connect(
    addr: SocketAddr,
    cfg: rustls::ClientConfig,
) -> std::io::Result<tokio_rustls::client::TlsStream<tokio::net::TcpStream>> {
    let connector = tokio_rustls::TlsConnector::from(std::sync::Arc::new(cfg));
    let tcp = tokio::net::TcpStream::connect(addr).await?;
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    connector.connect(name, tcp).await
}
