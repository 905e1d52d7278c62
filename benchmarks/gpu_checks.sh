#!/usr/bin/env bash
# Every check that needs a GPU, in one command of at most 10 minutes on a fresh device machine
# whose image holds CuPy 14, NVRTC, nvidia-ml-py, PyTorch and pytest (and no package index):
#   run(command="bash benchmarks/gpu_checks.sh", timeout_s=590, carry=[".gpu-cache"])
#
# Steps, most valuable evidence first; each under `timeout -k`, with its log, and a line in
# steps.tsv (step, status, seconds, note). A failed or timed-out step never stops the next; a
# step that would start past the budget is skipped, with the reason. Without a usable GPU every
# GPU step is skipped with gpuad's own reason. Every step ends within the budget plus GRACE
# seconds (a step that ignores TERM is KILLed GRACE seconds later). Exit status 0 when no step
# failed or timed out, else 1.
#
# OUT holds four plain files, since the device tool brings back at most 8 (16 MiB each):
#   steps.tsv         the steps as they end, and a last row gpu_cache: packed, or why not
#   summary.txt       the step under way (a run killed whole says where), then the totals
#   results.tar.gz    results/: every step's log, the steps' JSON and the benchmarks'
#                     cuda-<gpu model>-{kernels,compiled,suites}.json (README has a table
#                     for each cuda-*.json in benchmarks/results/, headed by its GPU);
#                     repacked after each step, so a run killed whole keeps the steps before
#   gpu-cache.tar.gz  CuPy's kernel cache (CUPY_CACHE_DIR), at the end; left out, with the
#                     reason in steps.tsv, when it is empty or over 16 MiB packed
# Afterwards, here in the repository's root (FILES = the reply's files_at):
#   mkdir -p .gpu-cache/cupy && tar -xzf FILES/gpu-cache.tar.gz -C .gpu-cache/cupy
#     and the next run, with carry=[".gpu-cache"], loads the kernels instead of compiling them;
#   tar -xzf FILES/results.tar.gz -C /tmp && cp /tmp/results/cuda-*.json benchmarks/results/
#     and commit them (the logs too, where they are evidence worth keeping).
#
#   OUT                     output folder (the device tool brings $OUT back), else ./gpu-results
#   GPUAD_CHECKS_BUDGET     seconds for all steps together (default 470)
#   GPUAD_CHECKS_GRACE      seconds between a stopped step's TERM and KILL (default 5)
#   GPUAD_CHECKS_CAP_<step> that step's cap in seconds instead of its own (e.g. ..._CAP_ops=30)
#   GPUAD_CHECKS_WORKERS    pytest-xdist workers of the pytest step, when xdist imports
#                           (default 8; without xdist the cases run in one process)
#   GPUAD_CHECKS_STANDIN=1  a dry run: the Python steps run on the CuPy stand-in
#                           (python tests/fake_cuda_run.py -m ...), with small sizes
#   PYTHON                  the interpreter (default python3)
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
grace=${GPUAD_CHECKS_GRACE:-5}
py=${PYTHON:-python3}
min_step=5    # a step with fewer seconds left is skipped
max_file=$((16 * 1024 * 1024))  # the most the device tool brings back of one file
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
export CUPY_CACHE_DIR=${CUPY_CACHE_DIR:-$PWD/.gpu-cache/cupy}
mkdir -p "$CUPY_CACHE_DIR"
# the logs and JSON gather here and travel packed (OUT takes few files)
work=$(mktemp -d "${TMPDIR:-/tmp}/gpu-checks.XXXXXX") || exit 2
trap 'rm -rf "$work"' EXIT
res=$work/results
mkdir -p "$res"
rm -f "$out/steps.tsv" "$out/summary.txt" "$out/results.tar.gz" "$out/gpu-cache.tar.gz"

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
    # ~2000 real-CUDA cases compiling CuPy's own kernels on a cold cache: spread over workers
    if "$py" -c "import xdist" 2> /dev/null; then
        tests+=(-n "${GPUAD_CHECKS_WORKERS:-8}")
    fi
fi

