#!/usr/bin/env bash
# Cluster mode at scale, against a real kube-apiserver + etcd (built by tests/controlplane/build.sh):
# N namespaces × a CARTO install (the ServiceAccounts and the 14 Deployments of
# tests/fixtures/carto-plain.yaml, 10 of which run as carto-common-backend) plus M unrelated
# ConfigMaps, Deployments and ServiceAccounts, then the release webhook in cluster mode
# (self-managed certificates, the RBAC of examples/rbac.yaml, a ServiceAccount token).
# For each unrelated-object factor and each --reconcile-qps, the cluster default ConfigMap is
# created or edited and the script measures RSS (idle and during the reconcile), time to converge,
# the webhook's API requests (from the kube-apiserver audit log, filtered on its user) and
# admission latency while the reconcile runs. Prints one markdown table; then, at each factor,
# `plan` (an edit of the default) and `status -A` as an operator runs them: wall time and API
# requests (their own count, every request a paged cluster-wide list).
#
#   bench/scale.sh                                  # N=200 M=5000 FACTORS="1 10" QPS="10 100"
#   N=50 M=1000 FACTORS=1 QPS=100 bench/scale.sh    # a quick look
#   VIEWS_ONLY=1 WEBHOOK=target/debug/carto-wi-webhook bench/scale.sh   # plan/status rows only
#
# Everything runs in a temp dir (kept, with every log, when KEEP=1) and is stopped on exit.
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD

N="${N:-200}"                  # namespaces with a CARTO install
M="${M:-5000}"                 # unrelated objects (ConfigMaps, Deployments, ServiceAccounts)
FACTORS="${FACTORS:-1 10}"     # unrelated objects ×factor, measured in this order (cumulative)
QPS="${QPS:-10 100}"           # --reconcile-qps values measured at each factor
JOBS="${JOBS:-4}"              # parallel kubectl creates while populating
TARGET="${CARGO_TARGET_DIR:-target}"
OUT="$TARGET/bench-results/scale"
WH_NS=carto-wi-system
WH_USER="system:serviceaccount:$WH_NS:carto-wi-webhook"
HASH_KEY='workload-identity\.carto\.com/config-hash'
TARGETS=$((N * 10))

log() { echo "== $(date +%T) $*" >&2; }
now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.1f", a - b}'; }

echo "== control plane (tests/controlplane/build.sh)" >&2
BIN=$(CONTROLPLANE_SKIP_HELM=1 bash tests/controlplane/build.sh | tail -1)
VIEWS_ONLY="${VIEWS_ONLY:-0}"   # 1: only the plan/status rows (no webhook runs)
if [ -z "${WEBHOOK:-}" ]; then
    echo "== release build" >&2
    cargo build --release --locked --quiet --bin carto-wi-webhook
    WEBHOOK="$TARGET/release/carto-wi-webhook"
