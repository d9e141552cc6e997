#!/usr/bin/env bash
# Tenant-sized objects, against a real kube-apiserver + etcd (built by tests/controlplane/build.sh):
# what the webhook's memory does when tenants store objects near the API's limits, and how long
# one namespace's reconcile waits while another's ConfigMap keeps flipping. The release webhook
# runs in cluster mode as the ServiceAccount of examples/rbac.yaml (self-managed certificates,
# the webhook configurations of tests/e2e/manifests/cluster-webhooks.yaml, every namespace
# selected), a fresh process per case, so each peak RSS (VmHWM from /proc) is that case's alone:
#
#   1. padded targets: one namespace with carto-common-backend and 100 Deployments running as it,
#      each carrying ~240 KB of annotations on the object and ~240 KB on its pod template (~48 MB
#      of JSON), not injected: the startup pass patches all 100; then a config change patches all
#      100 again.
#   2. padded non-targets: the same 100 Deployments running as another ServiceAccount, next to
#      carto-common-backend: the startup pass.
#   3. 60 namespaces each holding a 0.9 MB carto-workload-identity ConfigMap (the four values and
#      30 WORKSPACE_* values of 30 KB): the watch's first list and the startup pass.
#   4. fairness: namespaces fair-a and fair-b, each with its own ConfigMap, the ServiceAccount and
#      10 target Deployments; fair-a's ConfigMap flips 50 times while fair-b's changes once. The
#      delay until fair-b converged, and how many passes of fair-a started in between (from the
#      kube-apiserver audit log of the webhook's requests).
#
#   bench/tenant.sh                               # builds release, prints the table
#   WEBHOOK=path/to/carto-wi-webhook bench/tenant.sh   # measure another build (e.g. main's)
#
# Everything runs in a temp dir (kept, with every log, when KEEP=1) and is stopped on exit.
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD

DEPLOYMENTS="${DEPLOYMENTS:-100}"  # padded Deployments (cases 1 and 2)
PAD="${PAD:-240000}"               # bytes of annotation on the object and on its pod template
CONFIGMAPS="${CONFIGMAPS:-60}"     # namespaces with a big ConfigMap (case 3)
FLIPS="${FLIPS:-50}"               # changes of fair-a's ConfigMap (case 4)
CASES="${CASES:-1 2 3 4}"          # which cases to run
JOBS="${JOBS:-4}"
TARGET="${CARGO_TARGET_DIR:-target}"
OUT="$TARGET/bench-results/tenant"
WH_NS=carto-wi-system
WH_USER="system:serviceaccount:$WH_NS:carto-wi-webhook"
HASH_KEY='workload-identity\.carto\.com/config-hash'

log() { echo "== $(date +%T) $*" >&2; }
now() { date +%s.%N; }

echo "== control plane (tests/controlplane/build.sh)" >&2
BIN=$(CONTROLPLANE_SKIP_HELM=1 bash tests/controlplane/build.sh | tail -1)
if [ -z "${WEBHOOK:-}" ]; then
    echo "== release build" >&2
    cargo build --release --locked --quiet --bin carto-wi-webhook
    WEBHOOK="$TARGET/release/carto-wi-webhook"
