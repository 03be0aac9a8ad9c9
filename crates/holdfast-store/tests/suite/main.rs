//! The store's test suite: one binary, so it links once.

mod common;

mod compaction;
mod corruption;
mod faults;
mod group_commit;
mod power_loss;
mod reference;
mod tools;
