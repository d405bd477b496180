//! Membership: SWIM failure detection (foca) over sealed UDP datagrams.
//!
//! foca is sans-IO; this module is its thin driver. One task owns the foca
//! instance and feeds it datagrams (after opening them with the cluster
//! key), timer expiries and commands; after each input it sends foca's
//! datagrams (sealed), schedules its timers, and reconciles the
//! [`MemberTable`], publishing [`MembershipEvent`]s and telling the link
//! manager which peers are up or down.

pub mod identity;
pub mod table;

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::net::SocketAddr;
use std::num::{NonZeroU8, NonZeroU32, NonZeroUsize};
use std::sync::atomic::Ordering;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use foca::{AccumulatingRuntime, Foca, NoCustomBroadcast, OwnedNotification, PostcardCodec, Timer};
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use tokio::sync::{broadcast, mpsc, oneshot};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};
use weft_proto::seal::{DatagramSealer, SEAL_OVERHEAD};

use crate::config::MembershipConfig;
use crate::link::Links;
use crate::net::Datagram;
use crate::stats::Stats;

pub use identity::SwimId;
pub use table::{MemberInfo, MemberState, MemberTable, MembershipEvent};

/// Largest datagram weft sends (fits a typical MTU).
const MAX_DATAGRAM: usize = 1400;

type SwimFoca = Foca<SwimId, PostcardCodec, StdRng, NoCustomBroadcast>;

/// Commands to the membership task.
pub(crate) enum Command {
    /// Announce our departure to the cluster, then stop.
    Leave(oneshot::Sender<()>),
}

/// Handle to the running membership task.
#[derive(Clone)]
pub(crate) struct Membership {
    pub table: Arc<RwLock<MemberTable>>,
    pub events: broadcast::Sender<MembershipEvent>,
    pub commands: mpsc::Sender<Command>,
}

/// Inputs to [`start`].
pub(crate) struct MembershipParams {
    pub table: Arc<RwLock<MemberTable>>,
    pub local: SwimId,
    pub cluster: String,
    pub secret: Vec<u8>,
    pub config: MembershipConfig,
    pub seeds: Vec<SocketAddr>,
    pub udp: Arc<dyn Datagram>,
    pub links: Links,
    pub stats: Arc<Stats>,
    pub rng_seed: u64,
    pub shutdown: CancellationToken,
}

fn foca_config(m: &MembershipConfig) -> foca::Config {
    let mut c = foca::Config::new_lan(NonZeroU32::MIN.saturating_add(7));
    c.probe_period = m.probe_period;
    c.probe_rtt = m.probe_rtt;
    c.num_indirect_probes = NonZeroUsize::new(m.indirect_probes).unwrap_or(NonZeroUsize::MIN);
    c.suspect_to_down_after = m.suspect_to_down_after;
    c.remove_down_after = Some(m.remove_down_after);
    c.max_transmissions = NonZeroU8::new(10).unwrap_or(NonZeroU8::MIN);
    c.max_packet_size = NonZeroUsize::new(MAX_DATAGRAM - SEAL_OVERHEAD).unwrap_or(NonZeroUsize::MIN);
    c.notify_down_members = true;
    c.periodic_gossip = Some(foca::PeriodicParams {
        frequency: m.gossip_interval,
        num_members: NonZeroUsize::new(3).unwrap_or(NonZeroUsize::MIN),
    });
    let slow = m.seed_announce_interval.saturating_mul(5);
    c.periodic_announce = Some(foca::PeriodicParams {
        frequency: slow,
        num_members: NonZeroUsize::MIN,
    });
    c.periodic_announce_to_down_members = Some(foca::PeriodicParams {
        frequency: slow,
        num_members: NonZeroUsize::new(2).unwrap_or(NonZeroUsize::MIN),
    });
    c
}

