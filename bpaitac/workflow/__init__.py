"""What the Snakefile imports at parse time: config, catalogue, figure registries, split names and
path templates. Importing it loads neither torch nor matplotlib (tests/test_architecture.py)."""
