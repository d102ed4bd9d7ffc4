#!/usr/bin/env bash
# bench/run.sh — what a tracer costs nginx, measured side by side in one run.
#
# A proxy nginx (no upstream keepalive: a fresh upstream connection per request) in front of an
# upstream nginx on 127.0.0.1, loaded by wrk, in interleaved rounds under each configuration:
# baseline (no tracer) and each row of the TRACERS table below (why502 watch, why502 events, the
# bpftrace peer bench/peer.bt); a new peer is a new row there.
# Prints median req/s per configuration and the ratio to baseline, then a profile round with
# kernel.bpf_stats_enabled=1 (ns per program run, runs per request). Raw numbers go to
# bench/results/<date>.md. See bench/README.md. Needs root.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(dirname "$HERE")
WHY502=${WHY502:-$REPO/build-bench/why502}
FLOOR=${FLOOR:-$(dirname "$WHY502")/why502-floor} # empty programs on why502's hooks (bench/floor)
WHY502_B=${WHY502_B:-}          # another why502 build, run as why502-watch-b: a change against its parent
UPSTREAM_KEEPALIVE=${UPSTREAM_KEEPALIVE:-0} # >0: the proxy keeps that many idle upstream connections
STORM=${STORM:-0}                           # 1: the proxy's upstream refuses everything (a 502 storm)
ROUNDS=${ROUNDS:-5}
DURATION=${DURATION:-10}        # seconds of wrk per measurement
WARMUP=${WARMUP:-2}             # seconds of wrk discarded after each tracer start
CONNS=${CONNS:-32}
THREADS=${THREADS:-1}
CONFIGS=${CONFIGS:-"baseline floor why502-watch why502-events bpftrace"}
PROFILE=${PROFILE:-1}           # 0: skip the bpf_stats profile round
PROFILE_ROUNDS=${PROFILE_ROUNDS:-1} # profile rounds (order rotated); their counters are pooled
PROXY_WORKERS=${PROXY_WORKERS:-1}
PROXY_CPUS=${PROXY_CPUS:-0}     # proxy nginx workers (the measured process)
LOAD_CPUS=${LOAD_CPUS:-1}       # upstream nginx + wrk
PROXY_PORT=${PROXY_PORT:-19080}
UPSTREAM_PORT=${UPSTREAM_PORT:-19081}
RESULTS_DIR=${RESULTS_DIR:-$HERE/results}
KEEP_TMP=${KEEP_TMP:-0}
LATENCY=${LATENCY:-150}         # failed requests for the verdict-latency phase (0: skip it)

die() { echo "bench: $*" >&2; exit 1; }
log() { echo "bench: $*" >&2; }

[[ $(id -u) -eq 0 ]] || die "needs root (BPF, nginx on 127.0.0.1, sysctl)"
[[ " ${CONFIGS} " != *" floor "* || -x $FLOOR ]] || die "no why502-floor at $FLOOR; build it with the why502-floor target (or set FLOOR=)"
[[ " ${CONFIGS} " != *" why502-watch-b "* || -x $WHY502_B ]] || die "why502-watch-b needs WHY502_B=<another why502 binary>"
[[ -x $WHY502 ]] || die "no why502 at $WHY502; build it: cmake -S $REPO -B $REPO/build-bench -DCMAKE_BUILD_TYPE=Release && cmake --build $REPO/build-bench -j2 (or set WHY502=)"

