//! `holdfast store verify|check`: the data directory, offline.

use std::process::ExitCode;

use crate::cli::{StoreArgs, StoreCommand};

pub fn run(args: StoreArgs) -> ExitCode {
    match args.command {
        StoreCommand::Verify { data_dir } => match holdfast_store::verify(&data_dir) {
            Ok(report) => {
                print!("{report}");
                if report.is_damaged() {
                    ExitCode::FAILURE
                } else {
                    ExitCode::SUCCESS
                }
            }
            Err(e) => {
                eprintln!("error: cannot verify {}: {e}", data_dir.display());
                ExitCode::FAILURE
            }
        },
        StoreCommand::Check { data_dir, duration } => {
            println!(
                "measuring the disk under {} for {} ...",
                data_dir.display(),
                humantime::format_duration(duration)
            );
            match holdfast_store::check(&data_dir, duration) {
                Ok(report) => {
                    println!("{report}");
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("error: cannot check {}: {e}", data_dir.display());
                    ExitCode::FAILURE
                }
            }
        }
    }
}
