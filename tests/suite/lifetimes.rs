//! Distributed lifetimes between processes: a server drops an object (its `Drop` runs) when the
//! last remote handle is released or its holder's lease expires, and never before.

use std::time::Duration;

use oxrmi::{Remote, RemoteError};
use oxrmi_tests::{Account, Bank};

use crate::harness::{Peer, behaviour, eventually, signal};

/// Short leases make expiry testable; renewals (a quarter of it) keep live holders safe.
const SHORT_LEASE: Duration = Duration::from_millis(400);

async fn live(bank: &Remote<dyn Bank>) -> u64 {
    bank.live().await.unwrap()
}

behaviour!(release_on_drop_counts_two_one_zero, |t| async move {
    let server = Peer::serve(t).await;
    let bank: Remote<dyn Bank> = oxrmi::lookup(&server.url("bank")).await.unwrap();
    assert_eq!(live(&bank).await, 0);
    // The bank keeps no handle: each account lives only through our lease on it.
    let a = bank.open("a".into()).await.unwrap();
    let b = bank.open("b".into()).await.unwrap();
    assert_eq!(a.deposit(5).await.unwrap(), 5);
    assert_eq!(live(&bank).await, 2);
    // A clone is the same handle: dropping it releases nothing.
    let a2 = a.clone();
    drop(a2);
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(live(&bank).await, 2);

    drop(a);
    // Released promptly (the default lease is a minute: this is the release, not an expiry).
    assert!(eventually(Duration::from_secs(3), || async { live(&bank).await == 1 }).await);
    assert_eq!(bank.dropped().await.unwrap(), ["a"]);
    assert_eq!(b.deposit(1).await.unwrap(), 1);
    drop(b);
    assert!(eventually(Duration::from_secs(3), || async { live(&bank).await == 0 }).await);
    assert_eq!(bank.dropped().await.unwrap(), ["a", "b"]);
});

behaviour!(
    a_killed_holder_loses_its_lease_and_the_drop_runs,
    addressable,
    |t| async move {
        let server = Peer::serve_with_lease(t, SHORT_LEASE).await;
        let bank: Remote<dyn Bank> = oxrmi::lookup(&server.url("bank")).await.unwrap();
        let mut holder = Peer::start(&["hold", &server.url("bank"), "holder"]).await;
        assert_eq!(holder.first_line, "holding");
        assert_eq!(live(&bank).await, 1);
        // While the holder lives it renews: several leases pass and the account stays.
        tokio::time::sleep(SHORT_LEASE * 3).await;
        assert_eq!(live(&bank).await, 1, "a live holder's object was dropped");
        holder.kill().await;
        let gone = eventually(SHORT_LEASE * 10, || async { live(&bank).await == 0 }).await;
        assert!(gone, "the lease of a killed holder did not expire");
        assert_eq!(bank.dropped().await.unwrap(), ["holder"]);
    }
);

behaviour!(
    a_reference_forwarded_and_dropped_in_flight_survives,
    addressable,
    |t| async move {
        // The owner grants short leases; the forwarder (this process) drops its handle right after
        // sending it to a third process, which must get its own lease before anything is freed.
        let owner = Peer::serve_with_lease(t, SHORT_LEASE).await;
        let third = Peer::serve(t).await;
        let owner_bank: Remote<dyn Bank> = oxrmi::lookup(&owner.url("bank")).await.unwrap();
        let third_bank: Remote<dyn Bank> = oxrmi::lookup(&third.url("bank")).await.unwrap();
        let account = owner_bank.open("forwarded".into()).await.unwrap();
        account.deposit(7).await.unwrap();
        assert_eq!(third_bank.adopt(account.clone()).await.unwrap(), 7);
        drop(account);
        // Several leases later, the third process still reaches it.
        tokio::time::sleep(SHORT_LEASE * 4).await;
        assert_eq!(
            live(&owner_bank).await,
            1,
            "freed while the third process held it"
        );
        assert_eq!(third_bank.adopted_balance().await.unwrap(), 7);
        // When the third process lets go, the owner drops it.
        third_bank.forget().await.unwrap();
        assert!(eventually(SHORT_LEASE * 10, || async { live(&owner_bank).await == 0 }).await);
    }
);

behaviour!(
    a_reference_returned_by_a_factory_survives_its_owner_dropping_it,
    |t| async move {
        let server = Peer::serve_with_lease(t, SHORT_LEASE).await;
        let bank: Remote<dyn Bank> = oxrmi::lookup(&server.url("bank")).await.unwrap();
        // `open` drops its own handle as it returns: the reference in the reply is all there is.
        let mut accounts = Vec::new();
        for i in 0..20 {
            accounts.push(bank.open(format!("f{i}")).await.unwrap());
        }
        tokio::time::sleep(SHORT_LEASE * 2).await;
        for a in &accounts {
            assert_eq!(a.deposit(1).await.unwrap(), 1);
        }
        assert_eq!(live(&bank).await, 20);
    }
);

