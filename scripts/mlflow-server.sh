#!/usr/bin/env bash
# A real MLflow tracking server on 127.0.0.1 for tests and local use.
#   scripts/mlflow-server.sh install            install mlflow 3.17.2 into a cached venv
#   scripts/mlflow-server.sh start DIR [--auth] start one (sqlite + artifact proxy, 1 worker, no job
#                                               runner) with its state in DIR; prints its URI
#   scripts/mlflow-server.sh stop DIR           stop it (the whole process group)
# With --auth it runs MLflow's basic-auth app; the admin is `admin` / $MLFLOW_AUTH_ADMIN_PASSWORD
# (default below). The venv lives in ${CQR_TOOLS:-~/.cache/cqr/tools}/mlflow-3.17.2.
set -euo pipefail
version=3.17.2
cache="${CQR_TOOLS:-$HOME/.cache/cqr/tools}"
venv="$cache/mlflow-$version"

install() {
  if [ -f "$venv/.complete" ]; then return; fi
  mkdir -p "$cache"
  # Parallel test processes may all ask at once: one installs, the others wait.
  exec 9> "$cache/.mlflow-install.lock"
  flock 9
  if [ -f "$venv/.complete" ]; then return; fi
  rm -rf "$venv"
  echo "installing mlflow $version into $venv (once; about 3 minutes, pip is quiet meanwhile)" >&2
  python3 -m venv "$venv"
  # Flask-WTF is the `auth` extra: the basic-auth app needs it.
  "$venv/bin/pip" install --quiet --disable-pip-version-check "mlflow==$version" "Flask-WTF<2" >&2
  touch "$venv/.complete"
  echo "mlflow $version installed" >&2
}

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

start() {
  local dir="$1" auth="${2:-}"
  install
  mkdir -p "$dir"
  dir=$(cd "$dir" && pwd)
  local port
  port=$(free_port)
  local extra=() envs=(MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false)
  if [ "$auth" = "--auth" ]; then
    envs+=(MLFLOW_AUTH_CONFIG_PATH="$dir/auth.ini"
      MLFLOW_AUTH_ADMIN_PASSWORD="${MLFLOW_AUTH_ADMIN_PASSWORD:-cqr-admin-secret-2026}"
      MLFLOW_FLASK_SERVER_SECRET_KEY="cqr-test-secret")
    cat > "$dir/auth.ini" <<INI
[mlflow]
default_permission = READ
database_uri = sqlite:///$dir/basic_auth.db
admin_username = admin
admin_password = ${MLFLOW_AUTH_ADMIN_PASSWORD:-cqr-admin-secret-2026}
authorization_function = mlflow.server.auth:authenticate_request_basic_auth
INI
    extra=(--app-name basic-auth)
  fi
  (
    cd "$dir"
    env "${envs[@]}" setsid bash -c 'echo $$ > server.pgid; exec "$0" server "$@"' "$venv/bin/mlflow" \
      --backend-store-uri "sqlite:///$dir/mlflow.db" --artifacts-destination "$dir/artifacts" \
      --host 127.0.0.1 --port "$port" --workers 1 "${extra[@]}" \
      > "$dir/server.log" 2>&1 < /dev/null &
  )
  for _ in $(seq 1 600); do
    if python3 -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:$port/health', timeout=2)" 2>/dev/null; then
      echo "$port" > "$dir/server.port"
      echo "http://127.0.0.1:$port"
      return
    fi
    sleep 0.25
  done
  echo "error: mlflow server did not become healthy; see $dir/server.log" >&2
  stop "$dir"
  exit 2
}

stop() {
  local dir="$1"
  [ -f "$dir/server.pgid" ] || return 0
  local pgid
  pgid=$(cat "$dir/server.pgid")
  kill -TERM -- "-$pgid" 2>/dev/null || true
  for _ in $(seq 1 40); do
    kill -0 -- "-$pgid" 2>/dev/null || break
    sleep 0.25
  done
  kill -KILL -- "-$pgid" 2>/dev/null || true
  rm -f "$dir/server.pgid"
}

case "${1:-}" in
  install) install ;;
  start) start "${2:?usage: start DIR [--auth]}" "${3:-}" ;;
  stop) stop "${2:?usage: stop DIR}" ;;
  *) echo "usage: $0 install | start DIR [--auth] | stop DIR" >&2; exit 2 ;;
esac
