"""Search spaces as data: distributions, the frozen SearchSpace, and its YAML files."""
