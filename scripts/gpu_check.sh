#!/usr/bin/env bash
# One-command GPU check for backend_mlp, on a machine with an NVIDIA GPU and no network.
#
# It uses the Python that has CuPy, PyTorch (CUDA) and JAX (CUDA) installed (--python, default
# python3) as it is: no virtualenv, no build, nothing installed into that Python. The pure-Python
# packages it lacks (array-api-compat, and array-api-strict, pytest, hypothesis, ... where missing)
# are unpacked from a folder of wheels prepared beforehand into a throwaway folder put first on
# PYTHONPATH, with this checkout after it. It then runs the numeric test files (NUMERIC_TESTS in
# noxfile.py) and the compiled-step and JAX tests on each GPU backend found (cupy, torch_cuda,
# jax_gpu; side by side, at most 5 minutes), then the GPU benchmark and a CPU reference for the GPU's
# speed-up (BENCH_ARGS, CPU_BENCH_ARGS below), all within 8 minutes, and writes one results file pair,
# gpu_check_results/<host>-<UTC time>.json and .md, that docs/benchmarks.md quotes. A GPU library that is missing or sees no GPU is reported as such and
# its backend skipped; the others still run.
#
# Prepare the wheel folder once, on any machine with a package registry (pure-Python wheels; the
# list covers pytest and hypothesis where they are missing):
#
#   pip download --only-binary=:all: --no-deps --python-version 3.12 --platform manylinux_2_28_x86_64 \
#       --dest wheels array-api-compat array-api-strict tqdm threadpoolctl pytest pluggy iniconfig \
#       packaging pygments hypothesis attrs sortedcontainers
#
# then copy it next to the checkout on the GPU machine and run
#
#   bash scripts/gpu_check.sh --wheels wheels
#
# (relative --wheels and --out are taken from the folder the command is run in).
# Exit status: 0 all found backends passed and the benchmark ran; 1 a test run or the benchmark
# failed or timed out, or no GPU backend works (the results files say which); 2 bad usage, a wheel
# folder that lacks a needed package, or a Python that cannot run the check; 3 no NVIDIA GPU.
set -euo pipefail

PROG="gpu_check"
BUDGET_SECONDS=480              # the whole check, installation included
TEST_CAP_SECONDS=300            # at most this for the test runs (the backends run side by side)
BENCH_RESERVE_SECONDS=160       # kept for the benchmarks (GPU, then the CPU reference)
CPU_RESERVE_SECONDS=40          # of which the CPU reference's
# the GPU benchmark: backend_mlp's paths against PyTorch on the same GPU (see `backend-mlp bench --help`): train()
# on --device, the first GPU backend found (CuPy `gpu`, else PyTorch `torch:cuda`, else JAX `jax:gpu`), and on
# PyTorch and JAX on that GPU, eager and compiled; then, time allowing, train() on this machine's CPU (NumPy) on
# the wide network, for the GPU's speed-up over it
# (float32 only, and no functional-API column: the compiles alone take minutes on a GPU)
BENCH_ARGS=(--workloads report,wide2048-b1024 --dtypes float32 --parts steps --no-functional
            --sides bm,bm-torch,bm-jax,bm-torch-compile,torch,torch-compile
            --repeats 3 --min-seconds 0.5 --no-side-memory)
CPU_BENCH_ARGS=(--device cpu --workloads wide2048-b1024:float32 --dtypes float32 --parts steps --sides bm
                --no-compile --no-functional --no-side-memory --no-bound --repeats 3 --min-seconds 0.5)
GPU_BACKENDS=(cupy torch_cuda jax_gpu)
declare -A BENCH_DEVICE=([cupy]=gpu [torch_cuda]=torch:cuda [jax_gpu]=jax:gpu)
# test files run on the GPU backends besides NUMERIC_TESTS (noxfile.py)
EXTRA_TESTS="tests/test_compile.py tests/test_jax_backend.py"

