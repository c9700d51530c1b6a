#!/usr/bin/env bash
# What `make demo-cluster` runs: the demo chat as a cluster of three nodes on this machine.
#
#   redis-server      on a free loopback port (6390 and up), no persistence, in a temp dir
#   3 demo nodes      on 127.0.0.1:8081, 8082, 8083, each with --redis, its own node id and
#                     its own url as --public-url (http://127.0.0.1:<port>: GET /api/nodes)
#   nginx (Debian)    on 127.0.0.1:8080, a round-robin WebSocket proxy to the three nodes
#
# Open http://localhost:8080/ in two browser windows: nginx sends each page to the next node,
# and the pages chat through Redis. Stop one node (kill <pid>, printed below) and its pages
# reconnect through nginx to another node and resume. Ctrl-C stops everything this script
# started, by PID, and removes the temp dir (it holds the logs and nginx.conf meanwhile).
#
#   scripts/demo-cluster.sh [BUILD_DIR]        (default build; `make demo-cluster` passes it)
# Environment: DEMO_PORT (8080), DEMO_NODE_PORTS ("8081 8082 8083"), DEMO_REDIS_PORT (the
# first free of 6390..6399), NGINX (/usr/sbin/nginx), REDIS_SERVER (/usr/bin/redis-server),
# DEMO_KEEP_TMP=1 (keep the temp dir on exit, for its logs), DEMO_STATE_FILE (once everything
# is up, write there what runs as JSON, for a test to drive: {"port", "nginx": {pid, port},
# "redis": {pid, port, url}, "nodes": [{id, pid, port, url}], "tmp"}; removed on stop).
#
# What is shared between the nodes and what each keeps for itself (the room list, a room's
# GET history, the online list) is written at the top of examples/demo/demo.c.
set -euo pipefail
cd "$(dirname "$0")/.."

build=${1:-build}
demo=$build/examples/demo
nginx=${NGINX:-/usr/sbin/nginx}
redis_server=${REDIS_SERVER:-/usr/bin/redis-server}
port=${DEMO_PORT:-8080}
read -r -a node_ports <<<"${DEMO_NODE_PORTS:-8081 8082 8083}"

die() { echo "demo-cluster: $*" >&2; exit 1; }
[ -x "$demo" ] || die "$demo is missing: build first (make)"
[ -x "$nginx" ] || die "$nginx is missing: scripts/setup.sh cluster installs nginx"
[ -x "$redis_server" ] || die "$redis_server is missing: scripts/setup.sh cluster installs redis-server"

# Something answers on 127.0.0.1:$1 (bash's /dev/tcp, no other tool needed).
listening() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

for p in "$port" "${node_ports[@]}"; do
  listening "$p" && die "127.0.0.1:$p is in use (another demo?); choose others with DEMO_PORT / DEMO_NODE_PORTS"
done
redis_port=${DEMO_REDIS_PORT:-}
if [ -z "$redis_port" ]; then
  for p in $(seq 6390 6399); do
    listening "$p" || { redis_port=$p; break; }
  done
  [ -n "$redis_port" ] || die "no free port in 6390..6399 for Redis: set DEMO_REDIS_PORT"
fi

tmp=$(mktemp -d "${TMPDIR:-/tmp}/sb-demo-cluster.XXXXXX")
pids=()   # everything started, in order: redis, the nodes, nginx
names=()

