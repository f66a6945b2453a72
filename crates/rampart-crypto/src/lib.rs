//! Crypto provider for Rampart: the IKEv2 and ESP algorithms on aws-lc-rs.
//!
//! Nothing here reads the OS RNG except [`Rng::from_os`]; engines receive a seeded [`Rng`].

mod alg;
mod cipher;
mod error;
mod kex;
mod prf;
mod rng;

pub use alg::{DhGroup, Encr, Integ, Prf, UnknownAlgorithm};
pub use cipher::CipherKey;
pub use error::CryptoError;
pub use kex::{KeyExchange, SharedSecret};
pub use prf::{prf, prf_plus, try_prf_plus};
pub use rng::Rng;
