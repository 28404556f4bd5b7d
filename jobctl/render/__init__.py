"""Readable output: tables and `key: value` blocks, all laid out by tabulate, one module per
area: jobs and runs, recipes, the node (GPUs, plans, health, checks); layout and values hold
what they share."""
