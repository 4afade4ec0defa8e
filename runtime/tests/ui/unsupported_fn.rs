use oxrmi::RemoteError;

#[oxrmi::remote]
pub trait Native {
    async unsafe fn raw(&self, ptr: usize) -> Result<(), RemoteError>;
    async extern "C" fn ffi(&self) -> Result<(), RemoteError>;
    async fn printf(&self, format: String, args: ...) -> Result<(), RemoteError>;
    const fn limit(&self) -> Result<u32, RemoteError>;
}

fn main() {}
