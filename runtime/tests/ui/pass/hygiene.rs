// The generated code must mean the same whatever the user's module defines or leaves out: it
// names everything by absolute path (`::core::…`, `::std::…`, `::oxrmi::__private::…`).
//
// `Box` is the one name not shadowed here: `async_trait`, which the macro applies, writes `Box`
// unqualified in its own output and its author declines to change that
// (dtolnay/async-trait#132), so a module with its own `Box` cannot use `async_trait` at all.

use oxrmi::Remote;
use std::future::Future;

mod shadowed {
    #![allow(dead_code, non_camel_case_types)]

    // Every name the generated code could be tempted to use unqualified.
    pub struct Result;
    pub struct Ok;
    pub struct Err;
    pub struct Option;
    pub struct Some;
    pub struct None;
    pub struct Arc;
    pub struct Vec;
    pub struct String;
    pub struct From;
    pub struct Clone;
    pub trait Send {}
    pub trait Sync {}
    pub trait Interface {}
    pub trait Wrap {}
    pub struct Cow;
    pub struct RemoteError;
    // Crate names too: only `::`-prefixed paths reach the real crates.
    pub mod core {}
    pub mod std {}
    pub mod oxrmi {}

    #[::oxrmi::remote]
    pub trait Counter {
        async fn add(&self, n: i64) -> ::std::result::Result<i64, ::oxrmi::RemoteError>;
        async fn get(&self) -> ::std::result::Result<i64, ::oxrmi::RemoteError>;
        #[oneway]
        async fn log(&self, line: ::std::string::String) -> ::std::result::Result<(), ::oxrmi::RemoteError>;
        // Argument names that the generated code must not confuse with its own variables.
        async fn sum(&self, this: i64, ctx: i64, args: i64, method: i64, e: i64) -> ::std::result::Result<i64, ::oxrmi::RemoteError>;
    }

    pub struct MyCounter(pub ::std::sync::atomic::AtomicI64);

    impl MyCounter {
        // An inherent method of the same name must not be what the dispatch calls.
        pub fn add(&self) {}
    }

    #[::oxrmi::remote]
    impl Counter for MyCounter {
        async fn add(&self, n: i64) -> ::std::result::Result<i64, ::oxrmi::RemoteError> {
            ::std::result::Result::Ok(self.0.fetch_add(n, ::std::sync::atomic::Ordering::SeqCst) + n)
        }
        async fn get(&self) -> ::std::result::Result<i64, ::oxrmi::RemoteError> {
            ::std::result::Result::Ok(self.0.load(::std::sync::atomic::Ordering::SeqCst))
        }
        #[oneway]
        async fn log(&self, _line: ::std::string::String) -> ::std::result::Result<(), ::oxrmi::RemoteError> {
            ::std::result::Result::Ok(())
        }
        async fn sum(&self, this: i64, ctx: i64, args: i64, method: i64, e: i64) -> ::std::result::Result<i64, ::oxrmi::RemoteError> {
            ::std::result::Result::Ok(this + ctx + args + method + e)
        }
    }
}

#[no_implicit_prelude]
mod no_prelude {
    // Needed by `async_trait`'s output (see the top of the file), not by ours.
    use ::std::boxed::Box;

    #[::oxrmi::remote]
    pub trait Echo {
        async fn echo(&self, s: ::std::string::String) -> ::std::result::Result<::std::string::String, ::oxrmi::RemoteError>;
    }

    pub struct Parrot;

    #[::oxrmi::remote]
    impl Echo for Parrot {
        async fn echo(&self, s: ::std::string::String) -> ::std::result::Result<::std::string::String, ::oxrmi::RemoteError> {
            ::std::result::Result::Ok(s)
        }
    }
}

/// Runs a future that never waits (calls on a local `Remote` run directly).
fn now<F: Future>(f: F) -> F::Output {
    let mut f = std::pin::pin!(f);
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    loop {
        if let std::task::Poll::Ready(out) = f.as_mut().poll(&mut cx) {
            return out;
        }
    }
}

fn main() {
    let counter = Remote::<dyn shadowed::Counter>::new(shadowed::MyCounter(0.into()));
    assert_eq!(counter.interface(), format!("{}::shadowed::Counter", module_path!()));
    assert_eq!(now(counter.add(2)), Ok(2));
    assert_eq!(now(counter.get()), Ok(2));
    assert_eq!(now(counter.log("hello".to_owned())), Ok(()));
    assert_eq!(now(counter.sum(1, 2, 3, 4, 5)), Ok(15));

    let echo = Remote::<dyn no_prelude::Echo>::new(no_prelude::Parrot);
    assert_eq!(now(echo.echo("hi".to_owned())), Ok("hi".to_owned()));
}
