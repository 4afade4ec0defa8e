//! Compile-time behaviour of `#[oxrmi::remote]`: every diagnostic it gives, and inputs it must
//! accept (hygiene, the name override).
//!
//! Snapshots are regenerated with `TRYBUILD=overwrite cargo test -p oxrmi --test ui`; review the
//! diff of every `.stderr` (the toolchain is pinned so they are stable).

#[test]
fn ui() {
    let t = trybuild::TestCases::new();
    t.compile_fail("tests/ui/*.rs");
    t.pass("tests/ui/pass/*.rs");
}
