//! Batches: each packet's SA work is prepared in order on the node's thread, the cipher jobs of
//! up to [`CRYPT_CHUNK`] packets go to the [`CryptRunner`] together (which may spread them over
//! threads), and the results are finished in order.
//!
//! Invariants:
//! - Every piece of SA and flow state (sequence numbers, replay windows, the connection table,
//!   IKE) is touched only on the node's thread, in packet order; the runner sees read-only keys
//!   and each packet's own bytes, so it needs no lock and the result is the same as handling the
//!   packets one by one.
//! - Packets that are not ESP (IKE, keepalives) are handled after every ESP packet before them
//!   has finished, so IKE sees the data plane in packet order.
//! - Nothing here allocates: `pending` and the task array have fixed capacity.

use std::net::{IpAddr, SocketAddr};
use std::ops::Range;
use std::time::Instant;

use rampart_crypto::{CipherKey, CryptoError};
use rampart_esp::udp_encap::{self, Classified};
use rampart_esp::{CryptJob, CryptTask};
use rampart_ike::ChildSaId;

use super::seal::TunStep;
use super::{batch_len, ControlPlane, DataPlane, Tunnels};
use crate::{Disposition, DropReason};

/// Cipher jobs handed to the runner at once (and the capacity of `DataPlane::pending`).
pub const CRYPT_CHUNK: usize = 64;

/// A packet of the current batch whose cipher job is prepared.
#[derive(Debug, Clone)]
pub struct Pending {
    /// Its index in the batch.
    index: usize,
    tunnel: ChildSaId,
    job: CryptJob,
    /// The ESP packet: in `bufs[index]` (outbound) or in the shared buffer (inbound).
    esp: Range<usize>,
    /// Inbound: the (local, remote) UDP addresses it came from, `None` for raw ESP.
    udp: Option<(SocketAddr, SocketAddr)>,
}

/// Which SA key a job needs.
#[derive(Clone, Copy)]
enum Side {
    Outbound,
    Inbound,
}

/// `tunnel`'s key for `side`, with a one-entry cache: a batch is mostly one SA.
fn key_of<'t>(
    tunnels: &'t Tunnels,
    cache: &mut Option<(ChildSaId, &'t CipherKey)>,
    tunnel: ChildSaId,
    side: Side,
) -> Option<&'t CipherKey> {
    if let Some((id, key)) = *cache {
        if id == tunnel {
            return Some(key);
        }
    }
    let t = tunnels.get(tunnel)?;
    let key = match side {
        Side::Outbound => t.outbound.key(),
        Side::Inbound => t.inbound.key(),
    };
    *cache = Some((tunnel, key));
    Some(key)
}

/// A task that runs nothing: fills the unused part of the task array.
fn idle<'a>() -> CryptTask<'a> {
    CryptTask::idle()
}

impl DataPlane {
    /// A batch of packets read from the TUN device: `bufs[i][packets[i]]` is one IP packet with
    /// head- and tailroom around it, as for [`Self::handle_tun`]; `out[i]` receives what to do
    /// with it (ranges into `bufs[i]`). All packets see the same `now`.
    ///
    /// Invariant: `out[i]` is written for every `i < packets.len()`; a batch whose slices have
    /// different lengths is handled up to the shortest, and the rest of `out` is `Dropped`.
    pub fn handle_tun_batch<B: AsMut<[u8]>>(
        &mut self,
        now: Instant,
        bufs: &mut [B],
        packets: &[Range<usize>],
        out: &mut [Disposition],
        control: &mut impl ControlPlane,
    ) {
        let n = batch_len(bufs.len(), packets.len(), out.len());
        self.pending.clear();
        for i in 0..n {
            match self.tun_prepare(now, bufs[i].as_mut(), packets[i].clone(), control) {
                TunStep::Done(disposition) => out[i] = disposition,
                TunStep::Seal {
                    tunnel,
                    job,
                    esp,
                    disposition,
                } => {
                    out[i] = disposition;
                    self.pending.push(Pending {
                        index: i,
                        tunnel,
                        job,
                        esp,
                        udp: None,
                    });
                    if self.pending.len() == CRYPT_CHUNK {
                        self.seal_pending(bufs, out);
                    }
                }
            }
        }
        self.seal_pending(bufs, out);
        self.mark_short_batch(n, packets.len(), out);
    }

