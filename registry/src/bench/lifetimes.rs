//! The figures of distributed lifetimes: what receiving and dropping a reference costs, how
//! many lease renewals a client sends against how many handles it holds, and the memory the
//! owner spends per exported object and per remote holder.
//!
//! Every figure is checked outside its timing: the server's live objects go back down once the
//! client drops its handles, and it is the releases that brought them down, not an expired
//! lease (the holder still holds the bench object afterwards).

use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use oxrmi::introspect::{Introspect, Report};
use oxrmi::{Endpoint, Remote, Runtime, RuntimeId};

use super::interface::{BENCH_NAME, Bench, Token};
use super::oxrmi_calls;
use super::plan::{Count, REF_BATCH, Window};
use super::stats::Summary;

/// How long the server may take to see the releases of dropped handles. Releases go at once;
/// a lease, were a release lost, expires only when its holder stops renewing.
const RELEASE_WAIT: Duration = Duration::from_secs(5);

/// How often the state of the server is polled while waiting for it.
const POLL: Duration = Duration::from_millis(5);

/// A client runtime of its own in this process, with its own handle to the bench object: what
/// it holds, it renews and releases itself.
pub(crate) struct Holder {
    rt: Runtime,
    bench: Remote<dyn Bench>,
}

impl Holder {
    /// Starts a runtime (listening nowhere) and looks up the bench object through it.
    pub(crate) async fn start(server: &Endpoint) -> anyhow::Result<Self> {
        let rt = Runtime::builder()
            .start()
            .await
            .context("cannot start a holder runtime")?;
        let url = oxrmi::ObjectUrl::of(server, BENCH_NAME).to_string();
        let bench = rt
            .lookup_url(&url)
            .await
            .with_context(|| format!("cannot look up {url}"))?;
        Ok(Holder { rt, bench })
    }

    fn id(&self) -> RuntimeId {
        self.rt.id()
    }

    /// `count` new tokens, [`REF_BATCH`] a call.
    async fn make(&self, count: usize) -> anyhow::Result<Vec<Remote<dyn Token>>> {
        let mut tokens = Vec::with_capacity(count);
        while tokens.len() < count {
            let batch = (count - tokens.len()).min(REF_BATCH);
            let got = self.bench.make_many(batch as u32).await?;
            ensure!(
                got.len() == batch,
                "make_many({batch}) returned {}",
                got.len()
            );
            tokens.extend(got);
        }
        Ok(tokens)
    }

    /// References to the first `count` tokens of the server's pool, [`REF_BATCH`] a call.
    async fn pool(&self, count: usize) -> anyhow::Result<Vec<Remote<dyn Token>>> {
        let mut tokens = Vec::with_capacity(count);
        while tokens.len() < count {
            let batch = (count - tokens.len()).min(REF_BATCH);
            let got = self.bench.pool(tokens.len() as u32, batch as u32).await?;
            ensure!(
                got.len() == batch,
                "the server's pool ends at {} tokens",
                tokens.len() + got.len()
            );
            tokens.extend(got);
        }
        Ok(tokens)
    }

    /// The server's resident memory.
    async fn server_resident(&self) -> anyhow::Result<u64> {
        self.bench
            .resident_bytes()
            .await?
            .map_err(anyhow::Error::msg)
            .context("the bench server cannot read its resident memory")
    }

    /// Drops the bench handle, waits until the server has the release, and shuts down.
    pub(crate) async fn close(self, introspect: &Remote<dyn Introspect>) -> anyhow::Result<()> {
        let Holder { rt, bench } = self;
        drop(bench);
        wait_until(introspect, "the last release of a holder runtime", |r| {
            objects_held_by(r, rt.id()) == 0
        })
        .await?;
        rt.shutdown();
        Ok(())
    }
}

/// Exported objects of the server (not the runtime's own) that `holder` holds a lease on.
fn objects_held_by(report: &Report, holder: RuntimeId) -> usize {
    let holder = holder.to_string();
    report
        .objects
        .iter()
        .filter(|o| o.holders.iter().any(|h| h.runtime == holder))
        .count()
}

/// The holders of the server's objects other than `holder`.
fn other_holders(report: &Report, holder: RuntimeId) -> Vec<String> {
    let holder = holder.to_string();
    let mut others: Vec<String> = report
        .objects
        .iter()
        .flat_map(|o| &o.holders)
        .filter(|h| h.runtime != holder)
        .map(|h| h.runtime.clone())
        .collect();
    others.sort();
    others.dedup();
    others
}

/// Waits until no runtime holds a lease on any of the server's objects.
pub(crate) async fn wait_no_holders(introspect: &Remote<dyn Introspect>) -> anyhow::Result<()> {
    wait_until(introspect, "every holder's release", |r| {
        r.objects.iter().all(|o| o.holders.is_empty())
    })
    .await?;
    Ok(())
}

