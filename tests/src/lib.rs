//! Test support for gitwarden's end-to-end suite.
//!
//! Every test that touches Kubernetes runs against the real control plane of
//! `tests/cluster` (etcd + kube-apiserver + kube-controller-manager built from the
//! upstream Go modules), with the real `kubectl` as the human client. This crate
//! starts that cluster once per test binary, hands out clients and kubeconfigs per
//! identity, mints real service-account tokens, and gives each test a namespace
//! of its own that is removed again even when the test panics.

pub mod admission_review;
pub mod binaries;
pub mod cluster;
pub mod doctor;
pub mod git;
pub mod install;
pub mod kubectl;
pub mod loopback;
pub mod namespace;
pub mod node;
pub mod testdata;
pub mod tools;
pub mod wait;
pub mod webhook;

pub use cluster::{Identity, TestCluster};
pub use kubectl::KubectlOutput;
pub use namespace::TestNamespace;
pub use wait::wait_for;
