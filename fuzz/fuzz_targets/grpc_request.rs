//! Fuzz target `grpc_request`: see `oxrmi::__private::fuzzing::grpc_request` and
//! `fuzz/README.md`.

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    oxrmi::__private::fuzzing::grpc_request(data);
});
