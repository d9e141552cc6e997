#!/usr/bin/env bash
# Build a local Kubernetes control plane (kube-apiserver, kubectl, etcd) and
# helm (both majors) from Go modules, pinned by the committed go.mod/go.sum
# files in tests/controlplane/{kube,etcd,helm,helm4}. No binary downloads: only
# the Go module proxy is used.
#
# Output: ${CARGO_TARGET_DIR:-$REPO/target}/controlplane/<k8s-version>-<etcd-version>/bin/
#         {kube-apiserver,kubectl,etcd,helm,helm3}  (helm is Helm 4, helm3 is Helm 3)
# The last line on stdout is that bin directory. Timings go to stderr.
#
# Idempotent: a binary is rebuilt only when it is missing or its module's
# go.mod/go.sum/*.go or build flags changed since it was built (a stamp file
# in bin/ records a hash of them).
#
# Environment:
#   CONTROLPLANE_SKIP_HELM=1  do not build helm (either major)
#   GO=/path/to/go            Go toolchain (default: go on PATH, else /usr/local/go/bin/go)
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"

# Versions come from the committed go.mod files (single source of truth).
modver() { sed -n "s|^[[:space:]]*\(require[[:space:]]\+\)\?$2 \(v[^[:space:]]*\).*|\2|p" "$HERE/$1/go.mod" | head -n1; }
K8S_VERSION="$(modver kube k8s.io/kubernetes)"
ETCD_VERSION="$(modver etcd go.etcd.io/etcd/server/v3)"
HELM_VERSION="$(modver helm helm.sh/helm/v3)"
HELM4_VERSION="$(modver helm4 helm.sh/helm/v4)"
[[ -n "$K8S_VERSION" && -n "$ETCD_VERSION" && -n "$HELM_VERSION" && -n "$HELM4_VERSION" ]] || {
  echo "build.sh: cannot read versions from $HERE/{kube,etcd,helm,helm4}/go.mod" >&2; exit 1; }

OUT="${CARGO_TARGET_DIR:-$REPO/target}/controlplane/${K8S_VERSION}-${ETCD_VERSION}"
BIN="$OUT/bin"

# ---- build flags (computed up front: they are part of each binary's stamp)
# etcd: version is compiled in (go.etcd.io/etcd/api/v3/version); only GitSHA is set.
ETCD_LDFLAGS="-s -w -X go.etcd.io/etcd/api/v3/version.GitSHA=gomod-${ETCD_VERSION}"
ETCD_TAGS=""
# kubernetes: same version ldflags and tags as its hack/lib/golang.sh (non-debug build).
k8s_minor="${K8S_VERSION#v1.}"; k8s_minor="${k8s_minor%%.*}"
KUBE_LDFLAGS="-s -w"
for kv in "gitVersion=${K8S_VERSION}" "gitMajor=1" "gitMinor=${k8s_minor}" \
          "gitTreeState=clean" "gitCommit=gomod-${K8S_VERSION}" "buildDate=1970-01-01T00:00:00Z"; do
  KUBE_LDFLAGS+=" -X k8s.io/client-go/pkg/version.${kv} -X k8s.io/component-base/version.${kv}"
done
KUBE_TAGS="selinux,notest,grpcnotrace"
# helm 3: ldflags as in its Makefile for a tagged release; k8s version from its client-go (v0.36.2 -> 1.36).
helm_k8s="$(modver helm k8s.io/client-go)"
helm_k8s_minor="${helm_k8s#v0.}"; helm_k8s_minor="${helm_k8s_minor%%.*}"
HELM_LDFLAGS="-s -w -X helm.sh/helm/v3/internal/version.version=${HELM_VERSION}"
HELM_LDFLAGS+=" -X helm.sh/helm/v3/internal/version.metadata= -X helm.sh/helm/v3/internal/version.gitTreeState=clean"
for p in pkg/lint/rules pkg/chartutil; do
  HELM_LDFLAGS+=" -X helm.sh/helm/v3/$p.k8sVersionMajor=1 -X helm.sh/helm/v3/$p.k8sVersionMinor=${helm_k8s_minor}"
