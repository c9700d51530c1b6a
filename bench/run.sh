#!/usr/bin/env bash
# bench/run.sh — Switchboard's benchmarks against Node's `ws` and Socket.IO. `make bench` runs
# it as
#
#   bench/run.sh PATH/TO/examples/echo PATH/TO/bench/loadgen [PATH/TO/broadcast PATH/TO/fanout]
#
# (broadcast and fanout default to the files of those names beside echo and loadgen; the REST
# benchmark's rest-server and restgen are taken from beside loadgen, i.e. build/bench/).
#
# Environment (all optional):
#   BENCH_ONLY        sections to run, comma-separated: echo (1-3), fanout (4-5), rest (6),
#                     cluster (7-9); default all four
#   BENCH_DURATION    measured seconds per run (default 5)
#   BENCH_ROUNDS      runs per server and configuration (default 3)
#   BENCH_WARMUP      seconds of load before each measurement (default 1)
#   BENCH_FRAME       binary or text (default binary; echo only, fan-out is binary)
#   BENCH_IDLE_CONNS  idle connections for the memory tests (default 10000)
#   BENCH_FANOUT_SUBS    subscriber counts for one publisher (default "1000 10000")
#   BENCH_FANOUT_WINDOW  messages in flight of the windowed variant (default 8; 1 = lockstep only)
#   BENCH_FANOUT_ALL     client counts for "every client publishing" (default "100 1000"; "" = none)
#   BENCH_REST_CONNS     connection counts of the REST round-trip runs (default "100 1000")
#   BENCH_REST_WINDOW    requests in flight of an extra windowed variant (default 1 = lockstep only)
#   BENCH_CLUSTER_SUBS   subscriber counts on node B of the cross-node runs (default "100 1000")
#   BENCH_CLUSTER_WINDOW messages in flight of the throughput variant (default 8; 1 = lockstep only)
#   BENCH_CLUSTER_ROUNDS runs per server and configuration of the cross-node part (default 2)
#   REDIS_SERVER      redis-server binary for the cross-node part (default: redis-server on PATH)
#   BENCH_OUT         JSON results (default: results.json beside loadgen, i.e. build/bench/);
#                     sections not run this time are kept from the file already there
#   BENCH_SERVER_CPU / BENCH_CLIENT_CPU  cores for server and load generator (default 0 and 1)
#   NODE              node binary (default: node on PATH)
#
# What it does (bench/README.md explains the numbers):
#   1. Echo throughput and latency: for 100 and 1000 connections x 32 and 16384-byte messages,
#      one message in flight per connection, our echo and the Node echo run alternately
#      (A B A B ...), a fresh server process per run, the server pinned to one core and
#      loadgen to the other. loadgen also reads the server's utime+stime over the measured
#      window (--server-pid), giving server CPU microseconds per echoed message.
#   2. Memory: VmRSS of each server before and after BENCH_IDLE_CONNS idle connections.
#   3. Syscalls: strace -c -f on our server during a short 100 x 32 B echo run.
#   4. Fan-out: examples/broadcast against bench/node-broadcast.mjs, driven by fanout: one
#      publisher and N subscribers of one group (lockstep, and a window of messages in flight),
#      and N clients all publishing in lockstep rounds; deliveries per second, latency from
#      publish to the last delivery and to each delivery, alternating A B A B, pinned.
#   5. Memory with the hub: VmRSS of each broadcast server before and after
#      BENCH_IDLE_CONNS idle connections (each joined to the group, HELLO received).
#   6. REST round trips: bench/rest-server (GET /items/:id through the rest layer) against
#      bench/node-socketio.mjs (Socket.IO, the same work in an event handler answering through
#      its acknowledgement), both driven by restgen: N connections, one request in flight each
#      (lockstep), every answer checked; round trips per second, latency, server CPU per
#      request, alternating A B A B, pinned. First the Socket.IO peer is checked with the real
#      npm socket.io-client (bench/sio-check.mjs).
#   7. Cross-node fan-out through Redis: two examples/broadcast --redis (nodes A and B) against
#      two bench/node-socketio-cluster.mjs (Socket.IO with @socket.io/redis-adapter), each pair
#      on a fresh redis-server of its own run; the publisher on A, N subscribers on B (fanout
#      --pub-port), lockstep and a window of messages in flight; deliveries per second,
#      latency, node B's CPU per delivery, node A's and Redis' CPU per message, Redis commands
#      per message (INFO commandstats over the window). Node B is pinned to the server core,
#      A, Redis and fanout to the other. The Socket.IO pair is first checked with the real
#      socket.io-client (bench/sio-cluster-check.mjs).
#   8. Memory per idle connection on node B with the redis engine (and Socket.IO with its
#      adapter): VmRSS before and after BENCH_IDLE_CONNS idle subscribers.
#   9. Where node B's time goes: strace -c -f on node B and MONITOR on Redis during a short
#      lockstep run of 100 subscribers, both servers: syscalls per delivery, commands each
#      client sent per published message.
# Every process it starts is killed by PID when it ends (or is interrupted).
set -uo pipefail

if [ $# -ne 2 ] && [ $# -ne 4 ]; then
  echo "usage: $0 PATH/TO/echo PATH/TO/loadgen [PATH/TO/broadcast PATH/TO/fanout]" >&2
  exit 2
fi
ECHO_BIN=$(readlink -f "$1")
LOADGEN=$(readlink -f "$2")
BROADCAST_BIN=$(readlink -f "${3:-$(dirname "$ECHO_BIN")/broadcast}")
FANOUT=$(readlink -f "${4:-$(dirname "$LOADGEN")/fanout}")
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
NODE_ECHO=$HERE/node-echo.mjs
NODE_BROADCAST=$HERE/node-broadcast.mjs
REST_BIN=$(dirname "$LOADGEN")/rest-server
RESTGEN=$(dirname "$LOADGEN")/restgen
NODE_SIO=$HERE/node-socketio.mjs
SIO_CHECK=$HERE/sio-check.mjs
NODE=${NODE:-node}

DURATION=${BENCH_DURATION:-5}
ROUNDS=${BENCH_ROUNDS:-3}
WARMUP=${BENCH_WARMUP:-1}
FRAME=${BENCH_FRAME:-binary}
IDLE_CONNS=${BENCH_IDLE_CONNS:-10000}
OUT=${BENCH_OUT:-$(dirname "$LOADGEN")/results.json}
SERVER_CPU=${BENCH_SERVER_CPU:-0}
CLIENT_CPU=${BENCH_CLIENT_CPU:-1}
CONFIGS=("100 32" "100 16384" "1000 32" "1000 16384") # conns size
ONLY=${BENCH_ONLY:-echo,fanout,rest,cluster}
FANOUT_SUBS=${BENCH_FANOUT_SUBS-1000 10000}
FANOUT_WINDOW=${BENCH_FANOUT_WINDOW:-8}
FANOUT_ALL=${BENCH_FANOUT_ALL-100 1000}
FANOUT_SIZE=32 # body of the publisher's SEND envelope; our pushes carry it with a 31-byte header
REST_CONNS=${BENCH_REST_CONNS-100 1000}
REST_WINDOW=${BENCH_REST_WINDOW:-1}
CLUSTER_SUBS=${BENCH_CLUSTER_SUBS-100 1000}
CLUSTER_WINDOW=${BENCH_CLUSTER_WINDOW:-8}
CLUSTER_ROUNDS=${BENCH_CLUSTER_ROUNDS:-2}
REDIS_SERVER=${REDIS_SERVER:-redis-server}
NODE_SIO_CLUSTER=$HERE/node-socketio-cluster.mjs
SIO_CLUSTER_CHECK=$HERE/sio-cluster-check.mjs

die() { echo "bench: $*" >&2; exit 1; }
note() { echo "bench: $*" >&2; }

# want SECTION: whether BENCH_ONLY asks for it.
want() { [[ ",$ONLY," == *",$1,"* ]]; }
for s in ${ONLY//,/ }; do
  case "$s" in echo|fanout|rest|cluster) ;; *) die "BENCH_ONLY takes echo, fanout, rest and/or cluster, comma-separated (got '$s')" ;; esac
done

[ -x "$LOADGEN" ] || die "not an executable: $2"
if want echo; then
  [ -x "$ECHO_BIN" ] || die "not an executable: $1"
  [ -f "$NODE_ECHO" ] || die "missing $NODE_ECHO"
fi
if want fanout; then
  [ -x "$BROADCAST_BIN" ] || die "not an executable: $BROADCAST_BIN (build examples/broadcast)"
  [ -x "$FANOUT" ] || die "not an executable: $FANOUT (build bench/fanout)"
  [ -f "$NODE_BROADCAST" ] || die "missing $NODE_BROADCAST"
  [[ "$FANOUT_WINDOW" =~ ^[1-9][0-9]*$ ]] || die "BENCH_FANOUT_WINDOW must be a positive integer"
  for n in $FANOUT_SUBS $FANOUT_ALL; do
    [[ "$n" =~ ^[1-9][0-9]*$ ]] || die "BENCH_FANOUT_SUBS and BENCH_FANOUT_ALL are lists of counts (got '$n')"
  done
fi
if want rest; then
  [ -x "$REST_BIN" ] || die "not an executable: $REST_BIN (build bench/rest-server)"
  [ -x "$RESTGEN" ] || die "not an executable: $RESTGEN (build bench/restgen)"
  [ -f "$NODE_SIO" ] && [ -f "$SIO_CHECK" ] || die "missing $NODE_SIO or $SIO_CHECK"
  [[ "$REST_WINDOW" =~ ^[1-9][0-9]*$ ]] || die "BENCH_REST_WINDOW must be a positive integer"
  [ -n "${REST_CONNS// /}" ] || die "BENCH_REST_CONNS is empty"
  for n in $REST_CONNS; do
    [[ "$n" =~ ^[1-9][0-9]*$ ]] || die "BENCH_REST_CONNS is a list of counts (got '$n')"
  done
fi
if want cluster; then
  [ -x "$BROADCAST_BIN" ] || die "not an executable: $BROADCAST_BIN (build examples/broadcast)"
  [ -x "$FANOUT" ] || die "not an executable: $FANOUT (build bench/fanout)"
  [ -f "$NODE_SIO_CLUSTER" ] && [ -f "$SIO_CLUSTER_CHECK" ] ||
    die "missing $NODE_SIO_CLUSTER or $SIO_CLUSTER_CHECK"
  command -v "$REDIS_SERVER" >/dev/null ||
    die "redis-server not found (REDIS_SERVER=$REDIS_SERVER): run scripts/setup.sh bench"
  command -v redis-cli >/dev/null || die "redis-cli not found: run scripts/setup.sh bench"
  [[ "$CLUSTER_WINDOW" =~ ^[1-9][0-9]*$ ]] || die "BENCH_CLUSTER_WINDOW must be a positive integer"
  [[ "$CLUSTER_ROUNDS" =~ ^[1-9][0-9]*$ ]] || die "BENCH_CLUSTER_ROUNDS must be a positive integer"
  [ -n "${CLUSTER_SUBS// /}" ] || die "BENCH_CLUSTER_SUBS is empty"
  for n in $CLUSTER_SUBS; do
    [[ "$n" =~ ^[1-9][0-9]*$ ]] || die "BENCH_CLUSTER_SUBS is a list of counts (got '$n')"
  done
