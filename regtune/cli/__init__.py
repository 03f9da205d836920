"""The `regtune` command line over all of the above."""
