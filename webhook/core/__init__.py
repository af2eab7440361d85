"""The pure core: the limits vocabulary, the accelerator table, Kubernetes resource rules,
workloads and the decision. No I/O, and nothing from ``platform/``, ``serve/`` or
``config.py``: ``tests/unit/test_layers.py`` checks the imports."""
