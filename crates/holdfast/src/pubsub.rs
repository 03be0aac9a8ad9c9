//! `holdfast pub` and `holdfast sub`: mosquitto_pub / mosquitto_sub on top of holdfast-client.

use std::io::{BufRead, Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::{ArgAction, Args};
use holdfast_client::{Client, ClientOptions, Durability, Outgoing, QoS, TlsOptions};

/// Options shared by `pub` and `sub`.
#[derive(Debug, Args)]
pub struct ConnArgs {
    /// Broker host.
    #[arg(short = 'h', long, default_value = "localhost")]
    pub host: String,
    /// Broker port.
    #[arg(short = 'p', long, default_value_t = 1883)]
    pub port: u16,
    /// Client id (default: holdfast-pub-<pid> / holdfast-sub-<pid>).
    #[arg(short = 'i', long = "id")]
    pub id: Option<String>,
    /// Protocol version: 311 (MQTT 3.1.1) or 5.
    #[arg(short = 'V', long = "protocol-version", default_value = "311",
          value_parser = ["311", "mqttv311", "5", "mqttv5"])]
    pub protocol_version: String,
    /// Disable clean session / clean start: resume the broker's session.
    #[arg(short = 'c', long = "disable-clean-session")]
    pub no_clean: bool,
    /// Keep alive, seconds.
    #[arg(short = 'k', long, default_value_t = 60)]
    pub keepalive: u16,
    /// MQTT 5 Session Expiry Interval, seconds (with -c; default: never with -c).
    #[arg(short = 'x', long = "session-expiry")]
    pub session_expiry: Option<u32>,
    #[arg(short = 'u', long)]
    pub username: Option<String>,
    #[arg(short = 'P', long)]
    pub password: Option<String>,
    /// Keep the client's Session state in this directory (needs -i).
    #[arg(long = "persist-dir")]
    pub persist_dir: Option<PathBuf>,
    /// Durability class of published messages and stored state: volatile, flush or sync.
    #[arg(long, default_value = "flush", value_parser = ["volatile", "flush", "sync"])]
    pub durability: String,
    /// Connect over TLS, trusting the CA certificates in this PEM file.
    #[arg(long)]
    pub cafile: Option<PathBuf>,
    /// Connect over TLS, trusting the system's root certificates (SSL_CERT_FILE / SSL_CERT_DIR
    /// override where they are looked for).
    #[arg(long = "tls-use-os-certs", conflicts_with = "cafile")]
    pub tls_use_os_certs: bool,
    /// Connect over WebSocket (ws://, or wss:// with TLS), subprotocol mqtt.
    #[arg(long)]
    pub ws: bool,
    /// The WebSocket request path (with --ws).
    #[arg(long = "ws-path", default_value = "/mqtt", requires = "ws")]
    pub ws_path: String,
    /// MQTT 5 topic aliases: at most N for the topics published to, and N announced for the
    /// server to use; 0 turns them off.
    #[arg(long = "topic-aliases", default_value_t = 16)]
    pub topic_aliases: u16,
    /// Client certificate (PEM) for TLS, with --key.
    #[arg(long, requires = "key")]
    pub cert: Option<PathBuf>,
    /// Client key (PEM) for TLS, with --cert.
    #[arg(long, requires = "cert")]
    pub key: Option<PathBuf>,
    /// The name the server's certificate must carry (default: the host).
    #[arg(long = "tls-server-name")]
    pub tls_server_name: Option<String>,
    /// Print help.
    #[arg(long, action = ArgAction::Help)]
    pub help: Option<bool>,
}

impl ConnArgs {
    fn options(&self, role: &str) -> anyhow::Result<ClientOptions> {
        let id = self
            .id
            .clone()
            .unwrap_or_else(|| format!("holdfast-{role}-{}", std::process::id()));
        if self.persist_dir.is_some() && self.id.is_none() {
            bail!("--persist-dir needs a client id (-i): the session is stored under it");
        }
        let durability = match self.durability.as_str() {
            "volatile" => Durability::Volatile,
            "sync" => Durability::Sync,
            _ => Durability::Flush,
        };
        let mut o = ClientOptions::new(self.host.clone(), self.port, id)
            .with_v5(self.protocol_version.ends_with('5'))
            .with_clean_start(!self.no_clean)
            .with_keep_alive(self.keepalive)
            .with_topic_aliases(self.topic_aliases, self.topic_aliases);
        if self.ws {
            o = o.with_websocket(self.ws_path.clone());
        }
        if self.no_clean {
            o = o.with_session_expiry(self.session_expiry.unwrap_or(u32::MAX));
        }
        if let Some(u) = &self.username {
            o = o.with_credentials(u.clone(), self.password.clone().unwrap_or_default());
        }
        if self.cafile.is_some() || self.tls_use_os_certs {
            o = o.with_tls(TlsOptions {
                ca_file: self.cafile.clone(),
                cert_file: self.cert.clone(),
                key_file: self.key.clone(),
                server_name: self.tls_server_name.clone(),
            });
        } else if self.cert.is_some() || self.tls_server_name.is_some() {
            bail!("--cert and --tls-server-name need TLS: give --cafile or --tls-use-os-certs");
        }
        if let Some(dir) = &self.persist_dir {
            o = o.with_persistence(dir.clone(), durability);
        }
        Ok(o)
    }
}

