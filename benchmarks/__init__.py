"""Quality (`python -m benchmarks.eval`) and speed (`python -m benchmarks.bench`) measurements; not tests."""
