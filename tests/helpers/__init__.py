"""Helpers shared by the tests (importable as ``helpers.<module>``: tests/ is on sys.path
through its conftest.py): the tiny test model, training in a child process, the named-model
snapshot, synthetic dataset folders."""
