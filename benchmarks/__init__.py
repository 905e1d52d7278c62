"""Side-by-side benchmarks of gpuad against its peers (run as python -m benchmarks.NAME)."""
