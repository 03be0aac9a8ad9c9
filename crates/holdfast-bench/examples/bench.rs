//! The load generator on its own, for working on it without building the broker:
//!
//!   cargo run --release -p holdfast-bench --example bench -- fanin --qos 1 --port 1883
//!
//! Same options and exit status as `holdfast bench`.

use std::process::ExitCode;

fn main() -> ExitCode {
    let args = match holdfast_bench::BenchArgs::try_parse_from(std::env::args_os().skip(1)) {
        Ok(args) => args,
        Err(e) => e.exit(),
    };
    ExitCode::from(holdfast_bench::execute(args))
}
