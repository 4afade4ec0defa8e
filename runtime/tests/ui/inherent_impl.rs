struct Counter(i64);

#[oxrmi::remote]
impl Counter {
    async fn get(&self) -> i64 {
        self.0
    }
}

fn main() {
    // The impl is kept, so its methods still exist: the only error is the one on the impl.
    let _ = Counter(1).get();
}