fn parse_qos(q: u8) -> anyhow::Result<QoS> {
    QoS::from_u8(q).with_context(|| format!("QoS {q}: must be 0, 1 or 2"))
}

#[derive(Debug, Args)]
#[command(disable_help_flag = true, disable_version_flag = true)]
pub struct PubArgs {
    #[command(flatten)]
    pub conn: ConnArgs,
    /// Topic to publish to.
    #[arg(short = 't', long)]
    pub topic: String,
    #[arg(short = 'q', long, default_value_t = 0)]
    pub qos: u8,
    /// Retain the message.
    #[arg(short = 'r', long)]
    pub retain: bool,
    /// The message.
    #[arg(short = 'm', long, group = "source")]
    pub message: Option<String>,
    /// Send the whole file as one message.
    #[arg(short = 'f', long, group = "source")]
    pub file: Option<PathBuf>,
    /// Send all of stdin as one message.
    #[arg(short = 's', long, group = "source")]
    pub stdin_file: bool,
    /// Send each line of stdin as a message.
    #[arg(short = 'l', long, group = "source")]
    pub stdin_line: bool,
    /// Send an empty message.
    #[arg(short = 'n', long, group = "source")]
    pub null_message: bool,
    /// Publish the message this many times.
    #[arg(long, default_value_t = 1)]
    pub repeat: u32,
    /// Print `stored <payload>` once each message is kept as its class asks and
    /// `acked <payload>` once the broker acknowledged it (for scripts and tests).
    #[arg(long)]
    pub report: bool,
    /// Give up (exit status 1) unless every message is acknowledged within this many seconds,
    /// connecting included. With --persist-dir the messages not acknowledged stay stored.
    #[arg(long, value_name = "SECS", value_parser = parse_timeout)]
    pub timeout: Option<Duration>,
}

fn parse_timeout(s: &str) -> Result<Duration, String> {
    let secs: f64 = s
        .parse()
        .map_err(|_| format!("{s:?} is not a number of seconds"))?;
    if !(secs > 0.0 && secs <= 86400.0 * 365.0) {
        return Err(format!("{s}: must be more than 0 and at most a year"));
    }
    Ok(Duration::from_secs_f64(secs))
}