    /// Runs the pending seal jobs (each in its own `bufs[index]`, indices ascending).
    fn seal_pending<B: AsMut<[u8]>>(&mut self, bufs: &mut [B], out: &mut [Disposition]) {
        let count = self.pending.len();
        if count == 0 {
            return;
        }
        let mut failed = [false; CRYPT_CHUNK];
        {
            let mut tasks: [CryptTask<'_>; CRYPT_CHUNK] = std::array::from_fn(|_| idle());
            let mut cache = None;
            let mut pending = self.pending.iter().zip(tasks.iter_mut()).peekable();
            for (i, buf) in bufs.iter_mut().enumerate() {
                let Some((p, _)) = pending.peek() else {
                    break;
                };
                if p.index != i {
                    continue;
                }
                let Some((p, task)) = pending.next() else {
                    break;
                };
                let key = key_of(&self.tunnels, &mut cache, p.tunnel, Side::Outbound);
                if let (Some(key), Some(packet)) = (key, buf.as_mut().get_mut(p.esp.clone())) {
                    *task = CryptTask::new(key, packet, p.job);
                }
            }
            self.crypt.run_all(&mut tasks[..count]);
            for (f, task) in failed.iter_mut().zip(&tasks[..count]) {
                *f = task.result.is_err();
            }
        }
        let mut pending = std::mem::take(&mut self.pending);
        for (p, &f) in pending.iter().zip(&failed[..count]) {
            if f {
                out[p.index] = self.crypt_failed();
            }
        }
        pending.clear();
        self.pending = pending;
    }

    /// A batch of datagrams that arrived together on the UDP socket bound to `local` from
    /// `remote` (one segmentation-offload read): all of them live in `buf`, at `packets[i]`,
    /// without overlapping. `out[i]` receives what to do with each (ranges into `buf`); an
    /// ESP packet is decrypted inside its own range only, so the others stay intact.
    #[allow(clippy::too_many_arguments)]
    pub fn handle_udp_batch(
        &mut self,
        now: Instant,
        local: SocketAddr,
        remote: SocketAddr,
        buf: &mut [u8],
        packets: &[Range<usize>],
        out: &mut [Disposition],
        control: &mut impl ControlPlane,
    ) {
        let n = packets.len().min(out.len());
        self.pending.clear();
        for (i, packet) in packets.iter().enumerate().take(n) {
            let esp = if local.port() == self.config.nat_t_port {
                match buf.get(packet.clone()).map(udp_encap::classify) {
                    Some(Classified::Esp(r)) => Some(packet.start + r.start..packet.start + r.end),
                    _ => None,
                }
            } else {
                None
            };
            match esp {
                Some(esp) => self.queue_open(now, buf, i, esp, Some((local, remote)), out, control),
                None => {
                    // IKE and the rest see every ESP packet before them finished.
                    self.open_pending(now, buf, out, control);
                    out[i] = self.handle_udp(now, local, remote, buf, packet.clone(), control);
                }
            }
        }
        self.open_pending(now, buf, out, control);
        self.mark_short_batch(n, packets.len(), out);
    }

    /// A batch of ESP packets from the raw socket bound to `local` (one `recvmmsg`): packet `i`
    /// came from `packets[i].0` and lives at `buf[packets[i].1]`, without overlapping the
    /// others. `out[i]` receives what to do with each (ranges into `buf`).
    pub fn handle_raw_esp_batch(
        &mut self,
        now: Instant,
        _local: IpAddr,
        buf: &mut [u8],
        packets: &[(IpAddr, Range<usize>)],
        out: &mut [Disposition],
        control: &mut impl ControlPlane,
    ) {
        let n = packets.len().min(out.len());
        self.pending.clear();
        for (i, (_, packet)) in packets.iter().enumerate().take(n) {
            self.queue_open(now, buf, i, packet.clone(), None, out, control);
        }
        self.open_pending(now, buf, out, control);
        self.mark_short_batch(n, packets.len(), out);
    }

    /// Counts the packets of a batch that did not fit the caller's slices as malformed.
    fn mark_short_batch(&mut self, handled: usize, packets: usize, out: &mut [Disposition]) {
        for slot in out.iter_mut().take(packets).skip(handled) {
            *slot = self.drop(DropReason::Malformed);
        }
    }

    /// Prepares packet `index` (ESP at `buf[esp]`) and queues its job, running the queue first
    /// when it is full or when `esp` does not lie after the queued packets.
    #[allow(clippy::too_many_arguments)]
    fn queue_open(
        &mut self,
        now: Instant,
        buf: &mut [u8],
        index: usize,
        esp: Range<usize>,
        udp: Option<(SocketAddr, SocketAddr)>,
        out: &mut [Disposition],
        control: &mut impl ControlPlane,
    ) {
        let after_queue = self.pending.last().is_none_or(|p| esp.start >= p.esp.end);
        if !after_queue || self.pending.len() == CRYPT_CHUNK {
            self.open_pending(now, buf, out, control);
        }
        match self.esp_prepare(now, buf, esp.clone()) {
            Ok((tunnel, job)) => self.pending.push(Pending {
                index,
                tunnel,
                job,
                esp,
                udp,
            }),
            Err(disposition) => out[index] = disposition,
        }
    }

    /// Runs the pending open jobs (disjoint ranges of `buf`, ascending) and finishes them in
    /// order.
    fn open_pending(
        &mut self,
        now: Instant,
        buf: &mut [u8],
        out: &mut [Disposition],
        control: &mut impl ControlPlane,
    ) {
        let count = self.pending.len();
        if count == 0 {
            return;
        }
        let mut results: [Result<(), CryptoError>; CRYPT_CHUNK] = std::array::from_fn(|_| Ok(()));
        {
            let mut tasks: [CryptTask<'_>; CRYPT_CHUNK] = std::array::from_fn(|_| idle());
            let mut cache = None;
            let mut rest: &mut [u8] = buf;
            let mut consumed = 0;
            for (p, task) in self.pending.iter().zip(tasks.iter_mut()) {
                // Ranges ascend without overlap (queue_open) and lie in `buf` (prepare_open).
                let Some(skip) = p.esp.start.checked_sub(consumed) else {
                    continue;
                };
                if skip + p.esp.len() > rest.len() {
                    continue;
                }
                let (_, tail) = std::mem::take(&mut rest).split_at_mut(skip);
                let (packet, tail) = tail.split_at_mut(p.esp.len());
                rest = tail;
                consumed = p.esp.end;
                if let Some(key) = key_of(&self.tunnels, &mut cache, p.tunnel, Side::Inbound) {
                    *task = CryptTask::new(key, packet, p.job);
                }
            }
            self.crypt.run_all(&mut tasks[..count]);
            for (r, task) in results.iter_mut().zip(&mut tasks[..count]) {
                *r = std::mem::replace(&mut task.result, Ok(()));
            }
        }
        let mut pending = std::mem::take(&mut self.pending);
        for (p, result) in pending.iter().zip(results) {
            let bound = p.esp.clone();
            out[p.index] = self.esp_finish(
                now,
                buf,
                p.esp.clone(),
                bound,
                p.tunnel,
                &p.job,
                result,
                p.udp,
                control,
            );
        }
        pending.clear();
        self.pending = pending;
    }
}
