#!/usr/bin/env bash
# Builds the local cluster's binaries (kube-apiserver, kube-controller-manager,
# kube-scheduler, kubectl, etcd, kwok, kwokctl, helm, Flux's source- and
# kustomize-controller) from Go modules, and fetches KEDA's CRDs, the Prometheus
# Operator's ServiceMonitor and PodMonitor CRDs and the Gateway API's standard CRDs
# from their modules.
# Outputs go to a cache outside the repository, keyed by hack/versions.env, so a
# second run costs nothing. Prints the bin directory on its last line.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck disable=SC1091
source "$here/versions.env"
cache=${SMALLFLEET_CACHE:-$HOME/.cache/smallfleet}
key=$(sha256sum "$here/versions.env" | cut -c1-12)
bin="$cache/bin/$key"
work="$cache/build/$key"
mkdir -p "$bin" "$work"
log() { printf '[build-bins] %s\n' "$*" >&2; }

need() { for b in "$@"; do [ -x "$bin/$b" ] || return 0; done; return 1; }

build_k8s() {
  local mod="$work/k8s"
  mkdir -p "$mod"
  if [ ! -f "$mod/go.sum" ]; then
    log "preparing wrapper module for k8s.io/kubernetes $KUBERNETES_VERSION"
    local upstream
    upstream=$(cd "$mod" && GOFLAGS=-mod=mod go mod download -json "k8s.io/kubernetes@$KUBERNETES_VERSION" | python3 -c 'import json,sys; print(json.load(sys.stdin)["GoMod"])')
    {
      echo "module smallfleet.local/k8sbins"
      grep -m1 '^go ' "$upstream"
      echo "require k8s.io/kubernetes $KUBERNETES_VERSION"
      echo "require go.etcd.io/etcd/server/v3 $ETCD_VERSION"
      # Every staging module that upstream replaces with a local path gets its published tag.
      awk '/^replace \(/{r=1;next} r&&/^\)/{r=0} r&&/=> \.\/staging/{print "replace " $1 " => " $1 " '"$KUBERNETES_STAGING_VERSION"'"}' "$upstream"
    } > "$mod/go.mod"
    cat > "$mod/tools.go" <<'GO'
//go:build tools

package tools

import (
	_ "go.etcd.io/etcd/server/v3"
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager"
	_ "k8s.io/kubernetes/cmd/kube-scheduler"
	_ "k8s.io/kubernetes/cmd/kubectl"
)
GO
    log "go mod tidy (k8s)"
    (cd "$mod" && go mod tidy)
  fi
  local minor=${KUBERNETES_VERSION#v1.}; minor=${minor%%.*}
  local ld="-s -w -X k8s.io/component-base/version.gitVersion=$KUBERNETES_VERSION -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=$minor -X k8s.io/client-go/pkg/version.gitVersion=$KUBERNETES_VERSION -X k8s.io/component-base/version.gitTreeState=clean"
  for c in kube-apiserver kube-controller-manager kube-scheduler kubectl; do
    if [ ! -x "$bin/$c" ]; then
      log "building $c (cold: minutes)"
      (cd "$mod" && go build -trimpath -ldflags "$ld" -o "$bin/$c.tmp" "k8s.io/kubernetes/cmd/$c") && mv "$bin/$c.tmp" "$bin/$c"
    fi
  done
  if [ ! -x "$bin/etcd" ]; then
    log "building etcd $ETCD_VERSION"
    (cd "$mod" && go build -trimpath -ldflags "-s -w" -o "$bin/etcd.tmp" go.etcd.io/etcd/server/v3) && mv "$bin/etcd.tmp" "$bin/etcd"
  fi
}

build_simple() { # name module-path version pkg ldflags
  local name=$1 modpath=$2 version=$3 pkg=$4 ld=$5
  [ -x "$bin/$name" ] && return 0
  local mod="$work/$name"
  mkdir -p "$mod"
  log "building $name $version"
  (
    cd "$mod"
    [ -f go.mod ] || { echo "module smallfleet.local/$name" > go.mod; }
    GOFLAGS=-mod=mod go get "$modpath@$version" >/dev/null 2>&1 || GOFLAGS=-mod=mod go get "$modpath@$version"
    GOFLAGS=-mod=mod go build -trimpath -ldflags "-s -w $ld" -o "$bin/$name.tmp" "$pkg"
  ) && mv "$bin/$name.tmp" "$bin/$name"
}

build_flux() {
  local mod="$work/flux"
  mkdir -p "$mod"
  if [ ! -f "$mod/go.mod" ]; then
    cat > "$mod/go.mod" <<MOD
module smallfleet.local/flux

go 1.26

require (
	github.com/fluxcd/kustomize-controller $FLUX_KUSTOMIZE_CONTROLLER_VERSION
	github.com/fluxcd/source-controller $FLUX_SOURCE_CONTROLLER_VERSION
)

replace github.com/opencontainers/go-digest => github.com/opencontainers/go-digest $FLUX_GO_DIGEST_VERSION

replace github.com/fluxcd/pkg/artifact => github.com/fluxcd/pkg/artifact $FLUX_PKG_ARTIFACT_VERSION
MOD
  fi
  for c in kustomize-controller source-controller; do
    if [ ! -x "$bin/$c" ]; then
      log "building $c"
      (cd "$mod" && GOFLAGS=-mod=mod go build -trimpath -ldflags "-s -w" -o "$bin/$c.tmp" "github.com/fluxcd/$c") && mv "$bin/$c.tmp" "$bin/$c"
    fi
  done
  mkdir -p "$bin/crds/flux"
  if [ -z "$(ls -A "$bin/crds/flux" 2>/dev/null)" ]; then
    local d
    for c in kustomize-controller source-controller; do
      d=$(cd "$mod" && GOFLAGS=-mod=mod go list -m -f '{{.Dir}}' "github.com/fluxcd/$c")
      cp "$d"/config/crd/bases/*.yaml "$bin/crds/flux/"
    done
    chmod u+w "$bin/crds/flux/"*.yaml
  fi
}

fetch_keda_crds() {
  mkdir -p "$bin/crds/keda"
  [ -n "$(ls -A "$bin/crds/keda" 2>/dev/null)" ] && return 0
  log "fetching KEDA $KEDA_VERSION CRDs from its Go module"
  local dir
  dir=$(cd "$work" && GOFLAGS=-mod=mod go mod download -json "github.com/kedacore/keda/v2@$KEDA_VERSION" | python3 -c 'import json,sys; print(json.load(sys.stdin)["Dir"])')
  cp "$dir"/config/crd/bases/*.yaml "$bin/crds/keda/"
  chmod u+w "$bin/crds/keda/"*.yaml
}

fetch_prometheus_crds() {
  mkdir -p "$bin/crds/prometheus"
  [ -n "$(ls -A "$bin/crds/prometheus" 2>/dev/null)" ] && return 0
  log "fetching Prometheus Operator $PROMETHEUS_OPERATOR_VERSION CRDs from its Go module"
  local dir
  dir=$(cd "$work" && GOFLAGS=-mod=mod go mod download -json "github.com/prometheus-operator/prometheus-operator@$PROMETHEUS_OPERATOR_VERSION" | python3 -c 'import json,sys; print(json.load(sys.stdin)["Dir"])')
  # Only the kinds the chart renders: the others would be served for nothing.
  for kind in servicemonitors podmonitors; do
    cp "$dir/example/prometheus-operator-crd/monitoring.coreos.com_$kind.yaml" "$bin/crds/prometheus/"
  done
  chmod u+w "$bin/crds/prometheus/"*.yaml
}

fetch_gateway_api_crds() {
  mkdir -p "$bin/crds/gateway-api"
  [ -n "$(ls -A "$bin/crds/gateway-api" 2>/dev/null)" ] && return 0
  log "fetching Gateway API $GATEWAY_API_VERSION CRDs from its Go module"
  local dir
  dir=$(cd "$work" && GOFLAGS=-mod=mod go mod download -json "sigs.k8s.io/gateway-api@$GATEWAY_API_VERSION" | python3 -c 'import json,sys; print(json.load(sys.stdin)["Dir"])')
  # The standard channel's route kinds and what they refer to; the channel's
  # ValidatingAdmissionPolicy and the other route kinds are not needed.
  for kind in gatewayclasses gateways httproutes grpcroutes referencegrants; do
    cp "$dir/config/crd/standard/gateway.networking.k8s.io_$kind.yaml" "$bin/crds/gateway-api/"
  done
  chmod u+w "$bin/crds/gateway-api/"*.yaml
}

# versitygw, an S3 gateway that checks SigV4 signatures, for tests/e2e/test_private_artifacts.py.
# Its own version file and cache key (bin/s3-<key>), so that it never rebuilds the above.
s3_bin() { echo "$cache/bin/s3-$(sha256sum "$here/s3-versions.env" | cut -c1-12)"; }

build_s3() {
  # shellcheck disable=SC1091
  source "$here/s3-versions.env"
  local out mod
  out=$(s3_bin)
  mod="$cache/build/s3-$(basename "$out" | cut -c4-)/versitygw"
  [ -x "$out/versitygw" ] && return 0
  mkdir -p "$out" "$mod"
  log "building versitygw $VERSITYGW_VERSION (cold: minutes)"
  (
    cd "$mod"
    [ -f go.mod ] || echo "module smallfleet.local/versitygw" > go.mod
    GOFLAGS=-mod=mod go get "github.com/versity/versitygw@$VERSITYGW_VERSION" >/dev/null 2>&1 || GOFLAGS=-mod=mod go get "github.com/versity/versitygw@$VERSITYGW_VERSION"
    GOFLAGS=-mod=mod go build -trimpath -ldflags "-s -w" -o "$out/versitygw.tmp.$$" github.com/versity/versitygw/cmd/versitygw
  ) && mv "$out/versitygw.tmp.$$" "$out/versitygw"
}

what=${1:-all}
if [ "$what" = s3 ]; then
  build_s3
  log "versitygw ready in $(s3_bin)"
  s3_bin
  exit 0
fi
case "$what" in
  all|k8s) build_k8s ;;&
  all|kwok)
    build_simple kwok sigs.k8s.io/kwok "$KWOK_VERSION" sigs.k8s.io/kwok/cmd/kwok "-X sigs.k8s.io/kwok/pkg/consts.Version=$KWOK_VERSION -X sigs.k8s.io/kwok/pkg/consts.KubeVersion=$KUBERNETES_VERSION"
    build_simple kwokctl sigs.k8s.io/kwok "$KWOK_VERSION" sigs.k8s.io/kwok/cmd/kwokctl "-X sigs.k8s.io/kwok/pkg/consts.Version=$KWOK_VERSION -X sigs.k8s.io/kwok/pkg/consts.KubeVersion=$KUBERNETES_VERSION" ;;&
  all|helm) build_simple helm helm.sh/helm/v4 "$HELM_VERSION" helm.sh/helm/v4/cmd/helm "-X helm.sh/helm/v4/internal/version.version=$HELM_VERSION" ;;&
  all|flux) build_flux ;;&
  all|keda) fetch_keda_crds ;;&
  all|prometheus) fetch_prometheus_crds ;;&
  all|gateway-api) fetch_gateway_api_crds ;;&
  all) build_s3 ;;&
  *) ;;
esac
log "binaries ready in $bin"
echo "$bin"
