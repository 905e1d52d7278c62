#!/usr/bin/env bash
# Smoke test, run inside a gpuad container (or any environment with gpuad installed):
# prints `info`; where a GPU is visible, compiles gpuad's kernels and checks a CUDA gradient
# against the CPU; otherwise trains the demo for one epoch on the CPU. Non-zero on any failure.
set -euo pipefail

python -m gpuad info

if python -c "import sys, gpuad; sys.exit(0 if gpuad.cuda.is_available() else 1)"; then
    python - <<'PY'
import numpy as np

import gpuad as ad

print(f"compiled {ad.cuda.warmup()} kernels")
x = np.linspace(-4.0, 4.0, 1001)
grads = {}
for device in ("cpu", "cuda"):
    t = ad.tensor(x, device=device, requires_grad=True)
    (g,) = ad.grad((ad.sigmoid(t) * ad.gelu(t)).sum(), t)  # fused kernels on CUDA
    grads[device] = g.numpy()
np.testing.assert_allclose(grads["cuda"], grads["cpu"], rtol=1e-6, atol=1e-7)
print("a CUDA gradient matches the CPU")
PY
else
    python -m gpuad demo --device cpu --epochs 1
fi
echo "smoke test passed"
