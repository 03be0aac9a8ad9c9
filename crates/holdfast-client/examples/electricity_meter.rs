//! The electricity meter of MQTT 5.0 section 4.1: readings at QoS 1, Session state in memory only
//! (`volatile`): QoS 1 protects them on the network; a reading lost with the process is acceptable.
//!
//! `cargo run -p holdfast-client --example electricity_meter -- [HOST] [PORT] [READINGS]`

use std::time::Duration;

use holdfast_client::{Client, ClientError, ClientOptions, Outgoing, QoS};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), ClientError> {
    let mut args = std::env::args().skip(1);
    let host = args.next().unwrap_or_else(|| "127.0.0.1".into());
    let port = args.next().and_then(|p| p.parse().ok()).unwrap_or(1883);
    let readings: u32 = args.next().and_then(|n| n.parse().ok()).unwrap_or(10);

    let client = Client::connect(ClientOptions::new(host, port, "meter-17")).await?;
    let mut kwh = 1234.5_f64;
    for i in 0..readings {
        kwh += 0.25;
        let m = Outgoing::new("meters/meter-17/kwh", format!("{kwh:.2}")).qos(QoS::AtLeastOnce);
        // Volatile: enqueue returns at once; the delivery completes on PUBACK.
        client.enqueue(m).await?.await?;
        println!("reading {i}: {kwh:.2} kWh acknowledged");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    client.disconnect().await
}
