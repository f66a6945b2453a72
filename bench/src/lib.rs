//! Benchmark harness: the parts of `bench/run.sh` that are easier in Rust than in shell.
//!
//! - [`throughput`]: turns the iperf3 samples `run.sh` collects into `bench/results/throughput.md`.
//! - [`ike_load`]: an IKEv2 setup-rate load generator built from `rampart_ike::Ike` initiators.
//! - [`ike_report`]: turns the load generator's results into `bench/results/ike.md`.
//! - [`stats`] and [`machine`]: medians, percentiles and the facts about the machine.

pub mod ike_load;
pub mod ike_report;
pub mod machine;
pub mod stats;
pub mod throughput;
