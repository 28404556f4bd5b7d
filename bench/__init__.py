"""jobd's benchmark suite: jobd against raw podman, the podman API, Slurm and task-spooler, side
by side on the same machine in the same run. `make bench` (or `python -m bench --help`)."""
