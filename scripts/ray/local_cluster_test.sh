#!/usr/bin/env bash
# End-to-end check of examples/ray/embed_shards.py against `clip inference`, on a local multi-node Ray cluster.
#
#   scripts/ray/local_cluster_test.sh
#   SHARDS="/data/shards/{00000..00099}.tar" NODES=3 THREADS=2 scripts/ray/local_cluster_test.sh
#
# 1. shards: $SHARDS, else /tmp/cr-shards/{00000..00009}.tar when all ten exist, else 4 x 25 samples made from
#    $PHOTOS with scripts/bench/make_shards.py; with EDGE=1 (default) plus one shard of awkward samples
#    (scripts/ray/make_edge_shard.py: broken, cut and mislabelled images, no image, no caption, long, empty,
#    non-UTF-8 and padded captions, upper-case member names), appended with "::".
# 2. `clip inference` on them (before Ray starts, so that it has the machine to itself), all cores.
# 3. a Ray cluster of $NODES node processes on this host: `ray start --head` and NODES-1 `ray start --address`,
#    $CPUS_PER_NODE logical CPUs each, every node on its own loopback address (127.0.0.2, 127.0.0.3, ...; Ray
#    replaces 127.0.0.1 by the host's outward address, so it cannot be used), dashboard off, usage stats off,
#    token authentication on with a token made for the run.
# 4. examples/ray/embed_shards.py on that cluster: $ACTORS actors x $THREADS threads (default: one thread per
#    logical CPU of the cluster), writing Parquet.
# 5. scripts/ray/compare_outputs.py: same keys, same order, embeddings equal within a relative 1e-6 (and how many
#    rows are bit-identical), same captions, urls and .json fields, same samples left out.
# Prints samples, seconds and samples/s of both runs; exits 1 on any mismatch. `ray stop` always runs at the end
# (trap); because `ray stop` ends every Ray process of the machine, the script refuses to start when another Ray
# is already running.
#
# Environment: RAY_VENV (/tmp/ray-venv: ray[data], numpy, pyarrow, pandas and the clip_rs wheel), CLIP (the clip
# binary; default target/release/clip, else target/debug/clip, whichever has `inference`), MODEL (/tmp/vitb32),
# DTYPE (f32), WORK (/tmp/ray-test: outputs and logs), NODES (2), CPUS_PER_NODE (cores / NODES), THREADS (1),
# ACTORS (NODES x CPUS_PER_NODE / THREADS), BATCH (64), TEXT (1: also captions), EDGE (1), PHOTOS
# (/tmp/photos1000), RAY_PORT (26379), OBJECT_STORE_BYTES (400000000 per node), RAY_ONLY (0; 1: skip the CLI and
# the comparison), REUSE_CLI (0; 1: keep the CLI output of the previous run in $WORK, same input assumed).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
VENV=${RAY_VENV:-/tmp/ray-venv}
PY=$VENV/bin/python
RAY=$VENV/bin/ray
MODEL=${MODEL:-/tmp/vitb32}
DTYPE=${DTYPE:-f32}
WORK=${WORK:-/tmp/ray-test}
CORES=$(nproc)
NODES=${NODES:-2}
CPUS_PER_NODE=${CPUS_PER_NODE:-$(( CORES / NODES > 0 ? CORES / NODES : 1 ))}
THREADS=${THREADS:-1}
ACTORS=${ACTORS:-$(( NODES * CPUS_PER_NODE / THREADS > 0 ? NODES * CPUS_PER_NODE / THREADS : 1 ))}
BATCH=${BATCH:-64}
TEXT=${TEXT:-1}
EDGE=${EDGE:-1}
PHOTOS=${PHOTOS:-/tmp/photos1000}
PORT=${RAY_PORT:-26379}
OBJECT_STORE_BYTES=${OBJECT_STORE_BYTES:-400000000}
RAY_ONLY=${RAY_ONLY:-0}
HEAD_IP=127.0.0.2
export RAY_USAGE_STATS_ENABLED=0
# Token authentication with a token made for this run, given to every node, worker and driver through the
# environment (Ray would otherwise pick up ~/.ray/auth_token when one exists, on the head only).
export RAY_AUTH_MODE=token
RAY_AUTH_TOKEN=$(python3 -c 'import secrets; print(secrets.token_hex(32))')
export RAY_AUTH_TOKEN

say() { printf '\n== %s\n' "$*"; }
die() { printf 'local_cluster_test: %s\n' "$*" >&2; exit 2; }
now() { "$PY" -c 'import time; print(f"{time.time():.3f}")'; }