fi
[[ "$WEBHOOK" = /* ]] || WEBHOOK="$REPO/$WEBHOOK"
rm -rf "$OUT" && mkdir -p "$OUT"

WORK=$(mktemp -d /tmp/carto-wi-tenant.XXXXXX)
PIDS=()
WH_PID=""
cleanup() {
    local pid
    [ -n "$WH_PID" ] && kill "$WH_PID" 2> /dev/null || true
    for pid in "${PIDS[@]}"; do kill "$pid" 2> /dev/null || true; done
    for pid in "${PIDS[@]}" $WH_PID; do wait "$pid" 2> /dev/null || true; done
    if [ "${KEEP:-0}" = 1 ]; then echo "logs kept in $WORK" >&2; else rm -rf "$WORK"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# shellcheck source=bench/lib/cluster.sh
source "$REPO/bench/lib/cluster.sh"

# The RBAC of examples/rbac.yaml and a token of its ServiceAccount; the webhook configurations
# are rendered here and applied by webhooks_on (objects are stored uninjected while they are off).
install_rbac() {
    log "RBAC (examples/rbac.yaml), token"
    k apply -f examples/rbac.yaml > /dev/null
    WH_PORT=$(free_port)
    kubeconfig "$WORK/webhook.kubeconfig" "$(k create token carto-wi-webhook -n "$WH_NS" --duration=12h)"
    sed -e 's/\${NAME}-backend/carto-common-backend/g' -e 's/\${NAME}-config/carto-workload-identity/g' \
        -e 's/\${NAME}-webhook/carto-wi-webhook/g' -e "s|\${URL}|https://127.0.0.1:$WH_PORT|g" \
        -e '/e2e.carto.com\/webhook/d' tests/e2e/manifests/cluster-webhooks.yaml > "$WORK/webhooks.yaml"
}
webhooks_on() { k apply -f "$WORK/webhooks.yaml" > /dev/null; }
webhooks_off() { k delete --ignore-not-found -f "$WORK/webhooks.yaml" > /dev/null; }

metrics() { curl -sf "http://127.0.0.1:$ADMIN_PORT/metrics"; }
metric() { # metric NAME_WITH_LABELS: its value (0 when absent)
    metrics | awk -v m="$1" 'index($0, m " ") == 1 {v = $2} END {print v + 0}'
}
PATCHED='carto_wi_cluster_reconcile_actions_total{kind="Deployment",action="patched"}'
hwm_kb() { awk '/^VmHWM:/ {print $2}' "/proc/$WH_PID/status"; }
rss_kb() { awk '/^VmRSS:/ {print $2}' "/proc/$WH_PID/status"; }

start_webhook() { # start_webhook RUN [FLAGS...]
    RUN=$1
    shift
    ADMIN_PORT=$(free_port)
    env -u KUBECONFIG -u POD_NAMESPACE -u POD_NAME -u KUBERNETES_SERVICE_HOST \
        -u HTTPS_PROXY -u https_proxy -u HTTP_PROXY -u http_proxy \
        "$WEBHOOK" serve --kubeconfig="$WORK/webhook.kubeconfig" --namespace="$WH_NS" \
        --cert-extra-names=localhost,127.0.0.1 --identity=bench-0 \
        --listen="127.0.0.1:$WH_PORT" --admin-listen="127.0.0.1:$ADMIN_PORT" \
        --log-format=json --log-level=info "$@" > "$WORK/webhook-$RUN.log" 2>&1 &
    WH_PID=$!
    wait_until 120 "webhook /readyz" curl -sf "http://127.0.0.1:$ADMIN_PORT/readyz"
    wait_until 60 "caBundle" sh -c "'$BIN/kubectl' --kubeconfig='$WORK/admin.kubeconfig' get validatingwebhookconfiguration carto-wi-webhook -o jsonpath='{.webhooks[0].clientConfig.caBundle}' | grep -q ."
}

stop_webhook() {
    kill "$WH_PID" && wait "$WH_PID" 2> /dev/null || true
    WH_PID=""
}

# Wait until the reconciler has patched N Deployments since start and its queue is empty.
wait_patched() { # wait_patched N
    local deadline=$((SECONDS + 900))
    until [ "$(metric "$PATCHED")" -ge "$1" ] && metrics | grep -qx 'carto_wi_cluster_reconcile_queue 0'; do
        kill -0 "$WH_PID" || { echo "webhook exited, see $WORK/webhook-$RUN.log" >&2; exit 1; }
        [ $SECONDS -lt $deadline ] || { echo "timed out: $(metric "$PATCHED") patched" >&2; exit 1; }
        sleep 0.5
    done
}

# Wait until N namespaces were reconciled since start and the queue is empty.
wait_reconciled() { # wait_reconciled N
    local deadline=$((SECONDS + 900))
    until [ "$(metric carto_wi_cluster_reconciles_total)" -ge "$1" ] && metrics | grep -qx 'carto_wi_cluster_reconcile_queue 0'; do
        kill -0 "$WH_PID" || { echo "webhook exited, see $WORK/webhook-$RUN.log" >&2; exit 1; }
        [ $SECONDS -lt $deadline ] || { echo "timed out: $(metric carto_wi_cluster_reconciles_total) reconciled" >&2; exit 1; }
        sleep 0.5
    done
}

# A ConfigMap named carto-workload-identity in NS with values set VARIANT, plus EXTRA lines.
config_map() { # config_map NS VARIANT
    cat << EOF
apiVersion: v1
kind: ConfigMap
metadata: {name: carto-workload-identity, namespace: $1, labels: {bench: tenant}}
data:
  WORKSPACE_WORKLOAD_IDENTITY_WORKFLOWS_TEMP: acme-analytics.carto_workflows_$2
  WORKSPACE_WORKLOAD_IDENTITY_BILLING_PROJECT: acme-billing-$2
  WORKSPACE_WORKLOAD_IDENTITY_SERVICE_ACCOUNT_EMAIL: carto-wi-$2@acme-analytics.iam.gserviceaccount.com
  WORKSPACE_WORKLOAD_IDENTITY_CONNECTION_OWNER_ID: "auth0|owner$2"
  GKE_CLUSTER_PROJECT: acme-gke-prod
EOF
}

namespace() { k create namespace "$1" > /dev/null; }
service_account() { # service_account NS NAME
    printf 'apiVersion: v1\nkind: ServiceAccount\nmetadata: {name: %s, namespace: %s}\n' "$2" "$1" | k apply -f - > /dev/null
}

# COUNT Deployments named PREFIX-I in NS running as SA, each with PAD bytes of annotation on the
# object and on its pod template when PADDED=1; created JOBS files at a time.
deployments() { # deployments NS PREFIX SA COUNT PADDED
    local ns=$1 prefix=$2 sa=$3 count=$4 padded=$5 i pad="" files=()
    if [ "$padded" = 1 ]; then pad=$(head -c "$PAD" /dev/zero | tr '\0' x); fi
    rm -f "$WORK"/deploy-*.json
    for ((i = 0; i < count; i++)); do
        local ann='{}'
        [ -n "$pad" ] && ann="{\"tenant.example.com/blob\": \"$pad\"}"
        printf '{"apiVersion":"apps/v1","kind":"Deployment","metadata":{"name":"%s-%d","namespace":"%s","annotations":%s},"spec":{"replicas":1,"selector":{"matchLabels":{"app":"%s-%d"}},"template":{"metadata":{"labels":{"app":"%s-%d"},"annotations":%s},"spec":{"serviceAccountName":"%s","containers":[{"name":"app","image":"registry.example.com/carto/app:1","env":[{"name":"LOG_LEVEL","value":"info"}]}]}}}}\n' \
            "$prefix" "$i" "$ns" "$ann" "$prefix" "$i" "$prefix" "$i" "$ann" "$sa" >> "$WORK/deploy-$((i % JOBS)).json"
    done
    for ((i = 0; i < JOBS && i < count; i++)); do files+=("$WORK/deploy-$i.json"); done
    printf '%s\n' "${files[@]}" | xargs -P "$JOBS" -I{} sh -c \
        "env -u HTTPS_PROXY -u https_proxy '$BIN/kubectl' --kubeconfig='$WORK/admin.kubeconfig' create -f {} -o name > /dev/null"
    rm -f "$WORK"/deploy-*.json
}

row() { echo "$1|$2|$3" >> "$OUT/runs.txt"; log "$1: $2"; }
mib() { awk -v k="$1" 'BEGIN {printf "%.1f MiB", k / 1024}'; }

case_padded_targets() {
    log "case 1: $DEPLOYMENTS padded target Deployments"
    namespace tenant-a
    service_account tenant-a carto-common-backend
    deployments tenant-a padded carto-common-backend "$DEPLOYMENTS" 1
    config_map "$WH_NS" a | k apply -f - > /dev/null
    webhooks_on
    start_webhook padded-targets
    wait_patched "$DEPLOYMENTS"
    row "padded targets: startup pass patching all $DEPLOYMENTS" "$(mib "$(hwm_kb)")" "peak RSS (VmHWM)"
    config_map "$WH_NS" b | k apply -f - > /dev/null
    wait_patched $((DEPLOYMENTS * 2))
    row "padded targets: then a config change patching all $DEPLOYMENTS" "$(mib "$(hwm_kb)")" "peak RSS (VmHWM) since start"
    local hashes
    hashes=$(k get deploy -n tenant-a -o jsonpath="{range .items[*]}{.spec.template.metadata.annotations.$HASH_KEY}{\"\\n\"}{end}" | sort | uniq -c)
    [ "$(echo "$hashes" | wc -l)" = 1 ] && [ "$(echo "$hashes" | awk '{print $1}')" = "$DEPLOYMENTS" ] ||
        { echo "not converged: $hashes" >&2; exit 1; }
    stop_webhook
    webhooks_off
    k delete deployments --all -n tenant-a > /dev/null
}

case_padded_others() {
    log "case 2: $DEPLOYMENTS padded Deployments running as another ServiceAccount"
    namespace tenant-b
    service_account tenant-b carto-common-backend
    service_account tenant-b other
    deployments tenant-b other other "$DEPLOYMENTS" 1
    webhooks_on
    start_webhook padded-others
    wait_reconciled 2
    row "padded non-targets next to the ServiceAccount: startup pass" "$(mib "$(hwm_kb)")" "peak RSS (VmHWM)"
    stop_webhook
    webhooks_off
    k delete deployments --all -n tenant-b > /dev/null
}

case_config_maps() {
    log "case 3: $CONFIGMAPS namespaces with a 0.9 MB ConfigMap"
    local i j value
    value=$(head -c 30000 /dev/zero | tr '\0' v)
    for ((i = 1; i <= CONFIGMAPS; i++)); do
        namespace "big-$i"
        {
            config_map "big-$i" a
            for ((j = 1; j <= 30; j++)); do printf '  WORKSPACE_TENANT_VALUE_%02d: "%s"\n' "$j" "$value"; done
        } > "$WORK/cm-$i.yaml"
    done
    ls "$WORK"/cm-*.yaml | xargs -P "$JOBS" -I{} sh -c \
        "env -u HTTPS_PROXY -u https_proxy '$BIN/kubectl' --kubeconfig='$WORK/admin.kubeconfig' create -f {} -o name > /dev/null"
    rm -f "$WORK"/cm-*.yaml
    webhooks_on
    start_webhook config-maps
    wait_reconciled "$CONFIGMAPS"
    sleep 2
    row "$CONFIGMAPS namespaces × 0.9 MB ConfigMap: first list + startup pass" "$(mib "$(hwm_kb)")" "peak RSS (VmHWM); RSS after: $(mib "$(rss_kb)")"
    stop_webhook
    webhooks_off
    k delete configmaps -A -l bench=tenant --field-selector "metadata.namespace!=$WH_NS" > /dev/null
}

# The config-hash of fair-b's Deployments, once each.
fair_b_hashes() {
    k get deploy -n fair-b -o jsonpath="{range .items[*]}{.spec.template.metadata.annotations.$HASH_KEY}{\"\\n\"}{end}" | sort -u
}

# The webhook's requests in the audit log as "epoch verb namespace resource", from line FROM.
requests_since() { # requests_since FROM
    tail -n +"$1" "$WORK/audit.log" | jq -r 'select(.stage == "ResponseComplete") |
        "\(.requestReceivedTimestamp | sub("\\.[0-9]+Z$"; "Z") | fromdateiso8601) \(.requestReceivedTimestamp | capture("\\.(?<f>[0-9]+)Z$").f // "0") \(.verb) \(.objectRef.namespace // "-") \(.objectRef.resource // "-")"' |
        awk '{printf "%d.%s %s %s %s\n", $1, $2, $3, $4, $5}'
}

case_fairness() {
    log "case 4: fair-a flips $FLIPS times while fair-b changes once"
    local ns
    for ns in fair-a fair-b; do
        namespace "$ns"
        service_account "$ns" carto-common-backend
        deployments "$ns" app carto-common-backend 10 0
        config_map "$ns" a | k apply -f - > /dev/null
    done
    webhooks_on
    start_webhook fairness
    wait_patched 20
    local old
    old=$(fair_b_hashes)
    local lines0 t0 t1 variant i
    lines0=$(($(wc -l < "$WORK/audit.log") + 1))
    (for ((i = 1; i <= FLIPS; i++)); do
        [ $((i % 2)) = 1 ] && variant=b || variant=a
        config_map fair-a "$variant" | k apply -f - > /dev/null
    done) &
    local flipper=$!
    # fair-b changes once, while fair-a is flipping.
    sleep 3
    config_map fair-b b | k apply -f - > /dev/null
    # Stored: the watch hears of it within milliseconds.
    t0=$(now)
    local got
    until got=$(fair_b_hashes) && [ "$(echo "$got" | wc -l)" = 1 ] && [ "$got" != "$old" ]; do
        sleep 0.1
    done
    t1=$(now)
    wait "$flipper"
    wait_reconciled 0
    sleep 2
    requests_since "$lines0" > "$WORK/fair-requests.txt"
    # A pass of a namespace starts with its Deployment list.
    local b_first a_between a_pass
    b_first=$(awk '$2 == "patch" && $3 == "fair-b" {print $1; exit}' "$WORK/fair-requests.txt")
    a_between=$(awk -v t0="$t0" -v b="$b_first" '$2 == "list" && $3 == "fair-a" && $4 == "deployments" && $1 >= t0 && $1 < b' "$WORK/fair-requests.txt" | wc -l)
    a_pass=$(awk '$3 == "fair-a" && $4 == "deployments" && $2 == "list" {if (p) {print $1 - p} p = $1}' "$WORK/fair-requests.txt" |
        sort -n | awk '{d[NR] = $1} END {printf "%.1f", NR ? d[int((NR + 1) / 2)] : 0}')
    local passes
    passes=$(awk '$2 == "list" && $3 == "fair-a" && $4 == "deployments"' "$WORK/fair-requests.txt" | wc -l)
    row "fairness: fair-b's change → its 10 Deployments converged, while fair-a flipped $FLIPS times" \
        "$(awk -v a="$t1" -v b="$t0" 'BEGIN {printf "%.1f s", a - b}')" \
        "passes of fair-a started after fair-b's change and before fair-b's first patch: $a_between; one pass of fair-a (median): $a_pass s; fair-a passes in all: $passes"
    stop_webhook
}

report() {
    local cpu
    cpu=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//')
    echo "Machine: $(nproc) cores ($cpu), $(free -g | awk '/Mem:/ {print $2}') GiB; kube-apiserver and etcd on the same cores. Webhook: $WEBHOOK ($(stat -c %y "$WEBHOOK" | cut -d. -f1))."
    echo
    echo "| case | result | |"
    echo "| --- | ---: | --- |"
    awk -F'|' '{printf "| %s | %s | %s |\n", $1, $2, $3}' "$OUT/runs.txt"
}

start_control_plane
install_rbac
for c in $CASES; do
    case $c in
        1) case_padded_targets ;;
        2) case_padded_others ;;
        3) case_config_maps ;;
        4) case_fairness ;;
    esac
done
report | tee "$OUT/table.md"
