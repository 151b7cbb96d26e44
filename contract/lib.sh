# Shared helpers of the contract checks; sourced, not run. Tools are installed on first use and
# cached: Python tools in contract/.venv, npm tools in contract/node_modules (both git-ignored),
# jars and JDK through apt. Every install is keyed by a hash of its pin file, so changing a pin
# reinstalls and an unchanged one costs nothing.

CONTRACT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_ROOT="$(cd "$CONTRACT_DIR/.." && pwd)"
WORK_DIR="$CONTRACT_DIR/.work"
VENV="$CONTRACT_DIR/.venv"
NODE_BIN="$CONTRACT_DIR/node_modules/.bin"
SPEC="$REPO_ROOT/openapi/v1.json"

# Jars the Kotlin smoke test compiles and runs the generated client against: OkHttp 3.13 and
# Okio from Debian (the client is written against OkHttp 4; see contract/kotlin-smoke/run.sh),
# kotlinx-serialization 1.9.0 from PyPI (ensure_kotlin_jars). kotlinx-coroutines comes with the
# Kotlin compiler (node_modules/kotlin-compiler*/lib).
SMOKE_JARS=(/usr/share/java/okhttp.jar /usr/share/java/okio.jar)
KOTLIN_JARS_DIR="$WORK_DIR/jars"
KOTLINX_SERIALIZATION_JARS=(
  "$KOTLIN_JARS_DIR/kotlinx-serialization-core-jvm-1.9.0.jar"
  "$KOTLIN_JARS_DIR/kotlinx-serialization-json-jvm-1.9.0.jar"
)

export OPTIC_TELEMETRY_LEVEL=off
export NPM_CONFIG_UPDATE_NOTIFIER=false
export PIP_DISABLE_PIP_VERSION_CHECK=1

note() { printf '  %s\n' "$*"; }

_APT_UPDATED=""
apt_install() {
  local sudo=""
  [ "$(id -u)" = 0 ] || sudo="sudo"
  if [ -z "$_APT_UPDATED" ]; then
    $sudo apt-get update -qq
    _APT_UPDATED=1
  fi
  note "apt-get install $*"
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "$@" >/dev/null
}

_hash() { sha256sum "$1" | cut -d' ' -f1; }

ensure_java() {
  command -v java >/dev/null 2>&1 || apt_install openjdk-17-jre-headless
}

ensure_python_tools() {
  local stamp="$VENV/.requirements.sha256" want
  want=$(_hash "$CONTRACT_DIR/requirements.txt")
  if [ -x "$VENV/bin/python" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$want" ]; then
    return 0
  fi
  note "installing Python tools into contract/.venv"
  command -v python3 >/dev/null 2>&1 || apt_install python3 python3-venv
  if ! python3 -m venv --clear "$VENV" >/dev/null 2>&1; then
    apt_install python3-venv
    python3 -m venv --clear "$VENV"
  fi
  "$VENV/bin/pip" install -q -r "$CONTRACT_DIR/requirements.txt"
  echo "$want" >"$stamp"
}

ensure_node_tools() {
  local stamp="$CONTRACT_DIR/node_modules/.contract-lock.sha256" want
  want=$(_hash "$CONTRACT_DIR/package-lock.json")
  if [ -d "$CONTRACT_DIR/node_modules" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$want" ]; then
    return 0
  fi
  note "installing npm tools into contract/node_modules"
  command -v npm >/dev/null 2>&1 || apt_install nodejs npm
  (cd "$CONTRACT_DIR" && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
  echo "$want" >"$stamp"
}

ensure_smoke_jars() {
  local jar
  for jar in "${SMOKE_JARS[@]}"; do
    if [ ! -f "$jar" ]; then
      apt_install libokhttp-java libokio-java
      break
    fi
  done
  # javap reads the Kotlin metadata version of the compiled client (a JRE alone lacks it).
  command -v javap >/dev/null 2>&1 || apt_install openjdk-17-jdk-headless
  ensure_kotlin_jars
}

# kotlinx-serialization core/json 1.9.0, unzipped from the PyPI wheel pinned (with its hash) in
# contract/kotlin-jars.txt; the wheel itself is not kept.
ensure_kotlin_jars() {
  local stamp="$KOTLIN_JARS_DIR/.kotlin-jars.sha256" want tmp jar
  want=$(_hash "$CONTRACT_DIR/kotlin-jars.txt")
  if [ "$(cat "$stamp" 2>/dev/null)" = "$want" ] && ls "${KOTLINX_SERIALIZATION_JARS[@]}" >/dev/null 2>&1; then
    return 0
  fi
  ensure_python_tools
  note "extracting kotlinx-serialization jars into contract/.work/jars (PyPI kotlin-jupyter-kernel)"
  tmp=$(mktemp -d)
  if ! "$VENV/bin/pip" download -q --no-deps --require-hashes -r "$CONTRACT_DIR/kotlin-jars.txt" -d "$tmp"; then
    rm -rf "$tmp"
    return 1
  fi
  rm -rf "$KOTLIN_JARS_DIR"
  mkdir -p "$KOTLIN_JARS_DIR"
  # Python's zipfile rather than unzip(1), which a bare CI image may lack.
  if ! python3 - "$KOTLIN_JARS_DIR" "$tmp"/*.whl "${KOTLINX_SERIALIZATION_JARS[@]}" <<'PY'
import os, sys, zipfile
dest, wheel, jars = sys.argv[1], sys.argv[2], sys.argv[3:]
with zipfile.ZipFile(wheel) as z:
    for jar in jars:
        name = os.path.basename(jar)
        with z.open("run_kotlin_kernel/jars/" + name) as src, open(os.path.join(dest, name), "wb") as out:
            out.write(src.read())
PY
  then
    rm -rf "$tmp"
    return 1
  fi
  rm -rf "$tmp"
  echo "$want" >"$stamp"
}

# A TCP port nothing listens on right now.
free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

# JSON field of stdin, e.g. `json_field key`.
json_field() {
  python3 -c 'import json, sys; print(json.load(sys.stdin)[sys.argv[1]])' "$1"
}