fi
command -v "$NODE" >/dev/null || die "node not found (NODE=$NODE)"
case "$FRAME" in binary|text) ;; *) die "BENCH_FRAME is binary or text" ;; esac
[[ "$DURATION" =~ ^[0-9]+([.][0-9]+)?$ ]] || die "BENCH_DURATION must be a number of seconds"
[[ "$ROUNDS" =~ ^[1-9][0-9]*$ ]] || die "BENCH_ROUNDS must be a positive integer"
(cd "$HERE" && "$NODE" -e "require.resolve('ws')" >/dev/null 2>&1) ||
  die "the npm package ws is missing: run scripts/setup.sh bench (npm ci)"
if want rest; then
  (cd "$HERE" && "$NODE" -e "require.resolve('socket.io'); require.resolve('socket.io-client')" \
    >/dev/null 2>&1) ||
    die "the npm packages socket.io and socket.io-client are missing: run scripts/setup.sh bench (npm ci)"
fi
if want cluster; then
  (cd "$HERE" && "$NODE" -e "require.resolve('socket.io'); require.resolve('socket.io-client');
                             require.resolve('@socket.io/redis-adapter'); require.resolve('redis')" \
    >/dev/null 2>&1) ||
    die "the npm packages socket.io, socket.io-client, @socket.io/redis-adapter and redis are missing: run scripts/setup.sh bench (npm ci)"
fi

TMP=$(mktemp -d /tmp/sb-bench.XXXXXX)
PIDS=()

cleanup() {
  local pid
  for pid in "${PIDS[@]}"; do
    kill -0 "$pid" 2>/dev/null && kill -TERM "$pid" 2>/dev/null
  done
  for pid in "${PIDS[@]}"; do
    for _ in 1 2 3 4 5 6 7 8 9 10; do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null
    wait "$pid" 2>/dev/null
  done
  rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# Cores: server on one, loadgen on the other.
PIN_SERVER=()
PIN_CLIENT=()
if command -v taskset >/dev/null && [ "$(nproc)" -ge 2 ]; then
  PIN_SERVER=(taskset -c "$SERVER_CPU")
  PIN_CLIENT=(taskset -c "$CLIENT_CPU")
else
  note "taskset missing or fewer than 2 cores: server and loadgen are not pinned"
fi
# Line-buffer the servers' stdout so that the `listening on` line reaches its file at once.
LINEBUF=()
command -v stdbuf >/dev/null && LINEBUF=(stdbuf -oL)

# Descriptors for the idle test (loadgen and server each hold one per connection).
need_fd=$((IDLE_CONNS + 1024))
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null
cur_fd=$(ulimit -n)
if [ "$cur_fd" != unlimited ] && [ "$cur_fd" -lt "$need_fd" ]; then
  IDLE_CONNS=$((cur_fd - 1024))
  note "ulimit -n is $cur_fd: the memory test opens only $IDLE_CONNS connections"
fi
if want fanout && [ "$cur_fd" != unlimited ]; then
  for n in $FANOUT_SUBS $FANOUT_ALL; do
    [ $((n + 100)) -le "$cur_fd" ] ||
      note "ulimit -n is $cur_fd: the fan-out run with $n subscribers will fail to connect some"
  done
fi
# Ephemeral ports: all connections go from 127.0.0.1 to one port.
read -r port_lo port_hi < /proc/sys/net/ipv4/ip_local_port_range
if [ $((port_hi - port_lo + 1)) -lt $((IDLE_CONNS + 1000)) ]; then
  IDLE_CONNS=$((port_hi - port_lo + 1 - 1000))
  note "only $((port_hi - port_lo + 1)) ephemeral ports: the memory test opens $IDLE_CONNS"
fi

NSTART=0
SRV_PID=
SRV_PORT=
SRV_LOG=

# start_server ours|node [echo|broadcast|rest]: sets SRV_PID and SRV_PORT; returns non-zero if
# it did not come up. (node rest is the Socket.IO server.)
start_server() {
  local cmd app=${2:-echo}
  NSTART=$((NSTART + 1))
  SRV_LOG=$TMP/server-$NSTART-$1-$app
  case "$1 $app" in
    "ours echo") cmd=("$ECHO_BIN") ;;
    "ours broadcast") cmd=("$BROADCAST_BIN") ;;
    "ours rest") cmd=("$REST_BIN") ;;
    "node echo") cmd=("$NODE" "$NODE_ECHO") ;;
    "node broadcast") cmd=("$NODE" "$NODE_BROADCAST") ;;
    "node rest") cmd=("$NODE" "$NODE_SIO") ;;
    *) die "start_server: unknown server '$1 $app'" ;;
  esac
  cmd+=(--port 0 --host 127.0.0.1)
  "${PIN_SERVER[@]}" "${LINEBUF[@]}" "${cmd[@]}" >"$SRV_LOG.out" 2>"$SRV_LOG.err" </dev/null &
  SRV_PID=$!
  PIDS+=("$SRV_PID")
  SRV_PORT=
  for _ in $(seq 200); do # 10 s
    SRV_PORT=$(sed -n 's/^listening on .*:\([0-9][0-9]*\)[[:space:]]*$/\1/p' "$SRV_LOG.out" | head -n1)
    [ -n "$SRV_PORT" ] && return 0
    kill -0 "$SRV_PID" 2>/dev/null || break
    sleep 0.05
  done
  note "$1 server did not print 'listening on' (stderr: $(head -c 300 "$SRV_LOG.err"))"
  stop_server "$1"
  return 1
}

# stop_server NAME: SIGTERM, then SIGKILL after 5 s. Notes an exit that needed SIGKILL.
GRACE_FAILS=()
stop_server() {
  local pid=$SRV_PID
  [ -n "$pid" ] || return 0
  kill -TERM "$pid" 2>/dev/null
  for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  if kill -0 "$pid" 2>/dev/null; then
    kill -KILL "$pid" 2>/dev/null
    GRACE_FAILS+=("$1")
    note "$1 server (pid $pid) ignored SIGTERM for 5 s: killed"
  fi
  wait "$pid" 2>/dev/null
  SRV_PID=
}

# run_bg TIMEOUT CMD...: runs CMD in the background (so that traps fire), waits, returns its code.
run_bg() {
  local t=$1 pid rc
  shift
  timeout -k 5 "$t" "$@" &
  pid=$!
  PIDS+=("$pid")
  wait "$pid"
  rc=$?
  return $rc
}

# run_load KIND OUT TIMEOUT WHAT CMD...: runs the load generator CMD pinned to the client core
# (output in OUT.out and OUT.err) against the KIND server that start_server started, then stops
# that server. Sets result to the generator's JSON line, if it printed one. Notes a non-zero
# exit, a server that died, anything on the generator's or the server's stderr (WHAT: the run).
run_load() {
  local kind=$1 out=$2 t=$3 what=$4 prog rc alive line
  shift 4
  prog=$(basename "$1")
  run_bg "$t" "${PIN_CLIENT[@]}" "$@" >"$out.out" 2>"$out.err"
  rc=$?
  alive=1
  kill -0 "$SRV_PID" 2>/dev/null || alive=0
  stop_server "$kind"
  line=$(grep -m1 '^{' "$out.out")
  [ -n "$line" ] && result=$line
  if [ $rc -ne 0 ] || [ $alive -eq 0 ] || [ -s "$out.err" ]; then
    note "$what: $prog exit $rc, server alive=$alive; $prog stderr:" \
         "$(head -c 600 "$out.err" | tr '\n' ' ')"
  fi
  if [ -s "$SRV_LOG.err" ]; then
    note "$kind server stderr: $(head -c 300 "$SRV_LOG.err" | tr '\n' ' ')"
  fi
}

vmrss_kib() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status" 2>/dev/null; }

RESULTS=$TMP/results.jsonl
: >"$RESULTS"

echo "Switchboard benchmarks ($ONLY): ${DURATION}s measured (+${WARMUP}s warm-up), $ROUNDS rounds$(want cluster && echo " ($CLUSTER_ROUNDS in the cross-node part)")"
echo "server pinned to core $SERVER_CPU, load generator to core $CLIENT_CPU; $(nproc) cores;" \
     "load average $(cut -d' ' -f1-3 /proc/loadavg)"
echo

# idle_memory SECTION KIND APP: VmRSS of a fresh server (ours|node, echo|broadcast) before and
# after IDLE_CONNS idle connections; appends a SECTION line to $RESULTS.
idle_memory() {
  local section=$1 kind=$2 app=$3 result=null rss0 rss1 open line lg_pid idle_out recv
  local hello=()
  [ "$kind" = ours ] && hello=(--hello)
  if start_server "$kind" "$app"; then
    # Warm up first, so that the baseline already holds what any server pays once: code paged
    # in on the first handshake (OpenSSL's SHA-1 setup, Node's JIT), buffers sized on first
    # use. What remains is per connection. Echo: 100 connections echoing for a second.
    # Broadcast: 100 clients publishing to the group in lockstep rounds for a second (so the
    # group's history is as full as it gets, up to history_max), then closed.
    if [ "$app" = echo ]; then
      timeout 30 "${PIN_CLIENT[@]}" "$LOADGEN" --host 127.0.0.1 --port "$SRV_PORT" --conns 100 \
        --size 32 --duration 1 --warmup 0 >/dev/null 2>&1 </dev/null
    else
      timeout 30 "${PIN_CLIENT[@]}" "$FANOUT" --host 127.0.0.1 --port "$SRV_PORT" --pattern all \
        --subs 100 --duration 1 --warmup 0 "${hello[@]}" >/dev/null 2>&1 </dev/null
    fi
    sleep 1
    rss0=$(vmrss_kib "$SRV_PID")
    idle_out=$TMP/idle-$kind-$app
    # loadgen's idle mode reads and discards what the server sends (our HELLO), answers pings.
    "${PIN_CLIENT[@]}" "$LOADGEN" --host 127.0.0.1 --port "$SRV_PORT" --mode idle \
      --conns "$IDLE_CONNS" --connect-timeout 90 >"$idle_out.out" 2>"$idle_out.err" </dev/null &
    lg_pid=$!
    PIDS+=("$lg_pid")
    line=
    for _ in $(seq 1200); do # 120 s
      line=$(grep -m1 '^{' "$idle_out.out")
      [ -n "$line" ] && break
      kill -0 "$lg_pid" 2>/dev/null || break
      sleep 0.1
    done
    if [ -n "$line" ]; then
      sleep 2 # let the server finish whatever the last handshakes left behind
      rss1=$(vmrss_kib "$SRV_PID")
      open=$(sed -n 's/.*"open":\([0-9]*\).*/\1/p' <<<"$line")
      if [ -n "$rss0" ] && [ -n "$rss1" ] && [ "${open:-0}" -gt 0 ]; then
        result="{\"rss_before_kib\":$rss0,\"rss_after_kib\":$rss1,\"open\":$open,\"kib_per_conn\":$(awk -v a="$rss0" -v b="$rss1" -v n="$open" 'BEGIN { printf "%.2f", (b - a) / n }')}"
        printf '%-4s %-9s memory: VmRSS %s KiB -> %s KiB with %s idle connections\n' "$kind" "$app" "$rss0" "$rss1" "$open"
      else
        note "$kind $app memory test: no usable numbers (rss $rss0 -> $rss1, open $open)"
      fi
    else
      note "$kind $app memory test: loadgen printed nothing (stderr: $(head -c 300 "$idle_out.err" | tr '\n' ' '))"
    fi
    kill -TERM "$lg_pid" 2>/dev/null
    for _ in $(seq 50); do kill -0 "$lg_pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$lg_pid" 2>/dev/null
    wait "$lg_pid" 2>/dev/null
    # At exit loadgen says how many messages the idle connections got (our HELLO: one each).
    recv=$(sed -n 's/.*"msgs_received":\([0-9]*\).*/\1/p' "$idle_out.out" | tail -n1)
    if [ "$result" != null ] && [ -n "$recv" ]; then
      result="${result%\}},\"msgs_received\":$recv}"
    fi
    stop_server "$kind"
  fi
  echo "{\"section\":\"$section\",\"server\":\"$kind\",\"idle_conns\":$IDLE_CONNS,\"result\":$result}" >>"$RESULTS"
}

