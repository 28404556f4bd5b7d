"""The scheduler: the supervisor's loop of named steps, and the pure placement policy it runs."""
