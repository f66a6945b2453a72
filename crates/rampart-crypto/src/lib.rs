//! Crypto provider for Rampart: the IKEv2 and ESP algorithms on aws-lc-rs.
//!
//! Nothing here reads the OS RNG except [`Rng::from_os`]; engines receive a seeded [`Rng`].

mod alg;

pub use alg::{DhGroup, Encr, Integ, Prf, UnknownAlgorithm};
