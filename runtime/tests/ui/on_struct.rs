#[oxrmi::remote]
pub struct Counter {
    value: i64,
}

fn main() {
    // The struct is kept, so using it is not a second error.
    let _ = Counter { value: 1 }.value;
}