/// Starts the membership task.
pub(crate) fn start(p: MembershipParams) -> Membership {
    let (events, _) = broadcast::channel(4096);
    let (commands, cmd_rx) = mpsc::channel(16);
    let table = p.table.clone();
    let handle = Membership {
        table: table.clone(),
        events: events.clone(),
        commands,
    };
    let mut rng = StdRng::seed_from_u64(p.rng_seed);
    let foca_rng = StdRng::seed_from_u64(rng.random());
    let foca = Foca::new(p.local.clone(), foca_config(&p.config), foca_rng, PostcardCodec);
    let driver = Driver {
        foca,
        rt: AccumulatingRuntime::new(),
        timers: BinaryHeap::new(),
        timer_events: HashMap::new(),
        next_timer: 0,
        sealer: DatagramSealer::new(&p.secret, &p.cluster),
        rng,
        udp: p.udp,
        seeds: p.seeds.into_iter().filter(|s| *s != p.local.addr).collect(),
        local: p.local,
        config: p.config,
        table,
        events,
        links: p.links,
        stats: p.stats,
        next_seed_announce: Instant::now(),
        leaving: false,
    };
    tokio::spawn(driver.run(cmd_rx, p.shutdown));
    handle
}

struct Driver {
    foca: SwimFoca,
    rt: AccumulatingRuntime<SwimId>,
    timers: BinaryHeap<Reverse<(Instant, u64)>>,
    timer_events: HashMap<u64, Timer<SwimId>>,
    next_timer: u64,
    sealer: DatagramSealer,
    rng: StdRng,
    udp: Arc<dyn Datagram>,
    seeds: Vec<SocketAddr>,
    local: SwimId,
    config: MembershipConfig,
    table: Arc<RwLock<MemberTable>>,
    events: broadcast::Sender<MembershipEvent>,
    links: Links,
    stats: Arc<Stats>,
    next_seed_announce: Instant,
    leaving: bool,
}

