#[oxrmi::remote]
pub trait Counter {
    async fn get(&self) -> i64;
    async fn reset(&self);
}

fn main() {}
