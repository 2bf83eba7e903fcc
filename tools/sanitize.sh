#!/usr/bin/env bash
# Build fastnn with AddressSanitizer + UndefinedBehaviorSanitizer (FASTNN_SANITIZE, see setup.py) into a
# fresh virtual environment and run the test suite under it.
#
#   bash tools/sanitize.sh                       # the whole suite
#   bash tools/sanitize.sh -k "kernels or layers"
#   bash tools/sanitize.sh test_conv.py test_pool.py -x
#
# Arguments go to pytest unchanged (run from tests/, like the normal suite). Environment:
#   FASTNN_SANITIZE_VENV  the virtual environment to (re)create (default: .venv-asan in the repository root)
#   CC                    the C compiler (default gcc); its libasan/libubsan are the ones preloaded
#   PYTHON                the interpreter that creates the venv (default python3)
#   FASTNN_SANITIZE       what to instrument (default address,undefined)
#
# Python itself is not instrumented, so the sanitizer runtimes are LD_PRELOADed (ASan must be the first
# library in the process). Leak detection is off: CPython's and NumPy's allocations that live until exit
# would be reported as leaks.
#
# PyTorch is installed too (the parity tests are our widest cross-checks of the kernels): torch 2.13.0 CPU
# runs cleanly with the runtimes preloaded (no crash, no report over the whole suite). nvcc does not (it
# segfaults), so test_cuda runs it without LD_PRELOAD. No suppressions file is needed (none of the
# reports seen came from code that is not ours). Not covered: uninitialised reads (MemorySanitizer needs
# clang and an instrumented Python/NumPy).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

CC=${CC:-gcc}
PYTHON=${PYTHON:-python3}
VENV=${FASTNN_SANITIZE_VENV:-$ROOT/.venv-asan}
export FASTNN_SANITIZE=${FASTNN_SANITIZE:-address,undefined}
export CC

runtimes=()
libs=()
case ",$FASTNN_SANITIZE," in *,1,*|*,address,*) libs+=(libasan.so) ;; esac
case ",$FASTNN_SANITIZE," in *,1,*|*,undefined,*) libs+=(libubsan.so) ;; esac
for lib in "${libs[@]}"; do
    path=$("$CC" -print-file-name="$lib")
    if [[ $path != /* || ! -e $path ]]; then
        echo "sanitize.sh: $CC has no $lib (this script uses GCC's sanitizer runtimes)" >&2
        exit 2
    fi
    runtimes+=("$path")
done

# Build from a copy of the working tree without build outputs: setuptools reuses the objects in build/
# when they look newer than their sources, so an in-tree build could link -O3 objects from a normal
# build into this one (and leave instrumented ones behind for the next normal build).
SRC=$(mktemp -d "${TMPDIR:-/tmp}/fastnn-asan-src.XXXXXX")
trap 'rm -rf "$SRC"' EXIT
tar -C "$ROOT" -cf - --exclude=./build --exclude='./.venv*' --exclude='./dist' --exclude='*.egg-info' \
    --exclude='*.so' --exclude='*.o' --exclude=./fastnn/_core.c --exclude=./.git . | tar -C "$SRC" -xf -

"$PYTHON" -m venv --clear "$VENV"
. "$VENV/bin/activate"
start=$SECONDS
# --no-cache-dir: never reuse a wheel built by an earlier (normal or sanitized) install.
python -m pip install -q --no-cache-dir "$SRC[test]" torch==2.13.0
echo "sanitize.sh: built and installed with FASTNN_SANITIZE=$FASTNN_SANITIZE in $((SECONDS - start)) s"

export LD_PRELOAD="${runtimes[*]}${LD_PRELOAD:+ $LD_PRELOAD}"
# abort_on_error: a core-dump-style abort so pytest's run dies visibly; allocator_may_return_null: huge
# allocations become MemoryError as without ASan instead of an ASan report.
export ASAN_OPTIONS="detect_leaks=0:abort_on_error=1:allocator_may_return_null=1:detect_stack_use_after_return=1${ASAN_OPTIONS:+:$ASAN_OPTIONS}"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1${UBSAN_OPTIONS:+:$UBSAN_OPTIONS}"

cd "$ROOT/tests"
python -c "import fastnn; fastnn.show_config()"
start=$SECONDS
status=0
# --capture=sys: pytest's default fd capture would swallow a sanitizer report written to fd 2 by a process
# that then exits; with sys capture, Python output is still captured per test but reports reach the terminal.
python -m pytest -q -p no:cacheprovider --capture=sys "$@" || status=$?
echo "sanitize.sh: pytest took $((SECONDS - start)) s (exit status $status)"
exit $status
