//! Benchmark harness: the parts of `bench/run.sh` that are easier in Rust than in shell.
//!
//! - [`throughput`]: turns the iperf3 samples `run.sh` collects into `bench/results/throughput.md`.
//! - [`ike_load`]: an IKEv2 setup-rate load generator built from `rampart_ike::Ike` initiators.
//! - [`ike_report`]: turns the load generator's results into `bench/results/ike.md`.
//! - [`probe`]: the 1 ms UDP probe stream whose longest silence is the failover gap.
//! - [`conns`]: many idle TCP connections opened through the cluster, checked after a failover.
//! - [`cluster_sync`]: delta and full sync between two real cluster members, in process.
//! - [`cluster_report`]: turns `bench/cluster.sh`'s samples into `bench/results/cluster.md`.
//! - [`mep`] and [`mep_report`]: new-connection prober and who-server of `bench/mep.sh`, and
//!   `bench/results/mep.md` from its samples.
//! - [`stats`] and [`machine`]: medians, percentiles and the facts about the machine.

pub mod cluster_report;
pub mod cluster_sync;
pub mod conns;
pub mod ike_load;
pub mod ike_report;
pub mod machine;
pub mod mep;
pub mod mep_report;
pub mod probe;
pub mod stats;
pub mod throughput;
