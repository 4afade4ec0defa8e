//! Fuzz target `frames`: see `oxrmi::__private::fuzzing::frames` and `fuzz/README.md`.

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    oxrmi::__private::fuzzing::frames(data);
});