#[derive(Debug, Args)]
#[command(disable_help_flag = true, disable_version_flag = true)]
pub struct SubArgs {
    #[command(flatten)]
    pub conn: ConnArgs,
    /// Topic filter (repeatable).
    #[arg(short = 't', long, required = true)]
    pub topic: Vec<String>,
    #[arg(short = 'q', long, default_value_t = 0)]
    pub qos: u8,
    /// Exit after this many messages.
    #[arg(short = 'C', long)]
    pub count: Option<u64>,
    /// Print the topic before each payload.
    #[arg(short = 'v', long)]
    pub verbose: bool,
    /// Exit after this many seconds without a message.
    #[arg(short = 'W', long)]
    pub timeout: Option<u64>,
    /// Skip retained messages.
    #[arg(short = 'R', long = "no-retained")]
    pub no_retained: bool,
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

fn finish(r: anyhow::Result<()>) -> ExitCode {
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

pub fn run_pub(args: PubArgs) -> ExitCode {
    finish(runtime().and_then(|rt| rt.block_on(publish(args))))
}

pub fn run_sub(args: SubArgs) -> ExitCode {
    finish(runtime().and_then(|rt| rt.block_on(subscribe(args))))
}

async fn publish(args: PubArgs) -> anyhow::Result<()> {
    let qos = parse_qos(args.qos)?;
    let opts = args.conn.options("pub")?;
    let progress = Arc::new(Progress::default());
    let Some(limit) = args.timeout else {
        return publish_all(&args, qos, opts, &progress).await;
    };
    match tokio::time::timeout(limit, publish_all(&args, qos, opts, &progress)).await {
        Ok(r) => r,
        Err(_) => {
            let acked = progress.acked.load(Ordering::Relaxed);
            let stored = progress.stored.load(Ordering::Relaxed);
            let mut why = format!(
                "timed out after {}: {acked} of {stored} message(s) acknowledged",
                humantime::format_duration(limit)
            );
            // Without a directory `pub` connects first, so this is known; with one it is not.
            if args.conn.persist_dir.is_none() && !progress.connected.load(Ordering::Relaxed) {
                why.push_str(", not connected to the broker");
            }
            if let Some(dir) = &args.conn.persist_dir {
                if qos != QoS::AtMostOnce {
                    why.push_str(&format!(
                        "; the others stay in {} and go out on the next run with the same -i",
                        dir.display()
                    ));
                }
            }
            bail!(why)
        }
    }
}

/// How far `pub` got, for the timeout's message.
#[derive(Default)]
struct Progress {
    connected: AtomicBool,
    stored: AtomicU64,
    acked: AtomicU64,
}

async fn publish_all(
    args: &PubArgs,
    qos: QoS,
    opts: ClientOptions,
    progress: &Arc<Progress>,
) -> anyhow::Result<()> {
    // With a persistence directory messages are kept while the broker is unreachable.
    let client = if args.conn.persist_dir.is_some() {
        Client::start(opts)?
    } else {
        let c = Client::connect(opts).await.context("cannot connect")?;
        progress.connected.store(true, Ordering::Relaxed);
        c
    };
    let mut deliveries = Vec::new();
    let report = args.report;
    let send = |payload: Vec<u8>| {
        let client = client.clone();
        let progress = progress.clone();
        let m = Outgoing::new(args.topic.clone(), payload.clone())
            .qos(qos)
            .retain(args.retain);
        async move {
            let d = client.enqueue(m).await?;
            progress.stored.fetch_add(1, Ordering::Relaxed);
            let text = String::from_utf8_lossy(&payload).into_owned();
            if report {
                println!("stored {text}");
                let _ = std::io::stdout().flush();
            }
            let progress = progress.clone();
            Ok::<_, holdfast_client::ClientError>(tokio::spawn(async move {
                let r = d.await;
                if r.is_ok() {
                    progress.acked.fetch_add(1, Ordering::Relaxed);
                    progress.connected.store(true, Ordering::Relaxed);
                    if report {
                        println!("acked {text}");
                        let _ = std::io::stdout().flush();
                    }
                }
                r
            }))
        }
    };
    if args.stdin_line {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        std::thread::spawn(move || {
            for line in std::io::stdin().lock().lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        while let Some(line) = rx.recv().await {
            deliveries.push(send(line.into_bytes()).await?);
        }
    } else {
        let payload = if let Some(m) = &args.message {
            m.clone().into_bytes()
        } else if let Some(f) = &args.file {
            std::fs::read(f).with_context(|| format!("cannot read {}", f.display()))?
        } else if args.stdin_file {
            let mut buf = Vec::new();
            std::io::stdin().read_to_end(&mut buf)?;
            buf
        } else if args.null_message {
            Vec::new()
        } else if args.conn.persist_dir.is_some() {
            // Only resume: deliver what the stored session holds.
            client.wait_idle().await?;
            client.disconnect().await?;
            return Ok(());
        } else {
            bail!("nothing to publish: give -m, -f, -s, -l or -n");
        };
        for _ in 0..args.repeat {
            deliveries.push(send(payload.clone()).await?);
        }
    }
    for d in deliveries {
        d.await.context("delivery task")??;
    }
    client.wait_idle().await?;
    client.disconnect().await?;
    Ok(())
}

async fn subscribe(args: SubArgs) -> anyhow::Result<()> {
    let qos = parse_qos(args.qos)?;
    let opts = args.conn.options("sub")?;
    let client = Client::connect(opts).await.context("cannot connect")?;
    let filters = args.topic.iter().map(|t| (t.clone(), qos)).collect();
    let mut sub = client.subscribe_many(filters).await?;
    let mut seen = 0u64;
    let wait = args.timeout.map(Duration::from_secs);
    let mut out = std::io::stdout();
    while args.count.is_none_or(|c| seen < c) {
        let next = match wait {
            Some(w) => match tokio::time::timeout(w, sub.recv()).await {
                Ok(m) => m,
                Err(_) => bail!("timed out after {}s without a message", w.as_secs()),
            },
            None => sub.recv().await,
        };
        let Some(m) = next else { break };
        if args.no_retained && m.retain {
            continue;
        }
        seen += 1;
        if args.verbose {
            write!(out, "{} ", m.topic)?;
        }
        out.write_all(&m.payload)?;
        out.write_all(b"\n")?;
        out.flush()?;
    }
    client.disconnect().await?;
    Ok(())
}
