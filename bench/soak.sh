#!/usr/bin/env bash
# Soak with faults (issue 9, item 6). Two parts, each printing a markdown table:
#
# 1. standalone (bench/soak.rs): the release `serve --config FILE --tls-cert C --tls-key K` on
#    loopback, driven at half its own maximum (measured first, closed loop) for DURATION, HTTP/1.1
#    keep-alive over TLS, /mutate and /validate of CARTO's workspace-api review, while the
#    certificate rotates every 10 s (Secret-volume symlink swap) and the config changes every
#    second (two valid versions and an invalid one). Checks: 0 failed requests, 0 answers mixing
#    two config versions, RSS growth < 10 % (first vs last minute), file descriptors flat, the
#    reload counters equal to the changes made. Server on core 1, client on core 0.
# 2. cluster: a real etcd + kube-apiserver (tests/controlplane/build.sh, as bench/scale.sh), the
#    webhook in cluster mode with the chart's failure policies (mutating Ignore, validating Fail,
#    --enforcement deny), a stream of target Deployment writes (creates, and updates that drop the
#    variables) for CLUSTER_DURATION while the webhook is restarted (SIGTERM, start again) and
#    then the API server; at the end every target Deployment is listed: none may lack the four
#    variables (nor may any write's stored object). Reports writes attempted / stored / refused.
#
#   bench/soak.sh                                   # 5 min standalone, then 5 min cluster
#   bench/soak.sh --duration 60                     # shorter (both parts)
#   bench/soak.sh --standalone-only | --cluster-only [--cluster-duration S]
#
# Results land in $CARGO_TARGET_DIR/bench-results/soak/ (standalone.md, cluster.md, soak.json,
# the server's log); the cluster's logs stay in a temp dir when KEEP=1. Exits 1 if a check fails.
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD

DURATION=300
CLUSTER_DURATION=""
PARTS="standalone cluster"
WRITERS="${WRITERS:-4}"        # concurrent Deployment writers in the cluster part
while [ $# -gt 0 ]; do
    case "$1" in
        --duration) DURATION=$2; shift 2 ;;
        --cluster-duration) CLUSTER_DURATION=$2; shift 2 ;;
        --standalone-only) PARTS=standalone; shift ;;
        --cluster-only) PARTS=cluster; shift ;;
        *) echo "usage: bench/soak.sh [--duration S] [--cluster-duration S] [--standalone-only|--cluster-only]" >&2; exit 2 ;;
    esac
