//! Fuzz target `message`: see `oxrmi::__private::fuzzing::message` and `fuzz/README.md`.

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    oxrmi::__private::fuzzing::message(data);
});