usage() {
    cat <<EOF
usage: bash scripts/gpu_check.sh --wheels DIR [--out DIR] [--python PYTHON]

Test backend_mlp on this machine's NVIDIA GPU (CuPy, PyTorch CUDA, JAX GPU) and benchmark it,
offline, in about 8 minutes; writes OUT/<host>-<time>.json and .md (default OUT: gpu_check_results).

  --wheels DIR     folder of wheels for the pure-Python dependencies (array-api-compat,
                   array-api-strict, pytest, ...); prepare it on a machine with a registry:
                     pip download --only-binary=:all: --no-deps --python-version 3.12 \\
                       --platform manylinux_2_28_x86_64 --dest wheels array-api-compat \\
                       array-api-strict tqdm threadpoolctl pytest pluggy iniconfig \\
                       packaging pygments hypothesis attrs sortedcontainers
  --out DIR        where the results files go (default: gpu_check_results)
  --python PYTHON  the Python that has CuPy / PyTorch / JAX (default: python3)
  -h, --help       this help
EOF
}

die() {  # one readable line, then the exit status
    echo "$PROG: $2" >&2
    exit "$1"
}

WHEELS=""
OUT="gpu_check_results"
PYTHON="python3"
while [[ $# -gt 0 ]]; do
    case "$1" in
        --wheels) [[ $# -ge 2 ]] || die 2 "--wheels needs a folder"; WHEELS="$2"; shift 2 ;;
        --out) [[ $# -ge 2 ]] || die 2 "--out needs a folder"; OUT="$2"; shift 2 ;;
        --python) [[ $# -ge 2 ]] || die 2 "--python needs an interpreter"; PYTHON="$2"; shift 2 ;;
        -h|--help) usage; exit 0 ;;
        *) die 2 "unknown argument '$1' (see --help)" ;;
    esac
done

START=$(date +%s)
remaining() { echo $(( BUDGET_SECONDS - ($(date +%s) - START) )); }

if ! command -v nvidia-smi >/dev/null 2>&1 || ! nvidia-smi -L 2>/dev/null | grep -q "^GPU"; then
    die 3 "no NVIDIA GPU found (nvidia-smi is missing or lists no GPU); run this on a machine with an NVIDIA GPU"
fi
[[ -n "$WHEELS" ]] || die 2 "--wheels DIR is required (see --help for the command that prepares it)"
# relative folders are the caller's, so they are resolved before moving to the checkout
[[ -d "$WHEELS" ]] || die 2 "--wheels: received '$WHEELS'; expected a folder of wheels"
WHEELS=$(cd "$WHEELS" && pwd)
mkdir -p "$OUT" 2>/dev/null || die 2 "--out: received '$OUT'; expected a folder that can be created"
OUT=$(cd "$OUT" && pwd)
command -v "$PYTHON" >/dev/null 2>&1 || die 2 "--python: received '$PYTHON'; expected a Python interpreter"
cd "$(dirname "$0")/.."
ROOT=$(pwd)

STAMP="$(hostname -s 2>/dev/null || hostname)-$(date -u +%Y%m%dT%H%M%SZ)"
WORK=$(mktemp -d "${TMPDIR:-/tmp}/gpu_check.XXXXXX")
trap 'rm -rf "$WORK"' EXIT

# The missing pure-Python packages, unpacked from their wheels into $WORK/site (a pure-Python wheel is a zip
# of what goes on sys.path): no pip, no virtualenv, no build of the checkout, nothing written into $PYTHON.
echo "$PROG: adding the pure-Python packages $PYTHON lacks from $WHEELS (offline)"
PY="$PYTHON"
mkdir -p "$WORK/site"
export PYTHONPATH="$WORK/site:$ROOT${PYTHONPATH:+:$PYTHONPATH}"
if ! "$PY" - "$WHEELS" "$WORK/site" >"$WORK/install.log" 2>&1 <<'EOF'
import importlib
import importlib.metadata as md
import os
import re
import shutil
import sys
import zipfile

wheels, site = sys.argv[1:]
if sys.version_info < (3, 10):
    sys.exit(f"backend_mlp needs Python 3.10 or newer; this is {sys.version.split()[0]}")


def key(name):
    return re.sub(r"[-_.]+", "_", name).lower()


def version_key(version):
    return [int(part) if part.isdigit() else -1 for part in re.split(r"[.+-]", version)]


installed = {key(d.metadata["Name"] or "") for d in md.distributions()}
newest = {}
for name in os.listdir(wheels):
    parts = name[:-4].split("-") if name.endswith(".whl") else []
    if len(parts) < 5:
        continue
    dist, version, tag = key(parts[0]), parts[1], "-".join(parts[-3:])
    if not tag.endswith("-none-any"):
        print(f"skipped {name}: not a pure-Python wheel")
        continue
    if dist not in newest or version_key(version) > version_key(newest[dist][0]):
        newest[dist] = (version, name)
os.makedirs(site, exist_ok=True)
for dist, (version, name) in sorted(newest.items()):
    if dist in installed:
        continue
    with zipfile.ZipFile(os.path.join(wheels, name)) as wheel:
        wheel.extractall(site)
    for data in [d for d in os.listdir(site) if d.endswith(".data")]:  # <name>.data/purelib: also importable
        for lib in ("purelib", "platlib"):
            folder = os.path.join(site, data, lib)
            if os.path.isdir(folder):
                shutil.copytree(folder, site, dirs_exist_ok=True)
        shutil.rmtree(os.path.join(site, data))
    print(f"unpacked {name}")
importlib.invalidate_caches()
missing = []
for module in ("numpy", "array_api_compat", "array_api_strict", "tqdm", "threadpoolctl", "matplotlib", "pytest",
               "hypothesis", "backend_mlp"):
    try:
        __import__(module)
    except Exception as exc:  # noqa: BLE001 - reported, one line each
        missing.append(f"{module} ({type(exc).__name__}: {exc})")
if missing:
    sys.exit("cannot import " + "; ".join(missing))
EOF
then
    tail -n 3 "$WORK/install.log" >&2
    die 2 "the packages from $WHEELS are not enough for $PYTHON (above); add the missing wheels with the command in --help"
fi

# which GPU backends this machine has (the tests' names: tests/conftest.py)
declare -A PROBE=(
    [cupy]="import cupy; assert cupy.cuda.runtime.getDeviceCount() > 0"
    [torch_cuda]="import torch; assert torch.cuda.is_available()"
    [jax_gpu]="import jax; assert jax.devices('gpu')"
)
NUMERIC_TESTS=$("$PY" - <<'EOF'
import ast
tree = ast.parse(open("noxfile.py").read())
for node in tree.body:
    if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "NUMERIC_TESTS" for t in node.targets):
        print(" ".join(ast.literal_eval(node.value)))
EOF
)
[[ -n "$NUMERIC_TESTS" ]] || die 2 "could not read NUMERIC_TESTS from noxfile.py"

for b in "${GPU_BACKENDS[@]}"; do
    if XLA_PYTHON_CLIENT_PREALLOCATE=false timeout --kill-after=5 60 "$PY" -c "${PROBE[$b]}" \
        >"$WORK/probe-$b.log" 2>&1; then
        echo "found" >"$WORK/status-$b"
    else
        echo "not available: $(tail -n 1 "$WORK/probe-$b.log")" >"$WORK/status-$b"
        echo "$PROG: $b not available here ($(tail -n 1 "$WORK/probe-$b.log"))"
    fi
done

run_tests() {  # backend, time limit: the numeric test files on one backend, outcome in $WORK/rc-<backend>
    local b=$1 limit=$2 t0 rc=0
    t0=$(date +%s)
    # shellcheck disable=SC2086  # NUMERIC_TESTS is a list of paths
    BACKEND_MLP_TEST_BACKENDS=$b XLA_PYTHON_CLIENT_PREALLOCATE=false \
        timeout --signal=INT --kill-after=15 "$limit" \
        "$PY" -m pytest -v -m "not slow" -p no:cacheprovider $NUMERIC_TESTS $EXTRA_TESTS \
        >"$WORK/pytest-$b.log" 2>&1 || rc=$?
    echo "$rc $(( $(date +%s) - t0 ))" >"$WORK/rc-$b"
}

# the backends' test runs side by side (one GPU, separate processes; JAX does not preallocate)
limit=$(( $(remaining) - BENCH_RESERVE_SECONDS ))
(( limit > TEST_CAP_SECONDS )) && limit=$TEST_CAP_SECONDS
(( limit < 30 )) && limit=30
FOUND=()
for b in "${GPU_BACKENDS[@]}"; do
    [[ "$(cat "$WORK/status-$b")" == "found" ]] && FOUND+=("$b")
done
(( ${#FOUND[@]} > 0 )) || echo "$PROG: none of ${GPU_BACKENDS[*]} works here; nothing to test"
for b in "${FOUND[@]}"; do
    echo "$PROG: tests on $b (at most ${limit}s)"
    run_tests "$b" "$limit" &
done
wait
FAILED=0
(( ${#FOUND[@]} > 0 )) || FAILED=1
for b in "${FOUND[@]}"; do
    read -r rc _ <"$WORK/rc-$b"
    echo "$PROG: $b: $(tail -n 1 "$WORK/pytest-$b.log")"
    (( rc == 0 )) || FAILED=1
done

# timeout's 15 s grace and the results files stay within the budget, and the CPU reference keeps its share
limit=$(( $(remaining) - 25 - CPU_RESERVE_SECONDS ))
if (( ${#FOUND[@]} == 0 )); then
    echo "1 0" >"$WORK/rc-bench"; echo "not run: no GPU backend works here" >"$WORK/bench.log"
elif (( limit >= 30 )); then
    BENCH_ARGS=(--device "${BENCH_DEVICE[${FOUND[0]}]}" "${BENCH_ARGS[@]}")
    echo "$PROG: benchmark (at most ${limit}s): backend-mlp bench ${BENCH_ARGS[*]}"
    t0=$(date +%s)
    rc=0
    # JAX shares the GPU with CuPy and PyTorch in this one process: no preallocation of most of its memory
    XLA_PYTHON_CLIENT_PREALLOCATE=false timeout --signal=INT --kill-after=15 "$limit" \
        "$PY" -m backend_mlp bench "${BENCH_ARGS[@]}" --json "$WORK/bench.json" >"$WORK/bench.log" 2>&1 || rc=$?
    echo "$rc $(( $(date +%s) - t0 ))" >"$WORK/rc-bench"
    (( rc == 0 )) || FAILED=1
else
    echo "124 0" >"$WORK/rc-bench"; echo "not run: the 8-minute budget was spent" >"$WORK/bench.log"; FAILED=1
fi
limit=$(( $(remaining) - 25 ))
read -r bench_rc _ <"$WORK/rc-bench"
if (( bench_rc == 0 && limit >= 30 )); then  # a speed-up needs the GPU's figure
    echo "$PROG: CPU reference (at most ${limit}s): backend-mlp bench ${CPU_BENCH_ARGS[*]}"
    t0=$(date +%s)
    rc=0
    timeout --signal=INT --kill-after=15 "$limit" "$PY" -m backend_mlp bench "${CPU_BENCH_ARGS[@]}" \
        --json "$WORK/cpu-bench.json" >"$WORK/cpu-bench.log" 2>&1 || rc=$?
    echo "$rc $(( $(date +%s) - t0 ))" >"$WORK/rc-cpu-bench"
fi

# one results file pair, written whole (temporary name, then rename)
"$PY" - "$WORK" "$OUT" "$STAMP" "$(( $(date +%s) - START ))" "${BENCH_ARGS[*]}" "${GPU_BACKENDS[@]}" <<'EOF'
import importlib.metadata as md
import json
import os
import platform
import re
import socket
import subprocess
import sys

work, out, stamp, seconds, bench_args, *backends = sys.argv[1:]
OUTCOME = re.compile(r"^(\S+?::.+?) (PASSED|FAILED|ERROR|SKIPPED|XFAIL|XPASS)\b")


def read(name, default=""):
    path = os.path.join(work, name)
    return open(path, encoding="utf-8", errors="replace").read() if os.path.exists(path) else default


def smi(query):
    try:
        return subprocess.run(["nvidia-smi", f"--query-gpu={query}", "--format=csv,noheader"], capture_output=True,
                              text=True, timeout=30).stdout.strip().splitlines()
    except (OSError, subprocess.SubprocessError):
        return []


def version(name):
    try:
        return md.version(name)
    except md.PackageNotFoundError:
        return None


cuda_line = next((line for line in subprocess.run(["nvidia-smi"], capture_output=True, text=True).stdout.splitlines()
                  if "CUDA Version" in line), "")
machine = {
    "host": socket.gethostname(), "platform": platform.platform(), "python": platform.python_version(),
    "cpu": platform.processor() or platform.machine(), "cpu_count": os.cpu_count(),
    "gpus": smi("name,memory.total"), "driver": (smi("driver_version") or [None])[0],
    "cuda_driver_api": cuda_line.split("CUDA Version:")[-1].strip(" |") if cuda_line else None,
}
libraries = {name: version(name) for name in (
    "backend_mlp", "numpy", "array-api-compat", "array-api-strict", "cupy", "cupy-cuda12x", "cupy-cuda13x", "torch",
    "jax", "jaxlib", "jax-cuda12-plugin", "jax-cuda13-plugin", "pytest", "hypothesis")}
libraries = {k: v for k, v in libraries.items() if v is not None}
try:
    commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip() or None
except OSError:
    commit = None

tests = {}
for b in backends:
    status = read(f"status-{b}").strip()
    entry = {"status": status}
    if os.path.exists(os.path.join(work, f"rc-{b}")):
        rc, secs = read(f"rc-{b}").split()
        entry.update(exit_code=int(rc), seconds=int(secs))
        entry["status"] = {"0": "passed", "124": "timed out", "137": "timed out"}.get(rc, "failed")
        log = read(f"pytest-{b}.log").splitlines()
        # pytest -v prints "tests/x.py::test[param] PASSED [ 3%]": counted from the log, so a run that was
        # killed at the time limit still reports what it ran
        outcomes = [m.group(2) for m in map(OUTCOME.match, log) if m]
        counts = {k: outcomes.count(k.upper()) for k in ("passed", "failed", "error", "skipped", "xfail", "xpass")}
        entry["counts"] = {"tests": len(outcomes), **counts}
        entry["summary"] = (log or [""])[-1]
        entry["failed"] = [m.group(1) for m in map(OUTCOME.match, log) if m and m.group(2) in ("FAILED", "ERROR")]
        entry["log_tail"] = log[-150:]
    tests[b] = entry

rc, secs = read("rc-bench", "124 0").split()
bench = {"command": f"backend-mlp bench {bench_args}", "exit_code": int(rc), "seconds": int(secs),
         "status": {"0": "ran", "124": "timed out", "137": "timed out"}.get(rc, "failed"), "output": read("bench.log")[-8000:]}
if bench["output"].startswith("not run"):
    bench["status"] = "not run"
try:
    bench["results"] = json.loads(read("bench.json"))
except ValueError:
    pass
try:
    cpu_reference = json.loads(read("cpu-bench.json"))
except ValueError:
    cpu_reference = None
cpu_rc, cpu_secs = read("rc-cpu-bench", "- 0").split()
cpu_status = {"-": "not run", "0": "ran", "124": "timed out", "137": "timed out"}.get(cpu_rc, "failed")


def per_step(record, side):
    return (record.get(side) or {}).get("us_per_step_median")


def acceptance(gpu, cpu):
    """The issue's GPU figures: each report-network record's fastest backend_mlp path over PyTorch CUDA eager, and
    the CPU's train() (NumPy) over the fastest GPU path on [784, 2048, 2048, 10] at batch 1024, float32."""
    out = []
    records = [r for r in (gpu or {}).get("results", []) if r.get("part") == "steps"]
    for r in records:
        best = r.get("fastest_backend_mlp", "backend_mlp")
        if r["workload"] == "report" and per_step(r, best) and per_step(r, "torch"):
            out.append({"what": f"report {r['dtype']}: fastest backend_mlp path ({best}) / PyTorch CUDA eager",
                        "value": per_step(r, best) / per_step(r, "torch"), "target": "<= 1.0"})
    wide = next((r for r in records if r["workload"] == "wide2048-b1024" and r["dtype"] == "float32"), None)
    cpu_wide = next((r for r in (cpu or {}).get("results", []) if r.get("part") == "steps"
                     and r.get("workload") == "wide2048-b1024" and r.get("dtype") == "float32"), None)
    if wide and cpu_wide and per_step(cpu_wide, "backend_mlp"):
        best = wide.get("fastest_backend_mlp", "backend_mlp")
        out.append({"what": f"wide2048-b1024 float32: CPU train() (NumPy) / fastest GPU backend_mlp path ({best})",
                    "value": per_step(cpu_wide, "backend_mlp") / per_step(wide, best), "target": ">= 20"})
    return out

figures = acceptance(bench.get("results"), cpu_reference)
result = {"stamp": stamp, "commit": commit, "seconds": int(seconds), "machine": machine, "libraries": libraries,
          "tests": tests, "benchmark": bench, "cpu_reference": cpu_reference,
          "cpu_reference_status": {"status": cpu_status, "seconds": int(cpu_secs)},
          "cpu_reference_output": read("cpu-bench.log")[-4000:], "figures": figures}

lines = [f"# GPU check {stamp}", "",
         f"Commit `{commit}`; {machine['platform']}, Python {machine['python']}; "
         f"GPU {', '.join(machine['gpus']) or '?'}; driver {machine['driver']}, CUDA {machine['cuda_driver_api']}; "
         f"{int(seconds)} s in all.", "",
         "Libraries: " + ", ".join(f"{k} {v}" for k, v in libraries.items()) + ".", "",
         "| backend | status | tests run | passed | failed | errors | skipped | seconds |",
         "|---|---|---|---|---|---|---|---|"]
for b, e in tests.items():
    c = e.get("counts", {})
    lines.append(f"| {b} | {e['status']} | {c.get('tests', '')} | {c.get('passed', '')} | {c.get('failed', '')} "
                 f"| {c.get('error', '')} | {c.get('skipped', '')} | {e.get('seconds', '')} |")
for b, e in tests.items():
    if e.get("failed"):
        lines += ["", f"Failures on {b}:", ""] + [f"- `{line}`" for line in e["failed"]]
lines += ["", f"Benchmark (`{bench['command']}`): {bench['status']} in {bench['seconds']} s.", "", "```",
          bench["output"].strip()[-6000:], "```", ""]
lines += ["The issue's GPU figures:" if figures else "The issue's GPU figures: not measured (no benchmark record).", ""]
lines += [f"- {f['what']}: {f['value']:.3f} (target {f['target']})" for f in figures]
lines += ["", f"CPU reference (`backend-mlp bench` on the CPU, for the speed-up): {cpu_status} in {cpu_secs} s"
          + (" (it runs only after a GPU benchmark that completed)" if cpu_status == "not run" else "") + "."]
if read("cpu-bench.log"):
    lines += ["", "```", read("cpu-bench.log").strip()[-3000:], "```", ""]

for suffix, text in ((".json", json.dumps(result, indent=2) + "\n"), (".md", "\n".join(lines))):
    path = os.path.join(out, stamp + suffix)
    with open(path + ".tmp", "w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(path + ".tmp", path)
print(f"gpu_check: wrote {os.path.join(out, stamp)}.json and .md")
EOF

exit "$FAILED"
