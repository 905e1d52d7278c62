#!/usr/bin/env bash
# Every check that needs a GPU, in one prepared run for a session whose task has a device
# machine (its image already holds CuPy 14, NVRTC, nvidia-ml-py, PyTorch and pytest):
#   run(command="bash benchmarks/gpu_checks.sh", timeout_s=590)
# Logs and JSON go to $OUT (the device tool brings them back), else to ./gpu-results.
set -uo pipefail
out=${OUT:-gpu-results}
mkdir -p "$out"
export PYTHONPATH=$PWD
py=${PYTHON:-python3}
status=0

"$py" -m gpuad info > "$out/info.txt" 2>&1 || status=1
"$py" -c "import gpuad; print(gpuad.cuda.warmup(), 'kernels built')" > "$out/warmup.txt" 2>&1 \
    || status=1
# the whole suite, CUDA cases included (about 5 minutes on the CPU side of an H100 machine)
timeout 330 "$py" -m pytest -q -p no:cacheprovider -o addopts="-ra" tests \
    > "$out/pytest_cuda.log" 2>&1 || status=1
# every suite on CUDA (the kernels suite included), saved after each suite
timeout 200 "$py" -m benchmarks run --device cuda --out "$out/cuda.json" \
    > "$out/benchmarks_cuda.txt" 2>&1 || status=1
timeout 30 "$py" -m gpuad demo --device cuda > "$out/demo_cuda.txt" 2>&1 || status=1
tail -n 3 "$out"/pytest_cuda.log "$out"/benchmarks_cuda.txt "$out"/demo_cuda.txt
exit $status