behaviour!(
    a_stale_handle_fails_with_no_such_object_at_once,
    |t| async move {
        let server = Peer::serve(t).await;
        let bank: Remote<dyn Bank> = oxrmi::lookup(&server.url("bank")).await.unwrap();
        let account = bank.open("stale".into()).await.unwrap();
        account.deposit(1).await.unwrap();
        bank.close_all().await.unwrap();
        let started = tokio::time::Instant::now();
        let e = account.deposit(1).await.unwrap_err();
        assert!(matches!(e, RemoteError::NoSuchObject { .. }), "{e:?}");
        assert!(started.elapsed() < Duration::from_secs(1));
    }
);

behaviour!(renewals_are_one_per_peer_not_per_handle, |t| async move {
    let server = Peer::serve_with_lease(t, SHORT_LEASE).await;
    let bank: Remote<dyn Bank> = oxrmi::lookup(&server.url("bank")).await.unwrap();
    let introspect = oxrmi::introspect::locate(&server.endpoint().parse().unwrap());
    let mut accounts: Vec<Remote<dyn Account>> = Vec::new();
    for i in 0..200 {
        accounts.push(bank.open(format!("r{i}")).await.unwrap());
    }
    let before = introspect.report().await.unwrap().renewals_received;
    let window = SHORT_LEASE * 5;
    tokio::time::sleep(window).await;
    let after = introspect.report().await.unwrap().renewals_received;
    let renewals = after - before;
    // One holder renews four times per lease: about 20 in five leases, whatever it holds. The
    // bounds leave room for a loaded machine's timers (the suite runs in parallel): a renewal
    // per handle would be 800 per lease, far outside them either way.
    let per_lease = renewals as f64 / 5.0;
    assert!(
        (1.0..=40.0).contains(&per_lease),
        "{renewals} renewals in five leases for 200 handles"
    );
    assert_eq!(live(&bank).await, 200);
    // The owner's view: every account held by exactly one runtime with one reference.
    let report = introspect.report().await.unwrap();
    let accounts_seen: Vec<_> = report
        .objects
        .iter()
        .filter(|o| o.interface == "oxrmi.test.Account")
        .collect();
    assert_eq!(accounts_seen.len(), 200);
    assert!(
        accounts_seen
            .iter()
            .all(|o| o.holders.len() == 1 && o.holders[0].references == 1)
    );
    drop(accounts);
    assert!(eventually(Duration::from_secs(3), || async { live(&bank).await == 0 }).await);
});

behaviour!(
    a_holder_whose_lease_lapsed_still_reaches_an_object_its_owner_keeps,
    addressable,
    |t| async move {
        // The counter is bound in the server's own registry: handles in its process keep it alive,
        // so a holder that stalls past its lease (frozen here with SIGSTOP) can still call it.
        let server = Peer::serve_with_lease(t, SHORT_LEASE).await;
        let mut holder = Peer::start(&["hold-then-call", &server.url("counter")]).await;
        assert_eq!(holder.first_line, "holding");
        let introspect = oxrmi::introspect::locate(&server.endpoint().parse().unwrap());
        signal(holder.pid(), "STOP");
        let lapsed = eventually(SHORT_LEASE * 10, || async {
            let report = introspect.report().await.unwrap();
            report
                .objects
                .iter()
                .filter(|o| o.interface == "oxrmi.test.Counter")
                .all(|o| o.holders.is_empty())
        })
        .await;
        signal(holder.pid(), "CONT");
        assert!(lapsed, "the stopped holder's lease did not lapse");
        holder.send_line("call").await;
        let status = holder.stop().await;
        assert!(
            status.success(),
            "the call after the lapse failed: {status:?}"
        );
    }
);

behaviour!(
    a_runtime_that_shuts_down_releases_what_it_holds,
    addressable,
    |t| async move {
        // The default lease (a minute): only the shutdown's releases can free the account in time.
        let server = Peer::serve(t).await;
        let bank: Remote<dyn Bank> = oxrmi::lookup(&server.url("bank")).await.unwrap();
        let leaver = Peer::start(&["hold-and-leave", &server.url("bank"), "leaver"]).await;
        assert_eq!(leaver.first_line, "left");
        let status = leaver.stop().await;
        assert!(status.success(), "{status:?}");
        assert!(eventually(Duration::from_secs(3), || async { live(&bank).await == 0 }).await);
        assert_eq!(bank.dropped().await.unwrap(), ["leaver"]);
    }
);
