"""The runtime: the contract the scheduler relies on (contract.py), and podman behind it
(podman/). Only the scheduler uses the contract, and only the daemon knows it is podman."""
