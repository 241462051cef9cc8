//! weft's local Kubernetes control plane (etcd, kube-apiserver, kube-controller-manager,
//! kube-scheduler and kwok fake nodes) for integration tests, end-to-end suites and demos.
