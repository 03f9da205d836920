"""The `regtune` command line over all of the above."""

from regtune._legacy import old_names

# regtune 0.1 had one module here; its names stay reachable (pickles name regtune.cli.X).
__getattr__ = old_names("regtune.cli", "regtune.cli.app")