/// Whether no runtime holds a lease on any token any more. (Tokens the server keeps handles
/// to, its pool, stay reachable by id after their last holder goes: the export table holds
/// them weakly then. So "released" is about holders, not about what is exported.)
fn no_token_held(report: &Report) -> bool {
    report
        .objects
        .iter()
        .filter(|o| o.interface == <dyn Token as oxrmi::Interface>::NAME)
        .all(|o| o.holders.is_empty())
}

/// Polls the server's introspection until `done` holds, for at most [`RELEASE_WAIT`].
async fn wait_until(
    introspect: &Remote<dyn Introspect>,
    what: &str,
    done: impl Fn(&Report) -> bool,
) -> anyhow::Result<Report> {
    let deadline = Instant::now() + RELEASE_WAIT;
    loop {
        let report = introspect.report().await?;
        if done(&report) {
            return Ok(report);
        }
        if Instant::now() >= deadline {
            bail!("the bench server did not see {what} within {RELEASE_WAIT:?}");
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Polls the server's count of live tokens until it is `expected`, for at most
/// [`RELEASE_WAIT`]: the releases of the handles just dropped have arrived and the server
/// dropped the objects.
async fn wait_live(bench: &Remote<dyn Bench>, expected: u64) -> anyhow::Result<()> {
    let deadline = Instant::now() + RELEASE_WAIT;
    loop {
        let live = bench.live_tokens().await?;
        if live == expected {
            return Ok(());
        }
        if Instant::now() >= deadline {
            bail!(
                "the bench server still has {live} tokens alive (expected {expected}) \
                 {RELEASE_WAIT:?} after the client dropped its handles: releases are lost"
            );
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Receiving and dropping a reference, one at a time.
pub(crate) struct ReferenceCost {
    pub(crate) latency: Summary,
    /// Release messages the server received per reference dropped (warm-up included).
    pub(crate) releases_per_reference: f64,
    /// References made and dropped while releases were counted.
    pub(crate) references: u64,
}

/// Times `make` + drop through `holder`; counts the releases the server receives meanwhile,
/// and checks that every token is gone afterwards.
pub(crate) async fn reference_cost(
    holder: &Holder,
    introspect: &Remote<dyn Introspect>,
    count: Count,
) -> anyhow::Result<ReferenceCost> {
    let (bench, client) = (&holder.bench, holder.id());
    // Checked once, outside timing: the reference works.
    bench.make().await?.ping().await?;
    wait_live(bench, 0).await?;
    let before = introspect.report().await?;
    let samples = oxrmi_calls::make_and_drop(bench.clone(), count).await?;
    wait_live(bench, 0).await?;
    let after = introspect.report().await?;
    // The tokens went because of the releases, not because our lease expired: we still hold
    // the bench object under it.
    ensure!(
        objects_held_by(&after, client) == 1,
        "the client holds {} of the server's objects after dropping every token (expected the \
         bench object alone)",
        objects_held_by(&after, client)
    );
    let references = (count.warmup + count.timed) as u64;
    Ok(ReferenceCost {
        latency: samples.summarize(),
        releases_per_reference: after
            .releases_received
            .saturating_sub(before.releases_received) as f64
            / references as f64,
        references,
    })
}

/// Lease renewals a holder sends while it holds handles.
pub(crate) struct Renewals {
    /// Renewals received by the server per minute, scaled from the window.
    pub(crate) per_minute: f64,
    /// Renewals received within the window.
    pub(crate) count: u64,
    /// The server's lease, in milliseconds.
    pub(crate) lease_ms: u64,
}

/// Makes `holder` hold `handles` tokens and counts the renewals the server receives over a
/// window of about `window.measured`; the holder must be the only holder of the server's
/// objects. Drops the tokens and waits for the server to drop them.
///
/// Renewals are periodic, so a window's count depends on where its ends fall: a renewal
/// arriving just as a window opens or closes is counted or not by chance. So the period is
/// observed first (while the server holds few objects and a report is cheap), and the window
/// spans a whole number of periods, opening half a period after a renewal: each end is half a
/// period from the nearest renewal, and the count is exact for the rate the holder keeps
/// while holding the handles. A holder that renewed per handle, or more often with more
/// handles, would be counted as such.
pub(crate) async fn renewals(
    holder: &Holder,
    introspect: &Remote<dyn Introspect>,
    handles: usize,
    window: Window,
) -> anyhow::Result<Renewals> {
    let arrivals = renewal_arrivals(introspect, 2).await?;
    let (last, period) = (arrivals[1], arrivals[1] - arrivals[0]);
    let held = holder.make(handles).await?;
    let periods = (window.measured.as_secs_f64() / period.as_secs_f64())
        .round()
        .max(1.0) as u32;
    let mut opens = last + period / 2;
    while opens < Instant::now() + window.warmup {
        opens += period;
    }
    // The server reads its counter at the end of building a report (which takes tens of
    // milliseconds with 10,000 objects held), at the same delay after both requests.
    tokio::time::sleep_until(opens.into()).await;
    let before = introspect.report().await?;
    let from = Instant::now();
    tokio::time::sleep_until((opens + period * periods).into()).await;
    let after = introspect.report().await?;
    let elapsed = from.elapsed();
    let others = other_holders(&after, holder.id());
    ensure!(
        others.is_empty(),
        "other runtimes hold the server's objects and renew too: {}",
        others.join(", ")
    );
    // Every token still counted for the holder: its lease never lapsed.
    let counted = objects_held_by(&after, holder.id());
    ensure!(
        counted == handles + 1,
        "the server counts {counted} objects for the holder, not {handles} tokens and the \
         bench object: its lease lapsed"
    );
    drop(held);
    wait_live(&holder.bench, 0).await?;
    let count = after
        .renewals_received
        .saturating_sub(before.renewals_received);
    ensure!(
        count > 0,
        "no lease renewal reached the bench server in {elapsed:?}"
    );
    Ok(Renewals {
        per_minute: count as f64 * 60.0 / elapsed.as_secs_f64(),
        count,
        lease_ms: after.lease_ms,
    })
}

/// Polls the server's renewal counter every millisecond until `n` renewals have arrived;
/// returns when each was seen. Cheap only while the server exports few objects: a report
/// costs more with every object and holder.
async fn renewal_arrivals(
    introspect: &Remote<dyn Introspect>,
    n: usize,
) -> anyhow::Result<Vec<Instant>> {
    let deadline = Instant::now() + RELEASE_WAIT;
    let mut seen = introspect.report().await?.renewals_received;
    let mut arrivals = Vec::with_capacity(n);
    while arrivals.len() < n {
        if Instant::now() >= deadline {
            bail!("no lease renewal reached the bench server within {RELEASE_WAIT:?}");
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
        let count = introspect.report().await?.renewals_received;
        if count != seen {
            arrivals.push(Instant::now());
            seen = count;
        }
    }
    Ok(arrivals)
}

/// The server's memory per object, from its resident set.
pub(crate) struct Memory {
    /// Per new object exported to one holder (the object itself included).
    pub(crate) per_object: f64,
    /// Per reference to an object already exported, held by one more holder.
    pub(crate) per_holder: f64,
}

/// Measures the server's resident memory as a holder `a` receives `objects` new tokens, then
/// references to `objects` tokens of the server's pool, then as a second holder `b` receives
/// references to the same pool tokens. Per object: the first step's growth (the one-byte
/// token and its `Arc`s included); per holder: the last step's (the objects are exported
/// already, so only the second holder's lease accounting grows).
///
/// The resident set only grows when the allocator needs pages it never touched: memory freed
/// earlier is reused unseen. Hence: the caller runs this first, on a server that has freed
/// little yet; the warm-up is one small batch (code pages, connection buffers, allocator
/// arenas), not a full round whose freed objects the measured round would reuse; replies come
/// [`REF_BATCH`] references at a time, so their buffers are reused instead of growing the heap
/// by one huge reply; and everything stays held until the last reading, so no step reuses what
/// an earlier one freed. What the figures still include: the whole capacity of hash tables
/// sized for `objects` entries, and the tables they outgrew (freed, but not given back).
/// Then everything is dropped, and the server checked to let go of it.
pub(crate) async fn memory(
    server: &Endpoint,
    introspect: &Remote<dyn Introspect>,
    objects: usize,
) -> anyhow::Result<Memory> {
    let a = Holder::start(server).await?;
    let b = Holder::start(server).await?;
    let pool = a.bench.fill_pool(objects as u32).await?;
    ensure!(
        pool >= objects as u64,
        "the server's pool holds {pool} tokens"
    );

    // Warm-up: one batch down every path (export, lease, release; code pages, buffers), small
    // enough that what it frees cannot make up much of what the measured steps allocate.
    drop(a.make(REF_BATCH).await?);
    wait_live(&a.bench, 0).await?;
    let (wa, wb) = (a.pool(REF_BATCH).await?, b.pool(REF_BATCH).await?);
    drop((wa, wb));
    wait_until(
        introspect,
        "the release of the warm-up's pool tokens",
        no_token_held,
    )
    .await?;

    let start = a.server_resident().await?;
    let fresh = a.make(objects).await?;
    let with_fresh = a.server_resident().await?;
    let held_by_a = a.pool(objects).await?;
    let pool_held_once = a.server_resident().await?;
    let held_by_b = b.pool(objects).await?;
    let pool_held_twice = a.server_resident().await?;

    drop((fresh, held_by_a, held_by_b));
    wait_live(&a.bench, 0).await?;
    wait_until(introspect, "the release of the pool tokens", |r| {
        no_token_held(r)
    })
    .await?;
    a.close(introspect).await?;
    b.close(introspect).await?;
    let per = |from: u64, to: u64| (to as f64 - from as f64) / objects as f64;
    Ok(Memory {
        per_object: per(start, with_fresh),
        per_holder: per(pool_held_once, pool_held_twice),
    })
}