impl Driver {
    async fn run(mut self, mut commands: mpsc::Receiver<Command>, shutdown: CancellationToken) {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let next_timer = self.timers.peek().map(|Reverse((at, _))| *at);
            let wake = match next_timer {
                Some(t) if t < self.next_seed_announce => t,
                _ => self.next_seed_announce,
            };
            tokio::select! {
                _ = shutdown.cancelled() => return,
                cmd = commands.recv() => match cmd {
                    Some(Command::Leave(done)) => {
                        self.leaving = true;
                        if let Err(e) = self.foca.leave_cluster(&mut self.rt) {
                            warn!(error = %e, "leaving the cluster failed");
                        }
                        self.flush().await;
                        let _ = done.send(());
                        return;
                    }
                    None => return,
                },
                r = self.udp.recv_from(&mut buf) => match r {
                    Ok((n, from)) => self.on_datagram(&buf[..n], from),
                    Err(e) => {
                        // ICMP errors from unreachable peers surface here on
                        // some platforms; they are not fatal.
                        debug!(error = %e, "membership socket receive error");
                        self.stats.datagrams_rejected.inc("recv_error");
                    }
                },
                _ = tokio::time::sleep_until(wake) => self.on_wake(),
            }
            self.flush().await;
        }
    }

    fn on_datagram(&mut self, data: &[u8], from: SocketAddr) {
        let plain = match self.sealer.open(data) {
            Ok(p) => p,
            Err(e) => {
                debug!(%from, error = %e, "membership datagram refused");
                self.stats.datagrams_rejected.inc(match e {
                    weft_proto::seal::SealError::TooShort(_) => "too_short",
                    weft_proto::seal::SealError::BadPrefix => "bad_prefix",
                    _ => "unauthentic",
                });
                return;
            }
        };
        self.stats.datagrams_received.fetch_add(1, Ordering::Relaxed);
        if let Err(e) = self.foca.handle_data(&plain, &mut self.rt) {
            debug!(%from, error = %e, "membership datagram not accepted by SWIM");
            self.stats.datagrams_rejected.inc("swim");
        }
    }

    fn on_wake(&mut self) {
        let now = Instant::now();
        while let Some(Reverse((at, seq))) = self.timers.peek().copied() {
            if at > now {
                break;
            }
            self.timers.pop();
            if let Some(timer) = self.timer_events.remove(&seq)
                && let Err(e) = self.foca.handle_timer(timer, &mut self.rt)
            {
                debug!(error = %e, "SWIM timer failed");
            }
        }
        if now >= self.next_seed_announce {
            let alone = self.foca.num_members() == 0;
            if alone || !self.seeds.is_empty() {
                for seed in self.seeds.clone() {
                    if let Err(e) = self.foca.announce(SwimId::seed(seed), &mut self.rt) {
                        debug!(%seed, error = %e, "announce to seed failed");
                    }
                }
            }
            // Keep contacting seeds, slowly once we have peers: this heals a
            // split where both halves forgot each other.
            let every = if alone {
                self.config.seed_announce_interval
            } else {
                self.config.seed_announce_interval.saturating_mul(10)
            };
            self.next_seed_announce = now + every;
        }
    }

    async fn flush(&mut self) {
        while let Some((to, data)) = self.rt.to_send() {
            let mut nonce = [0u8; 12];
            self.rng.fill(&mut nonce);
            match self.sealer.seal(nonce, &data) {
                Ok(sealed) => match self.udp.send_to(&sealed, to.addr).await {
                    Ok(_) => {
                        self.stats.datagrams_sent.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(e) => {
                        debug!(to = %to.addr, error = %e, "membership send failed");
                        self.stats.link_errors.inc("udp_send");
                    }
                },
                Err(_) => self.stats.link_errors.inc("seal"),
            }
        }
        let now = Instant::now();
        while let Some((after, timer)) = self.rt.to_schedule() {
            let seq = self.next_timer;
            self.next_timer += 1;
            self.timers.push(Reverse((now + after, seq)));
            self.timer_events.insert(seq, timer);
        }
        let mut changed = false;
        while let Some(n) = self.rt.to_notify() {
            changed = true;
            match n {
                // Leaving declares ourselves down: expected, not a warning.
                OwnedNotification::Defunct if self.leaving => debug!("left the cluster"),
                OwnedNotification::Defunct => warn!("declared down by the cluster; rejoining"),
                OwnedNotification::Rejoin(id) => info!(bump = id.bump, "rejoined the cluster"),
                OwnedNotification::Idle => debug!("no live members known"),
                OwnedNotification::Active => debug!("connected to the cluster"),
                _ => {}
            }
        }
        // Suspicion changes produce no notification: reconcile every time,
        // the member list is small.
        let _ = changed;
        self.reconcile();
    }

    fn reconcile(&mut self) {
        let events = {
            let mut table = crate::sync::write(&self.table);
            table.sync(
                &self.local.name,
                self.foca.iter_membership_state().map(|m| (m.id(), m.state())),
            )
        };
        for ev in events {
            self.stats.membership_events.inc(match &ev {
                MembershipEvent::MemberUp(_) => "up",
                MembershipEvent::MemberSuspect(_) => "suspect",
                MembershipEvent::MemberAlive(_) => "alive",
                MembershipEvent::MemberDown(_) => "down",
            });
            match &ev {
                MembershipEvent::MemberUp(m) => {
                    info!(member = %m.node(), addr = %m.addr, "member up");
                    self.links.member_up(&m.node(), m.addr);
                }
                MembershipEvent::MemberDown(m) => {
                    info!(member = %m.node(), "member down");
                    self.links.member_down(&m.node());
                }
                MembershipEvent::MemberSuspect(m) => info!(member = %m.node(), "member suspect"),
                MembershipEvent::MemberAlive(m) => info!(member = %m.node(), "member alive again"),
            }
            let _ = self.events.send(ev);
        }
    }
}

/// How long a graceful leave waits for the goodbye datagrams to go out.
pub(crate) const LEAVE_TIMEOUT: Duration = Duration::from_millis(500);
