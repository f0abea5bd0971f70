#!/usr/bin/env bash
# Exact figures for the echo servers (BENCHMARKING.md, "Exact figures on a noisy
# machine"): user-space instructions per request under valgrind --tool=callgrind
# (short and long load, difference over difference) and syscalls per request under
# perf stat -e raw_syscalls:sys_enter, for raw mio, tokio and tether, same binary,
# same run. Arguments go to the bench, e.g.
#   benches/exact.sh --servers mio,tokio,tether,tether-idle --depth 1
# See `cargo bench -p tether-bench --bench echo -- --help` for all of them.
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
command -v valgrind >/dev/null || missing+=("valgrind (apt-get install valgrind)")
command -v perf >/dev/null || missing+=("perf (apt-get install linux-perf)")
if ((${#missing[@]})); then
    printf 'exact.sh: missing: %s\n' "${missing[@]}" >&2
    echo "exact.sh: install them, or pass --no-callgrind / --no-perf to skip a part" >&2
    case " $* " in
        *" --no-callgrind "* | *" --no-perf "*) ;;
        *) exit 1 ;;
    esac
fi
exec cargo bench -p tether-bench --bench echo -- --exact "$@"
