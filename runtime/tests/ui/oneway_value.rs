use oxrmi::RemoteError;

#[oxrmi::remote]
pub trait Logger {
    #[oneway]
    async fn log(&self, line: String) -> Result<usize, RemoteError>;
}

struct Stdout;

#[oxrmi::remote]
impl Logger for Stdout {
    #[oneway]
    async fn log(&self, line: String) -> Result<usize, RemoteError> {
        println!("{line}");
        Ok(line.len())
    }
}

fn main() {}
