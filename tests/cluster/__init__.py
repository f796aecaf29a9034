"""A Kubernetes test cluster (API emulator on kmock + a process kubelet) for integration tests."""
