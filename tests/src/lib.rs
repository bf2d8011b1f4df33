//! Test support shared by the integration tests and the benchmark.
pub mod container;
pub mod daemonset;
pub mod dnsperf;
pub mod fakeapi;
pub mod frames;
pub mod hostile;
pub mod lab;
pub mod upstream;