now_ms() {
    if [[ -n ${EPOCHREALTIME:-} ]]; then
        local t=${EPOCHREALTIME/./}
        echo $((t / 1000))
    else  # (bash before 5)
        echo $(( $(date +%s%N) / 1000000 ))
    fi
}
secs() {  # milliseconds as seconds with 3 decimals
    printf '%d.%03d' $(($1 / 1000)) $(($1 % 1000))
}
start=$(now_ms)
status=0
printf 'step\tstatus\tseconds\tnote\n' > "$out/steps.tsv"

record() {  # step status milliseconds note
    printf '%s\t%s\t%s\t%s\n' "$1" "$2" "$(secs "$3")" "$4" >> "$out/steps.tsv"
    printf '== %-13s %-8s %7s s  %s\n' "$1" "$2" "$(secs "$3")" "$4"
}

# pack DIR MEMBER NAME: DIR/MEMBER into OUT/NAME (via the work folder, so OUT never holds half
# an archive); status 1 and the size on stdout, OUT/NAME left as it was, when the archive is
# over the file limit
pack() {
    local dir=$1 member=$2 name=$3 size
    tar -czf "$work/$name" -C "$dir" "$member" || return 2
    size=$(stat -c %s "$work/$name")
    if (( size > max_file )); then
        echo "$size"
        rm -f "$work/$name"
        return 1
    fi
    mv -f "$work/$name" "$out/$name"
}

# step NAME CAP_SECONDS gpu|any COMMAND...
step() {
    local name=$1 cap=$2 needs=$3
    shift 3
    local override=GPUAD_CHECKS_CAP_$name
    cap=${!override:-$cap}
    if [[ $needs == gpu && -n $no_gpu ]]; then
        record "$name" skipped 0 "no usable GPU: $no_gpu"
        return
    fi
    # the step's TERM comes GRACE seconds before the budget's end at the latest, so that even
    # a step KILLed GRACE seconds later ends within it
    local left_ms=$(( budget * 1000 - ($(now_ms) - start) - grace * 1000 ))
    if (( left_ms < min_step * 1000 )); then
        record "$name" skipped 0 "budget: $(secs $(( left_ms + grace * 1000 ))) s of ${budget} s left"
        return
    fi
    local limit=$cap why="the step's cap"
    if (( left_ms < cap * 1000 )); then
        limit=$(secs "$left_ms") why="the budget's remainder"
    fi
    printf 'running %s (at most %s s) since %s s into the run\n' "$name" "$limit" \
        "$(secs $(( $(now_ms) - start )))" > "$out/summary.txt"
    local t0 rc
    t0=$(now_ms)
    timeout -k "$grace" "$limit" "$@" > "$res/$name.log" 2>&1
    rc=$?
    local ms=$(( $(now_ms) - t0 ))
    if (( rc == 0 )); then
        record "$name" passed "$ms" ""
    elif (( rc == 124 || rc == 137 )); then
        record "$name" timeout "$ms" "stopped after ${limit} s ($why)"
        status=1
    else
        record "$name" failed "$ms" "exit status $rc; see results/$name.log"
        status=1
    fi
    pack_results
}

pack_results() {
    local size
    if ! size=$(pack "$work" results results.tar.gz); then
        echo "results.tar.gz would be ${size:-?} bytes, over the $max_file the device tool" \
            "brings back: the last archive that fitted stays" >> "$out/summary.txt"
    fi
}

# gpuad's own reason why cuda:0 is unusable (empty when it is usable)
no_gpu=$(timeout -k "$grace" 60 "${run[@]}" benchmarks.gpu_steps reason "$res" 2> "$res/reason.log")
rc=$?
if (( rc != 0 )); then
    no_gpu="asking gpuad whether a GPU is usable failed (exit status $rc, see results/reason.log)"
