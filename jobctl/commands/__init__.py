"""jobctl's commands, one module per area; jobctl.cli registers them on `main`."""