if want echo; then
  echo "Echo: $FRAME frames, 1 message in flight per connection"

  # ---------------------------------------------------------------------------------------------
  # 1. Echo throughput and latency
  # ---------------------------------------------------------------------------------------------
  lg_timeout=$(awk -v d="$DURATION" -v w="$WARMUP" 'BEGIN { printf "%d", d + w + 60 }')
  for cfg in "${CONFIGS[@]}"; do
    read -r conns size <<<"$cfg"
    for round in $(seq "$ROUNDS"); do
      for kind in ours node; do
        result=null
        if start_server "$kind"; then
          lg_out=$TMP/lg-$kind-$conns-$size-$round
          run_bg "$lg_timeout" "${PIN_CLIENT[@]}" "$LOADGEN" --host 127.0.0.1 --port "$SRV_PORT" \
            --conns "$conns" --size "$size" --inflight 1 --duration "$DURATION" \
            --warmup "$WARMUP" --"$FRAME" --connect-timeout 30 --server-pid "$SRV_PID" \
            >"$lg_out.out" 2>"$lg_out.err"
          rc=$?
          alive=1
          kill -0 "$SRV_PID" 2>/dev/null || alive=0
          stop_server "$kind"
          line=$(grep -m1 '^{' "$lg_out.out")
          if [ -n "$line" ]; then
            result=$line
          fi
          if [ $rc -ne 0 ] || [ $alive -eq 0 ]; then
            note "$kind ${conns}x${size} round $round: loadgen exit $rc, server alive=$alive;" \
                 "loadgen stderr: $(head -c 400 "$lg_out.err" | tr '\n' ' ')"
          fi
        fi
        echo "{\"section\":\"echo\",\"server\":\"$kind\",\"conns\":$conns,\"size\":$size,\"round\":$round,\"result\":$result}" >>"$RESULTS"
        if [ "$result" != null ]; then
          printf '%-4s %4s conns x %5s B  round %s: %s\n' "$kind" "$conns" "$size" "$round" \
            "$("$NODE" -e '
              const r = JSON.parse(process.argv[1]);
              const f = (x) => x === undefined ? "?" : x;
              console.log(`${r.msgs_per_s} msg/s  p50 ${r.p50_us} us  p99 ${r.p99_us} us  ` +
                `errors ${r.errors}  server ${f(r.server_cpu_pct)}% CPU  ` +
                `loadgen ${r.client_cpu_pct}% CPU  other ${f(r.other_cpu_pct)}%`);' "$result")"
        else
          printf '%-4s %4s conns x %5s B  round %s: FAILED\n' "$kind" "$conns" "$size" "$round"
        fi
      done
    done
  done
  echo
  echo

  # ---------------------------------------------------------------------------------------------
  # 2. Memory per idle connection
  # ---------------------------------------------------------------------------------------------
  for kind in ours node; do idle_memory memory "$kind" echo; done
  echo

  # ---------------------------------------------------------------------------------------------
  # 3. Syscalls per echoed message (our server, under strace -c)
  # ---------------------------------------------------------------------------------------------
  if command -v strace >/dev/null; then
    result=null
    if start_server ours; then
      st_out=$TMP/strace.txt
      strace -c -f -p "$SRV_PID" -o "$st_out" 2>"$TMP/strace.err" &
      st_pid=$!
      PIDS+=("$st_pid")
      sleep 1 # attach
      run_bg 60 "${PIN_CLIENT[@]}" "$LOADGEN" --host 127.0.0.1 --port "$SRV_PORT" --conns 100 \
        --size 32 --inflight 1 --duration 3 --warmup 0 --"$FRAME" --connect-timeout 30 \
        >"$TMP/strace-lg.out" 2>"$TMP/strace-lg.err"
      line=$(grep -m1 '^{' "$TMP/strace-lg.out")
      sleep 0.5
      kill -INT "$st_pid" 2>/dev/null
      for _ in $(seq 100); do kill -0 "$st_pid" 2>/dev/null || break; sleep 0.1; done
      kill -KILL "$st_pid" 2>/dev/null
      wait "$st_pid" 2>/dev/null
      stop_server ours
      msgs=$(sed -n 's/.*"total_msgs":\([0-9]*\).*/\1/p' <<<"$line")
      if [ -n "$msgs" ] && [ "$msgs" -gt 0 ] && [ -s "$st_out" ]; then
        counts=$(awk '$NF ~ /^[a-z_0-9]+$/ && $4 ~ /^[0-9]+$/ && $NF != "total" {
                        printf "%s\"%s\":%s", (n++ ? "," : ""), $NF, $4 }' "$st_out")
        result="{\"msgs\":$msgs,\"counts\":{$counts}}"
      else
        note "syscall test: no usable numbers (loadgen: $(head -c 300 "$TMP/strace-lg.err" | tr '\n' ' ') strace: $(head -c 300 "$TMP/strace.err" | tr '\n' ' '))"
      fi
    fi
    echo "{\"section\":\"syscalls\",\"server\":\"ours\",\"result\":$result}" >>"$RESULTS"
  else
    note "strace not installed: no syscall count (scripts/setup.sh bench installs it)"
  fi
fi # want echo

# ---------------------------------------------------------------------------------------------
# 4. Fan-out: one publisher -> N subscribers, and N clients all publishing (examples/broadcast
#    against bench/node-broadcast.mjs, load from fanout)
# ---------------------------------------------------------------------------------------------
if want fanout; then
  FO_CONFIGS=() # pattern subs window
  for n in $FANOUT_SUBS; do
    FO_CONFIGS+=("one $n 1")
    [ "$FANOUT_WINDOW" -gt 1 ] && FO_CONFIGS+=("one $n $FANOUT_WINDOW")
  done
  for n in $FANOUT_ALL; do FO_CONFIGS+=("all $n 1"); done
  echo "Fan-out: $FANOUT_SIZE-byte message bodies (SEND envelopes of $((FANOUT_SIZE + 26)) bytes, PUSH" \
       "envelopes of $((FANOUT_SIZE + 31)) bytes from both servers); load from fanout"
  # Connecting 10,000 clients (and waiting for their HELLOs) takes a few seconds.
  fo_timeout=$(awk -v d="$DURATION" -v w="$WARMUP" 'BEGIN { printf "%d", d + w + 150 }')
  for cfg in "${FO_CONFIGS[@]}"; do
    read -r pattern subs window <<<"$cfg"
    for round in $(seq "$ROUNDS"); do
      for kind in ours node; do
        result=null
        if start_server "$kind" broadcast; then
          hello=()
          [ "$kind" = ours ] && hello=(--hello) # wait until every connection has joined
          run_load "$kind" "$TMP/fo-$kind-$pattern-$subs-$window-$round" "$fo_timeout" \
            "$kind fan-out $pattern $subs w$window round $round" \
            "$FANOUT" --host 127.0.0.1 --port "$SRV_PORT" \
            --pattern "$pattern" --subs "$subs" --window "$window" --size "$FANOUT_SIZE" \
            --duration "$DURATION" --warmup "$WARMUP" "${hello[@]}" --connect-timeout 90 \
            --server-pid "$SRV_PID"
        fi
        echo "{\"section\":\"fanout\",\"server\":\"$kind\",\"pattern\":\"$pattern\",\"subs\":$subs,\"window\":$window,\"round\":$round,\"result\":$result}" >>"$RESULTS"
        label=$(if [ "$pattern" = one ]; then echo "1 -> $subs w$window"; else echo "$subs all pub"; fi)
        if [ "$result" != null ]; then
          printf '%-4s %-16s round %s: %s\n' "$kind" "$label" "$round" \
            "$("$NODE" -e '
              const r = JSON.parse(process.argv[1]);
              const f = (x) => x === undefined ? "?" : x;
              const ms = (x) => (x / 1000).toFixed(x < 10000 ? 2 : 1);
              const codes = Object.entries(r.close_codes).map(([k, v]) => `${k}x${v}`).join(",");
              console.log(`${r.deliveries_per_s} deliv/s (${r.msgs_per_s} msg/s)  last ` +
                `${ms(r.last_p50_us)}/${ms(r.last_p99_us)} ms  each ` +
                `${ms(r.each_p50_us)}/${ms(r.each_p99_us)} ms  errors ${r.errors}` +
                (r.stalled ? " STALLED" : "") + (codes ? ` closes ${codes}` : "") +
                `  server ${f(r.server_cpu_pct)}%  fanout ${r.client_cpu_pct}%  ` +
                `other ${f(r.other_cpu_pct)}%`);' "$result")"
        else
          printf '%-4s %-16s round %s: FAILED\n' "$kind" "$label" "$round"
        fi
      done
    done
  done
  echo

  # -------------------------------------------------------------------------------------------
  # 5. Memory per idle connection with the hub (broadcast: id, group membership, session)
  # -------------------------------------------------------------------------------------------
  for kind in ours node; do idle_memory hub_memory "$kind" broadcast; done
  echo
fi