stop_all() {
  trap - INT TERM EXIT
  echo
  echo "demo-cluster: stopping"
  # The reverse order: the proxy first, then the nodes (they close their clients with 1001),
  # Redis last. SIGTERM to each PID, then wait for it; SIGKILL after 10 s.
  local i
  for ((i = ${#pids[@]} - 1; i >= 0; i--)); do
    kill -TERM "${pids[i]}" 2>/dev/null || true
  done
  for ((i = ${#pids[@]} - 1; i >= 0; i--)); do
    local n=0
    while kill -0 "${pids[i]}" 2>/dev/null && [ $n -lt 100 ]; do sleep 0.1; n=$((n + 1)); done
    if kill -0 "${pids[i]}" 2>/dev/null; then
      echo "demo-cluster: ${names[i]} (pid ${pids[i]}) did not stop: SIGKILL" >&2
      kill -KILL "${pids[i]}" 2>/dev/null || true
    fi
    wait "${pids[i]}" 2>/dev/null || true
  done
  [ -n "${DEMO_STATE_FILE:-}" ] && rm -f "$DEMO_STATE_FILE" "$DEMO_STATE_FILE.tmp"
  if [ "${DEMO_KEEP_TMP:-0}" = 1 ]; then
    echo "demo-cluster: logs kept in $tmp"
  else
    rm -rf "$tmp"
  fi
}
trap stop_all EXIT
trap 'exit 0' INT TERM # a stop asked for is a success
# Each process started below gets a process group of its own (job control), so that Ctrl-C
# reaches this script alone and it stops them in order, instead of the terminal's SIGINT
# reaching all of them at once (and the proxy or Redis going before the nodes).
set -m

# Shows why something did not start, then stops the rest (the EXIT trap).
failed() {
  echo "demo-cluster: $1 did not start; its log ($2):" >&2
  tail -n 20 "$2" >&2 || true
  exit 1
}

start() { # NAME LOG COMMAND...: started in the background, its PID kept
  local name=$1 log=$2
  shift 2
  "$@" >"$log" 2>&1 &
  pids+=($!)
  names+=("$name")
}

# ---- Redis --------------------------------------------------------------------------------
start redis "$tmp/redis.log" "$redis_server" --port "$redis_port" --bind 127.0.0.1 \
  --save '' --appendonly no --dir "$tmp" --daemonize no
for _ in $(seq 100); do
  kill -0 "${pids[0]}" 2>/dev/null || failed redis-server "$tmp/redis.log"
  listening "$redis_port" && break
  sleep 0.05
done
listening "$redis_port" || failed redis-server "$tmp/redis.log"
redis_url=redis://127.0.0.1:$redis_port

# ---- the nodes ----------------------------------------------------------------------------
k=0
for p in "${node_ports[@]}"; do
  k=$((k + 1))
  start "node-$k" "$tmp/node-$k.log" "$demo" --host 127.0.0.1 --port "$p" --redis "$redis_url" \
    --node-id "node-$k" --public-url "http://127.0.0.1:$p"
done
for ((i = 1; i < ${#pids[@]}; i++)); do
  log=$tmp/${names[i]}.log
  for _ in $(seq 200); do # each waits up to 5 s for Redis itself
    grep -q '^listening on' "$log" 2>/dev/null && break
    kill -0 "${pids[i]}" 2>/dev/null || failed "${names[i]}" "$log"
    sleep 0.05
  done
  grep -q '^listening on' "$log" || failed "${names[i]}" "$log"
done

# ---- nginx --------------------------------------------------------------------------------
# Everything nginx writes goes under the temp dir, so that it runs without root and leaves
# nothing behind. Round robin (nginx's default) over the nodes; a node that refuses a
# connection is skipped (proxy_next_upstream's default), which is how a page whose node died
# reaches another one. The WebSocket (/ws) has an upstream of its own, so that the rotation
# counts connections alone: with one shared upstream it counts every request, and a page
# load makes a fixed number of them (the page, its script and style, the client, its first
# HTTP requests), which with three nodes can put every page's WebSocket on the same node.
# WebSocket: HTTP/1.1 to the nodes with the Upgrade and Connection headers passed on, and an
# hour before an idle proxied connection is cut (the page sends a heartbeat every 5 s anyway).
upstream=""
for p in "${node_ports[@]}"; do upstream+="    server 127.0.0.1:$p max_fails=1 fail_timeout=5s;"$'\n'; done
cat >"$tmp/nginx.conf" <<EOF
worker_processes 1;
daemon off;
pid $tmp/nginx.pid;
error_log $tmp/error.log;
events {}
http {
  access_log off;
  client_body_temp_path $tmp/client_body;
  proxy_temp_path $tmp/proxy;
  fastcgi_temp_path $tmp/fastcgi;
  uwsgi_temp_path $tmp/uwsgi;
  scgi_temp_path $tmp/scgi;
  upstream switchboard {
$upstream  }
  upstream switchboard_ws {
$upstream  }
  map \$http_upgrade \$connection_upgrade {
    default upgrade;
    ''      close;
  }
  server {
    listen 127.0.0.1:$port;
    proxy_http_version 1.1;
    proxy_set_header Host \$host;
    proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for;
    location / {
      proxy_pass http://switchboard;
    }
    location = /ws {
      proxy_pass http://switchboard_ws;
      proxy_set_header Upgrade \$http_upgrade;
      proxy_set_header Connection \$connection_upgrade;
      proxy_set_header Host \$host;
      proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for;
      proxy_read_timeout 1h;
      proxy_send_timeout 1h;
    }
  }
}
EOF
"$nginx" -t -q -p "$tmp" -e "$tmp/error.log" -c "$tmp/nginx.conf" ||
  failed "nginx (its configuration)" "$tmp/error.log"
start nginx "$tmp/nginx.log" "$nginx" -p "$tmp" -e "$tmp/error.log" -c "$tmp/nginx.conf"
for _ in $(seq 100); do
  kill -0 "${pids[-1]}" 2>/dev/null || failed nginx "$tmp/error.log"
  listening "$port" && break
  sleep 0.05
done
listening "$port" || failed nginx "$tmp/error.log"

echo "Switchboard demo cluster: open http://localhost:$port/ in two browser windows"
echo "  nginx    127.0.0.1:$port (pid ${pids[-1]}), round robin over the nodes"
for ((i = 1; i < ${#pids[@]} - 1; i++)); do
  echo "  ${names[i]}   127.0.0.1:${node_ports[i - 1]} (pid ${pids[i]})"
done
echo "  redis    $redis_url (pid ${pids[0]})"
echo "  logs     $tmp"
echo "Stop a node (kill <pid>) to see its pages move to another; Ctrl-C stops everything."

# The same, for a program (tests/browser/demo_cluster.test.mjs): written whole, then renamed,
# so that a reader never sees half of it.
if [ -n "${DEMO_STATE_FILE:-}" ]; then
  json_str() { local s=${1//\\/\\\\}; printf '"%s"' "${s//\"/\\\"}"; }
  {
    printf '{"port":%d,"nginx":{"pid":%d,"port":%d},' "$port" "${pids[-1]}" "$port"
    printf '"redis":{"pid":%d,"port":%d,"url":%s},"nodes":[' "${pids[0]}" "$redis_port" \
      "$(json_str "$redis_url")"
    for ((i = 1; i < ${#pids[@]} - 1; i++)); do
      [ "$i" -gt 1 ] && printf ','
      printf '{"id":%s,"pid":%d,"port":%d,"url":%s}' "$(json_str "${names[i]}")" "${pids[i]}" \
        "${node_ports[i - 1]}" "$(json_str "http://127.0.0.1:${node_ports[i - 1]}")"
    done
    printf '],"tmp":%s}\n' "$(json_str "$tmp")"
  } >"$DEMO_STATE_FILE.tmp"
  mv "$DEMO_STATE_FILE.tmp" "$DEMO_STATE_FILE"
fi

# Until Ctrl-C, or until one of them exits by itself (then the rest are stopped too; a node
# killed on purpose does not end the demo: only nginx or Redis do).
while :; do
  wait -n 2>/dev/null || true
  for i in 0 $((${#pids[@]} - 1)); do
    if ! kill -0 "${pids[i]}" 2>/dev/null; then
      echo "demo-cluster: ${names[i]} exited; its log:" >&2
      tail -n 20 "$tmp/${names[i]}.log" "$tmp/error.log" 2>/dev/null >&2 || true
      exit 1
    fi
  done
done
