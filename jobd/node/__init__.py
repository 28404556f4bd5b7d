"""What the machine has: its inventory (CPUs, memory, disk; inventory.py), its GPUs (NVML or a
supplied file; gpus.py), the CDI specs podman reads (cdi.py), GPU passthrough into containers
(passthrough.py), and jobd's checks of all of it (doctor.py). The records these fill are
jobd/domain/node.py."""
