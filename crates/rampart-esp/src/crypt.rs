//! The cipher work of one packet, split from the SA state around it, so that a batch's AEAD calls
//! can run on several threads while sequence numbers and replay windows stay with their one owner.
//!
//! A packet goes through three steps:
//! 1. prepare, on the thread that owns the SA (`&mut`): [`OutboundSa::prepare_seal`] takes the
//!    next sequence number and writes header, IV and trailer; [`InboundSa::prepare_open`] parses
//!    the header, infers the sequence number and pre-checks the replay window;
//! 2. crypt, on any thread, with only the SA's key (`&CipherKey`, read-only) and the packet's own
//!    bytes: [`CryptJob::run`];
//! 3. finish, back on the owner: nothing for a sealed packet; [`InboundSa::finish_open`] records
//!    the sequence number in the replay window (checking it again, so two copies of one packet in
//!    one batch cannot both pass) and strips the trailer.
//!
//! [`OutboundSa::seal`] and [`InboundSa::open`] are the three steps in a row.
//!
//! [`OutboundSa::prepare_seal`]: crate::OutboundSa::prepare_seal
//! [`InboundSa::prepare_open`]: crate::InboundSa::prepare_open
//! [`InboundSa::finish_open`]: crate::InboundSa::finish_open
//! [`OutboundSa::seal`]: crate::OutboundSa::seal
//! [`InboundSa::open`]: crate::InboundSa::open

use rampart_crypto::{CipherKey, CryptoError};

use crate::sa::{Auth, ESP_HEADER_LEN};

/// Which way a job goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    Seal,
    Open,
}

/// The cipher call for one ESP packet. Offsets are relative to the start of the ESP packet (the
/// SPI), so the job runs on that packet's bytes alone, wherever they were cut out of.
///
/// Invariant: built only by an SA's prepare step, which checked every length against that SA's
/// key; `run` with the same SA's key therefore fails only on authentication (open).
#[derive(Debug, Clone, Copy)]
pub struct CryptJob {
    direction: Direction,
    /// ESP header + IV length: where the encrypted data starts.
    data_start: u16,
    /// Where the ICV starts; it runs to the end of the packet.
    icv_start: u32,
    len: u32,
    seq: u64,
    auth: Auth,
}

impl CryptJob {
    pub(crate) fn new(
        direction: Direction,
        iv_len: usize,
        data_len: usize,
        icv_len: usize,
        seq: u64,
        auth: Auth,
    ) -> CryptJob {
        let data_start = ESP_HEADER_LEN + iv_len;
        CryptJob {
            direction,
            data_start: data_start as u16,
            icv_start: (data_start + data_len) as u32,
            len: (data_start + data_len + icv_len) as u32,
            seq,
            auth,
        }
    }

    pub fn direction(&self) -> Direction {
        self.direction
    }

    /// The sequence number the prepare step assigned (seal) or inferred (open).
    pub fn seq(&self) -> u64 {
        self.seq
    }

    /// Length of the whole ESP packet the job covers.
    pub fn len(&self) -> usize {
        self.len as usize
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Encrypts (seal) or authenticates and decrypts (open) `packet`, the ESP packet this job was
    /// prepared for, in place. `key` must be the key of the SA that prepared the job.
    pub fn run(&self, key: &CipherKey, packet: &mut [u8]) -> Result<(), CryptoError> {
        let Some(packet) = packet.get_mut(..self.len()) else {
            return Err(CryptoError::Length {
                what: "ESP packet",
                expected: self.len(),
                got: packet.len(),
            });
        };
        let (head, rest) = packet.split_at_mut(usize::from(self.data_start));
        let (data, icv) = rest.split_at_mut(self.icv_start as usize - usize::from(self.data_start));
        let iv = &head[ESP_HEADER_LEN..];
        match self.direction {
            Direction::Seal => key.seal(iv, self.auth.aad(), self.auth.trailer(), data, icv),
            Direction::Open => key.open(iv, self.auth.aad(), self.auth.trailer(), data, icv),
        }
    }
}

/// A job with everything it needs to run on another thread: the SA's key and the packet's bytes.
pub struct CryptTask<'a> {
    key: Option<&'a CipherKey>,
    packet: &'a mut [u8],
    job: Option<CryptJob>,
    /// Written by [`CryptTask::run`]; an error until then (and for an idle task).
    pub result: Result<(), CryptoError>,
}

impl<'a> CryptTask<'a> {
    pub fn new(key: &'a CipherKey, packet: &'a mut [u8], job: CryptJob) -> CryptTask<'a> {
        CryptTask {
            key: Some(key),
            packet,
            job: Some(job),
            result: Err(CryptoError::Library("cipher job not run")),
        }
    }

    /// A task with nothing to do (its result stays an error): fills fixed-size task arrays.
    pub fn idle() -> CryptTask<'a> {
        CryptTask {
            key: None,
            packet: &mut [],
            job: None,
            result: Err(CryptoError::Library("cipher job not run")),
        }
    }

    pub fn run(&mut self) {
        if let (Some(key), Some(job)) = (self.key, &self.job) {
            self.result = job.run(key, self.packet);
        }
    }
}

/// Runs a batch of independent cipher tasks, in any order and on any threads; returns when every
/// task has run. Implementations must not allocate per task.
pub trait CryptRunner: Send + Sync {
    fn run_all(&self, tasks: &mut [CryptTask<'_>]);
}

/// Runs every task on the calling thread, in order.
#[derive(Debug, Default, Clone, Copy)]
pub struct Inline;

impl CryptRunner for Inline {
    fn run_all(&self, tasks: &mut [CryptTask<'_>]) {
        for task in tasks {
            task.run();
        }
    }
}
