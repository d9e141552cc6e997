# Shared by bench/scale.sh and bench/tenant.sh (sourced): a kube-apiserver + etcd on loopback in
# $WORK, the webhook's own requests (user $WH_USER) audited to $WORK/audit.log, an admin
# kubeconfig. Uses BIN (tests/controlplane/build.sh's bin dir), WORK, WH_USER and log(); appends
# the started processes to PIDS and sets API_PORT.

# A free loopback port (nothing answers a connect on it).
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
        [ $SECONDS -lt $deadline ] || { echo "timed out waiting for $what" >&2; exit 1; }
        sleep 0.5
    done
}

kubeconfig() { # kubeconfig FILE TOKEN
    cat > "$1" << EOF
apiVersion: v1
kind: Config
clusters:
- name: bench
  cluster: {server: "https://127.0.0.1:$API_PORT", certificate-authority: "$WORK/certs/apiserver.crt"}
users:
- name: user
  user: {token: "$2"}
contexts:
- name: bench
  context: {cluster: bench, user: user}
current-context: bench
EOF
}

start_control_plane() {
    log "etcd + kube-apiserver in $WORK"
    openssl genrsa -out "$WORK/sa.key" 2048 2> /dev/null
    openssl rsa -in "$WORK/sa.key" -pubout -out "$WORK/sa.pub" 2> /dev/null
    local token
    token=$(openssl rand -hex 16)
    echo "$token,bench-admin,bench-admin,system:masters" > "$WORK/tokens.csv"
    # Only the webhook's own requests are audited: its passes are read from there.
    cat > "$WORK/audit.yaml" << EOF
apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [RequestReceived, ResponseStarted]
rules:
  - level: Metadata
    users: ["$WH_USER"]
  - level: None
EOF
    local ec ep
    ec=$(free_port) ep=$(free_port) API_PORT=$(free_port)
    "$BIN/etcd" --name=bench --data-dir="$WORK/etcd" \
        --listen-client-urls="http://127.0.0.1:$ec" --advertise-client-urls="http://127.0.0.1:$ec" \
        --listen-peer-urls="http://127.0.0.1:$ep" --initial-advertise-peer-urls="http://127.0.0.1:$ep" \
        --initial-cluster="bench=http://127.0.0.1:$ep" --unsafe-no-fsync --quota-backend-bytes=8589934592 \
        --log-level=warn > "$WORK/etcd.log" 2>&1 &
    PIDS+=($!)
    "$BIN/kube-apiserver" --etcd-servers="http://127.0.0.1:$ec" --bind-address=127.0.0.1 \
        --advertise-address=127.0.0.1 --secure-port="$API_PORT" --cert-dir="$WORK/certs" \
        --token-auth-file="$WORK/tokens.csv" --service-account-key-file="$WORK/sa.pub" \
        --service-account-signing-key-file="$WORK/sa.key" \
        --service-account-issuer=https://kubernetes.default.svc.cluster.local \
        --authorization-mode=RBAC --service-cluster-ip-range=10.96.0.0/16 \
        --enable-priority-and-fairness=false \
        --audit-policy-file="$WORK/audit.yaml" --audit-log-path="$WORK/audit.log" \
        > "$WORK/kube-apiserver.log" 2>&1 &
    PIDS+=($!)
    wait_until 60 "the serving certificate" test -s "$WORK/certs/apiserver.crt"
    kubeconfig "$WORK/admin.kubeconfig" "$token"
    wait_until 120 "kube-apiserver /readyz" k get --raw /readyz
    wait_until 60 "RBAC bootstrap roles" k get clusterrole cluster-admin
}
