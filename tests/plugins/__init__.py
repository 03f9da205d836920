"""pytest plugins of the regtune test suite, registered in ``tests/conftest.py``."""
