"""pgsieve benchmark harness (see BENCHMARKS.md; entry point: ``python bench/run.py``)."""
