//! Fuzz target `connection`: see `oxrmi::__private::fuzzing::connection` and `fuzz/README.md`.

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    oxrmi::__private::fuzzing::connection(data);
});