[ -x "$PY" ] || die "no Python at $PY (make the venv: see docs/ray.md)"
"$PY" -c 'import ray, ray.data, numpy, pyarrow, pandas' || die "$PY lacks ray[data] / numpy / pyarrow / pandas"
"$PY" -c 'import clip_rs' 2>/dev/null || die "$PY cannot import clip_rs (pip install the wheel into $VENV)"
[ -e "$MODEL" ] || die "no model at $MODEL"
if [ "$RAY_ONLY" != 1 ]; then
  if [ -z "${CLIP:-}" ]; then
    for candidate in "$ROOT/target/release/clip" "$ROOT/target/debug/clip"; do
      if [ -x "$candidate" ] && "$candidate" inference --help >/dev/null 2>&1; then CLIP=$candidate; break; fi
    done
  fi
  [ -n "${CLIP:-}" ] || die "no clip binary with an 'inference' command (cargo build --release -p clip-cli)"
  case "$CLIP" in *debug*) echo "note: $CLIP is a debug build: the CLI timings mean little" >&2 ;; esac
fi
if pgrep -x raylet >/dev/null || pgrep -x gcs_server >/dev/null; then
  die "a Ray instance is already running on this machine; this script ends with 'ray stop', which would stop it too"
fi

mkdir -p "$WORK/logs"
rm -rf "$WORK/ray-out" "$WORK/ray-summary.json" "$WORK/compare.json"
if [ "${REUSE_CLI:-0}" != 1 ]; then rm -rf "$WORK/cli-out" "$WORK/cli-summary.json" "$WORK/cli-wall.txt"; fi

# --- shards
if [ -n "${SHARDS:-}" ]; then
  INPUT=$SHARDS
elif [ "$(ls /tmp/cr-shards/0000{0..9}.tar 2>/dev/null | wc -l)" = 10 ]; then
  INPUT="/tmp/cr-shards/{00000..00009}.tar"
else
  [ -d "$PHOTOS" ] || die "no shards: set SHARDS, or PHOTOS to a folder of JPEGs"
  python3 "$ROOT/scripts/bench/make_shards.py" --photos "$PHOTOS" --out "$WORK/shards" --shards 4 --per-shard 25 >/dev/null
  INPUT="$WORK/shards/{00000..00003}.tar"
fi
if [ "$EDGE" = 1 ]; then
  python3 "$ROOT/scripts/ray/make_edge_shard.py" --photos "$PHOTOS" --out "$WORK/edge/00000.tar" --shard-id 99 >/dev/null
  INPUT="$INPUT::$WORK/edge/00000.tar"
fi
TEXT_FLAG=(); [ "$TEXT" = 1 ] && TEXT_FLAG=(--text)
say "input: $INPUT"

# --- clip inference
if [ "$RAY_ONLY" != 1 ] && [ "${REUSE_CLI:-0}" = 1 ] && [ -s "$WORK/cli-wall.txt" ]; then
  CLI_WALL=$(cat "$WORK/cli-wall.txt")
  say "clip inference: reusing $WORK/cli-out ($CLI_WALL s)"
elif [ "$RAY_ONLY" != 1 ]; then
  say "clip inference ($CLIP, $CORES threads)"
  t0=$(now)
  set +e
  "$CLIP" --threads "$CORES" -q inference --input "$INPUT" --output-dir "$WORK/cli-out" --model "$MODEL" \
    --dtype "$DTYPE" --batch-size "$BATCH" "${TEXT_FLAG[@]}" --json >"$WORK/cli-summary.json" 2>"$WORK/logs/cli.err"
  cli_rc=$?
  set -e
  t1=$(now)
  CLI_WALL=$("$PY" -c "print(round($t1 - $t0, 2))")
  tail -5 "$WORK/logs/cli.err" >&2 || true
  [ "$cli_rc" = 0 ] || die "clip inference failed (exit $cli_rc): see $WORK/logs/cli.err"
  echo "$CLI_WALL" >"$WORK/cli-wall.txt"
  echo "done in $CLI_WALL s"
fi

# --- the cluster
cleanup() {
  local rc=$?
  "$RAY" stop --force >"$WORK/logs/ray-stop.log" 2>&1 || true
  exit "$rc"
}
trap cleanup EXIT INT TERM

say "Ray cluster: $NODES node processes x $CPUS_PER_NODE CPUs on 127.0.0.2..127.0.0.$((NODES + 1)), port $PORT"
"$RAY" start --head --node-ip-address "$HEAD_IP" --port "$PORT" --num-cpus "$CPUS_PER_NODE" \
  --include-dashboard false --disable-usage-stats --object-store-memory "$OBJECT_STORE_BYTES" \
  --min-worker-port 20000 --max-worker-port 20999 >"$WORK/logs/ray-head.log" 2>&1 \
  || { tail -20 "$WORK/logs/ray-head.log" >&2; die "ray start --head failed"; }
for ((n = 1; n < NODES; n++)); do
  "$RAY" start --address "$HEAD_IP:$PORT" --node-ip-address "127.0.0.$((2 + n))" --num-cpus "$CPUS_PER_NODE" \
    --disable-usage-stats --object-store-memory "$OBJECT_STORE_BYTES" \
    --min-worker-port $((20000 + 1000 * n)) --max-worker-port $((20999 + 1000 * n)) \
    >"$WORK/logs/ray-worker-$n.log" 2>&1 || { tail -20 "$WORK/logs/ray-worker-$n.log" >&2; die "ray start (node $n) failed"; }
