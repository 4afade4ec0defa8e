//! The registry's rules, through a registry in another process.

use oxrmi::{Remote, RemoteError};
use oxrmi_tests::{Counter, TestCounter};

use crate::harness::{Peer, behaviour};

behaviour!(
    bind_rebind_unbind_lookup_list,
    addressable,
    |t| async move {
        let server = Peer::serve(t).await;
        // Binding from this process needs it to be reachable: it listens too.
        let me = oxrmi::Runtime::builder()
            .listen(t.listen())
            .start()
            .await
            .unwrap();
        let reg = me.registry_at(&server.endpoint().parse().unwrap());

        let names: Vec<String> = reg
            .list()
            .await
            .unwrap()
            .into_iter()
            .map(|b| b.name)
            .collect();
        assert_eq!(names, ["bank", "counter", "hub", "versioned"]);

        let mine = Remote::<dyn Counter>::new(TestCounter::default());
        mine.add(100).await.unwrap();
        reg.bind("mine".into(), mine.clone().into_any())
            .await
            .unwrap();
        let e = reg
            .bind("mine".into(), mine.clone().into_any())
            .await
            .unwrap_err();
        assert_eq!(
            e,
            RemoteError::AlreadyBound {
                name: "mine".into()
            }
        );

        // A third party (the default runtime) looks it up and calls back into this process.
        let found: Remote<dyn Counter> = oxrmi::lookup(&server.url("mine")).await.unwrap();
        assert_eq!(found.get().await.unwrap(), 100);
        // Looked up through our own runtime, it is our local object again: no network hop.
        let home: Remote<dyn Counter> = me.lookup_url(&server.url("mine")).await.unwrap();
        assert!(home.is_local());
        assert_eq!(home, mine);

        let list = reg.list().await.unwrap();
        let mine_binding = list.iter().find(|b| b.name == "mine").unwrap();
        assert_eq!(mine_binding.interface, "oxrmi.test.Counter");

        // rebind replaces.
        let other = Remote::<dyn Counter>::new(TestCounter::default());
        reg.rebind("mine".into(), other.clone().into_any())
            .await
            .unwrap();
        let found: Remote<dyn Counter> = oxrmi::lookup(&server.url("mine")).await.unwrap();
        assert_eq!(found.get().await.unwrap(), 0);

        reg.unbind("mine".into()).await.unwrap();
        let e = reg.unbind("mine".into()).await.unwrap_err();
        assert_eq!(
            e,
            RemoteError::NotBound {
                name: "mine".into()
            }
        );
        let e = oxrmi::lookup::<dyn Counter>(&server.url("mine"))
            .await
            .unwrap_err();
        assert_eq!(
            e,
            RemoteError::NotBound {
                name: "mine".into()
            }
        );
    }
);

behaviour!(
    bind_from_another_process_by_url,
    addressable,
    |t| async move {
        let server = Peer::serve(t).await;
        // A third process binds its own object, then serves it.
        let binder = Peer::start(&["bind", &server.url(""), "from-child"]).await;
        assert_eq!(binder.first_line, "bound");
        let c: Remote<dyn Counter> = oxrmi::lookup(&server.url("from-child")).await.unwrap();
        assert_eq!(c.add(2).await.unwrap(), 2);
        // The object lives in the binder: when it stops, calls fail cleanly.
        binder.stop().await;
        let e = c.get().await.unwrap_err();
        assert!(
            matches!(
                e,
                RemoteError::ConnectionLost { .. } | RemoteError::ConnectionRefused { .. }
            ),
            "{e:?}"
        );
    }
);
