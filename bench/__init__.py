"""Benchmarks of the operator on the real local control plane (`make bench`, never in tests).

What the operator costs is measured by the API server itself (its audit log, per user), and its
memory from outside (`/proc/<pid>/status`); see RESULTS.md for the latest numbers.
"""