done
CLUSTER_DURATION="${CLUSTER_DURATION:-$DURATION}"
TARGET="${CARGO_TARGET_DIR:-target}"
[[ "$TARGET" = /* ]] || TARGET="$REPO/$TARGET"
OUT="$TARGET/bench-results/soak"
mkdir -p "$OUT"
FAILED=0

log() { echo "== $(date +%T) $*" >&2; }
machine() {
    echo "Machine: $(nproc) cores ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//')), $(free -g | awk '/Mem:/ {print $2}') GiB, $(uname -sr); load average at start: $(cut -d' ' -f1-3 /proc/loadavg)."
}

log "release build"
cargo build --release --locked --quiet --bin carto-wi-webhook --example soak
WEBHOOK="$TARGET/release/carto-wi-webhook"

# ---------------------------------------------------------------------------------------------
# 1. standalone

standalone() {
    local pin_client=() server_cpus=()
    if [ "$(nproc)" -ge 2 ] && command -v taskset > /dev/null; then
        pin_client=(taskset -c 0)
        server_cpus=(--server-cpus 1)
    fi
    log "standalone soak: ${DURATION} s at half the server's maximum"
    local rc=0 head
    head="$(machine) Server on core 1, client on core 0. Run on $(date +%F) (\`bench/soak.sh --duration $DURATION\`)."
    timeout $((DURATION + 300)) "${pin_client[@]}" "$TARGET/release/examples/soak" \
        --server "$WEBHOOK" --review examples/admission-review-deployment.json \
        --out "$OUT/standalone" --duration "$DURATION" "${server_cpus[@]}" > "$OUT/standalone.table" || rc=$?
    printf '%s\n\n' "$head" | cat - "$OUT/standalone.table" | tee "$OUT/standalone.md"
    [ "$rc" = 0 ] || { echo "standalone soak: a check failed (exit $rc)" >&2; FAILED=1; }
}

# ---------------------------------------------------------------------------------------------
# 2. cluster

WH_NS=carto-wi-system
APP_NS=carto
SA=carto-common-backend
WORK=""
PIDS=()
WH_PID=""
API_PID=""

cleanup() {
    local pid
    for pid in $WH_PID $API_PID "${PIDS[@]}"; do kill "$pid" 2> /dev/null || true; done
    # The API server's graceful shutdown can take a minute: killed after 20 s.
    local alive _
    for _ in $(seq 100); do
        alive=0
        for pid in $WH_PID $API_PID "${PIDS[@]}"; do kill -0 "$pid" 2> /dev/null && alive=1; done
        [ $alive = 1 ] || break
        sleep 0.2
    done
    for pid in $WH_PID $API_PID "${PIDS[@]}"; do kill -KILL "$pid" 2> /dev/null || true; done
    for pid in $WH_PID $API_PID "${PIDS[@]}"; do wait "$pid" 2> /dev/null || true; done
    if [ -n "$WORK" ]; then
        if [ "${KEEP:-0}" = 1 ]; then echo "logs kept in $WORK" >&2; else rm -rf "$WORK"; fi
    fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() {
    local p
    while :; do
        p=$((20000 + RANDOM % 40000))
        (exec 3<> "/dev/tcp/127.0.0.1/$p") 2> /dev/null || { echo "$p"; return; }
    done
}
k() { env -u HTTPS_PROXY -u https_proxy -u HTTP_PROXY -u http_proxy "$BIN/kubectl" --kubeconfig="$WORK/admin.kubeconfig" "$@"; }
wait_until() { # wait_until SECONDS WHAT COMMAND...
    local deadline=$((SECONDS + $1)) what=$2
    shift 2
    until "$@" > /dev/null 2>&1; do
        [ $SECONDS -lt $deadline ] || { echo "timed out waiting for $what" >&2; return 1; }
        sleep 0.2
    done
}
now() { echo "$EPOCHREALTIME"; }

kubeconfig() { # kubeconfig FILE TOKEN
    cat > "$1" << EOF
apiVersion: v1
kind: Config
clusters:
- name: soak
  cluster: {server: "https://127.0.0.1:$API_PORT", certificate-authority: "$WORK/certs/apiserver.crt"}
users:
- name: user
  user: {token: "$2"}
contexts:
- name: soak
  context: {cluster: soak, user: user}
current-context: soak
EOF
}

start_apiserver() {
    "$BIN/kube-apiserver" --etcd-servers="http://127.0.0.1:$ETCD_PORT" --bind-address=127.0.0.1 \
        --advertise-address=127.0.0.1 --secure-port="$API_PORT" --cert-dir="$WORK/certs" \
        --token-auth-file="$WORK/tokens.csv" --service-account-key-file="$WORK/sa.pub" \
        --service-account-signing-key-file="$WORK/sa.key" \
        --service-account-issuer=https://kubernetes.default.svc.cluster.local \
        --authorization-mode=RBAC --service-cluster-ip-range=10.96.0.0/16 \
        --enable-priority-and-fairness=false >> "$WORK/kube-apiserver.log" 2>&1 &
    API_PID=$!
    wait_until 60 "the serving certificate" test -s "$WORK/certs/apiserver.crt"
    wait_until 120 "kube-apiserver /readyz" k get --raw /readyz
}

start_control_plane() {
    log "etcd + kube-apiserver in $WORK"
    openssl genrsa -out "$WORK/sa.key" 2048 2> /dev/null
    openssl rsa -in "$WORK/sa.key" -pubout -out "$WORK/sa.pub" 2> /dev/null
    ADMIN_TOKEN=$(openssl rand -hex 16)
    echo "$ADMIN_TOKEN,soak-admin,soak-admin,system:masters" > "$WORK/tokens.csv"
    local ep
    ETCD_PORT=$(free_port) ep=$(free_port) API_PORT=$(free_port)
    "$BIN/etcd" --name=soak --data-dir="$WORK/etcd" \
        --listen-client-urls="http://127.0.0.1:$ETCD_PORT" --advertise-client-urls="http://127.0.0.1:$ETCD_PORT" \
        --listen-peer-urls="http://127.0.0.1:$ep" --initial-advertise-peer-urls="http://127.0.0.1:$ep" \
        --initial-cluster="soak=http://127.0.0.1:$ep" --unsafe-no-fsync \
        --log-level=warn > "$WORK/etcd.log" 2>&1 &
    PIDS+=($!)
    kubeconfig "$WORK/admin.kubeconfig" "$ADMIN_TOKEN"
    start_apiserver
    wait_until 60 "RBAC bootstrap roles" k get clusterrole cluster-admin
}

# The value of each of the four variables in the cluster default ConfigMap.
CONFIG_VALUES='{"WORKSPACE_WORKLOAD_IDENTITY_WORKFLOWS_TEMP":"acme-analytics.carto_workflows_temp","WORKSPACE_WORKLOAD_IDENTITY_BILLING_PROJECT":"acme-billing","WORKSPACE_WORKLOAD_IDENTITY_SERVICE_ACCOUNT_EMAIL":"carto-wi@acme-analytics.iam.gserviceaccount.com","WORKSPACE_WORKLOAD_IDENTITY_CONNECTION_OWNER_ID":"auth0|soak-owner"}'

# The RBAC of examples/rbac.yaml, a token of its ServiceAccount, the cluster default ConfigMap,
# and the webhook configurations of tests/e2e/manifests/cluster-webhooks.yaml as the chart has
# them: mutating failurePolicy Ignore, validating Fail.
install_webhook() {
    log "RBAC (examples/rbac.yaml), token, config, webhook configurations (mutating Ignore, validating Fail)"
    k apply -f examples/rbac.yaml > /dev/null
    k create namespace "$APP_NS" > /dev/null
    WH_PORT=$(free_port)
    kubeconfig "$WORK/webhook.kubeconfig" "$(k create token carto-wi-webhook -n "$WH_NS" --duration=12h)"
    jq -n --argjson v "$CONFIG_VALUES" --arg ns "$WH_NS" '{apiVersion: "v1", kind: "ConfigMap",
        metadata: {name: "carto-workload-identity", namespace: $ns},
        data: ($v + {GKE_CLUSTER_PROJECT: "acme-gke-prod"})}' | k apply -f - > /dev/null
    sed -e "s/\${NAME}-backend/$SA/g" -e 's/\${NAME}-config/carto-workload-identity/g' \
        -e 's/\${NAME}-webhook/carto-wi-webhook/g' -e "s|\${URL}|https://127.0.0.1:$WH_PORT|g" \
        -e '/e2e.carto.com\/webhook/d' -e '0,/failurePolicy: Fail/s//failurePolicy: Ignore/' \
        tests/e2e/manifests/cluster-webhooks.yaml > "$WORK/webhooks.yaml"
    grep -q 'failurePolicy: Ignore' "$WORK/webhooks.yaml"
    k apply -f "$WORK/webhooks.yaml" > /dev/null
}

start_webhook() {
    ADMIN_PORT=${ADMIN_PORT:-$(free_port)}
    env -u KUBECONFIG -u POD_NAMESPACE -u POD_NAME -u KUBERNETES_SERVICE_HOST \
        -u HTTPS_PROXY -u https_proxy -u HTTP_PROXY -u http_proxy \
        "$WEBHOOK" serve --kubeconfig="$WORK/webhook.kubeconfig" --namespace="$WH_NS" \
        --cert-extra-names=localhost,127.0.0.1 --identity=soak-0 --enforcement=deny \
        --listen="127.0.0.1:$WH_PORT" --admin-listen="127.0.0.1:$ADMIN_PORT" \
        --log-format=json >> "$WORK/webhook.log" 2>&1 &
    WH_PID=$!
    wait_until 60 "webhook /readyz" curl -sf "http://127.0.0.1:$ADMIN_PORT/readyz"
}

# The API server calls the webhook (its caBundle written, its TLS in place): a dry-run create
# of a target comes back with the four variables.
webhook_in_path() {
    k create --dry-run=server -o json -f "$WORK/deploy-template.json" |
        jq -e '.spec.template.spec.containers[0].env | map(.name) | index("WORKSPACE_WORKLOAD_IDENTITY_BILLING_PROJECT")'
}

# One write: create Deployment NAME, or (OP=update) a merge patch that replaces its containers
# by the chart's (without the four variables) and bumps an annotation. Appends
# "time op code reason" to FILE.log and the stored object to FILE.stored.
write_one() { # write_one OP NAME I FILE
    local op=$1 name=$2 i=$3 file=$4 code reason="" t0 url="https://127.0.0.1:$API_PORT/apis/apps/v1/namespaces/$APP_NS/deployments"
    local curl=(curl -sS --noproxy '*' --max-time 30 --cacert "$WORK/certs/apiserver.crt"
        -H "Authorization: Bearer $ADMIN_TOKEN" -o "$file.resp" -w '%{http_code}')
    t0=$(now)
    if [ "$op" = create ]; then
        jq -c --arg n "$name" '.metadata.name = $n' "$WORK/deploy-template.json" > "$file.body"
        code=$("${curl[@]}" -H 'Content-Type: application/json' -X POST --data-binary @"$file.body" "$url" 2> "$file.err") || true
    else
        jq -c --arg i "$i" '{metadata: {annotations: {"soak.carto.com/update": $i}},
            spec: {template: {metadata: {annotations: {"soak.carto.com/update": $i}},
                              spec: {containers: .spec.template.spec.containers}}}}' \
            "$WORK/deploy-template.json" > "$file.body"
        code=$("${curl[@]}" -H 'Content-Type: application/merge-patch+json' -X PATCH --data-binary @"$file.body" "$url/$name" 2> "$file.err") || true
    fi
    case "$code" in
        200 | 201) cat "$file.resp" >> "$file.stored"; echo >> "$file.stored" ;;
        000) reason=api-server-unreachable ;;
        *) if grep -q 'failed calling webhook' "$file.resp"; then reason=webhook-unreachable
            elif grep -q 'denied the request' "$file.resp"; then reason=denied-by-webhook
            else reason=other; fi ;;
    esac
    echo "$t0 $op $code $reason" >> "$file.log"
}

# A writer until END: creates soak-W-N, and every third write an update of one of its own.
writer() { # writer W END
    local w=$1 end=$2 i=0 created=0 file="$WORK/writer-$1"
    while [ "${EPOCHREALTIME%.*}" -lt "$end" ]; do
        if [ $((i % 3)) = 2 ] && [ $created -gt 0 ]; then
            write_one update "soak-$w-$((RANDOM % created))" "$i" "$file"
        else
            write_one create "soak-$w-$created" "$i" "$file"
            tail -1 "$file.log" | grep -q ' create 201 ' && created=$((created + 1))
        fi
        i=$((i + 1))
        sleep 0.1
    done
}

mark() { echo "$(now) $1" >> "$WORK/phases"; log "$1"; }

# SIGTERM; its graceful shutdown waits up to 60 s for open connections (the webhook's watches
# among them): after 20 s it is killed, as the e2e harness does. Notes how it stopped.
stop_apiserver() {
    local t0=$SECONDS
    kill -TERM "$API_PID"
    while kill -0 "$API_PID" 2> /dev/null && [ $((SECONDS - t0)) -lt 20 ]; do sleep 0.2; done
    if kill -0 "$API_PID" 2> /dev/null; then
        kill -KILL "$API_PID"
        echo "killed after 20 s (SIGTERM not done)" > "$WORK/apiserver-stop"
    else
        echo "exited $((SECONDS - t0)) s after SIGTERM" > "$WORK/apiserver-stop"
    fi
    wait "$API_PID" 2> /dev/null || true
}

# The faults, during the writes: the webhook restarted at 1/4 of the run, the API server at 1/2.
faults() { # faults START
    local start=$1 d=$CLUSTER_DURATION rc
    sleep $((d / 4))
    mark "webhook: SIGTERM"
    kill -TERM "$WH_PID"
    rc=0; wait "$WH_PID" || rc=$?
    echo "$rc" > "$WORK/webhook-exit"
    sleep 5
    mark "webhook: start again"
    start_webhook
    mark "webhook: ready"
    sleep $((start + d / 2 - ${EPOCHREALTIME%.*})) 2> /dev/null || true
    mark "kube-apiserver: SIGTERM"
    stop_apiserver
    sleep 5
    mark "kube-apiserver: start again"
    start_apiserver
    mark "kube-apiserver: ready"
}

# Objects (JSON stream on stdin) whose containers lack one of the four variables or hold another
# value: their names.
without_the_variables() {
    jq -r --argjson want "$CONFIG_VALUES" '
        (if has("items") then .items[] else . end)
        | select(.spec.template.spec.serviceAccountName == "carto-common-backend")
        | select(any(.spec.template.spec.containers[];
            ([.env[]? | select(.name as $n | $want | has($n)) | {(.name): .value}] | add // {}) != $want))
        | .metadata.name'
}

cluster() {
    log "control plane (tests/controlplane/build.sh)"
    BIN=$(CONTROLPLANE_SKIP_HELM=1 bash tests/controlplane/build.sh | tail -1)
    WORK=$(mktemp -d /tmp/carto-wi-soak.XXXXXX)
    start_control_plane
    install_webhook
    jq --arg ns "$APP_NS" '.request.object | .metadata.namespace = $ns' \
        examples/admission-review-deployment.json > "$WORK/deploy-template.json"
    start_webhook
    wait_until 60 "the API server calling the webhook" webhook_in_path
    log "cluster soak: $WRITERS writers for ${CLUSTER_DURATION} s"
    local start end w pids=()
    start=${EPOCHREALTIME%.*}
    end=$((start + CLUSTER_DURATION))
    mark "writes start"
    for ((w = 0; w < WRITERS; w++)); do
        writer "$w" "$end" &
        pids+=($!)
    done
    faults "$start"
    for w in "${pids[@]}"; do wait "$w"; done
    mark "writes end"
    wait_until 60 "webhook /readyz after the run" curl -sf "http://127.0.0.1:$ADMIN_PORT/readyz"
    cluster_report > "$OUT/cluster.md"
    cat "$OUT/cluster.md"
}

cluster_report() {
    cat "$WORK"/writer-*.log > "$WORK/writes"
    cat "$WORK"/writer-*.stored 2> /dev/null > "$WORK/stored.json" || true
    local attempted stored created updated bad_stored listed bad_listed
    attempted=$(wc -l < "$WORK/writes")
    created=$(awk '$3 == 201' "$WORK/writes" | wc -l)
    updated=$(awk '$2 == "update" && $3 == 200' "$WORK/writes" | wc -l)
    stored=$((created + updated))
    bad_stored=$(without_the_variables < "$WORK/stored.json" | wc -l)
    k get deploy -n "$APP_NS" -o json > "$WORK/listed.json"
    listed=$(jq '[.items[] | select(.spec.template.spec.serviceAccountName == "carto-common-backend")] | length' "$WORK/listed.json")
    bad_listed=$(without_the_variables < "$WORK/listed.json" | wc -l)
    local refused
    refused=$(awk '$3 != 200 && $3 != 201 {print $4 ($4 == "other" ? " (HTTP " $3 ")" : "")}' "$WORK/writes" |
        sort | uniq -c | awk '{n = $1; $1 = ""; printf "%s%s ×%d", sep, substr($0, 2), n; sep = ", "}')
    machine
    echo "kube-apiserver and etcd $(basename "$(dirname "$BIN")") on the same cores; $WRITERS writers (curl, one write in flight each, 0.1 s apart); webhook in cluster mode, self-managed certificates, mutating failurePolicy Ignore, validating Fail, --enforcement deny. Run on $(date +%F) (\`bench/soak.sh --cluster-duration $CLUSTER_DURATION\`)."
    echo
    echo "| check | target | result |  |"
    echo "| --- | --- | --- | --- |"
    echo "| target Deployment writes attempted / stored (created + updated) / refused | | $attempted / $stored ($created + $updated) / $((attempted - stored)) | |"
    echo "| refused, by reason | | ${refused:-none} | |"
    echo "| writes per phase: attempted / stored | | $(phases) | |"
    local ok_stored=✅ ok_listed=✅ ok_exit=✅
    [ "$bad_stored" = 0 ] || { ok_stored=❌; FAILED=1; }
    [ "$bad_listed" = 0 ] && [ "$listed" -ge "$created" ] || { ok_listed=❌; FAILED=1; }
    [ "$(cat "$WORK/webhook-exit")" = 0 ] || { ok_exit=❌; FAILED=1; }
    echo "| stored objects (the API server's answer to each write) without the four variables | 0 | $bad_stored of $stored | $ok_stored |"
    echo "| target Deployments listed at the end without the four variables | 0 | $bad_listed of $listed | $ok_listed |"
    echo "| webhook exit code on SIGTERM | 0 | $(cat "$WORK/webhook-exit") | $ok_exit |"
    echo "| kube-apiserver stop | | $(cat "$WORK/apiserver-stop") | |"
}

# Attempted / stored writes between consecutive marks, e.g. "up: 120 / 118; webhook down: ...".
phases() {
    awk 'NR == FNR { t[NR] = $1; $1 = ""; name[NR] = substr($0, 2); n = NR; next }
        { for (i = n; i >= 1 && $1 < t[i]; i--); a[i]++; if ($3 == 200 || $3 == 201) s[i]++ }
        END { for (i = 1; i < n; i++) printf "%s%s → %s: %d / %d", (i > 1 ? "; " : ""), name[i], name[i + 1], a[i], s[i] }' \
        "$WORK/phases" "$WORK/writes"
}

for part in $PARTS; do
    "$part"
done
exit $FAILED
