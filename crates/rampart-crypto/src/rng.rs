//! The deterministic CSPRNG that engines receive from their caller.

use rand_chacha::ChaCha20Rng;
use rand_core::{RngCore, SeedableRng};

/// ChaCha20 CSPRNG.
///
/// Engines never read the OS RNG: the process seeds one `Rng` with [`Rng::from_os`] and hands
/// [`Rng::fork`]ed children to the engines. Tests and the simulator use [`Rng::from_seed`], so a
/// run is reproducible from its seed. The state is never printed by `Debug`.
#[derive(Clone)]
pub struct Rng(ChaCha20Rng);

impl Rng {
    /// A generator whose whole output is determined by `seed`.
    pub fn from_seed(seed: [u8; 32]) -> Rng {
        Rng(ChaCha20Rng::from_seed(seed))
    }

    /// A generator seeded from the operating system (through aws-lc).
    ///
    /// # Panics
    /// If the OS has no entropy to give; this only happens at start-up on a broken system.
    pub fn from_os() -> Rng {
        let mut seed = [0u8; 32];
        aws_lc_rs::rand::fill(&mut seed).expect("the OS random number generator failed");
        let rng = Rng::from_seed(seed);
        zeroize::Zeroize::zeroize(&mut seed);
        rng
    }

    pub fn fill(&mut self, out: &mut [u8]) {
        self.0.fill_bytes(out);
    }

    pub fn next_u32(&mut self) -> u32 {
        self.0.next_u32()
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0.next_u64()
    }

    /// A child generator seeded from 32 bytes of this one; the two streams are independent.
    pub fn fork(&mut self) -> Rng {
        let mut seed = [0u8; 32];
        self.fill(&mut seed);
        let child = Rng::from_seed(seed);
        zeroize::Zeroize::zeroize(&mut seed);
        child
    }
}

impl std::fmt::Debug for Rng {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Rng(..)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_stream_and_forks_differ() {
        let mut a = Rng::from_seed([7; 32]);
        let mut b = Rng::from_seed([7; 32]);
        assert_eq!(a.next_u64(), b.next_u64());
        let mut ca = a.fork();
        let mut cb = b.fork();
        assert_eq!(ca.next_u32(), cb.next_u32());
        assert_ne!(a.next_u64(), ca.next_u64());
        let mut os1 = Rng::from_os();
        let mut os2 = Rng::from_os();
        assert_ne!(os1.next_u64(), os2.next_u64());
    }
}
