//! The test cluster's node, end to end: a real kubelet registered with its own
//! credentials, pods scheduled and running on containerd, kube-proxy routing
//! Services, the kubelet API behind `kubectl logs/exec/port-forward`, and a
//! network that cannot reach beyond the machine. One node cluster per test
//! binary (tests/cluster, `GITWARDEN_CLUSTER_NODE=1`); each test has its own
//! namespace. Needs root and `scripts/node-prereqs`.

#![allow(clippy::unwrap_used, missing_docs)]

mod addons;
mod api_access;
mod isolation;
mod kubelet_api;
mod node_authorizer;
mod pods;
mod registration;
mod restart;
mod services;
