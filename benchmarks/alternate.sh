#!/usr/bin/env bash
# Run benchmark scripts alternately on two checkouts (before, after), ROUNDS times each, so the
# machine's drift falls on both sides alike. Each checkout runs on this project's venv with its
# own code first on the path. Prints one line per run (the script's JSON last line) and keeps
# every full log under OUT.
#   benchmarks/alternate.sh BEFORE_DIR AFTER_DIR        e.g. a `git worktree add` of the old commit, and .
#   ROUNDS=3 BENCHES="gateway api" benchmarks/alternate.sh ../before .
set -uo pipefail
before=$(cd "$1" && pwd); after=$(cd "$2" && pwd)
here=$(cd "$(dirname "$0")/.." && pwd)
python=${PYTHON:-$here/.venv/bin/python}
ROUNDS=${ROUNDS:-2}
BENCHES=${BENCHES:-"gateway api analytics simulation"}
OUT=${OUT:-$(mktemp -d -t vb-alternate-XXXX)}
echo "logs in $OUT"
for bench in $BENCHES; do
  for round in $(seq 1 "$ROUNDS"); do
    for side in before after; do
      dir=$before; [ "$side" = after ] && dir=$after
      log="$OUT/$bench-$side-$round.log"
      (cd "$dir" && PYTHONPATH="$dir" timeout 1200 "$python" "benchmarks/bench_$bench.py" >"$log" 2>&1)
      echo "$bench $side round $round (exit $?): $(tail -n 1 "$log")"
    done
  done
done
