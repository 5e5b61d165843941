#!/usr/bin/env bash
# Rebuild the C extension with AddressSanitizer + UndefinedBehaviorSanitizer in a copy of the
# tree, then run the C backend's tests and a fuzz profile against it. Any sanitizer report
# aborts the process, so the script fails. Needs gcc (libasan, libubsan) and the test extra.
#
#   bash scripts/sanitize.sh                 # C tests + fuzz profile on backend c
#   bash scripts/sanitize.sh tests/test_x.py # other tests instead
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# a copy of what the build and the tests read; the sanitized library lands in it alone
cp -r fastconv csrc tests pyproject.toml "$work/"
rm -f "$work"/fastconv/_fastconv_c*.so
find "$work" -name __pycache__ -prune -exec rm -rf {} +
(cd "$work" && FASTCONV_SANITIZE=1 python csrc/build_ffi.py)

asan=$(gcc -print-file-name=libasan.so)
ubsan=$(gcc -print-file-name=libubsan.so)
[ -f "$asan" ] && [ -f "$ubsan" ] || { echo "sanitize: libasan/libubsan not found" >&2; exit 2; }

# Python itself is not instrumented: leak reports would be CPython's, so leaks are off;
# every other report aborts the test run
# reports go to files (pytest captures stderr, and an aborted process loses it): printed below
export ASAN_OPTIONS="detect_leaks=0:abort_on_error=1:halt_on_error=1:detect_odr_violation=0:log_path=$work/report"
export UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1:log_path=$work/report"
export PYTHONPATH="$work" FASTCONV_POISON=1 FASTCONV_FUZZ_BACKENDS=c
tests=("$@")
if [ ${#tests[@]} -eq 0 ]; then
  tests=(tests/test_c_conv.py tests/test_c_pool.py tests/test_filter2d.py tests/test_winograd.py
         tests/test_fused.py tests/test_threads.py tests/test_index64.py tests/test_edge.py
         tests/test_nonfinite.py tests/test_fuzz.py tests/test_conv_direct.py tests/test_linear.py)
fi
cd "$work"
LD_PRELOAD="$asan:$ubsan" python - "$work" <<'PY'
import sys
import fastconv.backends.c as c
assert c.AVAILABLE_REASON == "available", c.AVAILABLE_REASON
path = sys.modules["fastconv._fastconv_c"].__file__
assert path.startswith(sys.argv[1]), f"not the sanitized build: {path}"
print("sanitized library:", path)
PY
status=0
LD_PRELOAD="$asan:$ubsan" python -m pytest -q -p no:cacheprovider -x \
  -k "not numba and not cuda and not torch_oracle" "${tests[@]}" || status=$?
if compgen -G "$work/report*" >/dev/null; then
  cat "$work"/report* >&2
  echo "sanitize: the sanitizers reported an error (above)" >&2
  exit 1
fi
[ "$status" -eq 0 ] || { echo "sanitize: the tests failed (exit $status)" >&2; exit "$status"; }
echo "sanitize: no report ($root)"
