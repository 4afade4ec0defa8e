//! Objects passed by reference between processes: callbacks over the caller's own connection,
//! references nested in values, identity on a round trip, and third parties.

use oxrmi::{Remote, RemoteError};
use oxrmi_tests::{Hub, Listener, Recorder};

use crate::harness::{Peer, behaviour};

behaviour!(
    a_callback_needs_no_listening_port,
    addressable,
    |t| async move {
        let server = Peer::serve(t).await;
        // This runtime listens nowhere: the server's call back travels over our own connection.
        let me = oxrmi::Runtime::builder().start().await.unwrap();
        assert!(me.endpoints().is_empty());
        let hub: Remote<dyn Hub> = me.lookup_url(&server.url("hub")).await.unwrap();
        let listener = Remote::<dyn Listener>::new(Recorder::default());
        hub.call_back(listener.clone(), "hello back".into())
            .await
            .unwrap();
        assert_eq!(listener.seen().await.unwrap(), ["hello back"]);
    }
);

behaviour!(
    a_reference_that_comes_home_is_the_local_object,
    addressable,
    |t| async move {
        let server = Peer::serve(t).await;
        let me = oxrmi::Runtime::builder().start().await.unwrap();
        let hub: Remote<dyn Hub> = me.lookup_url(&server.url("hub")).await.unwrap();
        let listener = Remote::<dyn Listener>::new(Recorder::default());
        let back = hub.echo_ref(listener.clone()).await.unwrap();
        assert!(back.is_local(), "no network hop for our own object");
        assert_eq!(back, listener);
        // Sent twice, it is the same object on the server too.
        let n = hub
            .keep(Some(vec![listener.clone(), listener.clone()]))
            .await
            .unwrap();
        assert_eq!(n, 2);
        let held = hub.listeners().await.unwrap();
        assert!(held.iter().all(|l| *l == listener));
    }
);

behaviour!(
    references_nested_in_values_travel_by_reference,
    addressable,
    |t| async move {
        let server = Peer::serve(t).await;
        let me = oxrmi::Runtime::builder().start().await.unwrap();
        let hub: Remote<dyn Hub> = me.lookup_url(&server.url("hub")).await.unwrap();
        let a = Remote::<dyn Listener>::new(Recorder::default());
        let b = Remote::<dyn Listener>::new(Recorder::default());
        assert_eq!(hub.keep(Some(vec![a.clone(), b.clone()])).await.unwrap(), 2);
        assert_eq!(hub.keep(None).await.unwrap(), 2);
        assert_eq!(hub.broadcast("to all".into()).await.unwrap(), 2);
        assert_eq!(a.seen().await.unwrap(), ["to all"]);
        assert_eq!(b.seen().await.unwrap(), ["to all"]);
    }
);

behaviour!(
    a_third_party_reaches_an_owner_that_advertises_an_endpoint,
    addressable,
    |t| async move {
        let server = Peer::serve(t).await;
        let owner = Peer::start(&["keep", &server.url("hub"), "advertise"]).await;
        assert_eq!(owner.first_line, "kept");
        // This process gets the owner's listener from the hub and calls it directly.
        let hub: Remote<dyn Hub> = oxrmi::lookup(&server.url("hub")).await.unwrap();
        let listeners = hub.listeners().await.unwrap();
        assert_eq!(listeners.len(), 1);
        assert!(!listeners[0].is_local());
        listeners[0]
            .notify("from a third party".into())
            .await
            .unwrap();
        assert_eq!(listeners[0].seen().await.unwrap(), ["from a third party"]);
    }
);

behaviour!(
    a_third_party_gets_a_clear_error_when_the_owner_advertises_nothing,
    addressable,
    |t| async move {
        let server = Peer::serve(t).await;
        let owner = Peer::start(&["keep", &server.url("hub"), "hidden"]).await;
        assert_eq!(owner.first_line, "kept");
        let hub: Remote<dyn Hub> = oxrmi::lookup(&server.url("hub")).await.unwrap();
        let listeners = hub.listeners().await.unwrap();
        let e = listeners[0].notify("unreachable".into()).await.unwrap_err();
        assert!(matches!(e, RemoteError::Unreachable { .. }), "{e:?}");
        // The hub itself still reaches it, over the connection the owner opened.
        assert_eq!(hub.broadcast("via the hub".into()).await.unwrap(), 1);
    }
);
