//! Authorization hooks: checks a runtime runs before each remote call it serves, with the
//! caller's identity, the interface and the method; a refusal is `AccessDenied` for that call,
//! before its arguments are decoded.
//!
//! Checks are installed on the builder, for every call ([`RuntimeBuilder::authorize`]) or for the
//! calls to objects of one interface ([`RuntimeBuilder::authorize_interface`]); every check that
//! applies must pass. They run for calls from other runtimes (the gRPC bridge's included), not
//! for calls through a local handle, which are plain method calls. A check on the registry's
//! interface replaces the registry's own "writes only from this host" rule.
//!
//! [`RuntimeBuilder::authorize`]: crate::RuntimeBuilder::authorize
//! [`RuntimeBuilder::authorize_interface`]: crate::RuntimeBuilder::authorize_interface

use std::sync::Arc;

use crate::{Caller, RemoteError};

/// What an authorization check sees of a call about to be served.
#[derive(Debug)]
pub struct CallInfo<'a> {
    /// Who calls: its runtime, address, host, and user where the transport knows it.
    pub caller: &'a Caller,
    /// The interface of the object called.
    pub interface: &'a str,
    /// The method called.
    pub method: &'a str,
}

/// A check: `Ok(())` lets the call run, `Err(reason)` refuses it with `AccessDenied { reason }`.
pub(crate) type Check = Arc<dyn Fn(&CallInfo<'_>) -> Result<(), String> + Send + Sync>;

/// The checks of one runtime.
#[derive(Clone, Default)]
pub(crate) struct Authorizer {
    all: Vec<Check>,
    by_interface: Vec<(&'static str, Check)>,
}

impl std::fmt::Debug for Authorizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authorizer")
            .field("all", &self.all.len())
            .field(
                "by_interface",
                &self
                    .by_interface
                    .iter()
                    .map(|(i, _)| *i)
                    .collect::<Vec<_>>(),
            )
            .finish()
    }
}

impl Authorizer {
    pub(crate) fn add(&mut self, check: Check) {
        self.all.push(check);
    }

    pub(crate) fn add_for(&mut self, interface: &'static str, check: Check) {
        self.by_interface.push((interface, check));
    }

    /// Whether a check is installed for `interface` itself.
    pub(crate) fn governs(&self, interface: &str) -> bool {
        self.by_interface.iter().any(|(i, _)| *i == interface)
    }

    /// Runs every check that applies; the first refusal wins.
    pub(crate) fn check(&self, call: &CallInfo<'_>) -> Result<(), RemoteError> {
        let applicable = self.all.iter().chain(
            self.by_interface
                .iter()
                .filter(|(i, _)| *i == call.interface)
                .map(|(_, c)| c),
        );
        for check in applicable {
            if let Err(reason) = check(call) {
                tracing::warn!(
                    caller = %call.caller.address(),
                    interface = call.interface,
                    method = call.method,
                    %reason,
                    "a call was refused by an authorization check"
                );
                return Err(RemoteError::AccessDenied { reason });
            }
        }
        Ok(())
    }

    /// Whether no check is installed (the common case: nothing to run).
    pub(crate) fn is_empty(&self) -> bool {
        self.all.is_empty() && self.by_interface.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::id::RuntimeId;

    fn caller() -> Caller {
        Caller {
            runtime: RuntimeId::random(),
            address: "192.0.2.1:5000".into(),
            local_host: false,
            uid: None,
            certificate_subject: None,
        }
    }

    #[test]
    fn every_applicable_check_must_pass() {
        let mut a = Authorizer::default();
        assert!(a.is_empty());
        a.add(Arc::new(|c: &CallInfo<'_>| {
            if c.method == "drop_tables" {
                Err("no".into())
            } else {
                Ok(())
            }
        }));
        a.add_for(
            "bank.Account",
            Arc::new(|c: &CallInfo<'_>| {
                if c.caller.is_local_host() {
                    Ok(())
                } else {
                    Err("accounts are local".into())
                }
            }),
        );
        let c = caller();
        let call = |interface, method| CallInfo {
            caller: &c,
            interface,
            method,
        };
        assert!(a.check(&call("shop.Cart", "add")).is_ok());
        assert_eq!(
            a.check(&call("shop.Cart", "drop_tables")),
            Err(RemoteError::AccessDenied {
                reason: "no".into()
            })
        );
        assert!(a.check(&call("bank.Account", "deposit")).is_err());
        assert!(a.governs("bank.Account") && !a.governs("shop.Cart"));
    }
}
