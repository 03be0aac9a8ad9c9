//! Decode arbitrary bytes as MQTT packets with every protocol version; every decoded packet must
//! re-encode and decode back to itself. Run: `cargo fuzz run decode --sanitizer none` from `fuzz/`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    holdfast_proto::fuzzing::fuzz_decode(data);
});
