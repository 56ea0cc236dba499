# Shared by the bench scripts: release builds, tools, free ports, timing.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
TOOLS=$(scripts/tools)
export PATH="$TOOLS:$PATH"
RELEASE=.build-release

build_release() { # product...
  for product in "$@"; do swift build -c release --scratch-path "$RELEASE" --product "$product" >&2; done
}

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

wait_for_port() { # port
  for _ in $(seq 1 100); do (echo >/dev/tcp/127.0.0.1/"$1") 2>/dev/null && return 0; sleep 0.1; done
  echo "nothing listens on port $1" >&2; return 1
}

# Seconds (wall clock) that a command takes.
seconds() { local start end; start=$(date +%s.%N); "$@" >/dev/null; end=$(date +%s.%N); python3 -c "print(f'{$end - $start:.3f}')"; }

median() { python3 -c 'import statistics, sys; print(f"{statistics.median(float(x) for x in sys.argv[1:]):.3f}")' "$@"; }

# CPU seconds (user + system) a running process has used so far.
cpu_of() { python3 -c 'import os, sys; f = open(f"/proc/{sys.argv[1]}/stat").read().rsplit(")", 1)[1].split(); print((int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK"))' "$1"; }

# Starts `gomodel serve` (the environment configured by the caller) on $port (or a free port), with an
# account logged in for the CLI. Sets port, server_pid and token.
start_server_and_log_in() { # gomodel work
  port=${port:-$(free_port)}
  "$1" serve --port "$port" >"$2/serve.log" 2>&1 &
  server_pid=$!
  wait_for_port "$port"
  "$1" users create --email bench@example.com --password "correct horse battery" >/dev/null
  token=$("$1" tokens create --email bench@example.com)
  "$1" login --server "http://127.0.0.1:$port" --token "$token" >/dev/null
}

# Serves folder ROOT (one sub-folder per bucket) with `rclone serve s3` on a free port, keys
# BENCHKEY/BENCHSECRET, and configures the rclone remote `B:` for it. Sets port and server.
start_rclone_s3() { # root
  port=$(free_port)
  rclone serve s3 --auth-key "BENCHKEY,BENCHSECRET" --addr "127.0.0.1:$port" --log-level ERROR "$1" &
  server=$!
  wait_for_port "$port"
  export RCLONE_CONFIG_B_TYPE=s3 RCLONE_CONFIG_B_PROVIDER=Other RCLONE_CONFIG_B_ENDPOINT="http://127.0.0.1:$port" \
    RCLONE_CONFIG_B_ACCESS_KEY_ID=BENCHKEY RCLONE_CONFIG_B_SECRET_ACCESS_KEY=BENCHSECRET RCLONE_CONFIG_B_FORCE_PATH_STYLE=true
}