done
"$PY" - "$HEAD_IP:$PORT" "$NODES" <<'EOF'
import sys, time, ray
ray.init(address=sys.argv[1], logging_level="error", log_to_driver=False)
for _ in range(60):
    alive = [n for n in ray.nodes() if n["Alive"]]
    if len(alive) >= int(sys.argv[2]):
        break
    time.sleep(1)
for n in alive:
    print(f"  node {n['NodeManagerAddress']}:{n['NodeManagerPort']}  CPU {n['Resources'].get('CPU', 0):g}  "
          f"object store {n['Resources'].get('object_store_memory', 0) / 1e6:.0f} MB")
sys.exit(0 if len(alive) >= int(sys.argv[2]) else f"only {len(alive)} of {sys.argv[2]} nodes came up")
EOF

# --- the Ray Data job
say "examples/ray/embed_shards.py: $ACTORS actors x $THREADS threads, batch $BATCH"
t0=$(now)
"$PY" "$ROOT/examples/ray/embed_shards.py" --input "$INPUT" --output "$WORK/ray-out" --model "$MODEL" --dtype "$DTYPE" \
  --batch-size "$BATCH" --actors "$ACTORS" --threads-per-actor "$THREADS" --address "$HEAD_IP:$PORT" \
  --summary-json "$WORK/ray-summary.json" --quiet "${TEXT_FLAG[@]}" >"$WORK/logs/ray-job.log" 2>&1 \
  || { grep -v file_system_monitor "$WORK/logs/ray-job.log" | tail -40 >&2; die "the Ray job failed"; }
t1=$(now)
RAY_WALL=$("$PY" -c "print(round($t1 - $t0, 2))")
grep -E "^(embedded|  failed:)" "$WORK/logs/ray-job.log" || true
"$RAY" status --address "$HEAD_IP:$PORT" >"$WORK/logs/ray-status.log" 2>&1 || true

# --- figures and comparison
status=0
if [ "$RAY_ONLY" != 1 ]; then
  say "compare (scripts/ray/compare_outputs.py)"
  "$PY" "$ROOT/scripts/ray/compare_outputs.py" --ray "$WORK/ray-out" --cli "$WORK/cli-out" "${TEXT_FLAG[@]}" \
    --ray-summary "$WORK/ray-summary.json" --cli-summary "$WORK/cli-summary.json" --tolerance 1e-6 \
    --report "$WORK/compare.json" >"$WORK/logs/compare.log" || status=1
  cat "$WORK/logs/compare.log"
fi
say "figures"
"$PY" - "$WORK" "${CLI_WALL:-}" "$RAY_WALL" "$NODES" <<'EOF'
import json, os, sys
work, cli_wall, ray_wall, nodes = sys.argv[1], sys.argv[2], float(sys.argv[3]), sys.argv[4]
ray = json.load(open(os.path.join(work, "ray-summary.json")))
rows = []
if cli_wall:
    text = open(os.path.join(work, "cli-summary.json")).read()
    cli = None
    for chunk in (text, *reversed(text.splitlines())):
        try:
            cli = json.loads(chunk)
            break
        except ValueError:
            continue
    cli = cli or {}
    embedded, failed = cli.get("samples"), cli.get("failed")
    read = embedded + failed if isinstance(embedded, int) and isinstance(failed, int) else None
    rows.append(("clip inference", read, embedded, failed, float(cli_wall), cli.get("seconds")))
rows.append((f"ray ({nodes} nodes, {ray['actors']}x{ray['threads_per_actor']})", ray["samples_read"],
             ray["embedded"], ray["failed"], ray_wall, ray["seconds"]))
print(f"{'run':<28}{'samples':>8}{'embedded':>9}{'failed':>7}{'wall s':>9}{'samples/s':>10}{'job s':>8}{'samples/s':>10}")
for name, read, emb, failed, wall, inner in rows:
    rate = lambda s: f"{read / s:.2f}" if read and s else "-"
    print(f"{name:<28}{read if read is not None else '-':>8}{emb:>9}{failed:>7}{wall:>9.2f}{rate(wall):>10}"
          f"{f'{inner:.2f}' if inner is not None else '-':>8}{rate(inner):>10}")
print("(wall: the whole process, model load and, for Ray, connecting included; job: the run's own figure -"
      " for Ray from the dataset's start, actor start-up and model load included, to the last Parquet file)")
print(f"model load per actor: {ray['model_load_seconds']} s")
EOF
if [ "$RAY_ONLY" != 1 ]; then
  if [ "$status" = 0 ]; then echo "RESULT: MATCH"; else echo "RESULT: MISMATCH (see $WORK/compare.json)"; fi
fi
exit "$status"
