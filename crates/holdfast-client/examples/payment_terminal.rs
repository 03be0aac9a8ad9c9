//! The parking meter payment of MQTT 5.0 section 4.1: each payment is published at QoS 1 with the
//! `sync` class, so it is fsync'd in the terminal's own store before it is first transmitted. Kill
//! the process (`kill -9`) between a publish and its PUBACK and start it again with the same
//! directory: the payment is sent again (DUP, same packet id) and nothing is lost.
//!
//! `cargo run -p holdfast-client --example payment_terminal -- DIR [HOST] [PORT] [PAYMENTS]`
//!
//! Prints `stored N` once payment N is on disk and `acked N` once the broker acknowledged it; with
//! PAYMENTS = 0 it only delivers what a previous run left unacknowledged.

use holdfast_client::{Client, ClientError, ClientOptions, Durability, Outgoing, QoS};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), ClientError> {
    let mut args = std::env::args().skip(1);
    let dir = args
        .next()
        .unwrap_or_else(|| "payment-terminal-data".into());
    let host = args.next().unwrap_or_else(|| "127.0.0.1".into());
    let port = args.next().and_then(|p| p.parse().ok()).unwrap_or(1883);
    let payments: u32 = args.next().and_then(|n| n.parse().ok()).unwrap_or(5);

    let opts = ClientOptions::new(host, port, "terminal-7")
        .with_clean_start(false)
        .with_session_expiry(u32::MAX)
        .with_persistence(dir, Durability::Sync);
    // `start` does not wait for the broker: payments are taken (and stored) while it is away.
    let client = Client::start(opts)?;
    let mut deliveries = Vec::new();
    for n in 0..payments {
        let payment = format!("terminal-7 payment {n} EUR 2.50");
        let m = Outgoing::new("payments/terminal-7", payment).qos(QoS::AtLeastOnce);
        let delivery = client.enqueue(m).await?; // fsync'd when this returns
        println!("stored {n}");
        deliveries.push(tokio::spawn(async move {
            let r = delivery.await;
            if r.is_ok() {
                println!("acked {n}");
            }
            r
        }));
    }
    for d in deliveries {
        d.await.expect("delivery task")?;
    }
    // Also what an earlier run (killed before its PUBACKs) left in the store.
    client.wait_idle().await?;
    client.disconnect().await
}
