//! The Holdfast server: listeners, connection tasks and the wiring of core and store.

pub mod acl_file;
pub mod admin;
pub mod auth;
pub mod broker;
pub mod config;
mod connection;
mod listener;
pub mod metrics;
pub mod rules;
pub mod sys;
pub use listener::request_reload;
pub mod stats;
pub mod ticket;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use holdfast_proto::ReasonCode;
use tokio::task::JoinSet;
use tracing::{info, warn};

use holdfast_core::Durability;
use holdfast_store::{DirLock, LogOptions, LogStore, MemoryStore, Store, StoreError};

use crate::broker::{now_millis, Broker};
use crate::config::{Config, QuotaPolicy, StorageConfig};

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("listener {addr}: protocol {protocol} is not supported yet")]
    Unsupported {
        addr: SocketAddr,
        protocol: &'static str,
    },
    #[error("listener {addr}: {why}")]
    Listener { addr: SocketAddr, why: String },
    #[error("{0}")]
    Security(String),
    #[error("cannot open the store in {dir}: {source}")]
    Store {
        dir: std::path::PathBuf,
        source: StoreError,
    },
}

/// The store, the lock held on its data directory (none for a memory store), and how long recovery
/// took.
type OpenedStore = (Arc<dyn Store>, Option<DirLock>, Duration);

/// Open the store the configuration asks for: none on disk when every class is volatile. The data
/// directory is locked for the life of the process: two brokers writing one log would corrupt it.
fn open_store(storage: &StorageConfig) -> Result<OpenedStore, ServeError> {
    let rules = storage.durability_rules();
    let all_volatile = rules.default == Durability::Volatile
        && rules.rules.iter().all(|(_, d)| *d == Durability::Volatile);
    if all_volatile {
        info!("all durability classes are volatile: session state is kept in memory only");
        return Ok((Arc::new(MemoryStore::new()), None, Duration::ZERO));
    }
    let store_error = |source| ServeError::Store {
        dir: storage.data_dir.clone(),
        source,
    };
    let lock = holdfast_store::lock_dir(&storage.data_dir).map_err(store_error)?;
    let opts = LogOptions {
        flush_interval: storage.flush_interval,
        max_bytes: storage.max_bytes,
        ..LogOptions::default()
    };
    let (store, report) = LogStore::open(&storage.data_dir, opts).map_err(store_error)?;
    info!(dir = %storage.data_dir.display(), "store recovered: {report}");
    Ok((Arc::new(store), Some(lock), report.duration))
}

/// `storage.quota_policy = "discard-oldest"`: when the store refused writes for its quota since the
/// last look, or its live state is above 70% of the quota, drop the oldest queued messages of offline
/// sessions until what is queued is at most half the quota; the store's compaction then reclaims
/// their space when it next runs short. Under a burst faster than this once-a-second sweep the store
/// still refuses (0x97) rather than exceed its quota. Returns the rejection count seen.
fn discard_for_quota(broker: &Broker, max_bytes: u64, seen_rejections: u64) -> u64 {
    let stats = broker.store_stats();
    if stats.quota_rejections > seen_rejections || stats.live_bytes > max_bytes / 10 * 7 {
        let queued = broker.broker_stats().queued_bytes;
        let excess = queued.saturating_sub(max_bytes / 2);
        if excess > 0 {
            let (messages, bytes) =
                broker.discard_oldest_queued(excess, "store quota (discard-oldest)");
            warn!(
                messages,
                bytes,
                disk_bytes = stats.disk_bytes,
                max_bytes,
                "store near its quota: discarded the oldest queued messages"
            );
        }
    }
    stats.quota_rejections
}

/// How often offline sessions, wills and retained messages are checked for expiry.
const SWEEP_INTERVAL: Duration = Duration::from_secs(1);

/// Run the broker until `shutdown` completes, then disconnect every client (MQTT 5 clients get 0x8B
/// Server shutting down) and return.
pub async fn serve(
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    let (store, _lock, recovery) = open_store(&config.storage)?;
    let state = store.load_shared();
    let (security, core) = auth::load(&config)?;
    let broker = Arc::new(Broker::new(core, config.max_connections, store));
    broker
        .recovery_micros
        .store(recovery.as_micros() as u64, Ordering::Relaxed);
    let mut tasks = JoinSet::new();
    // The admin API answers /healthz while sessions are rebuilt, and /readyz only once they are.
    admin::start(&config.admin, broker.clone(), &mut tasks).await?;
    let restored = broker.restore(state, now_millis());
    if restored.sessions + restored.retained > 0 {
        info!(
            sessions = restored.sessions,
            messages = restored.messages,
            retained = restored.retained,
            "restored session state"
        );
    }
    for l in &config.listeners {
        listener::start(l, broker.clone(), security.clone(), &mut tasks).await?;
    }
    // The $SYS topics.
    if !config.admin.sys_interval.is_zero() {
        tasks.spawn(sys::run(broker.clone(), config.admin.sys_interval));
    }
    let mut rules = rules::Rules::new(&config.discard);
    listener::spawn_reloader(security, &mut tasks);
    let sweeper = broker.clone();
    let quota = (config.storage.quota_policy == QuotaPolicy::DiscardOldest)
        .then_some(config.storage.max_bytes);
    tasks.spawn(async move {
        let mut tick = tokio::time::interval(SWEEP_INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut rejections = 0;
        loop {
            tick.tick().await;
            sweeper.sweep(now_millis());
            if let Some(rules) = rules.as_mut() {
                rules.apply(&sweeper, now_millis());
            }
            if let Some(max) = quota.filter(|m| *m > 0) {
                rejections = discard_for_quota(&sweeper, max, rejections);
            }
        }
    });
    broker.ready.store(true, Ordering::Release);
    info!(version = env!("CARGO_PKG_VERSION"), "holdfast ready");
    shutdown.await;
    info!("shutting down");
    tasks.abort_all();
    broker.disconnect_all(ReasonCode::SERVER_SHUTTING_DOWN);
    let deadline = tokio::time::Instant::now() + config.shutdown_timeout;
    while broker.connections.load(Ordering::Relaxed) > 0 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let left = broker.connections.load(Ordering::Relaxed);
    if left > 0 {
        warn!(
            connections = left,
            "shutdown timeout reached with connections open"
        );
    }
    broker.close_store();
    Ok(())
}
