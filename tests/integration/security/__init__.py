"""Security tests. A package so that `test_limits.py` here and in tests/unit/socketsvc can coexist
(pytest's default `prepend` import mode needs unique basenames outside packages)."""
