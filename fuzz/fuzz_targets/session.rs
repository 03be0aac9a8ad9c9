//! Connection-level target: arbitrary bytes are a client's byte stream, decoded and fed to a
//! session state machine (with and without an ACL; its own messages routed back to it).
//! Run: `cargo fuzz run session --sanitizer none` from `fuzz/`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    holdfast_core::fuzzing::fuzz_session(data);
});
