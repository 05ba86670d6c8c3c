#!/usr/bin/env bash
# GPU check, under ten minutes: supernet training step time on one GPU, one-shot evaluations per minute on CUDA
# (bench_eval.py's proxy part), a generation evaluated together (bench_prefix.py: the prefix tree with its branches
# batched, narrow and one at a time), and DDP scaling (torchrun with 1 process vs one per GPU). Installs nothing.
#
#   bash benchmarks/gpu_check.sh [--python PY] [--cpu-dry-run]
#
# --python PY     the interpreter the project is installed in (default: python)
# --cpu-dry-run   tiny settings on the CPU (gloo, 2 processes) to check the script itself without a GPU
set -uo pipefail

usage() { sed -n '2,8p' "$0" | sed 's/^# \{0,1\}//'; }

PY=python
DRY=0
while [ $# -gt 0 ]; do
    case "$1" in
        --python) [ $# -ge 2 ] || { echo "gpu_check: --python needs an interpreter path" >&2; exit 2; }; PY=$2; shift ;;
        --cpu-dry-run) DRY=1 ;;
        -h|--help) usage; exit 0 ;;
        *) echo "gpu_check: unknown argument '$1' (see --help)" >&2; exit 2 ;;
    esac
    shift
done
cd "$(dirname "$0")/.." || exit 2

if [ "$DRY" = 0 ]; then
    if ! command -v nvidia-smi >/dev/null 2>&1; then
        echo "gpu_check: no NVIDIA GPU here (nvidia-smi not found): run it on a machine with NVIDIA GPUs, or pass --cpu-dry-run" >&2
        exit 1
    fi
    NGPU=$("$PY" -c 'import torch; print(torch.cuda.device_count() if torch.cuda.is_available() else 0)' 2>/dev/null)
    if [ -z "$NGPU" ] || [ "$NGPU" -lt 1 ]; then
        echo "gpu_check: torch (from $PY) sees no CUDA GPU: install the CUDA build of torch in the project's environment, or pass --python" >&2
        exit 1
    fi
    DEVICE=cuda
    TRAIN=(--device cuda --resolution 224 --width 1.0 --batch 128 --steps 40 --epochs 2 --workers 4)
    EVAL=(--part proxy --device cuda --amp --archs 30 --repeats 3)
    PREFIX=(--device cuda --amp --quick --parts ab)
    T_STEP=130; T_EVAL=130; T_DDP=120; T_PREFIX=90  # at most 590 s in all, DDP run twice
else
    NGPU=2  # CPU processes on gloo
    DEVICE=cpu
    TRAIN=(--device cpu --resolution 16 --width 0.25 --batch 8 --steps 3 --epochs 1 --workers 0)
    EVAL=(--part proxy --device cpu --data digits --archs 2 --repeats 1)
    PREFIX=(--device cpu --parts a --repeats 1)
    T_STEP=120; T_EVAL=120; T_DDP=120; T_PREFIX=120
fi

echo "== gpu_check ($([ "$DRY" = 1 ] && echo "CPU dry run, tiny settings" || echo "$NGPU GPU(s)")), $(date -u '+%Y-%m-%d %H:%M UTC')"
echo "machine: $(nproc) CPUs,$(uptime | sed 's/.*load average/ load average/')"
if [ "$DRY" = 0 ]; then
    nvidia-smi --query-gpu=index,name,memory.total,driver_version --format=csv,noheader | sed 's/^/gpu: /'
fi
"$PY" -c 'import torch; print(f"torch {torch.__version__}, CUDA {torch.version.cuda}, cuDNN {torch.backends.cudnn.version()}")'

FAILED=0
run() {  # run LIMIT CMD...: one part, bounded in time
    local limit=$1; shift
    timeout "$limit" "$@"
    local rc=$?
    if [ $rc -ne 0 ]; then
        echo "   (failed: exit $rc$([ $rc = 124 ] && echo ", over ${limit}s"))"
        FAILED=1
    fi
    return $rc
}

echo "-- 1. supernet training step time, one $DEVICE device"
run "$T_STEP" "$PY" benchmarks/bench_gpu.py step "${TRAIN[@]}"

echo "-- 2. one-shot evaluations per minute (bench_eval.py proxy part)"
run "$T_EVAL" "$PY" benchmarks/bench_eval.py "${EVAL[@]}"

echo "-- 3. a generation evaluated together (bench_prefix.py: together, tree narrow, one at a time)"
run "$T_PREFIX" "$PY" benchmarks/bench_prefix.py "${PREFIX[@]}"

echo "-- 4. DDP scaling (torchrun, 1 process vs $NGPU)"
declare -A IPS
for n in $(printf '%s\n' 1 "$NGPU" | sort -un); do
    out=$(run "$T_DDP" "$PY" -m torch.distributed.run --standalone --nproc_per_node="$n" benchmarks/bench_gpu.py ddp "${TRAIN[@]}" 2>&1)
    rc=$?
    [ $rc -ne 0 ] && FAILED=1
    echo "$out" | grep -E '^ddp:|failed' || echo "$out" | tail -5
    IPS[$n]=$(echo "$out" | sed -n 's/.*images\/s \([0-9.]*\).*/\1/p' | tail -1)
done
if [ "$NGPU" -gt 1 ] && [ -n "${IPS[1]:-}" ] && [ -n "${IPS[$NGPU]:-}" ]; then
    awk -v one="${IPS[1]}" -v all="${IPS[$NGPU]}" -v n="$NGPU" \
        'BEGIN { printf "DDP scaling: %.1f -> %.1f images/s on %d processes = %.2fx (efficiency %.0f %%)\n", one, all, n, all / one, 100 * all / one / n }'
elif [ "$NGPU" -le 1 ]; then
    echo "DDP scaling: one GPU only, nothing to scale to"
fi

[ "$FAILED" = 0 ] && echo "== gpu_check done" || echo "== gpu_check done, with failures (above)"
exit "$FAILED"