# ---- packages -------------------------------------------------------------------------------
need=()
command -v wrk >/dev/null || need+=(wrk)
command -v bpftrace >/dev/null || need+=(bpftrace)
command -v nginx >/dev/null || need+=(nginx-light)
command -v bpftool >/dev/null || need+=(bpftool)
command -v taskset >/dev/null || need+=(util-linux)
((LATENCY == 0)) || command -v python3 >/dev/null || need+=(python3)
if ((${#need[@]})); then
  log "installing ${need[*]}"
  DEBIAN_FRONTEND=noninteractive apt-get install -y "${need[@]}" >/dev/null ||
    { apt-get update >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y "${need[@]}" >/dev/null; } ||
    die "apt-get install ${need[*]} failed"
fi
# bpftrace's tp: probes need tracefs; why502 mounts it itself, bpftrace does not.
if [[ ! -e /sys/kernel/tracing/events ]]; then
  mount -t tracefs tracefs /sys/kernel/tracing || die "cannot mount tracefs at /sys/kernel/tracing"
fi

for p in "$PROXY_PORT" "$UPSTREAM_PORT" $((UPSTREAM_PORT + 1)) $((UPSTREAM_PORT + 2)); do
  ((p >= 19000 && p <= 19999)) || die "ports must be in 19000-19999"
  if ss -Htln "sport = :$p" | grep -q .; then die "port $p is in use"; fi
done

# ---- state and cleanup ----------------------------------------------------------------------
TMP=$(mktemp -d /tmp/why502-bench.XXXXXX)
TRACER_PID=""
WRK_PID=""
STATS_ORIG=$(cat /proc/sys/kernel/bpf_stats_enabled)
STATS_TOUCHED=0

stop_pid() { # pid [signal] — signal, wait up to 10 s, then SIGKILL
  local pid=$1 sig=${2:-INT} i
  [[ -n $pid ]] && kill -0 "$pid" 2>/dev/null || return 0
  kill -s "$sig" "$pid" 2>/dev/null || true
  for ((i = 0; i < 100; i++)); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}

stop_nginx() { # pidfile
  local pid
  [[ -f $1 ]] || return 0
  pid=$(cat "$1" 2>/dev/null) || return 0
  [[ -n $pid ]] && stop_pid "$pid" TERM
}

cleanup() {
  trap - EXIT INT TERM
  stop_pid "$WRK_PID" TERM
  stop_pid "$TRACER_PID" INT
  stop_nginx "$TMP/proxy/nginx.pid"
  stop_nginx "$TMP/upstream/nginx.pid"
  if ((STATS_TOUCHED)); then echo "$STATS_ORIG" >/proc/sys/kernel/bpf_stats_enabled || true; fi
  if ((KEEP_TMP)); then log "kept $TMP"; else rm -rf "$TMP"; fi
}
trap cleanup EXIT
trap 'log interrupted; exit 130' INT TERM

# ---- nginx ----------------------------------------------------------------------------------
cpumask() { # "0,2" -> nginx affinity mask string for one worker covering those CPUs
  local m=0 c
  for c in ${1//,/ }; do m=$((m | (1 << c))); done
  local bits="" i
  for ((i = $(nproc) - 1; i >= 0; i--)); do bits+=$(((m >> i) & 1)); done
  echo "$bits"
}

write_common() { # dir
  mkdir -p "$1/logs" "$1/tmp"
  cat <<EOF
pid $1/nginx.pid;
error_log $1/logs/error.log warn;
user root;
events { worker_connections 8192; }
EOF
}

mkdir -p "$TMP/proxy" "$TMP/upstream"
{
  write_common "$TMP/upstream"
  cat <<EOF
worker_processes 1;
worker_cpu_affinity $(cpumask "$LOAD_CPUS");
http {
  access_log off;
  client_body_temp_path $TMP/upstream/tmp/body;
  proxy_temp_path $TMP/upstream/tmp/proxy;
  fastcgi_temp_path $TMP/upstream/tmp/fcgi;
  uwsgi_temp_path $TMP/upstream/tmp/uwsgi;
  scgi_temp_path $TMP/upstream/tmp/scgi;
  server {
    listen 127.0.0.1:$UPSTREAM_PORT backlog=4096;
    location / { return 200 "ok\n"; }
    location /closed/ { return 444; } # closes without a response: the latency phase's second fault
  }
}
EOF
} >"$TMP/upstream/nginx.conf"

affinity=""
if ((PROXY_WORKERS == 1)); then
  affinity="worker_cpu_affinity $(cpumask "$PROXY_CPUS");"
fi
{
  write_common "$TMP/proxy"
  cat <<EOF
worker_processes $PROXY_WORKERS;
$affinity
http {
  # The default "combined" access log, unbuffered: what a production proxy writes, and what
  # \`why502 watch\` follows.
  access_log $TMP/proxy/logs/access.log;
  client_body_temp_path $TMP/proxy/tmp/body;
  proxy_temp_path $TMP/proxy/tmp/proxy;
  fastcgi_temp_path $TMP/proxy/tmp/fcgi;
  uwsgi_temp_path $TMP/proxy/tmp/uwsgi;
  scgi_temp_path $TMP/proxy/tmp/scgi;
  # By default no keepalive: every request opens (and closes) a fresh upstream connection. STORM=1
  # points it where nothing listens: every request is a refused connect and a 502.
  upstream backend {
    server 127.0.0.1:$((STORM ? UPSTREAM_PORT + 1 : UPSTREAM_PORT)) max_fails=0; # a storm keeps connecting
    $( ((UPSTREAM_KEEPALIVE > 0)) && echo "keepalive $UPSTREAM_KEEPALIVE;")
  }
  server {
    listen 127.0.0.1:$PROXY_PORT backlog=4096;
    location / {
      proxy_pass http://backend;
      $( ((UPSTREAM_KEEPALIVE > 0)) && echo 'proxy_http_version 1.1; proxy_set_header Connection "";')
    }
    # The verdict-latency phase's faults (never hit by wrk): nothing listens; the upstream closes.
    location /refused/ { proxy_pass http://127.0.0.1:$((UPSTREAM_PORT + 2)); }
    location /closed/ { proxy_pass http://127.0.0.1:$UPSTREAM_PORT; }
  }
}
EOF
} >"$TMP/proxy/nginx.conf"

for n in upstream proxy; do
  nginx -t -q -p "$TMP/$n/" -c "$TMP/$n/nginx.conf" 2>"$TMP/$n/nginx-t.log" || { cat "$TMP/$n/nginx-t.log" >&2; die "bad $n config"; }
  nginx -p "$TMP/$n/" -c "$TMP/$n/nginx.conf"
done
for ((i = 0; i < 50; i++)); do
  [[ -s $TMP/proxy/nginx.pid && -s $TMP/upstream/nginx.pid ]] && break
  sleep 0.1
done
MASTER=$(cat "$TMP/proxy/nginx.pid")
# Worker TGIDs of the proxy (bpftrace gets them as positional parameters: 4 slots).
mapfile -t WORKERS < <(pgrep -P "$MASTER")
((${#WORKERS[@]} > 0)) || die "proxy nginx has no workers"
mapfile -t UP_WORKERS < <(pgrep -P "$(cat "$TMP/upstream/nginx.pid")")
PEER_ARGS=()
for ((i = 0; i < 4; i++)); do PEER_ARGS+=("${WORKERS[i % ${#WORKERS[@]}]}"); done
curl -sf "http://127.0.0.1:$PROXY_PORT/" >/dev/null 2>&1 || [[ $(printf 'GET / HTTP/1.0\r\n\r\n' | timeout 2 nc 127.0.0.1 "$PROXY_PORT" 2>/dev/null | head -1) == *200* ]] ||
  log "warning: could not verify the proxy answers 200 (no curl/nc?); wrk's non-2xx count will tell"

# ---- measurement ----------------------------------------------------------------------------
cpu_busy() { # cpu-list -> "busy% busy%" per CPU since the snapshot in $1 (file)
  local snap=$1
  shift
  awk -v list="$*" 'NR == FNR { for (i = 2; i <= NF; i++) a[$1, i] = $i; next }
    {
      n = split(list, want, " ")
      for (k = 1; k <= n; k++) if ($1 == "cpu" want[k]) {
        tot = 0; idle = 0
        for (i = 2; i <= NF; i++) { d = $i - a[$1, i]; tot += d; if (i == 5 || i == 6) idle += d }
        out = out sprintf("%s%.0f", out == "" ? "" : "/", tot ? 100 * (tot - idle) / tot : 0)
      }
    }
    END { print out }' "$snap" /proc/stat
}

cpu_ticks() { # pid... -> utime+stime summed (clock ticks)
  local t=0 p f
  for p in "$@"; do
    f=$(cat "/proc/$p/stat" 2>/dev/null) || continue
    f=${f##*) }
    set -- $f
    t=$((t + ${12} + ${13}))
  done
  echo "$t"
}

cpu_ns() { # pid -> CPU time of all its threads in ns (schedstat: a tracer's ~1% over 10 s is ~10
  # clock ticks, too coarse to compare two builds)
  cat /proc/"$1"/task/*/schedstat 2>/dev/null | awk '{ t += $1 } END { printf "%.0f", t }'
}

# The tracer configurations, one row each: a new peer is a new row. Columns (separated by '|'):
#   name     as CONFIGS names it ("baseline" runs no tracer and has no row)
#   ready    an extended regex: attached once the output has a line matching it
#   settle   seconds to wait after that (bpftrace 0.17 prints "Attaching" before it is attached)
#   losses   how its output reports what it missed: "stats" (why502's stats line) or "lines" (count)
#   command  run by bash with $out (its output file), $MASTER, $WHY502, $HERE and PEER_ARGS set
TRACERS='
floor         | "type":"start"           | 0 | none  | "$FLOOR" >"$out"
why502-watch  | "type":"start"           | 0 | stats | "$WHY502" watch --json -o "$out" --nginx-pid "$MASTER"
why502-events | "type":"start"           | 0 | stats | "$WHY502" events --json --pid "$MASTER" >"$out"
why502-watch-b | "type":"start"          | 0 | stats | "$WHY502_B" watch --json -o "$out" --nginx-pid "$MASTER"
bpftrace      | ^Attaching [0-9]+ probes | 1 | lines | bpftrace -B none -o "$out" "$HERE/peer.bt" "${PEER_ARGS[@]}"
'

tracer_field() { # config column(1-based) -> the row's field, trimmed; fails for an unknown config
  awk -F'|' -v c="$1" -v k="$2" '{ n = $1; gsub(/^ +| +$/, "", n) } n == c {
    f = $k; for (i = k + 1; i <= NF && k == 5; i++) f = f "|" $i   # the command may hold a pipe
    gsub(/^ +| +$/, "", f); print f; found = 1 } END { exit !found }' <<<"$TRACERS"
}

start_tracer() { # config tag -> sets TRACER_PID, waits until attached
  local cfg=$1 tag=$2 i out=$TMP/$tag.out cmd ready settle
  TRACER_PID=""
  [[ $cfg == baseline ]] && return 0
  cmd=$(tracer_field "$cfg" 5) || die "unknown configuration $cfg (not a row of TRACERS)"
  ready=$(tracer_field "$cfg" 2)
  settle=$(tracer_field "$cfg" 3)
  eval "exec $cmd" 2>"$TMP/$tag.err" & # exec: $! is the tracer itself (its CPU, its SIGINT)
  TRACER_PID=$!
  for ((i = 0; i < 300; i++)); do
    kill -0 "$TRACER_PID" 2>/dev/null || { cat "$TMP/$tag.err" >&2; die "$cfg exited early"; }
    if grep -qE "$ready" "$out" 2>/dev/null; then
      sleep "$settle"
      return 0
    fi
    sleep 0.1
  done
  log "warning: $cfg printed no start line in 30 s; measuring anyway"
}

# Program ids of the BPF programs a process holds (from its fds), one per line.
prog_ids_of() {
  grep -h '^prog_id:' /proc/"$1"/fdinfo/* 2>/dev/null | awk '{print $2}' | sort -un
}

# "name run_time_ns run_cnt" for each given program id.
prog_stats() {
  local ids=" $* "
  bpftool prog show 2>/dev/null | awk -v ids="$ids" '
    /^[0-9]+:/ {
      id = $1; sub(":", "", id)
      if (index(ids, " " id " ") == 0) next
      name = "?"; rt = 0; rc = 0
      for (i = 2; i <= NF; i++) {
        if ($i == "name") name = $(i + 1)
        if ($i == "run_time_ns") rt = $(i + 1)
        if ($i == "run_cnt") rc = $(i + 1)
      }
      print name, rt, rc
    }'
}

RAW=$TMP/raw.tsv # config round reqs_per_s non2xx sock_errors proxy_cpu_us_per_req tracer_cpu_pct load1 cpu_busy all_cpu_us_per_req
: >"$RAW"
LOSSES=$TMP/losses.tsv
: >"$LOSSES"

measure() { # config round [profile]
  local cfg=$1 round=$2 profile=${3:-0} tag out c0 c1 t0 t1 t0_ns t1_ns rps non2xx errs reqs wall load1 busy u0 u1 wrk_s
  tag="$cfg-r$round"
  start_tracer "$cfg" "$tag"
  taskset -c "$LOAD_CPUS" wrk -t"$THREADS" -c"$CONNS" -d"${WARMUP}s" "http://127.0.0.1:$PROXY_PORT/" >/dev/null 2>&1 || true
  load1=$(cut -d' ' -f1 /proc/loadavg)
  c0=$(cpu_ticks "${WORKERS[@]}")
  u0=$(cpu_ticks "${UP_WORKERS[@]}")
  t0=0 t0_ns=0
  [[ -n $TRACER_PID ]] && t0=$(cpu_ticks "$TRACER_PID") && t0_ns=$(cpu_ns "$TRACER_PID")
  grep '^cpu[0-9]' /proc/stat >"$TMP/stat0"
  wall=$(date +%s.%N)
  # `times` in the subshell: wrk's own user and system time (its only child).
  (taskset -c "$LOAD_CPUS" wrk -t"$THREADS" -c"$CONNS" -d"${DURATION}s" "http://127.0.0.1:$PROXY_PORT/" >"$TMP/$tag.wrk" 2>&1; times >"$TMP/$tag.times") &
  WRK_PID=$!
  wait "$WRK_PID" || true
  WRK_PID=""
  wall=$(awk -v a="$wall" -v b="$(date +%s.%N)" 'BEGIN { printf "%.3f", b - a }')
  c1=$(cpu_ticks "${WORKERS[@]}")
  u1=$(cpu_ticks "${UP_WORKERS[@]}")
  # "0m1.234s 0m2.345s" on the second line: children user, system.
  wrk_s=$(awk 'NR == 2 { s = 0; for (i = 1; i <= 2; i++) { split($i, a, /[ms]/); s += a[1] * 60 + a[2] } print s }' "$TMP/$tag.times")
  busy=$(cpu_busy "$TMP/stat0" $(seq 0 $(($(nproc) - 1))))
  t1=0 t1_ns=0
  [[ -n $TRACER_PID ]] && t1=$(cpu_ticks "$TRACER_PID") && t1_ns=$(cpu_ns "$TRACER_PID")
  rps=$(awk '/^Requests\/sec:/ { print $2 }' "$TMP/$tag.wrk")
  [[ -n $rps ]] || { cat "$TMP/$tag.wrk" >&2; die "wrk printed no Requests/sec"; }
  reqs=$(awk '/requests in/ { print $1 }' "$TMP/$tag.wrk")
  non2xx=$(awk '/Non-2xx/ { print $NF }' "$TMP/$tag.wrk")
  errs=$(awk '/Socket errors/ { gsub(",", ""); print $4 + $6 + $8 + $10 }' "$TMP/$tag.wrk")
  local tck
  tck=$(getconf CLK_TCK)
  local cpu_us tr_pct all_us
  all_us=$(awk -v p=$((c1 - c0 + u1 - u0 + t1 - t0)) -v t="$tck" -v w="$wrk_s" -v n="$reqs" 'BEGIN { printf "%.1f", n ? (p / t + w) * 1e6 / n : 0 }')
  cpu_us=$(awk -v d=$((c1 - c0)) -v t="$tck" -v n="$reqs" 'BEGIN { printf "%.1f", n ? d / t * 1e6 / n : 0 }')
  tr_pct=$(awk -v d=$((t1_ns - t0_ns)) -v w="$wall" 'BEGIN { printf "%.2f", d / 1e9 / w * 100 }')

  if ((profile)) && [[ -n $TRACER_PID ]]; then
    local ids
    ids=$(prog_ids_of "$TRACER_PID" | tr '\n' ' ')
    prog_stats $ids | awk -v cfg="$cfg" -v n="$reqs" -v w="$wall" -v warm="$WARMUP" '
      { printf "%s\t%s\t%s\t%s\n", cfg, $1, $2, $3 }' >>"$TMP/profile.tsv"
    echo -e "$cfg\t$reqs\t$rps" >>"$TMP/profile-reqs.tsv"
  fi

  stop_pid "$TRACER_PID" INT
  case $( [[ $cfg == baseline ]] || tracer_field "$cfg" 4) in
  stats)
    local stats
    stats=$(grep '"type":"stats"' "$TMP/$tag.out" | tail -1 || true)
    echo -e "$cfg\t$round\t${stats:-no stats line}" >>"$LOSSES"
    ;;
  lines)
    local fails
    fails=$(grep -cvE '^(ready|Attaching .*)?$' "$TMP/$tag.out" || true)
    echo -e "$cfg\t$round\tfailure lines printed: $fails" >>"$LOSSES"
    ;;
  esac
  TRACER_PID=""
  if ((!profile)); then
    echo -e "$cfg\t$round\t$rps\t${non2xx:-0}\t${errs:-0}\t$cpu_us\t$tr_pct\t$load1\t$busy\t$all_us" >>"$RAW"
  fi
  log "$(printf '%-14s round %-2s %9s req/s  non-2xx %-5s sock-err %-4s nginx %6s us/req  all %6s us/req  tracer %5s%% CPU  load %s  CPUs busy %s%%' \
    "$cfg" "$round" "$rps" "${non2xx:-0}" "${errs:-0}" "$cpu_us" "$all_us" "$tr_pct" "$load1" "$busy")"
}

read -r -a CFGS <<<"$CONFIGS"
n=${#CFGS[@]}
log "proxy master $MASTER workers ${WORKERS[*]} (CPU $PROXY_CPUS), upstream + wrk on CPU $LOAD_CPUS"
log "$ROUNDS rounds x {${CFGS[*]}}, wrk -t$THREADS -c$CONNS -d${DURATION}s (+${WARMUP}s warm-up each)"
# One untimed warm-up so the first measured configuration doesn't pay for cold caches.
taskset -c "$LOAD_CPUS" wrk -t"$THREADS" -c"$CONNS" -d"${WARMUP}s" "http://127.0.0.1:$PROXY_PORT/" >/dev/null 2>&1 || true
for ((r = 1; r <= ROUNDS; r++)); do
  # Rotate the order each round (A B C D, B C D A, ...): drift and position effects cancel.
  for ((k = 0; k < n; k++)); do
    measure "${CFGS[(k + r - 1) % n]}" "$r"
  done
done

if ((PROFILE)); then
  log "profile round: kernel.bpf_stats_enabled=1 (not part of the ratios)"
  if [[ $STATS_ORIG != 1 ]]; then
    STATS_TOUCHED=1
    echo 1 >/proc/sys/kernel/bpf_stats_enabled
  fi
  : >"$TMP/profile.tsv"
  : >"$TMP/profile-reqs.tsv"
  for ((pr = 1; pr <= PROFILE_ROUNDS; pr++)); do
    for ((k = 0; k < n; k++)); do
      cfg=${CFGS[(k + pr - 1) % n]}
      [[ $cfg == baseline ]] && continue
      measure "$cfg" "P$pr" 1
    done
  done
  if ((STATS_TOUCHED)); then
    echo "$STATS_ORIG" >/proc/sys/kernel/bpf_stats_enabled
    STATS_TOUCHED=0
  fi
fi

# ---- verdict latency ------------------------------------------------------------------------
# From the failed request's response (its access line is written just before) to watch's verdict
# line, one request at a time, refused and closed-early in turn (issue 11: p99 <= 100 ms).
if ((LATENCY > 0)); then
  log "verdict latency: $LATENCY failed requests, one every 50 ms"
  python3 "$HERE/verdict_latency.py" --why502 "$WHY502" --nginx-pid "$MASTER" --port "$PROXY_PORT" \
    --paths /refused/,/closed/ --count "$LATENCY" >"$TMP/latency.json" 2>"$TMP/latency.err" ||
    log "warning: not every failed request got a verdict (see the latency line)"
  cat "$TMP/latency.json" >&2
fi

# ---- report ---------------------------------------------------------------------------------
median() { sort -g | awk '{ a[NR] = $1 } END { if (NR == 0) print 0; else if (NR % 2) print a[(NR + 1) / 2]; else print (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }
col_median() { # config column
  awk -F'\t' -v c="$1" -v k="$2" '$1 == c { print $k }' "$RAW" | median
}

base=$(col_median baseline 3)
REPORT=$TMP/report.md
{
  echo "| configuration | median req/s | ratio to baseline | runs (req/s) | proxy nginx CPU µs/req | all CPU µs/req (Δ vs baseline) | CPU ratio | tracer process CPU % | non-2xx / socket errors |"
  echo "|---|---:|---:|---|---:|---:|---:|---:|---|"
  for cfg in "${CFGS[@]}"; do
    m=$(col_median "$cfg" 3)
    ratio=$(awk -v a="$m" -v b="$base" 'BEGIN { if (b > 0) printf "%.3f", a / b; else print "n/a" }')
    runs=$(awk -F'\t' -v c="$cfg" '$1 == c { printf "%s%.0f", s, $3; s = ", " }' "$RAW")
    us=$(col_median "$cfg" 6)
    tr=$(col_median "$cfg" 7)
    all=$(col_median "$cfg" 10)
    cratio=$(awk -v a="$all" -v b="$(col_median baseline 10)" 'BEGIN { if (a > 0) printf "%.3f", b / a; else print "n/a" }')
    dall=$(awk -v a="$all" -v b="$(col_median baseline 10)" 'BEGIN { printf "%+.1f", a - b }')
    bad=$(awk -F'\t' -v c="$cfg" '$1 == c { a += $4; b += $5 } END { print a + 0 " / " b + 0 }' "$RAW")
    echo "| $cfg | $(printf '%.0f' "$m") | $ratio | $runs | $us | $all ($dall) | $cratio | $tr | $bad |"
  done
  echo
  # The noise: how far the baseline's own rounds spread.
  awk -F'\t' '$1 == "baseline" { n++; r[n] = $3; c[n] = $10 }
    END { if (n) { rmin = rmax = r[1]; cmin = cmax = c[1]
      for (i = 2; i <= n; i++) { if (r[i] < rmin) rmin = r[i]; if (r[i] > rmax) rmax = r[i]; if (c[i] < cmin) cmin = c[i]; if (c[i] > cmax) cmax = c[i] }
      printf "Baseline spread over %d rounds: %.0f..%.0f req/s (%.1f%%), all-CPU %.1f..%.1f us/req (%.1f%%).\n", n, rmin, rmax, (rmax - rmin) * 100 / rmax, cmin, cmax, (cmax - cmin) * 100 / cmax } }' "$RAW"
  # What why502 costs above merely being on its hooks (issue 11's bar: at most 20% of the floor's own cost).
  if grep -q "^floor"$'\t' "$RAW" && grep -q "^why502-watch"$'\t' "$RAW"; then
    awk -v b="$(col_median baseline 10)" -v f="$(col_median floor 10)" -v w="$(col_median why502-watch 10)" 'BEGIN {
      printf "Floor: %+.1f us/req over baseline; why502 watch: %+.1f us/req, %+.1f above the floor", f - b, w - b, w - f
      if (f - b > 0) printf " (%.0f%% of the floor'"'"'s own cost)", (w - f) * 100 / (f - b)
      printf ".\n" }'
  fi
  # Paired by round: each round's configurations ran back to back, so a round's CPU ratio to its own
  # baseline cancels the slow drift of this machine's speed (not the second-to-second noise).
  awk -F'\t' '{ key = $1 SUBSEP $2; all[key] = $10; if ($1 != "baseline") { if (!($1 in seen)) order[++n] = $1; seen[$1] = 1 } }
    END { for (i = 1; i <= n; i++) { c = order[i]; m = 0
        for (k in all) { split(k, f, SUBSEP); if (f[1] != c || !(("baseline" SUBSEP f[2]) in all) || all[k] <= 0) continue
          r[++m] = all["baseline" SUBSEP f[2]] / all[k] }
        if (!m) continue
        for (a = 1; a <= m; a++) for (b = a + 1; b <= m; b++) if (r[b] < r[a]) { t = r[a]; r[a] = r[b]; r[b] = t }
        med = m % 2 ? r[(m + 1) / 2] : (r[m / 2] + r[m / 2 + 1]) / 2
        line = line sprintf("%s%s %.3f (%.3f..%.3f)", line == "" ? "" : "; ", c, med, r[1], r[m]) }
      if (line != "") printf "CPU ratio paired by round (median, min..max over rounds): %s.\n", line }' "$RAW"
} >"$REPORT"

# watch's own cost from the counters that do not move with the machine's speed: its programs' time
# above the floor's (bpf_stats, profile round) and its process's CPU per request (timed rounds).
# It leaves out what only the timed rounds can see (cache effects on nginx), so it is a lower bound.
profiled_ns_per_req() { # config -> its programs' ns per measured request, all profile rounds pooled
  awk -F'\t' -v c="$1" -v dur="$DURATION" -v warm="$WARMUP" 'NR == FNR { if ($1 == c) n += $2; next }
    $1 == c { t += $3 } END { if (n > 0) printf "%.0f", t / n * dur / (dur + warm) }' "$TMP/profile-reqs.tsv" "$TMP/profile.tsv"
}

modelled_cost() { # config -> "Δ µs/req, modelled CPU ratio" line, or nothing without the data
  local cfg=$1 prog floor_prog rps pct
  [[ -s $TMP/profile.tsv && -s $TMP/profile-reqs.tsv ]] || return 0
  prog=$(profiled_ns_per_req "$cfg")
  floor_prog=$(profiled_ns_per_req floor)
  [[ -n $prog && -n $floor_prog ]] || return 0
  rps=$(col_median "$cfg" 3)
  pct=$(col_median "$cfg" 7)
  awk -v c="$cfg" -v p="$prog" -v f="$floor_prog" -v rps="$rps" -v pct="$pct" -v b="$(col_median baseline 10)" 'BEGIN {
    user = rps > 0 ? pct / 100 * 1e6 / rps : 0; d = (p - f) / 1000 + user
    printf "%s from stable counters: programs %.2f us/req above the floor'"'"'s (%d vs %d ns, bpf_stats), process %.2f us/req (%.2f%% of a core at %.0f req/s): %+.2f us/req, modelled CPU ratio %.3f (a lower bound of the cost: cache effects on nginx are not in it).\n", c, (p - f) / 1000, p, f, user, pct, rps, d, b / (b + d) }'
}

if ((PROFILE)) && [[ -s $TMP/profile.tsv ]]; then
  {
    echo
    echo "Profile ($PROFILE_ROUNDS round(s), order rotated, counters pooled; kernel.bpf_stats_enabled=1, one ${DURATION}s run"
    echo "per tracer per round, not in the ratios above; counters cover each tracer's whole life: warm-up + run;"
    echo "runs/req divides by the measured requests only):"
    echo
    echo "| tracer | program | runs | runs/s | runs/req | ns/run | ns/req |"
    echo "|---|---|---:|---:|---:|---:|---:|"
    awk -F'\t' -v dur="$DURATION" -v warm="$WARMUP" '
      NR == FNR { reqs[$1] += $2; rounds[$1]++; next }
      {
        key = $1 SUBSEP $2
        if (!(key in rt)) order[++m] = key
        rt[key] += $3; rc[key] += $4
      }
      END {
        for (i = 1; i <= m; i++) {
          split(order[i], f, SUBSEP); cfg = f[1]; name = f[2]
          n = reqs[cfg]; t = (dur + warm) * rounds[cfg]; r = rc[order[i]]
          if (r == 0) { printf "| %s | %s | 0 | 0 | 0 | - | 0 |\n", cfg, name; continue }
          printf "| %s | %s | %d | %.0f | %.2f | %.0f | %.0f |\n", cfg, name, r, r / t, r / n * dur * rounds[cfg] / t, rt[order[i]] / r, rt[order[i]] / n * dur * rounds[cfg] / t
          tot[cfg] += rt[order[i]] / n * dur * rounds[cfg] / t
        }
        for (c in tot) printf "| %s | **all programs** | | | | | **%.0f** |\n", c, tot[c]
      }
    ' "$TMP/profile-reqs.tsv" "$TMP/profile.tsv"
    echo
    for cfg in why502-watch why502-watch-b; do modelled_cost "$cfg"; done
  } >>"$REPORT"
fi

if [[ -s $TMP/latency.json ]]; then
  {
    echo
    echo "Verdict latency (response received -> verdict line written, $LATENCY failed requests, refused and closed-early in turn):"
    echo
    echo '```'
    cat "$TMP/latency.json"
    echo '```'
  } >>"$REPORT"
fi

if [[ -s $LOSSES ]]; then
  {
    echo
    echo "Tracer output at exit (why502's final stats line; bpftrace's failure lines):"
    echo
    echo '```'
    cat "$LOSSES"
    echo '```'
  } >>"$REPORT"
fi

echo
cat "$REPORT"

# ---- results file ---------------------------------------------------------------------------
mkdir -p "$RESULTS_DIR"
stamp=$(date +%F)
RESULT=$RESULTS_DIR/$stamp.md
[[ -e $RESULT ]] && RESULT=$RESULTS_DIR/$stamp-$(date +%H%M%S).md
commit=$(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo unknown)
dirty=$(git -C "$REPO" status --porcelain -- src bpf include 2>/dev/null | grep -q . && echo " (+ uncommitted changes in src/bpf/include)" || true)
foreign=$(bpftool prog show 2>/dev/null | grep -cE '^[0-9]+: (tracing|tracepoint|raw_tracepoint|kprobe)' || true)
{
  echo "# why502 bench, $(date -Is)"
  echo
  echo "- host: $(uname -r), $(nproc) CPUs ($(awk -F': ' '/model name/ { print $2; exit }' /proc/cpuinfo)), load average at end $(cut -d' ' -f1-3 /proc/loadavg)"
  echo "- why502: $WHY502, commit $commit$dirty"
  [[ -z $WHY502_B ]] || echo "- why502-watch-b: $WHY502_B"
  echo "- nginx $(nginx -v 2>&1 | sed 's|.*/||'), $(bpftrace --version), $(wrk -v 2>&1 | head -1 | cut -d' ' -f1-2)"
  echo "- proxy nginx: $PROXY_WORKERS worker(s) on CPU $PROXY_CPUS, upstream keepalive $UPSTREAM_KEEPALIVE (0: none), storm $STORM (1: the upstream refuses everything), combined access log;"
  echo "  upstream nginx: 1 worker (return 200) + wrk -t$THREADS -c$CONNS -d${DURATION}s on CPU $LOAD_CPUS; $ROUNDS interleaved rounds (order rotated)"
  echo "- kernel.bpf_stats_enabled during the timed rounds: $STATS_ORIG; tracing BPF programs loaded at end (all owners): $foreign"
  echo
  cat "$REPORT"
  echo
  echo "Raw measurements (config, round, req/s, non-2xx, socket errors, nginx worker CPU µs/req, tracer CPU %, load1 before the run, busy % of each CPU during the run, CPU µs/req of proxy + upstream + wrk + tracer):"
  echo
  echo '```'
  cat "$RAW"
  echo '```'
  if [[ -s $TMP/profile.tsv ]]; then
    echo
    echo "Raw profile (config, program, run_time_ns, run_cnt) and requests in the profiled run:"
    echo
    echo '```'
    cat "$TMP/profile.tsv"
    cat "$TMP/profile-reqs.tsv"
    echo '```'
  fi
} >"$RESULT"
log "results saved to $RESULT"
