//! Nothing but benchmarks: see `benches/inprocess.rs`.
