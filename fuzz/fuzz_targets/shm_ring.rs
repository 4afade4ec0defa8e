//! Fuzz target `shm_ring`: see `oxrmi::__private::fuzzing::shm_ring` and `fuzz/README.md`.

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    oxrmi::__private::fuzzing::shm_ring(data);
});
