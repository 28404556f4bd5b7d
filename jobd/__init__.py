"""jobd, the daemon. Its version is the distribution's (pyproject.toml reads it from here)."""

__version__ = "0.1.0"