# ---------------------------------------------------------------------------------------------
# 6. REST round trips: bench/rest-server (GET /items/:id, the rest layer) against Socket.IO
#    (bench/node-socketio.mjs, an event with an acknowledgement), load from restgen
# ---------------------------------------------------------------------------------------------
REST_CHECK=skipped
if want rest; then
  echo "REST round trips: GET /items/<k> answered 200 {\"id\":\"<k>\",\"name\":\"item <k>\",\"price\":42};" \
       "ours: REQUEST/RESPONSE envelopes, Socket.IO: emit('get', url, ack); load from restgen"
  # First the peer, checked with Socket.IO's own client: what restgen measures must be what a
  # real Socket.IO application gets. (restgen checks every answer of both servers itself.)
  REST_CHECK=failed
  if start_server node rest; then
    if run_bg 30 "$NODE" "$SIO_CHECK" --host 127.0.0.1 --port "$SRV_PORT" \
         >"$TMP/sio-check.out" 2>"$TMP/sio-check.err"; then
      REST_CHECK=passed
    fi
    sed 's/^/  /' "$TMP/sio-check.out" "$TMP/sio-check.err"
    stop_server node
  fi
  if [ "$REST_CHECK" != passed ]; then
    note "the Socket.IO peer failed its check with socket.io-client: no REST measurements"
  else
    REST_CONFIGS=() # conns window
    for n in $REST_CONNS; do
      REST_CONFIGS+=("$n 1")
      [ "$REST_WINDOW" -gt 1 ] && REST_CONFIGS+=("$n $REST_WINDOW")
    done
    rest_timeout=$(awk -v d="$DURATION" -v w="$WARMUP" 'BEGIN { printf "%d", d + w + 90 }')
    for cfg in "${REST_CONFIGS[@]}"; do
      read -r conns window <<<"$cfg"
      for round in $(seq "$ROUNDS"); do
        for kind in ours node; do
          result=null
          proto=sb
          [ "$kind" = node ] && proto=sio
          if start_server "$kind" rest; then
            run_load "$kind" "$TMP/rest-$kind-$conns-$window-$round" "$rest_timeout" \
              "$kind rest ${conns}x w$window round $round" \
              "$RESTGEN" --proto "$proto" \
              --host 127.0.0.1 --port "$SRV_PORT" --conns "$conns" --window "$window" \
              --duration "$DURATION" --warmup "$WARMUP" --connect-timeout 60 \
              --server-pid "$SRV_PID"
          fi
          echo "{\"section\":\"rest\",\"server\":\"$kind\",\"conns\":$conns,\"window\":$window,\"round\":$round,\"result\":$result}" >>"$RESULTS"
          label=$([ "$kind" = ours ] && echo ours || echo sio)
          if [ "$result" != null ]; then
            printf '%-4s %4s conns w%-3s round %s: %s\n' "$label" "$conns" "$window" "$round" \
              "$("$NODE" -e '
                const r = JSON.parse(process.argv[1]);
                const f = (x) => x === undefined ? "?" : x;
                console.log(`${r.rps} req/s  p50 ${r.p50_us} us  p99 ${r.p99_us} us  ` +
                  `errors ${r.errors}  server ${f(r.server_cpu_pct)}% CPU, ` +
                  `${f(r.server_cpu_us_per_req)} us/req  restgen ${r.client_cpu_pct}% CPU  ` +
                  `other ${f(r.other_cpu_pct)}%`);' "$result")"
          else
            printf '%-4s %4s conns w%-3s round %s: FAILED\n' "$label" "$conns" "$window" "$round"
          fi
        done
      done
    done
  fi
  echo
fi