fi
no_gpu=${no_gpu//$'\n'/ }
pack_results

step env 60 any "${run[@]}" benchmarks.gpu_steps env "$res"
step info 60 any "${run[@]}" gpuad info
step kernels 200 gpu "${run[@]}" benchmarks.gpu_steps kernels "$res"
step fused 90 gpu "${run[@]}" benchmarks.gpu_steps fused "$res"
step demo 90 gpu "${run[@]}" gpuad demo --device cuda --epochs "$epochs"
# issue 21: the demo data-parallel in a world of one, on real NCCL (two ranks need two GPUs)
step demo_nccl 90 gpu "${run[@]}" gpuad demo --distributed --backend nccl --device cuda \
    --epochs "$epochs"
step ops 90 gpu "${run[@]}" benchmarks.gpu_steps ops "$res"
# CUDA graphs on the real GPU: by hand (ad.cuda.graph: capture, replay against eager, static
# outputs, the private pool, pool sharing, each refusal of CuPy 14.2 and CUDA), matrix products
# on gpuad's own cuBLAS handle, and ad.compile's captured training steps against eager ones.
# The last two need nvmath-python (the capture extra), which the image lacks: carry its wheel
# for Python 3.12 in .whl (see the device tool's README) and it is installed below; without
# it those cases are skipped, saying so.
if compgen -G ".whl/nvmath_python-*.whl" > /dev/null; then
    "$py" -m pip install -q --no-index --no-deps --no-compile --target "$work/site" .whl/*.whl \
        && export PYTHONPATH=$PYTHONPATH:$work/site
fi
step cuda_graph 150 gpu "${tests[@]}" -v --tb=short -p no:cacheprovider -o addopts= -rfE \
    -W ignore::pytest.PytestConfigWarning -m "cuda and not standin" tests/test_cuda_graph.py \
    tests/test_capture_matmul.py tests/test_compile_cuda.py
# the real-GPU test cases only: no test that uses the stand-in, no test that needs an index
# (-W: the image may lack pytest-timeout, whose ini option would then stop pytest)
# (-v: a test's outcome is in the log as it ends, so a run the timeout stops still tells;
# a module that cannot be imported there, e.g. for want of hypothesis, leaves the others)
step pytest 200 gpu "${tests[@]}" -v --tb=short -p no:cacheprovider -o addopts= -rfE \
    --continue-on-collection-errors \
    -W ignore::pytest.PytestConfigWarning -m "cuda and not standin and not network" tests
step bench_kernels 90 gpu "${run[@]}" benchmarks run --suite kernels --device cuda \
    --frameworks gpuad "${quick[@]}" --out "$res/{machine}-kernels.json"
# ad.compile's captured steps against PyTorch eager, its manual CUDA graph and torch.compile
step bench_compile 120 gpu "${run[@]}" benchmarks run --suite compiled_mlp_step \
    --suite compiled_chain --frameworks gpuad,torch,torch_graph --device cuda "${quick[@]}" \
    --out "$res/{machine}-compiled.json"
step bench_suites 200 gpu "${run[@]}" benchmarks run --suite mlp_step --suite op_overhead \
    --suite big_elementwise --frameworks gpuad,torch --device cuda "${quick[@]}" \
    --out "$res/{machine}-suites.json"

# CuPy's kernel cache, for the next run to carry
t0=$(now_ms)
files=$(find "$CUPY_CACHE_DIR" -type f | wc -l)
if (( files == 0 )); then
    record gpu_cache skipped 0 "CUPY_CACHE_DIR is empty: no kernel was compiled"
elif size=$(pack "$CUPY_CACHE_DIR" . gpu-cache.tar.gz); then
    record gpu_cache passed $(( $(now_ms) - t0 )) \
        "$files files in gpu-cache.tar.gz ($(stat -c %s "$out/gpu-cache.tar.gz") bytes)"
else
    record gpu_cache skipped $(( $(now_ms) - t0 )) \
        "$files files, ${size:-?} bytes packed: over the $max_file bytes the device tool brings back, left out"
fi
cp "$out/steps.tsv" "$res/steps.tsv"
{
    printf 'total %s s of a %d s budget (+%d s grace); exit status %d\n' \
        "$(secs $(( $(now_ms) - start )))" "$budget" "$grace" "$status"
    cut -f 2 "$out/steps.tsv" | tail -n +2 | sort | uniq -c
} > "$out/summary.txt"
cp "$out/summary.txt" "$res/summary.txt"
pack_results
cat "$out/summary.txt"
exit $status
