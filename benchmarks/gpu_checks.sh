#!/usr/bin/env bash
# Every check that needs a GPU, in one command of at most 10 minutes on a fresh device machine
# whose image holds CuPy 14, NVRTC, nvidia-ml-py, PyTorch and pytest (and no package index):
#   run(command="bash benchmarks/gpu_checks.sh", timeout_s=590, carry=[".gpu-cache"])
#
# Steps, most valuable evidence first; each under `timeout -k`, its log in OUT/<step>.log, and a
# line in OUT/steps.tsv (step, status, seconds, note). A failed or timed-out step never stops
# the next; a step that would start past the budget is skipped, with the reason. Without a usable
# GPU every GPU step is skipped with gpuad's own reason. Exit status 0 when no step failed or
# timed out, else 1.
#
#   OUT                    output folder (the device tool brings $OUT back), else ./gpu-results
#   GPUAD_CHECKS_BUDGET    seconds for all steps together (default 470)
#   GPUAD_CHECKS_STANDIN=1 a dry run: the Python steps run on the CuPy stand-in
#                          (python tests/fake_cuda_run.py -m ...), with small sizes
#   PYTHON                 the interpreter (default python3)
#
# CuPy's kernel cache is CUPY_CACHE_DIR (default .gpu-cache/cupy, git-ignored) and is copied to
# OUT/gpu-cache at the end: copy that folder back to .gpu-cache and pass carry=[".gpu-cache"],
# and the next run loads the kernels instead of compiling them.
# Benchmark results go to OUT/cuda-*.json, to be committed as benchmarks/results/cuda-*.json.
set -uo pipefail
export LC_ALL=C
if [[ -n ${OUT:-} ]]; then  # (relative to where the script was started)
    mkdir -p "$OUT" && out=$(cd "$OUT" && pwd) || exit 2
fi
cd "$(dirname "$0")/.." || exit 2
if [[ -z ${OUT:-} ]]; then
    mkdir -p gpu-results && out=$PWD/gpu-results
fi
budget=${GPUAD_CHECKS_BUDGET:-470}
py=${PYTHON:-python3}
grace=5       # seconds between a step's TERM and KILL (kept out of the budget)
min_step=5    # a step with fewer seconds left is skipped
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
export CUPY_CACHE_DIR=${CUPY_CACHE_DIR:-$PWD/.gpu-cache/cupy}
mkdir -p "$CUPY_CACHE_DIR"

quick=()
tests=("$py" -m pytest)
if [[ ${GPUAD_CHECKS_STANDIN:-0} == 1 ]]; then
    launcher=$PWD/tests/fake_cuda_run.py
    run=("$py" "$launcher" -m)
    export BENCHMARKS_LAUNCHER=$launcher  # the benchmark harness's child processes too
    quick=(--quick)
    # the real-GPU cases are not meant for the stand-in: the selection is only collected (by
    # plain pytest: collecting needs no device)
    tests=("$py" -m pytest --collect-only)
    epochs=1
else
    run=("$py" -m)
    epochs=3
fi

now_ms() {
    if [[ -n ${EPOCHREALTIME:-} ]]; then
        local t=${EPOCHREALTIME/./}
        echo $((t / 1000))
    else  # (bash before 5)
        echo $(( $(date +%s%N) / 1000000 ))
    fi
}
start=$(now_ms)
status=0
printf 'step\tstatus\tseconds\tnote\n' > "$out/steps.tsv"

record() {  # step status milliseconds note
    local secs
    secs=$(printf '%d.%03d' $(($3 / 1000)) $(($3 % 1000)))
    printf '%s\t%s\t%s\t%s\n' "$1" "$2" "$secs" "$4" >> "$out/steps.tsv"
    printf '== %-12s %-8s %7s s  %s\n' "$1" "$2" "$secs" "$4"
}

# step NAME CAP_SECONDS gpu|any COMMAND...
step() {
    local name=$1 cap=$2 needs=$3
    shift 3
    if [[ $needs == gpu && -n $no_gpu ]]; then
        record "$name" skipped 0 "no usable GPU: $no_gpu"
        return
    fi
    local left=$(( budget - ($(now_ms) - start) / 1000 - grace ))
    if (( left < min_step )); then
        record "$name" skipped 0 "budget: $(( left + grace )) s of ${budget} s left"
        return
    fi
    local limit=$cap why="the step's cap"
    if (( left < cap )); then
        limit=$left why="the budget's remainder"
    fi
    local t0 rc
    t0=$(now_ms)
    timeout -k "$grace" "$limit" "$@" > "$out/$name.log" 2>&1
    rc=$?
    local ms=$(( $(now_ms) - t0 ))
    if (( rc == 0 )); then
        record "$name" passed "$ms" ""
    elif (( rc == 124 || rc == 137 )); then
        record "$name" timeout "$ms" "stopped after ${limit} s ($why)"
        status=1
    else
        record "$name" failed "$ms" "exit status $rc; see $name.log"
        status=1
    fi
}

# gpuad's own reason why cuda:0 is unusable (empty when it is usable)
no_gpu=$(timeout -k "$grace" 60 "${run[@]}" benchmarks.gpu_steps reason "$out" 2> "$out/reason.log")
rc=$?
if (( rc != 0 )); then
    no_gpu="asking gpuad whether a GPU is usable failed (exit status $rc, see reason.log)"
fi
no_gpu=${no_gpu//$'\n'/ }

step env 60 any "${run[@]}" benchmarks.gpu_steps env "$out"
step info 60 any "${run[@]}" gpuad info
step kernels 200 gpu "${run[@]}" benchmarks.gpu_steps kernels "$out"
step fused 90 gpu "${run[@]}" benchmarks.gpu_steps fused "$out"
step demo 90 gpu "${run[@]}" gpuad demo --device cuda --epochs "$epochs"
step ops 90 gpu "${run[@]}" benchmarks.gpu_steps ops "$out"
# the real-GPU test cases only: no test that uses the stand-in, no test that needs an index
# (-W: the image may lack pytest-timeout, whose ini option would then stop pytest)
# (-v: a test's outcome is in the log as it ends, so a run the timeout stops still tells;
# a module that cannot be imported there, e.g. for want of hypothesis, leaves the others)
step pytest 200 gpu "${tests[@]}" -v --tb=short -p no:cacheprovider -o addopts= -rfE \
    --continue-on-collection-errors \
    -W ignore::pytest.PytestConfigWarning -m "cuda and not standin and not network" tests
step bench_kernels 90 gpu "${run[@]}" benchmarks run --suite kernels --device cuda \
    --frameworks gpuad "${quick[@]}" --out "$out/cuda-kernels.json"
step bench_suites 200 gpu "${run[@]}" benchmarks run --suite mlp_step --suite op_overhead \
    --suite big_elementwise --frameworks gpuad,torch --device cuda "${quick[@]}" \
    --out "$out/cuda-suites.json"

if [[ -n $(ls -A "$CUPY_CACHE_DIR") && $CUPY_CACHE_DIR != "$out"/* ]]; then
    mkdir -p "$out/gpu-cache" && cp -r "$CUPY_CACHE_DIR" "$out/gpu-cache/"
fi
printf '\ntotal %d s of a %d s budget\n' $(( ($(now_ms) - start) / 1000 )) "$budget"
exit $status