# ---------------------------------------------------------------------------------------------
# 7-9. Cross-node fan-out through Redis: examples/broadcast --redis (nodes A and B) against
#      bench/node-socketio-cluster.mjs (Socket.IO + @socket.io/redis-adapter), load from fanout
# ---------------------------------------------------------------------------------------------
CLUSTER_CHECK=skipped
if want cluster; then
  NCL=0
  CL_DIR=
  R_PID= R_PORT= A_PID= A_PORT= B_PID= B_PORT=

  free_port() {
    "$NODE" -e 'const s = require("net").createServer();
                s.listen(0, "127.0.0.1", () => { console.log(s.address().port); s.close(); });'
  }

  # stop_pid WHAT PID: SIGTERM, then SIGKILL after 5 s (noted).
  stop_pid() {
    local what=$1 pid=$2
    [ -n "$pid" ] || return 0
    kill -TERM "$pid" 2>/dev/null
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    if kill -0 "$pid" 2>/dev/null; then
      kill -KILL "$pid" 2>/dev/null
      GRACE_FAILS+=("$what")
      note "$what (pid $pid) ignored SIGTERM for 5 s: killed"
    fi
    wait "$pid" 2>/dev/null
  }

  # launch NAME CORE CMD...: starts CMD (pinned to CORE if pinning is on), waits up to 10 s
  # for its "listening on" line; sets NAME_PID and NAME_PORT; non-zero if it did not come up.
  launch() {
    local name=$1 core=$2 log=$CL_DIR/$1 pid port= pin=()
    shift 2
    [ ${#PIN_SERVER[@]} -gt 0 ] && pin=(taskset -c "$core")
    "${pin[@]}" "${LINEBUF[@]}" "$@" >"$log.out" 2>"$log.err" </dev/null &
    pid=$!
    PIDS+=("$pid")
    printf -v "${name}_PID" '%s' "$pid"
    for _ in $(seq 200); do
      port=$(sed -n 's/^listening on .*:\([0-9][0-9]*\)[[:space:]]*$/\1/p' "$log.out" | head -n1)
      [ -n "$port" ] && break
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.05
    done
    printf -v "${name}_PORT" '%s' "$port"
    [ -n "$port" ] && return 0
    note "node $name did not print 'listening on' (stderr: $(head -c 300 "$log.err" | tr '\n' ' '))"
    return 1
  }

  # start_cluster ours|sio: a fresh redis-server (no persistence, its own directory, a free
  # loopback port) and nodes A and B on it. Redis and A on the client core, B on the server
  # core. Sets R_*, A_*, B_*; non-zero (after stopping what started) if something failed.
  start_cluster() {
    local kind=$1 url
    NCL=$((NCL + 1))
    CL_DIR=$TMP/cluster-$NCL-$kind
    mkdir -p "$CL_DIR/redis"
    R_PORT=$(free_port)
    A_PID= B_PID= A_PORT= B_PORT=
    "${PIN_CLIENT[@]}" "$REDIS_SERVER" --port "$R_PORT" --bind 127.0.0.1 --save '' \
      --appendonly no --dir "$CL_DIR/redis" --logfile "$CL_DIR/redis.log" >/dev/null 2>&1 </dev/null &
    R_PID=$!
    PIDS+=("$R_PID")
    local up=0
    for _ in $(seq 100); do
      kill -0 "$R_PID" 2>/dev/null || break
      if [ "$(redis-cli -p "$R_PORT" ping 2>/dev/null)" = PONG ]; then up=1; break; fi
      sleep 0.05
    done
    if [ $up = 0 ] || ! kill -0 "$R_PID" 2>/dev/null; then
      note "redis-server did not start on port $R_PORT: $(tail -c 300 "$CL_DIR/redis.log" 2>/dev/null | tr '\n' ' ')"
      stop_cluster "$kind"
      return 1
    fi
    url=redis://127.0.0.1:$R_PORT
    if [ "$kind" = ours ]; then
      launch A "$CLIENT_CPU" "$BROADCAST_BIN" --port 0 --host 127.0.0.1 --redis "$url" --node-id bench-a &&
        launch B "$SERVER_CPU" "$BROADCAST_BIN" --port 0 --host 127.0.0.1 --redis "$url" --node-id bench-b
    else
      launch A "$CLIENT_CPU" "$NODE" "$NODE_SIO_CLUSTER" --port 0 --host 127.0.0.1 --redis "$url" &&
        launch B "$SERVER_CPU" "$NODE" "$NODE_SIO_CLUSTER" --port 0 --host 127.0.0.1 --redis "$url"
    fi || { stop_cluster "$kind"; return 1; }
  }

  # stop_cluster KIND: B, A, then Redis; notes anything the nodes wrote on stderr beyond
  # their start-up line.
  stop_cluster() {
    local kind=$1 n
    stop_pid "$kind node B" "$B_PID"
    stop_pid "$kind node A" "$A_PID"
    stop_pid "redis-server" "$R_PID"
    for n in A B; do
      if [ -s "$CL_DIR/$n.err" ] && grep -qv '^broadcast: node .*, Redis at ' "$CL_DIR/$n.err"; then
        note "$kind node $n stderr: $(grep -v '^broadcast: node .*, Redis at ' "$CL_DIR/$n.err" | head -c 300 | tr '\n' ' ')"
      fi
    done
    R_PID= A_PID= B_PID=
  }

  proto_args() { # KIND: fanout's protocol options
    if [ "$1" = ours ]; then echo "--proto sb --hello"; else echo "--proto sio"; fi
  }

  echo "Cross-node fan-out through Redis: the publisher on node A, N subscribers on node B, one" \
       "redis-server per run; $FANOUT_SIZE-byte bodies; node B on core $SERVER_CPU, node A, Redis" \
       "and fanout on core $CLIENT_CPU; $CLUSTER_ROUNDS rounds"
  # First the Socket.IO pair, checked with Socket.IO's own client.
  CLUSTER_CHECK=failed
  if start_cluster sio; then
    if run_bg 30 "$NODE" "$SIO_CLUSTER_CHECK" --host 127.0.0.1 --pub-port "$A_PORT" --port "$B_PORT" \
         >"$TMP/sio-cluster-check.out" 2>"$TMP/sio-cluster-check.err"; then
      CLUSTER_CHECK=passed
    fi
    sed 's/^/  /' "$TMP/sio-cluster-check.out" "$TMP/sio-cluster-check.err"
    stop_cluster sio
  fi
  [ "$CLUSTER_CHECK" = passed ] ||
    note "the Socket.IO cluster failed its check with socket.io-client: Socket.IO is not measured"
  CL_KINDS=(ours)
  [ "$CLUSTER_CHECK" = passed ] && CL_KINDS+=(sio)

  # 7. Deliveries, latency, CPU of B, A and Redis, Redis commands.
  CL_CONFIGS=() # subs window
  for n in $CLUSTER_SUBS; do
    CL_CONFIGS+=("$n 1")
    [ "$CLUSTER_WINDOW" -gt 1 ] && CL_CONFIGS+=("$n $CLUSTER_WINDOW")
  done
  cl_timeout=$(awk -v d="$DURATION" -v w="$WARMUP" 'BEGIN { printf "%d", d + w + 60 }')
  for cfg in "${CL_CONFIGS[@]}"; do
    read -r subs window <<<"$cfg"
    for round in $(seq "$CLUSTER_ROUNDS"); do
      for kind in "${CL_KINDS[@]}"; do
        result=null
        if start_cluster "$kind"; then
          out=$CL_DIR/fanout
          # shellcheck disable=SC2046
          run_bg "$cl_timeout" "${PIN_CLIENT[@]}" "$FANOUT" $(proto_args "$kind") \
            --host 127.0.0.1 --port "$B_PORT" --pub-port "$A_PORT" --subs "$subs" \
            --window "$window" --size "$FANOUT_SIZE" --duration "$DURATION" --warmup "$WARMUP" \
            --connect-timeout 60 --server-pid "$B_PID" --pub-server-pid "$A_PID" \
            --redis-port "$R_PORT" >"$out.out" 2>"$out.err"
          rc=$?
          alive=1
          kill -0 "$A_PID" 2>/dev/null && kill -0 "$B_PID" 2>/dev/null || alive=0
          stop_cluster "$kind"
          line=$(grep -m1 '^{' "$out.out")
          [ -n "$line" ] && result=$line
          if [ $rc -ne 0 ] || [ $alive -eq 0 ] || [ -s "$out.err" ]; then
            note "$kind cluster 1 -> $subs w$window round $round: fanout exit $rc, nodes alive=$alive;" \
                 "fanout stderr: $(head -c 600 "$out.err" | tr '\n' ' ')"
          fi
        fi
        echo "{\"section\":\"cluster\",\"server\":\"$kind\",\"subs\":$subs,\"window\":$window,\"round\":$round,\"result\":$result}" >>"$RESULTS"
        if [ "$result" != null ]; then
          printf '%-4s A -> B %5s w%-3s round %s: %s\n' "$kind" "$subs" "$window" "$round" \
            "$("$NODE" -e '
              const r = JSON.parse(process.argv[1]);
              const f = (x, d = 0) => x === undefined ? "?" : Number(x).toFixed(d);
              const ms = (x) => (x / 1000).toFixed(x < 10000 ? 2 : 1);
              console.log(`${r.deliveries_per_s} deliv/s (${r.msgs_per_s} msg/s)  last ` +
                `${ms(r.last_p50_us)}/${ms(r.last_p99_us)} ms  each ` +
                `${ms(r.each_p50_us)}/${ms(r.each_p99_us)} ms  errors ${r.errors}` +
                (r.stalled ? " STALLED" : "") +
                `  B ${f(r.server_cpu_ns_per_delivery)} ns/deliv ${f(r.server_cpu_pct)}%  A ` +
                `${f(r.pub_server_cpu_us_per_msg, 1)} us/msg  redis ${f(r.redis_cpu_us_per_msg, 1)} ` +
                `us/msg ${f(r.redis_cmds_per_msg, 2)} cmds/msg  fanout ${r.client_cpu_pct}%  ` +
                `other ${f(r.other_cpu_pct)}%`);' "$result")"
        else
          printf '%-4s A -> B %5s w%-3s round %s: FAILED\n' "$kind" "$subs" "$window" "$round"
        fi
      done
    done
  done
  echo

  # 8. Memory per idle connection on node B: each subscriber joined to the group (room), its
  #    HELLO (Socket.IO: namespace connect) received; at most 64 handshakes in flight, as
  #    loadgen's memory tests. Ours once more with 8 in flight: with the redis engine what a
  #    burst of handshakes leaves behind in the heap depends on how many are in flight.
  MEM_RUNS=("ours 64" "ours 8")
  [ "$CLUSTER_CHECK" = passed ] && MEM_RUNS+=("sio 64")
  for mr in "${MEM_RUNS[@]}"; do
    read -r kind conc <<<"$mr"
    result=null
    if start_cluster "$kind"; then
      # Warm-up on B alone: a publisher and 100 subscribers for a second, then closed.
      # shellcheck disable=SC2046
      timeout 30 "${PIN_CLIENT[@]}" "$FANOUT" $(proto_args "$kind") --host 127.0.0.1 \
        --port "$B_PORT" --subs 100 --duration 1 --warmup 0 >/dev/null 2>&1 </dev/null
      sleep 1
      rss0=$(vmrss_kib "$B_PID")
      idle_out=$CL_DIR/idle
      # shellcheck disable=SC2046
      "${PIN_CLIENT[@]}" "$FANOUT" $(proto_args "$kind") --idle --host 127.0.0.1 --port "$B_PORT" \
        --subs "$IDLE_CONNS" --connect-concurrency "$conc" --connect-timeout 90 \
        >"$idle_out.out" 2>"$idle_out.err" </dev/null &
      fo_pid=$!
      PIDS+=("$fo_pid")
      line=
      for _ in $(seq 1200); do # 120 s
        line=$(grep -m1 '^{' "$idle_out.out")
        [ -n "$line" ] && break
        kill -0 "$fo_pid" 2>/dev/null || break
        sleep 0.1
      done
      if [ -n "$line" ]; then
        sleep 2 # let node B finish whatever the last handshakes left behind
        rss1=$(vmrss_kib "$B_PID")
        ready=$(sed -n 's/.*"ready":\([0-9]*\).*/\1/p' <<<"$line")
        open=$(sed -n 's/.*"open":\([0-9]*\).*/\1/p' <<<"$line")
        if [ -n "$rss0" ] && [ -n "$rss1" ] && [ "${ready:-0}" -gt 0 ]; then
          result="{\"rss_before_kib\":$rss0,\"rss_after_kib\":$rss1,\"open\":$open,\"ready\":$ready,\"kib_per_conn\":$(awk -v a="$rss0" -v b="$rss1" -v n="$ready" 'BEGIN { printf "%.3f", (b - a) / n }')}"
          printf '%-4s node B memory: VmRSS %s KiB -> %s KiB with %s idle subscribers (%s open, %s handshakes in flight)\n' \
            "$kind" "$rss0" "$rss1" "$ready" "$open" "$conc"
        else
          note "$kind cluster memory test: no usable numbers (rss $rss0 -> $rss1, ready $ready)"
        fi
      else
        note "$kind cluster memory test: fanout printed nothing (stderr: $(head -c 300 "$idle_out.err" | tr '\n' ' '))"
      fi
      kill -TERM "$fo_pid" 2>/dev/null
      for _ in $(seq 50); do kill -0 "$fo_pid" 2>/dev/null || break; sleep 0.1; done
      kill -KILL "$fo_pid" 2>/dev/null
      wait "$fo_pid" 2>/dev/null
      stop_cluster "$kind"
    fi
    echo "{\"section\":\"cluster_memory\",\"server\":\"$kind\",\"conc\":$conc,\"idle_conns\":$IDLE_CONNS,\"result\":$result}" >>"$RESULTS"
  done
  echo

  # 9. Where the time goes: strace -c -f on node B and MONITOR on Redis during a short lockstep
  #    run (their overhead makes its rates meaningless; only the counts per message count).
  #    fanout's first INFO cpu (after its CONFIG RESETSTAT, which MONITOR does not show) and its
  #    final INFO commandstats mark the measured window in MONITOR's output; a line
  #    "[db 127.0.0.1:port]" is a command a client sent, "[db lua]" one a script ran.
  if command -v strace >/dev/null; then
    for kind in "${CL_KINDS[@]}"; do
      result=null
      if start_cluster "$kind"; then
        redis-cli -p "$R_PORT" monitor >"$CL_DIR/monitor.txt" 2>/dev/null </dev/null &
        mon_pid=$!
        PIDS+=("$mon_pid")
        strace -c -f -p "$B_PID" -o "$CL_DIR/strace.txt" 2>"$CL_DIR/strace.err" &
        st_pid=$!
        PIDS+=("$st_pid")
        sleep 1 # attach
        # shellcheck disable=SC2046
        run_bg 60 "${PIN_CLIENT[@]}" "$FANOUT" $(proto_args "$kind") --host 127.0.0.1 \
          --port "$B_PORT" --pub-port "$A_PORT" --subs 100 --window 1 --size "$FANOUT_SIZE" \
          --duration 3 --warmup 1 --connect-timeout 30 --redis-port "$R_PORT" \
          >"$CL_DIR/diag.out" 2>"$CL_DIR/diag.err"
        line=$(grep -m1 '^{' "$CL_DIR/diag.out")
        sleep 0.5
        kill -INT "$st_pid" 2>/dev/null
        for _ in $(seq 100); do kill -0 "$st_pid" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$st_pid" 2>/dev/null
        wait "$st_pid" 2>/dev/null
        kill -TERM "$mon_pid" 2>/dev/null
        wait "$mon_pid" 2>/dev/null
        stop_cluster "$kind"
        published=$(sed -n 's/.*"published":\([0-9]*\).*/\1/p' <<<"$line")
        # strace counts the whole run: per delivery of the whole run (warm-up included).
        delivered=$(sed -n 's/.*"total_deliveries":\([0-9]*\).*/\1/p' <<<"$line")
        if [ -n "$published" ] && [ "$published" -gt 0 ] && [ -s "$CL_DIR/strace.txt" ]; then
          counts=$(awk '$NF ~ /^[a-z_0-9]+$/ && $4 ~ /^[0-9]+$/ && $NF != "total" {
                          printf "%s\"%s\":%s", (n++ ? "," : ""), $NF, $4 }' "$CL_DIR/strace.txt")
          sent=$(awk '
            { l = tolower($0) }
            !seen && l ~ /"info" "cpu"/ { on = seen = 1; next }
            on && l ~ /"info" "commandstats"/ { on = 0; next }
            !on { next }
            / \[[0-9]+ lua\] / { lua++; next }
            / \[[0-9]+ [^]]*:[0-9]+\] / {
              c = $4; gsub(/"/, "", c); c = tolower(c)
              if (c != "info") n[c]++
            }
            END {
              for (c in n) printf "%s\"%s\":%d", (k++ ? "," : ""), c, n[c]
              printf "},\"in_scripts\":%d", lua + 0
            }' "$CL_DIR/monitor.txt")
          # ($sent ends with the sent counts' closing brace and "in_scripts":N.)
          result="{\"published\":$published,\"deliveries\":${delivered:-0},\"counts\":{$counts},\"sent\":{$sent}"
          printf '%-4s diagnostics: %s messages published, %s deliveries under strace and MONITOR\n' \
            "$kind" "$published" "${delivered:-0}"
        else
          note "$kind cluster diagnostics: no usable numbers (fanout: $(head -c 300 "$CL_DIR/diag.err" | tr '\n' ' ') strace: $(head -c 300 "$CL_DIR/strace.err" | tr '\n' ' '))"
        fi
      fi
      echo "{\"section\":\"cluster_diag\",\"server\":\"$kind\",\"result\":$result}" >>"$RESULTS"
    done
  else
    note "strace not installed: no syscall count of node B (scripts/setup.sh bench installs it)"
  fi
  echo
fi

# ---------------------------------------------------------------------------------------------
# Report: tables on stdout, everything as JSON in $OUT
# ---------------------------------------------------------------------------------------------
mkdir -p "$(dirname "$OUT")"
ws_version=$(cd "$HERE" && "$NODE" -p "require('ws/package.json').version" 2>/dev/null || echo unknown)
sio_version=$(cd "$HERE" && "$NODE" -p "require('socket.io/package.json').version" 2>/dev/null || echo unknown)
adapter_version=$(cd "$HERE" && "$NODE" -p "require('@socket.io/redis-adapter/package.json').version" 2>/dev/null || echo unknown)
redis_client_version=$(cd "$HERE" && "$NODE" -p "require('redis/package.json').version" 2>/dev/null || echo unknown)
redis_version=$("$REDIS_SERVER" --version 2>/dev/null | sed -n 's/.* v=\([0-9.]*\).*/\1/p')
"$NODE" - "$RESULTS" "$OUT" "$DURATION" "$ROUNDS" "$WARMUP" "$FRAME" "$ECHO_BIN" \
  "$ws_version" "$SERVER_CPU" "$CLIENT_CPU" "${GRACE_FAILS[*]:-}" "$ONLY" "$BROADCAST_BIN" \
  "$FANOUT_SIZE" "$REST_BIN" "$sio_version" "$REST_CHECK" "$CLUSTER_CHECK" "$CLUSTER_ROUNDS" \
  "$adapter_version" "$redis_client_version" "${redis_version:-unknown}" <<'EOF'
const fs = require('fs');
const os = require('os');
const [resultsFile, outFile, duration, rounds, warmup, frame, echoBin, wsVersion, srvCpu,
       cliCpu, graceFails, only, broadcastBin, fanoutSize, restBin, sioVersion,
       restCheck, clusterCheck, clusterRounds, adapterVersion, redisClientVersion,
       redisVersion] = process.argv.slice(2);
const sections = only.split(',').filter(Boolean);
const rows = fs.readFileSync(resultsFile, 'utf8').trim().split('\n').filter(Boolean)
  .map((l) => {
    try {
      return JSON.parse(l);
    } catch {
      console.error(`bench: unreadable result line: ${l.slice(0, 200)}`);
      return {};
    }
  });

const median = (xs) => {
  xs = xs.filter((x) => typeof x === 'number' && Number.isFinite(x)).sort((a, b) => a - b);
  if (!xs.length) return null;
  const m = xs.length >> 1;
  return xs.length % 2 ? xs[m] : (xs[m - 1] + xs[m]) / 2;
};
const max = (xs) => {
  xs = xs.filter((x) => typeof x === 'number');
  return xs.length ? Math.max(...xs) : null;
};
const fmt = (x, d = 0) => (x === null || x === undefined ? '-' : Number(x).toFixed(d));
const pad = (s, n) => String(s).padStart(n);
const padr = (s, n) => String(s).padEnd(n);
// Microseconds as milliseconds, 2, 1 or 0 decimals.
const ms = (us) => (us === null || us === undefined ? '-'
  : (us / 1000).toFixed(us < 10000 ? 2 : us < 100000 ? 1 : 0));
// warner(entries, label)(cond, what): a warning naming the entries for which cond holds.
const warner = (entries, label) => (cond, what) => {
  const bad = entries.filter(cond);
  if (bad.length) console.log(`warning: ${what}: ${bad.map(label).join('; ')}`);
};
// One server's runs of one configuration: every run's JSON, how many failed, the medians of
// `fields`, the highest client and other CPU%, the errors summed (extra: more fields, computed
// from the results that are there).
const summary = (runs, fields, extra = () => ({})) => {
  const ok = runs.map((r) => r.result).filter(Boolean);
  const pick = (f) => ok.map((r) => r[f]);
  const med = {};
  for (const f of fields) med[f] = median(pick(f));
  return {
    runs: runs.map((r) => r.result),
    failed_runs: runs.length - ok.length,
    median: med,
    max_client_cpu_pct: max(pick('client_cpu_pct')),
    max_other_cpu_pct: max(pick('other_cpu_pct')),
    errors: pick('errors').reduce((a, b) => a + (b || 0), 0),
    ...extra(ok, pick),
  };
};

const echo = [];
for (const conns of [100, 1000]) {
  for (const size of [32, 16384]) {
    const entry = { conns, size, inflight: 1 };
    for (const server of ['ours', 'node']) {
      const runs = rows.filter((r) => r.section === 'echo' && r.server === server &&
                                      r.conns === conns && r.size === size);
      entry[server] = summary(runs, ['msgs_per_s', 'p50_us', 'p99_us', 'server_cpu_us_per_msg',
                                     'server_cpu_pct', 'client_cpu_pct']);
    }
    const a = entry.ours.median.msgs_per_s, b = entry.node.median.msgs_per_s;
    entry.ratio = a && b ? a / b : null;
    echo.push(entry);
  }
}

const ranEcho = sections.includes('echo');
if (ranEcho) {
console.log(`Echo, 1 message in flight per connection: medians of ${rounds} runs of ${duration} s`);
const head = [padr('config', 18), pad('ours msg/s', 11), pad('node msg/s', 11), pad('ratio', 6),
  pad('ours p50/p99 us', 17), pad('node p50/p99 us', 17), pad('ours CPU us/msg', 16),
  pad('node CPU us/msg', 16), pad('srv CPU% o/n', 13), pad('loadgen CPU%', 13),
  pad('other CPU%', 11), pad('errors', 7)];
console.log(head.join(' '));
for (const e of echo) {
  const o = e.ours.median, n = e.node.median;
  console.log([
    padr(`${e.conns} x ${e.size} B`, 18), pad(fmt(o.msgs_per_s), 11), pad(fmt(n.msgs_per_s), 11),
    pad(e.ratio ? e.ratio.toFixed(2) + 'x' : '-', 6),
    pad(`${fmt(o.p50_us)}/${fmt(o.p99_us)}`, 17), pad(`${fmt(n.p50_us)}/${fmt(n.p99_us)}`, 17),
    pad(fmt(o.server_cpu_us_per_msg, 2), 16), pad(fmt(n.server_cpu_us_per_msg, 2), 16),
    pad(`${fmt(o.server_cpu_pct)}/${fmt(n.server_cpu_pct)}`, 13),
    pad(`${fmt(e.ours.max_client_cpu_pct)}/${fmt(e.node.max_client_cpu_pct)}`, 13),
    pad(`${fmt(e.ours.max_other_cpu_pct)}/${fmt(e.node.max_other_cpu_pct)}`, 11),
    pad(`${e.ours.errors}/${e.node.errors}`, 7),
  ].join(' '));
}
console.log('(srv CPU%: median server CPU time over wall time, 100 = one core busy; loadgen ' +
            'CPU% and other CPU%: highest of the runs against ours/node, other = anything but ' +
            'server and loadgen on their two cores; errors: ours/node, all runs)');
const noisy = echo.filter((e) => Math.max(e.ours.max_other_cpu_pct || 0,
                                          e.node.max_other_cpu_pct || 0) > 10);
if (noisy.length) {
  console.log(`warning: other processes used more than 10% of a core during runs of ` +
              `${noisy.map((e) => `${e.conns} x ${e.size} B`).join(', ')}: those numbers are noisy`);
}
const lgBound = echo.filter((e) => Math.max(e.ours.max_client_cpu_pct || 0,
                                            e.node.max_client_cpu_pct || 0) > 90);
if (lgBound.length) {
  console.log(`warning: loadgen used more than 90% of its core during runs of ` +
              `${lgBound.map((e) => `${e.conns} x ${e.size} B`).join(', ')}: it may be the limit there`);
}
}

const memorySection = (section, title, extra = '') => {
  const memory = { idle_conns: null };
  for (const r of rows.filter((x) => x.section === section)) {
    memory.idle_conns = r.idle_conns;
    memory[r.server] = r.result;
  }
  console.log('');
  console.log(`${title} (${memory.idle_conns} idle WebSocket connections${extra}, VmRSS):`);
  for (const s of ['ours', 'node']) {
    const m = memory[s];
    const got = m && m.msgs_received !== undefined ? `, ${m.msgs_received} messages received` : '';
    console.log(`  ${padr(s, 5)} ${m ? `${m.kib_per_conn} KiB/conn  (${m.rss_before_kib} -> ` +
      `${m.rss_after_kib} KiB, ${m.open} open${got})` : 'n/a'}`);
  }
  return memory;
};
const memory = ranEcho ? memorySection('memory', 'Memory per idle connection, echo') : null;

let syscalls = null;
const sc = rows.find((x) => x.section === 'syscalls');
if (sc && sc.result) {
  const c = sc.result.counts, m = sc.result.msgs;
  const sum = (names) => names.reduce((a, k) => a + (c[k] || 0), 0);
  const groups = {
    read: ['read', 'readv', 'recvfrom', 'recvmsg', 'recvmmsg'],
    write: ['write', 'writev', 'sendto', 'sendmsg', 'sendmmsg'],
    epoll: ['epoll_wait', 'epoll_pwait', 'epoll_pwait2', 'epoll_ctl'],
  };
  const total = Object.values(c).reduce((a, b) => a + b, 0);
  syscalls = { server: 'ours', conns: 100, size: 32, msgs: m, counts: c, per_msg: {} };
  for (const [k, names] of Object.entries(groups)) syscalls.per_msg[k] = sum(names) / m;
  syscalls.per_msg.all = total / m;
  console.log('');
  console.log(`Syscalls per echoed message, our server (strace -c -f, 100 conns x 32 B, ${m} messages):`);
  const detail = (names) => names.filter((k) => c[k]).map((k) => `${k} ${c[k]}`).join(', ') || 'none';
  for (const [k, names] of Object.entries(groups)) {
    console.log(`  ${padr(k, 6)} ${syscalls.per_msg[k].toFixed(3)}   (${detail(names)})`);
  }
  console.log(`  ${padr('all', 6)} ${syscalls.per_msg.all.toFixed(3)}   (${total} syscalls)`);
  const others = Object.entries(c).filter(([k]) => !Object.values(groups).flat().includes(k))
    .sort((a, b) => b[1] - a[1]).slice(0, 6).map(([k, v]) => `${k} ${v}`).join(', ');
  if (others) console.log(`  other: ${others}`);
} else if (sc) {
  console.log('\nSyscalls: the strace run failed');
}

// ---- fan-out --------------------------------------------------------------------------------
let fanout = null, hubMemory = null;
if (sections.includes('fanout')) {
  const foRows = rows.filter((r) => r.section === 'fanout');
  const keys = [];
  for (const r of foRows) {
    const k = `${r.pattern} ${r.subs} ${r.window}`;
    if (!keys.includes(k)) keys.push(k);
  }
  fanout = [];
  for (const k of keys) {
    const [pattern, subsS, windowS] = k.split(' ');
    const subs = Number(subsS), window = Number(windowS);
    const entry = { pattern, subs, window, size: Number(fanoutSize) };
    for (const server of ['ours', 'node']) {
      const runs = foRows.filter((r) => r.server === server && r.pattern === pattern &&
                                        r.subs === subs && r.window === window);
      entry[server] = summary(runs, ['deliveries_per_s', 'msgs_per_s', 'last_p50_us',
        'last_p99_us', 'each_p50_us', 'each_p99_us', 'server_cpu_pct',
        'server_cpu_ns_per_delivery', 'client_cpu_pct', 'msgs', 'connect_s'], (ok, pick) => {
        const codes = {};
        for (const r of ok) {
          for (const [c, n] of Object.entries(r.close_codes || {})) codes[c] = (codes[c] || 0) + n;
        }
        return {
          gaps: pick('gaps').reduce((a, b) => a + (b || 0), 0),
          stalled_runs: ok.filter((r) => r.stalled).length,
          close_codes: codes,
        };
      });
    }
    const a = entry.ours.median.deliveries_per_s, b = entry.node.median.deliveries_per_s;
    entry.ratio = a && b ? a / b : null;
    fanout.push(entry);
  }
  const label = (e) => e.pattern === 'one'
    ? `1 -> ${e.subs}, ${e.window === 1 ? 'lockstep' : `window ${e.window}`}`
    : `${e.subs} all publishing`;
  const pair = (a, b) => `${a}/${b}`;
  console.log('');
  console.log(`Fan-out, ${fanoutSize}-byte bodies: medians of ${rounds} runs of ${duration} s ` +
              `(deliveries = messages x receivers; lockstep: next message once the previous ` +
              `one reached everyone)`);
  console.log([padr('config', 26), pad('ours deliv/s', 13), pad('node deliv/s', 13),
    pad('ratio', 6), pad('ours msg/s', 11), pad('node msg/s', 11), pad('srv ns/deliv o/n', 17),
    pad('srv CPU% o/n', 13), pad('fanout CPU% o/n', 16), pad('other CPU%', 11),
    pad('errors', 7), pad('1013 closes', 12)].join(' '));
  for (const e of fanout) {
    const o = e.ours.median, n = e.node.median;
    const c1013 = (x) => x.close_codes['1013'] || 0;
    console.log([
      padr(label(e), 26), pad(fmt(o.deliveries_per_s), 13), pad(fmt(n.deliveries_per_s), 13),
      pad(e.ratio ? e.ratio.toFixed(2) + 'x' : '-', 6),
      pad(fmt(o.msgs_per_s, o.msgs_per_s < 100 ? 1 : 0), 11),
      pad(fmt(n.msgs_per_s, n.msgs_per_s < 100 ? 1 : 0), 11),
      pad(pair(fmt(o.server_cpu_ns_per_delivery), fmt(n.server_cpu_ns_per_delivery)), 17),
      pad(pair(fmt(o.server_cpu_pct), fmt(n.server_cpu_pct)), 13),
      pad(pair(fmt(e.ours.max_client_cpu_pct), fmt(e.node.max_client_cpu_pct)), 16),
      pad(pair(fmt(e.ours.max_other_cpu_pct), fmt(e.node.max_other_cpu_pct)), 11),
      pad(pair(e.ours.errors, e.node.errors), 7),
      pad(pair(c1013(e.ours), c1013(e.node)), 12),
    ].join(' '));
  }
  console.log('');
  console.log('Fan-out latency in ms, p50/p99 (median over the runs): from publish to the LAST ' +
              'receiver of each message, and to each delivery');
  console.log([padr('config', 26), pad('ours last', 16), pad('node last', 16),
    pad('ours each', 16), pad('node each', 16), pad('msgs measured o/n', 18),
    pad('connect s o/n', 14)].join(' '));
  for (const e of fanout) {
    const o = e.ours.median, n = e.node.median;
    console.log([
      padr(label(e), 26), pad(pair(ms(o.last_p50_us), ms(o.last_p99_us)), 16),
      pad(pair(ms(n.last_p50_us), ms(n.last_p99_us)), 16),
      pad(pair(ms(o.each_p50_us), ms(o.each_p99_us)), 16),
      pad(pair(ms(n.each_p50_us), ms(n.each_p99_us)), 16),
      pad(pair(fmt(o.msgs), fmt(n.msgs)), 18),
      pad(pair(fmt(o.connect_s, 1), fmt(n.connect_s, 1)), 14),
    ].join(' '));
  }
  console.log('(deliv/s: deliveries counted at the receivers over the measured window; one ' +
              'publisher: its own copy, which both servers also send, is not counted. srv ' +
              'ns/deliv: server CPU time per delivery. fanout CPU%: the load generator, highest ' +
              'run; other CPU%: anything else on the two cores, highest run; errors: ours/node, ' +
              'all runs: lost or out-of-order pushes, closes, stalls)');
  const warn = warner(fanout, label);
  warn((e) => Math.max(e.ours.max_other_cpu_pct || 0, e.node.max_other_cpu_pct || 0) > 10,
       'other processes used more than 10% of a core (noisy numbers)');
  warn((e) => Math.max(e.ours.max_client_cpu_pct || 0, e.node.max_client_cpu_pct || 0) > 90,
       'fanout used more than 90% of its core (it may be the limit)');
  warn((e) => e.ours.errors + e.node.errors > 0 || e.ours.failed_runs + e.node.failed_runs > 0,
       'errors or failed runs (see the per-run lines and bench: notes above)');
  warn((e) => Object.keys(e.ours.close_codes).length + Object.keys(e.node.close_codes).length > 0,
       'the server closed connections (1013 = slow consumer dropped)');
  warn((e) => e.ours.stalled_runs + e.node.stalled_runs > 0, 'a run stalled (a message was lost)');
  hubMemory = memorySection('hub_memory', 'Memory per idle connection with the hub, broadcast',
                            ' joined to the group, HELLO sent; target <= 1 KiB');
}

// ---- REST round trips -------------------------------------------------------------------------
let rest = null;
if (sections.includes('rest')) {
  const rRows = rows.filter((r) => r.section === 'rest');
  const keys = [];
  for (const r of rRows) {
    const k = `${r.conns} ${r.window}`;
    if (!keys.includes(k)) keys.push(k);
  }
  rest = [];
  for (const k of keys) {
    const [conns, window] = k.split(' ').map(Number);
    const entry = { conns, window };
    for (const [server, kind] of [['ours', 'ours'], ['socketio', 'node']]) {
      const runs = rRows.filter((r) => r.server === kind && r.conns === conns && r.window === window);
      entry[server] = summary(runs, ['rps', 'p50_us', 'p99_us', 'server_cpu_us_per_req',
                                     'server_cpu_pct', 'client_cpu_pct']);
    }
    const o = entry.ours.median, n = entry.socketio.median;
    entry.ratio = o.rps && n.rps ? o.rps / n.rps : null;
    entry.cpu_ratio = o.server_cpu_us_per_req && n.server_cpu_us_per_req
      ? n.server_cpu_us_per_req / o.server_cpu_us_per_req : null;
    rest.push(entry);
  }
  const label = (e) => `${e.conns} conns, ${e.window === 1 ? 'lockstep' : `window ${e.window}`}`;
  console.log('');
  console.log(`REST round trips, GET /items/<k> -> 200 + JSON (Socket.IO ${sioVersion}: emit with ` +
              `ack; peer check with socket.io-client: ${restCheck}): medians of ${rounds} runs ` +
              `of ${duration} s`);
  if (!rest.length) console.log('  (nothing measured)');
  else {
    console.log([padr('config', 22), pad('ours rt/s', 10), pad('sio rt/s', 10), pad('ratio', 6),
      pad('ours p50/p99 ms', 16), pad('sio p50/p99 ms', 16), pad('CPU us/req o/s', 15),
      pad('CPU ratio', 10), pad('srv CPU% o/s', 13), pad('restgen CPU%', 13),
      pad('other CPU%', 11), pad('errors', 7)].join(' '));
  }
  for (const e of rest) {
    const o = e.ours.median, n = e.socketio.median;
    console.log([
      padr(label(e), 22), pad(fmt(o.rps), 10), pad(fmt(n.rps), 10),
      pad(e.ratio ? e.ratio.toFixed(2) + 'x' : '-', 6),
      pad(`${ms(o.p50_us)}/${ms(o.p99_us)}`, 16), pad(`${ms(n.p50_us)}/${ms(n.p99_us)}`, 16),
      pad(`${fmt(o.server_cpu_us_per_req, 2)}/${fmt(n.server_cpu_us_per_req, 2)}`, 15),
      pad(e.cpu_ratio ? e.cpu_ratio.toFixed(2) + 'x' : '-', 10),
      pad(`${fmt(o.server_cpu_pct)}/${fmt(n.server_cpu_pct)}`, 13),
      pad(`${fmt(e.ours.max_client_cpu_pct)}/${fmt(e.socketio.max_client_cpu_pct)}`, 13),
      pad(`${fmt(e.ours.max_other_cpu_pct)}/${fmt(e.socketio.max_other_cpu_pct)}`, 11),
      pad(`${e.ours.errors}/${e.socketio.errors}`, 7),
    ].join(' '));
  }
  if (rest.length) {
    console.log('(rt/s: answered and checked requests per second; ratio: ours/Socket.IO; CPU us/req: ' +
                'server CPU time per request, CPU ratio = Socket.IO/ours; restgen CPU% and other ' +
                'CPU%: highest run against ours/Socket.IO; errors: ours/Socket.IO, all runs)');
  }
  const warn = warner(rest, label);
  warn((e) => Math.max(e.ours.max_other_cpu_pct || 0, e.socketio.max_other_cpu_pct || 0) > 10,
       'other processes used more than 10% of a core (noisy numbers)');
  warn((e) => Math.max(e.ours.max_client_cpu_pct || 0, e.socketio.max_client_cpu_pct || 0) > 90,
       'restgen used more than 90% of its core (it may be the limit)');
  warn((e) => e.ours.errors + e.socketio.errors > 0 ||
              e.ours.failed_runs + e.socketio.failed_runs > 0,
       'errors or failed runs (see the per-run lines and bench: notes above)');
}

// ---- cross-node fan-out through Redis ---------------------------------------------------------
let cluster = null, clusterMemory = null, clusterDiag = null;
if (sections.includes('cluster')) {
  const cRows = rows.filter((r) => r.section === 'cluster');
  const keys = [];
  for (const r of cRows) {
    const k = `${r.subs} ${r.window}`;
    if (!keys.includes(k)) keys.push(k);
  }
  cluster = [];
  for (const k of keys) {
    const [subs, window] = k.split(' ').map(Number);
    const entry = { subs, window, size: Number(fanoutSize) };
    for (const server of ['ours', 'sio']) {
      const runs = cRows.filter((r) => r.server === server && r.subs === subs && r.window === window);
      entry[server] = summary(runs, ['deliveries_per_s', 'msgs_per_s', 'last_p50_us', 'last_p99_us',
        'each_p50_us', 'each_p99_us', 'server_cpu_ns_per_delivery', 'server_cpu_pct',
        'pub_server_cpu_us_per_msg', 'pub_server_cpu_pct', 'redis_cpu_us_per_msg', 'redis_cpu_pct',
        'redis_cmds_per_msg', 'client_cpu_pct', 'msgs'], (ok, pick) => {
        // Commands per message by name: medians over the runs.
        const names = [...new Set(ok.flatMap((r) => Object.keys(r.redis_cmds || {})))];
        const cmds = {}, usec = {};
        for (const n of names) {
          cmds[n] = median(ok.map((r) => (r.redis_cmds || {})[n] || 0));
          usec[n] = median(ok.map((r) => (r.redis_usec || {})[n] || 0));
        }
        // Time Redis spent executing what the publisher's node sent, per message: the script
        // (its calls included) for ours, the PUBLISH for Socket.IO.
        const exec = server === 'ours' ? (usec.evalsha || 0) + (usec.eval || 0) : usec.publish || 0;
        // "other": what ran on the two cores besides fanout, node B, node A and Redis.
        const other = ok.map((r) => Math.max(0, (r.other_cpu_pct || 0) - (r.pub_server_cpu_pct || 0) -
                                                (r.redis_cpu_pct || 0)));
        return {
          redis_cmds: cmds,
          redis_usec: usec,
          redis_exec_us_per_msg: exec,
          max_other_cpu_pct: max(other),
          stalled_runs: ok.filter((r) => r.stalled).length,
        };
      });
    }
    const o = entry.ours.median, s = entry.sio.median;
    entry.ratio = o.deliveries_per_s && s.deliveries_per_s ? o.deliveries_per_s / s.deliveries_per_s : null;
    entry.cpu_ratio = o.server_cpu_ns_per_delivery && s.server_cpu_ns_per_delivery
      ? s.server_cpu_ns_per_delivery / o.server_cpu_ns_per_delivery : null;
    cluster.push(entry);
  }
  const label = (e) => `A -> B ${e.subs}, ${e.window === 1 ? 'lockstep' : `window ${e.window}`}`;
  const pair = (a, b) => `${a}/${b}`;
  const cmdText = (m) => Object.entries(m || {}).filter(([, v]) => v >= 0.005)
    .sort((a, b) => b[1] - a[1]).map(([k, v]) => `${k} ${v.toFixed(2)}`).join(', ') || '-';
  console.log('');
  console.log(`Cross-node fan-out through Redis ${redisVersion}, ${fanoutSize}-byte bodies: the ` +
              `publisher on node A, N subscribers on node B; ours: examples/broadcast --redis, ` +
              `sio: Socket.IO ${sioVersion} + @socket.io/redis-adapter ${adapterVersion} + redis ` +
              `${redisClientVersion} (peer check with socket.io-client: ${clusterCheck}); ` +
              `medians of ${clusterRounds} runs of ${duration} s`);
  if (!cluster.length) console.log('  (nothing measured)');
  else {
    console.log([padr('config', 24), pad('ours deliv/s', 13), pad('sio deliv/s', 12), pad('ratio', 6),
      pad('B ns/deliv o/s', 15), pad('B CPU ratio', 11), pad('B CPU% o/s', 11),
      pad('A us/msg o/s', 13), pad('Redis us/msg o/s', 17), pad('Redis cmds/msg o/s', 19),
      pad('fanout CPU%', 12), pad('other CPU%', 11), pad('errors', 7)].join(' '));
  }
  for (const e of cluster) {
    const o = e.ours.median, s = e.sio.median;
    console.log([
      padr(label(e), 24), pad(fmt(o.deliveries_per_s), 13), pad(fmt(s.deliveries_per_s), 12),
      pad(e.ratio ? e.ratio.toFixed(2) + 'x' : '-', 6),
      pad(pair(fmt(o.server_cpu_ns_per_delivery), fmt(s.server_cpu_ns_per_delivery)), 15),
      pad(e.cpu_ratio ? e.cpu_ratio.toFixed(2) + 'x' : '-', 11),
      pad(pair(fmt(o.server_cpu_pct), fmt(s.server_cpu_pct)), 11),
      pad(pair(fmt(o.pub_server_cpu_us_per_msg, 1), fmt(s.pub_server_cpu_us_per_msg, 1)), 13),
      pad(pair(fmt(o.redis_cpu_us_per_msg, 1), fmt(s.redis_cpu_us_per_msg, 1)), 17),
      pad(pair(fmt(o.redis_cmds_per_msg, 2), fmt(s.redis_cmds_per_msg, 2)), 19),
      pad(pair(fmt(e.ours.max_client_cpu_pct), fmt(e.sio.max_client_cpu_pct)), 12),
      pad(pair(fmt(e.ours.max_other_cpu_pct), fmt(e.sio.max_other_cpu_pct)), 11),
      pad(pair(e.ours.errors, e.sio.errors), 7),
    ].join(' '));
  }
  if (cluster.length) {
    console.log('');
    console.log('Cross-node latency in ms, p50/p99 (median over the runs), from publish on A to the ' +
                'LAST subscriber on B of each message and to each delivery; Redis exec: time Redis ' +
                'spent in the EVALSHA (ours) or PUBLISH (sio) per message (INFO commandstats ' +
                'usec); Redis commands per published message by name (scripts\' own calls ' +
                'included)');
    console.log([padr('config', 24), pad('ours last', 14), pad('sio last', 14), pad('ours each', 14),
      pad('sio each', 14), pad('msgs o/s', 14), pad('Redis exec us/msg o/s', 22),
      '  Redis commands per message (ours | sio)'].join(' '));
    for (const e of cluster) {
      const o = e.ours.median, s = e.sio.median;
      console.log([
        padr(label(e), 24), pad(pair(ms(o.last_p50_us), ms(o.last_p99_us)), 14),
        pad(pair(ms(s.last_p50_us), ms(s.last_p99_us)), 14),
        pad(pair(ms(o.each_p50_us), ms(o.each_p99_us)), 14),
        pad(pair(ms(s.each_p50_us), ms(s.each_p99_us)), 14),
        pad(pair(fmt(o.msgs), fmt(s.msgs)), 14),
        pad(pair(fmt(e.ours.redis_exec_us_per_msg, 1), fmt(e.sio.redis_exec_us_per_msg, 1)), 22),
        `  ${cmdText(e.ours.redis_cmds)} | ${cmdText(e.sio.redis_cmds)}`,
      ].join(' '));
    }
    console.log('(B ns/deliv: node B\'s CPU time per delivery, B CPU ratio = sio/ours; A us/msg: ' +
                'node A\'s CPU time per published message; Redis: its used_cpu_sys + used_cpu_user ' +
                'per message, and the commands it ran per message; other CPU%: anything but ' +
                'fanout and the three servers on the two cores, highest run; errors: ours/sio, ' +
                'all runs: lost or out-of-order deliveries, closes, stalls)');
  }
  const warn = warner(cluster, label);
  warn((e) => Math.max(e.ours.max_other_cpu_pct || 0, e.sio.max_other_cpu_pct || 0) > 10,
       'other processes used more than 10% of a core (noisy numbers)');
  warn((e) => Math.max(e.ours.max_client_cpu_pct || 0, e.sio.max_client_cpu_pct || 0) > 90,
       'fanout used more than 90% of its core (it may be the limit)');
  warn((e) => e.ours.errors + e.sio.errors > 0 || e.ours.failed_runs + e.sio.failed_runs > 0,
       'errors or failed runs (see the per-run lines and bench: notes above)');

  const memRows = rows.filter((x) => x.section === 'cluster_memory');
  clusterMemory = { idle_conns: memRows.length ? memRows[0].idle_conns : null, runs: [] };
  console.log('');
  console.log(`Memory per idle connection on node B (${clusterMemory.idle_conns} idle subscribers, ` +
              `each joined to the group / room; ours: the redis engine; target <= 1.5 KiB; VmRSS):`);
  for (const r of memRows) {
    const m = r.result;
    clusterMemory.runs.push({ server: r.server, conc: r.conc, ...(m || {}) });
    if (r.conc === 64 && m) clusterMemory[r.server] = m;
    console.log(`  ${padr(r.server, 5)} ${pad(r.conc, 2)} handshakes in flight: ${m
      ? `${m.kib_per_conn} KiB/conn  (${m.rss_before_kib} -> ${m.rss_after_kib} KiB, ${m.ready} ` +
        `ready of ${m.open} open)` : 'n/a'}`);
  }

  clusterDiag = {};
  for (const r of rows.filter((x) => x.section === 'cluster_diag')) clusterDiag[r.server] = r.result;
  if (clusterDiag.ours || clusterDiag.sio) {
    console.log('');
    console.log('Node B under strace -c -f and Redis under MONITOR (100 subscribers, lockstep, 3 s): ' +
                'syscalls of node B per delivery, commands sent to Redis per published message');
    const groups = {
      write: ['write', 'writev', 'sendto', 'sendmsg', 'sendmmsg'],
      read: ['read', 'readv', 'recvfrom', 'recvmsg', 'recvmmsg'],
      epoll: ['epoll_wait', 'epoll_pwait', 'epoll_pwait2', 'epoll_ctl'],
    };
    for (const s of ['ours', 'sio']) {
      const d = clusterDiag[s];
      if (!d) {
        console.log(`  ${padr(s, 5)} n/a`);
        continue;
      }
      const c = d.counts, per = (n) => (d.deliveries ? n / d.deliveries : 0);
      const sum = (names) => names.reduce((a, k) => a + (c[k] || 0), 0);
      const all = Object.values(c).reduce((a, b) => a + b, 0);
      d.per_delivery = {};
      for (const [k, names] of Object.entries(groups)) d.per_delivery[k] = per(sum(names));
      d.per_delivery.all = per(all);
      const sent = Object.entries(d.sent || {});
      d.sent_per_msg = Object.fromEntries(sent.map(([k, v]) => [k, v / d.published]));
      d.in_scripts_per_msg = (d.in_scripts || 0) / d.published;
      const top = Object.entries(c).sort((a, b) => b[1] - a[1]).slice(0, 6)
        .map(([k, v]) => `${k} ${v}`).join(', ');
      console.log(`  ${padr(s, 5)} per delivery: ${Object.entries(d.per_delivery)
        .map(([k, v]) => `${k} ${v.toFixed(3)}`).join(', ')}  (${d.deliveries} deliveries, ` +
        `${d.published} messages; ${top})`);
      console.log(`        sent to Redis per message: ${Object.entries(d.sent_per_msg)
        .map(([k, v]) => `${k} ${v.toFixed(3)}`).join(', ') || 'none'}; run inside scripts: ` +
        `${d.in_scripts_per_msg.toFixed(2)}`);
    }
  }
}

if (graceFails) console.log(`\nnote: needed SIGKILL after SIGTERM: ${graceFails}`);

const meta = {
  date: new Date().toISOString(), sections, duration_s: Number(duration), rounds: Number(rounds),
  warmup_s: Number(warmup), frame, inflight: 1, echo_binary: echoBin,
  broadcast_binary: broadcastBin, rest_binary: restBin, node: process.version, ws: wsVersion,
  socketio: sioVersion, redis_adapter: adapterVersion, redis_client: redisClientVersion,
  redis_server: redisVersion, cluster_rounds: Number(clusterRounds), kernel: os.release(),
  cpu: os.cpus()[0] ? os.cpus()[0].model : null, cores: os.cpus().length,
  server_core: Number(srvCpu), loadgen_core: Number(cliCpu), loadavg: os.loadavg(),
  sigkill_needed: graceFails ? graceFails.split(' ') : [],
};
// Sections not run this time are kept from the file already there (with the date of that run).
let prev = null;
try {
  prev = JSON.parse(fs.readFileSync(outFile, 'utf8'));
} catch {}
const out = { meta };
const kept = [];
const keep = (section, keys, value) => {
  if (sections.includes(section)) {
    Object.assign(out, value);
  } else if (prev && keys.some((k) => prev[k] !== undefined && prev[k] !== null)) {
    for (const k of keys) if (prev[k] !== undefined) out[k] = prev[k];
    kept.push({ section, date: (prev.meta && (prev.meta[`${section}_date`] || prev.meta.date)) || null });
  }
};
keep('echo', ['echo', 'memory', 'syscalls'], { echo, memory, syscalls });
keep('fanout', ['fanout', 'hub_memory'], { fanout, hub_memory: hubMemory });
keep('rest', ['rest', 'rest_peer_check'], { rest, rest_peer_check: restCheck });
keep('cluster', ['cluster', 'cluster_memory', 'cluster_diag', 'cluster_peer_check'],
     { cluster, cluster_memory: clusterMemory, cluster_diag: clusterDiag,
       cluster_peer_check: clusterCheck });
for (const s of sections) meta[`${s}_date`] = meta.date;
for (const k of kept) meta[`${k.section}_date`] = k.date;
if (kept.length) meta.kept_from_previous = kept.map((k) => k.section);
fs.writeFileSync(outFile, JSON.stringify(out, null, 2) + '\n');
console.log(`\nresults: ${outFile}${kept.length ? ` (kept from the previous file: ${meta.kept_from_previous.join(', ')})` : ''}`);
EOF
