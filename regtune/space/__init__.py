"""Search spaces as data: distributions, the frozen SearchSpace, and its YAML files."""

from regtune._legacy import old_names

# regtune 0.1 had one module here; its names stay reachable (pickles name regtune.space.X).
__getattr__ = old_names("regtune.space", "regtune.space.space", "regtune.space.distributions")