done
HELM_TAGS=""
# helm 4: its Makefile sets only the version variables (it reads the client-go version from the
# build info at run time).
HELM4_LDFLAGS="-s -w -X helm.sh/helm/v4/internal/version.version=${HELM4_VERSION}"
HELM4_LDFLAGS+=" -X helm.sh/helm/v4/internal/version.metadata= -X helm.sh/helm/v4/internal/version.gitTreeState=clean"
HELM4_TAGS=""

# stamp <module-dir> <ldflags> <tags>: hash of the module files and build flags.
stamp() {
  local f
  {
    for f in "$HERE/$1"/go.mod "$HERE/$1"/go.sum "$HERE/$1"/*.go; do
      if [[ -f "$f" ]]; then cat "$f"; fi
    done
    printf '%s\n%s\n' "$2" "$3"
  } | sha256sum | cut -c1-16
}
# up_to_date <module-dir> <ldflags> <tags> <binary>...
up_to_date() {
  local mod="$1" want; want="$(stamp "$1" "$2" "$3")"; shift 3
  [[ -f "$BIN/.$mod.stamp" && "$(<"$BIN/.$mod.stamp")" == "$want" ]] || return 1
  local b; for b in "$@"; do [[ -x "$BIN/$b" ]] || return 1; done
}
all_up_to_date() {
  up_to_date etcd "$ETCD_LDFLAGS" "$ETCD_TAGS" etcd &&
    up_to_date kube "$KUBE_LDFLAGS" "$KUBE_TAGS" kube-apiserver kubectl &&
    { [[ "${CONTROLPLANE_SKIP_HELM:-}" == 1 ]] ||
      { up_to_date helm "$HELM_LDFLAGS" "$HELM_TAGS" helm3 &&
        up_to_date helm4 "$HELM4_LDFLAGS" "$HELM4_TAGS" helm; }; }
}

# Fast path: nothing to do.
if all_up_to_date; then
  echo "$BIN"
  exit 0
fi

mkdir -p "$BIN"
# Serialise concurrent builds of the same output dir.
exec 9>"$OUT/.lock"
flock 9
if all_up_to_date; then echo "$BIN"; exit 0; fi

GO="${GO:-$(command -v go || echo /usr/local/go/bin/go)}"
export GOTOOLCHAIN=local
export GOFLAGS="-mod=mod -buildvcs=false"
export CGO_ENABLED=0
"$GO" version >&2

now() { date +%s; }
T_ALL=$(now)

# build <module-dir> <ldflags> <tags> <name>=<package>...
build() {
  local mod="$1" ldflags="$2" tags="$3"; shift 3
  if up_to_date "$mod" "$ldflags" "$tags" "${@%%=*}"; then
    echo "[controlplane] $mod: up to date" >&2; return 0
  fi
  rm -f "$BIN/.$mod.stamp"
  local spec name pkg t
  for spec in "$@"; do
    name="${spec%%=*}"; pkg="${spec#*=}"
    echo "[controlplane] building $name ($pkg) ..." >&2
    t=$(now)
    (cd "$HERE/$mod" &&
      "$GO" build -trimpath -tags "$tags" -ldflags "$ldflags" -o "$BIN/$name.tmp" "$pkg")
    mv -f "$BIN/$name.tmp" "$BIN/$name"
    echo "[controlplane] built $name in $(( $(now) - t ))s" >&2
  done
  stamp "$mod" "$ldflags" "$tags" > "$BIN/.$mod.stamp"
}

build etcd "$ETCD_LDFLAGS" "$ETCD_TAGS" etcd=.
build kube "$KUBE_LDFLAGS" "$KUBE_TAGS" \
  kubectl=k8s.io/kubernetes/cmd/kubectl \
  kube-apiserver=k8s.io/kubernetes/cmd/kube-apiserver
if [[ "${CONTROLPLANE_SKIP_HELM:-}" != 1 ]]; then
  build helm "$HELM_LDFLAGS" "$HELM_TAGS" helm3=helm.sh/helm/v3/cmd/helm
  build helm4 "$HELM4_LDFLAGS" "$HELM4_TAGS" helm=helm.sh/helm/v4/cmd/helm
fi

echo "[controlplane] total $(( $(now) - T_ALL ))s; kubernetes ${K8S_VERSION}, etcd ${ETCD_VERSION}, helm ${HELM4_VERSION} and ${HELM_VERSION}" >&2
echo "$BIN"