fi
[[ "$WEBHOOK" = /* ]] || WEBHOOK="$REPO/$WEBHOOK"
rm -rf "$OUT" && mkdir -p "$OUT"

WORK=$(mktemp -d /tmp/carto-wi-scale.XXXXXX)
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

# `kubectl create` the multi-document files given, JOBS at a time.
create_files() {
    # kubectl's warnings (the fixture repeats a port name) are dropped; errors still fail.
    printf '%s\n' "$@" | xargs -P "$JOBS" -I{} sh -c \
        "env -u HTTPS_PROXY -u https_proxy '$BIN/kubectl' --kubeconfig='$WORK/admin.kubeconfig' create -f {} -o name > /dev/null 2> {}.err; rc=\$?; grep -v '^Warning:' {}.err >&2; exit \$rc"
}

# The ServiceAccounts and Deployments of the CARTO fixture, in namespace carto-I for I in 1..N.
populate_carto() {
    log "populate: $N namespaces × CARTO (5 ServiceAccounts, 14 Deployments, 10 targets)"
    awk 'BEGIN{RS="\n---\n"} /\nkind: (ServiceAccount|Deployment)\n/ {print "---"; print}' \
        tests/fixtures/carto-plain.yaml > "$WORK/carto-install.yaml"
    local i chunk files=()
    for ((i = 1; i <= N; i++)); do
        printf -- '---\napiVersion: v1\nkind: Namespace\nmetadata: {name: carto-%d}\n' "$i"
    done > "$WORK/namespaces.yaml"
    k create -f "$WORK/namespaces.yaml" -o name > /dev/null
    for ((i = 1; i <= N; i++)); do
        chunk="$WORK/carto-$((i % JOBS)).yaml"
        sed "s/^  namespace: carto\$/  namespace: carto-$i/" "$WORK/carto-install.yaml" >> "$chunk"
    done
    for ((i = 0; i < JOBS && i < N; i++)); do files+=("$WORK/carto-$i.yaml"); done
    create_files "${files[@]}"
}

# Unrelated objects FROM..TO-1: a third each ConfigMaps, Deployments and ServiceAccounts, round
# robin over the CARTO namespaces and one extra namespace per 100 objects (other-J), so the
# reconciler's per-namespace Deployment lists grow with them and so does the Namespace watch.
populate_unrelated() { # populate_unrelated FROM TO
    local from=$1 to=$2 i ns spread others
    others=$(((to + 99) / 100))
    log "populate: unrelated objects $from..$((to - 1)) (ConfigMaps, Deployments, ServiceAccounts)"
    for ((i = (from + 99) / 100; i < others; i++)); do
        printf -- '---\napiVersion: v1\nkind: Namespace\nmetadata: {name: other-%d}\n' "$i"
    done > "$WORK/other-ns.yaml"
    [ -s "$WORK/other-ns.yaml" ] && k create -f "$WORK/other-ns.yaml" -o name > /dev/null
    spread=$((N + others))
    rm -f "$WORK"/unrelated-*.yaml
    for ((i = from; i < to; i++)); do
        local j=$((i % spread))
        if [ $j -lt $N ]; then ns="carto-$((j + 1))"; else ns="other-$((j - N))"; fi
        case $((i % 3)) in
            0) printf -- '---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: unrelated-%d, namespace: %s, labels: {bench: unrelated}}\ndata: {app.properties: "log.level=info\\ncache.size=128\\nfeature.x=true", owner: team-%d}\n' "$i" "$ns" $((i % 17)) ;;
            1) printf -- '---\napiVersion: apps/v1\nkind: Deployment\nmetadata: {name: unrelated-%d, namespace: %s, labels: {bench: unrelated, app: unrelated-%d}}\nspec:\n  replicas: 1\n  selector: {matchLabels: {app: unrelated-%d}}\n  template:\n    metadata: {labels: {app: unrelated-%d}}\n    spec:\n      serviceAccountName: default\n      containers:\n        - name: app\n          image: registry.example.com/team/app:1.2.3\n          ports: [{containerPort: 8080}]\n          env: [{name: LOG_LEVEL, value: info}, {name: REGION, value: eu-west-1}]\n          resources: {requests: {cpu: 10m, memory: 32Mi}}\n' "$i" "$ns" "$i" "$i" "$i" ;;
            2) printf -- '---\napiVersion: v1\nkind: ServiceAccount\nmetadata: {name: unrelated-%d, namespace: %s, labels: {bench: unrelated}}\n' "$i" "$ns" ;;
        esac >> "$WORK/unrelated-$((i % (JOBS * 4))).yaml"
    done
    create_files "$WORK"/unrelated-*.yaml
}

# The RBAC of examples/rbac.yaml, a token of its ServiceAccount, and the two webhook
# configurations of tests/e2e/manifests/cluster-webhooks.yaml with the default names.
install_webhook() {
    log "RBAC (examples/rbac.yaml), token, webhook configurations"
    k apply -f examples/rbac.yaml > /dev/null
    WH_PORT=$(free_port)
    kubeconfig "$WORK/webhook.kubeconfig" "$(k create token carto-wi-webhook -n "$WH_NS" --duration=12h)"
    sed -e 's/\${NAME}-backend/carto-common-backend/g' -e 's/\${NAME}-config/carto-workload-identity/g' \
        -e 's/\${NAME}-webhook/carto-wi-webhook/g' -e "s|\${URL}|https://127.0.0.1:$WH_PORT|g" \
        -e '/e2e.carto.com\/webhook/d' tests/e2e/manifests/cluster-webhooks.yaml > "$WORK/webhooks.yaml"
    k apply -f "$WORK/webhooks.yaml" > /dev/null
}

metrics() { curl -sf "http://127.0.0.1:$ADMIN_PORT/metrics"; }
metric() { # metric NAME_WITH_LABELS: its value (0 when absent)
    metrics | awk -v m="$1" 'index($0, m " ") == 1 {v = $2} END {print v + 0}'
}
rss_kb() { awk "/^$1:/ {print \$2}" "/proc/$WH_PID/status"; }

start_webhook() { # start_webhook QPS
    ADMIN_PORT=$(free_port)
    env -u KUBECONFIG -u POD_NAMESPACE -u POD_NAME -u KUBERNETES_SERVICE_HOST \
        -u HTTPS_PROXY -u https_proxy -u HTTP_PROXY -u http_proxy \
        "$WEBHOOK" serve --kubeconfig="$WORK/webhook.kubeconfig" --namespace="$WH_NS" \
        --cert-extra-names=localhost,127.0.0.1 --reconcile-qps="$1" --identity=bench-0 \
        --listen="127.0.0.1:$WH_PORT" --admin-listen="127.0.0.1:$ADMIN_PORT" \
        --log-format=json --log-level=info > "$WORK/webhook-$RUN.log" 2>&1 &
    WH_PID=$!
    wait_until 60 "webhook /readyz" curl -sf "http://127.0.0.1:$ADMIN_PORT/readyz"
    wait_until 60 "caBundle" sh -c "'$BIN/kubectl' --kubeconfig='$WORK/admin.kubeconfig' get validatingwebhookconfiguration carto-wi-webhook -o jsonpath='{.webhooks[0].clientConfig.caBundle}' | grep -q ."
    # The startup pass has gone through every CARTO namespace (nothing to patch: compliant or no
    # config yet) and the queue is empty.
    wait_until 900 "the startup pass" sh -c "[ \$(curl -sf http://127.0.0.1:$ADMIN_PORT/metrics | awk '/^carto_wi_cluster_reconciles_total / {print \$2}') -ge $N ] && curl -sf http://127.0.0.1:$ADMIN_PORT/metrics | grep -qx 'carto_wi_cluster_reconcile_queue 0'"
}

stop_webhook() {
    kill "$WH_PID" && wait "$WH_PID" 2> /dev/null || true
    WH_PID=""
}

# The cluster default ConfigMap with values set VARIANT (a or b): each edit changes every value.
default_config() {
    cat << EOF
apiVersion: v1
kind: ConfigMap
metadata: {name: carto-workload-identity, namespace: $WH_NS}
data:
  WORKSPACE_WORKLOAD_IDENTITY_WORKFLOWS_TEMP: acme-analytics.carto_workflows_$1
  WORKSPACE_WORKLOAD_IDENTITY_BILLING_PROJECT: acme-billing-$1
  WORKSPACE_WORKLOAD_IDENTITY_SERVICE_ACCOUNT_EMAIL: carto-wi-$1@acme-analytics.iam.gserviceaccount.com
  WORKSPACE_WORKLOAD_IDENTITY_CONNECTION_OWNER_ID: "auth0|owner$1"
  GKE_CLUSTER_PROJECT: acme-gke-prod
EOF
}

# The config-hash of every target Deployment's pod template, one a line.
target_hashes() {
    k get deploy -A -l app.kubernetes.io/name=carto -o jsonpath="{range .items[?(@.spec.template.spec.serviceAccountName==\"carto-common-backend\")]}{.spec.template.metadata.annotations.$HASH_KEY}{\"\\n\"}{end}"
}

# Admission duration histogram buckets of WEBHOOK (le count), cumulative.
buckets() { grep "^carto_wi_admission_duration_seconds_bucket{.*webhook=\"$2\"" "$1" | sed 's/.*le="\([^"]*\)".* \([0-9]*\)$/\1 \2/'; }
# p50 and p99 (ms, linear inside the bucket) of the requests between two /metrics snapshots.
quantiles() { # quantiles BEFORE AFTER WEBHOOK
    paste -d' ' <(buckets "$1" "$3") <(buckets "$2" "$3") | awk '
        { le[NR] = $1; c[NR] = $4 - $2 } END {
            n = c[NR]; if (n == 0) { print "0 - -"; exit }
            split("0.5 0.99", q, " "); out = n
            for (k = 1; k <= 2; k++) {
                want = q[k] * n; prev = 0; lo = 0
                for (i = 1; i <= NR; i++) {
                    if (c[i] >= want) {
                        hi = (le[i] == "+Inf") ? lo : le[i]
                        d = c[i] - prev; if (d == 0) d = 1
                        v = lo + (hi - lo) * (want - prev) / d
                        break
                    }
                    prev = c[i]; lo = le[i]
                }
                out = out sprintf(" %.2f", v * 1000)
            }
            print out
        }'
}

# Median wall time (ms) of 5 `kubectl create --dry-run=server` of FILE.
dry_run_ms() {
    local i t0 ts=()
    for i in 1 2 3 4 5; do
        t0=$(now)
        k create --dry-run=server -f "$1" -o name > /dev/null
        ts+=("$(awk -v a="$(now)" -v b="$t0" 'BEGIN {printf "%.0f", (a - b) * 1000}')")
        sleep 0.3
    done
    printf '%s\n' "${ts[@]}" | sort -n | sed -n 3p
}

# One measurement: the webhook at QPS, the default ConfigMap set to VARIANT.
measure() { # measure FACTOR QPS VARIANT
    local factor=$1 qps=$2 variant=$3 unrelated=$((M * $1))
    RUN="x$factor-qps$qps"
    log "run $RUN: start the webhook (--reconcile-qps=$qps)"
    start_webhook "$qps"
    sleep 3
    local idle hwm_before old
    idle=$(rss_kb VmRSS)
    old=$(target_hashes | sort | uniq -c | sort -rn | head -1 | awk '{print $2}')
    metrics > "$WORK/$RUN-before.prom"
    local patched0 reconciles0 lines0
    patched0=$(metric 'carto_wi_cluster_reconcile_actions_total{kind="Deployment",action="patched"}')
    reconciles0=$(metric carto_wi_cluster_reconciles_total)
    lines0=$(wc -l < "$WORK/audit.log")
    (while kill -0 "$WH_PID" 2> /dev/null; do rss_kb VmRSS; sleep 0.2; done > "$WORK/$RUN-rss.txt") &
    local sampler=$!
    log "run $RUN: default ConfigMap → variant $variant"
    local t0 t_conv="" t_done=""
    t0=$(now)
    default_config "$variant" | k apply -f - > /dev/null
    # Admission latency seen by a client while the reconcile runs: a target Deployment (the
    # webhook is called) and an unrelated one (no webhook call: the API server's own cost).
    (sleep 1; dry_run_ms "$WORK/dry-target.yaml" > "$WORK/$RUN-dry-target"
        dry_run_ms "$WORK/dry-other.yaml" > "$WORK/$RUN-dry-other") &
    local dry=$!
    while :; do
        local p
        p=$(metric 'carto_wi_cluster_reconcile_actions_total{kind="Deployment",action="patched"}')
        if [ -z "$t_conv" ] && [ $((p - patched0)) -ge $TARGETS ]; then t_conv=$(now); fi
        if [ -n "$t_conv" ] && metrics | grep -qx 'carto_wi_cluster_reconcile_queue 0' &&
            [ "$(metric carto_wi_cluster_reconciles_total)" -ge $((reconciles0 + N)) ]; then
            t_done=$(now)
            break
        fi
        kill -0 "$WH_PID" || { echo "webhook exited, see $WORK/webhook-$RUN.log" >&2; exit 1; }
        sleep 0.5
    done
    wait "$dry"
    local dry_target dry_other
    dry_target=$(cat "$WORK/$RUN-dry-target") dry_other=$(cat "$WORK/$RUN-dry-other")
    metrics > "$WORK/$RUN-after.prom"
    sleep 1
    local lines1
    lines1=$(wc -l < "$WORK/audit.log")
    local hwm peak
    hwm=$(rss_kb VmHWM)
    kill "$sampler" 2> /dev/null || true
    peak=$(sort -n "$WORK/$RUN-rss.txt" | tail -1)
    # Every target Deployment carries one hash, not the old one: converged (checked by kubectl).
    local check new count
    check=$(target_hashes | sort | uniq -c)
    count=$(echo "$check" | awk '{print $1}')
    new=$(echo "$check" | awk '{print $2}')
    if [ "$(echo "$check" | wc -l)" != 1 ] || [ "$count" != $TARGETS ] || [ "$new" = "$old" ]; then
        echo "not converged: $check" >&2
        exit 1
    fi
    # The webhook's API requests in the window, by verb and resource (audit log, its user only).
    tail -n +$((lines0 + 1)) "$WORK/audit.log" | head -n $((lines1 - lines0)) |
        jq -r '"\(.verb) \(.objectRef.resource // .requestURI)"' | sort | uniq -c | sort -rn > "$WORK/$RUN-requests.txt"
    local total by_verb
    total=$(awk '{s += $1} END {print s + 0}' "$WORK/$RUN-requests.txt")
    by_verb=$(awk '{printf "%s%s %s %d", sep, $2, $3, $1; sep = ", "}' "$WORK/$RUN-requests.txt")
    local q_mut q_val
    q_mut=$(quantiles "$WORK/$RUN-before.prom" "$WORK/$RUN-after.prom" mutate)
    q_val=$(quantiles "$WORK/$RUN-before.prom" "$WORK/$RUN-after.prom" validate)
    printf '%s\n' "$factor|$unrelated|$qps|$idle|$peak|$hwm|$(elapsed "$t_conv" "$t0")|$(elapsed "$t_done" "$t0")|$total|$by_verb|$q_mut|$q_val|$dry_target|$dry_other" >> "$OUT/runs.txt"
    log "run $RUN: converged in $(elapsed "$t_conv" "$t0") s; idle $idle kB, peak $peak kB; $total requests"
    stop_webhook
}

# `plan` of the other default variant and `status -A` as an operator (admin kubeconfig): the
# median wall time of 3 runs and the requests each made (it prints their count on stderr).
measure_views() { # measure_views FACTOR VARIANT
    local factor=$1 next i t0 ms plan_ms=() status_ms=() plan_req status_req
    [ "$2" = a ] && next=b || next=a
    default_config "$next" > "$WORK/plan-default.yaml"
    # The webhook's namespace found as an operator's run finds it (webhook configurations).
    local common=(--kubeconfig="$WORK/admin.kubeconfig" -o json)
    for i in 1 2 3; do
        t0=$(now)
        "$WEBHOOK" plan -f "$WORK/plan-default.yaml" "${common[@]}" > "$WORK/plan.json" 2> "$WORK/plan.err" || [ $? = 2 ]
        plan_ms+=("$(awk -v a="$(now)" -v b="$t0" 'BEGIN {printf "%.0f", (a - b) * 1000}')")
        t0=$(now)
        "$WEBHOOK" status -A "${common[@]}" > "$WORK/status.json" 2> "$WORK/status.err" || [ $? = 1 ]
        status_ms+=("$(awk -v a="$(now)" -v b="$t0" 'BEGIN {printf "%.0f", (a - b) * 1000}')")
    done
    plan_req=$(grep -o '[0-9]* list requests' "$WORK/plan.err" | cut -d' ' -f1)
    status_req=$(grep -o '[0-9]* list requests' "$WORK/status.err" | cut -d' ' -f1)
    local changed
    changed=$(jq '[.namespaces[].objects | length] | add // 0' "$WORK/plan.json")
    ms=$(printf '%s\n' "${plan_ms[@]}" | sort -n | sed -n 2p)
    printf '%s\n' "$factor|$((M * factor))|$ms|$plan_req|$changed|$(printf '%s\n' "${status_ms[@]}" | sort -n | sed -n 2p)|$status_req" >> "$OUT/views.txt"
    log "views ×$factor: plan $ms ms, $plan_req requests, $changed objects would change"
}

views_report() {
    echo
    echo "\`plan\` (an edit of the default) and \`status -A\` over $N CARTO namespaces ($(basename "$WEBHOOK") binary, median of 3):"
    echo
    echo "| unrelated objects | plan wall time | plan API requests | objects that would change | status wall time | status API requests |"
    echo "| ---: | ---: | ---: | ---: | ---: | ---: |"
    awk -F'|' '{printf "| %d | %d ms | %d | %d | %d ms | %d |\n", $2, $3, $4, $5, $6, $7}' "$OUT/views.txt"
}

dry_run_files() {
    awk 'BEGIN{RS="\n---\n"} /\nkind: Deployment\n/ && /\n  name: carto-workspace-api\n/ {print}' \
        tests/fixtures/carto-plain.yaml | sed -e 's/^  namespace: carto$/  namespace: carto-1/' \
        -e 's/^  name: carto-workspace-api$/  name: dry-run-target/' > "$WORK/dry-target.yaml"
    printf 'apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: dry-run-other, namespace: carto-1}\nspec:\n  selector: {matchLabels: {app: x}}\n  template:\n    metadata: {labels: {app: x}}\n    spec: {containers: [{name: app, image: example/app:1}]}\n' > "$WORK/dry-other.yaml"
}

report() {
    local cpu
    cpu=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//')
    echo "Machine: $(nproc) cores ($cpu), $(free -g | awk '/Mem:/ {print $2}') GiB, $(uname -sr); kube-apiserver and etcd $(basename "$(dirname "$BIN")") on the same cores. $N namespaces × CARTO ($TARGETS target Deployments, $N target ServiceAccounts, $((N * 4)) other Deployments)."
    echo
    echo "| unrelated objects | --reconcile-qps | RSS idle | RSS peak in reconcile (sampled / VmHWM) | config edit → all $TARGETS Deployments converged | → reconcile done | webhook API requests (per converged Deployment) | admission p50 / p99 during reconcile (mutate; validate), n | kubectl create --dry-run=server: target / unrelated |"
    echo "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
    awk -F'|' -v t=$TARGETS '{
        split($11, m, " "); split($12, v, " ")
        printf "| %d | %d | %.1f MiB | %.1f / %.1f MiB | %.0f s | %.0f s | %d (%.2f) | %s / %s ms; %s / %s ms, %d+%d | %s / %s ms |\n",
            $2, $3, $4 / 1024, $5 / 1024, $6 / 1024, $7, $8, $9, $9 / t, m[2], m[3], v[2], v[3], m[1], v[1], $13, $14
    }' "$OUT/runs.txt"
    echo
    echo "Requests by verb and resource (audit log, user $WH_USER):"
    echo
    awk -F'|' '{printf "- ×%d, qps %d: %s\n", $1, $3, $10}' "$OUT/runs.txt"
}

start_control_plane
populate_carto
dry_run_files
if [ "$VIEWS_ONLY" = 1 ]; then # the default, stored before the (never started) webhook is called
    k create namespace "$WH_NS" > /dev/null
    default_config a | k apply -f - > /dev/null
fi
install_webhook
done_unrelated=0
variant=a
for factor in $FACTORS; do
    populate_unrelated "$done_unrelated" $((M * factor))
    done_unrelated=$((M * factor))
    if [ "$VIEWS_ONLY" != 1 ]; then
        for qps in $QPS; do
            measure "$factor" "$qps" "$variant"
            [ "$variant" = a ] && variant=b || variant=a
        done
    fi
    measure_views "$factor" "$variant"
done
{ [ "$VIEWS_ONLY" = 1 ] || report; views_report; } | tee "$OUT/table.md"
