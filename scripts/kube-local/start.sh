#!/usr/bin/env bash
# Starts a real Kubernetes control plane on 127.0.0.1 for the Kubernetes tests: etcd, kube-apiserver (TLS,
# RBAC, client certificates, service account tokens), kube-controller-manager, kube-scheduler, and kwok with
# one fake node "kwok-node-0" (kwok plays the node and marks scheduled pods Running; no container ever runs).
# Every port is free when picked; nothing listens beyond loopback.
#
#   kubeconfig=$(scripts/kube-local/start.sh BIN_DIR STATE_DIR)   # BIN_DIR from scripts/ensure-kube.sh
#   ...                                                           # STATE_DIR/env has the ports and paths
#   STATE_DIR/stop.sh                                             # stops every process by its PID
#
# Prints the admin kubeconfig's path (the only line on stdout). On failure, stops what it started and prints
# the tail of the failing component's log.
set -euo pipefail

if [ $# -ne 2 ]; then
    echo "usage: $0 BIN_DIR STATE_DIR" >&2
    exit 2
fi
bin=$(cd "$1" && pwd)
mkdir -p "$2"
state=$(cd "$2" && pwd)
pki=$state/pki
mkdir -p "$pki" "$state/logs"
log() { echo "kube-local: $*" >&2; }

cat >"$state/stop.sh" <<'EOF'
#!/usr/bin/env bash
# Stops the control plane started beside this file, by PID (SIGTERM, SIGKILL after 2 s).
state=$(cd "$(dirname "$0")" && pwd)
pids=$(tac "$state/pids" 2>/dev/null || true)
for pid in $pids; do kill -TERM "$pid" 2>/dev/null || true; done
for _ in $(seq 20); do
    alive=0
    for pid in $pids; do kill -0 "$pid" 2>/dev/null && alive=1; done
    [ $alive = 0 ] && exit 0
    sleep 0.1
done
for pid in $pids; do kill -KILL "$pid" 2>/dev/null || true; done
EOF
chmod +x "$state/stop.sh"
: >"$state/pids"

failed() {
    log "$1"
    [ -n "${2:-}" ] && [ -f "$state/logs/$2.log" ] && tail -n 20 "$state/logs/$2.log" >&2
    "$state/stop.sh"
    exit 1
}

# A free port below the kernel's ephemeral range (and below Services' node ports, 30000-32767): a port the kernel
# hands out (bind to 0) can be taken by an outgoing connection (the API server dials etcd often) before the
# component meant to listen on it starts.
free_port() {
    python3 -c '
import random, socket
for _ in range(200):
    port = random.randrange(20000, 30000)
    s = socket.socket()
    try:
        s.bind(("127.0.0.1", port))
    except OSError:
        continue
    print(port)
    break
'
}
etcd_port=$(free_port)
etcd_peer_port=$(free_port)
api_port=$(free_port)
kwok_port=$(free_port)

# Certificates: one CA; the API server's serving cert; client certs for the admin (system:masters), the
# controller manager, the scheduler and kwok; kwok's serving cert; the service account signing key.
openssl_quiet() { openssl "$@" >/dev/null 2>&1; }
openssl_quiet req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 30 \
    -keyout "$pki/ca.key" -out "$pki/ca.crt" -subj "/CN=dagctl-test-ca"
leaf() { # name subject [san]
    openssl_quiet req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$pki/$1.key" \
        -out "$pki/$1.csr" -subj "$2"
    local ext=$pki/$1.ext
    echo "basicConstraints=CA:FALSE" >"$ext"
    if [ -n "${3:-}" ]; then
        echo "subjectAltName=$3" >>"$ext"
        echo "extendedKeyUsage=serverAuth,clientAuth" >>"$ext"
    else
        echo "extendedKeyUsage=clientAuth" >>"$ext"
    fi
    openssl_quiet x509 -req -in "$pki/$1.csr" -CA "$pki/ca.crt" -CAkey "$pki/ca.key" -CAcreateserial \
        -days 30 -extfile "$ext" -out "$pki/$1.crt"
}
leaf apiserver "/CN=kube-apiserver" \
    "IP:127.0.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,IP:10.96.0.1"
leaf admin "/O=system:masters/CN=dagctl-test-admin"
leaf controller-manager "/CN=system:kube-controller-manager"
leaf scheduler "/CN=system:kube-scheduler"
leaf kwok "/O=system:masters/CN=kwok" "IP:127.0.0.1,DNS:localhost"
openssl_quiet genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$pki/sa.key"
openssl_quiet pkey -in "$pki/sa.key" -pubout -out "$pki/sa.pub"
[ -s "$pki/kwok.crt" ] && [ -s "$pki/sa.pub" ] || failed "openssl could not make the certificates"

server=https://127.0.0.1:$api_port
kubeconfig() { # name -> file
    cat >"$state/$1.kubeconfig" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: local
  cluster:
    server: $server
    certificate-authority: $pki/ca.crt
users:
- name: $1
  user:
    client-certificate: $pki/$1.crt
    client-key: $pki/$1.key
contexts:
- name: local
  context: {cluster: local, user: $1}
current-context: local
EOF
}
for name in admin controller-manager scheduler kwok; do kubeconfig "$name"; done

start() { # name command... (detached, in its own session; its PID is recorded)
    local name=$1
    shift
    setsid "$@" >"$state/logs/$name.log" 2>&1 </dev/null &
    echo $! >>"$state/pids"
}
alive() { kill -0 "$(sed -n "${1}p" "$state/pids")" 2>/dev/null; }
api() { # path [curl args...]
    local path=$1
    shift
    curl -sS --max-time 5 --cacert "$pki/ca.crt" --cert "$pki/admin.crt" --key "$pki/admin.key" "$@" "$server$path"
}
wait_for() { # seconds what component-line component-name test...
    local deadline=$((SECONDS + $1)) what=$2 line=$3 name=$4
    shift 4
    until "$@" >/dev/null 2>&1; do
        alive "$line" || failed "$name exited while waiting for $what" "$name"
        [ $SECONDS -lt $deadline ] || failed "timed out waiting for $what" "$name"
        sleep 0.2
    done
}

start etcd "$bin/etcd" --name default --data-dir "$state/etcd" --unsafe-no-fsync \
    --listen-client-urls "http://127.0.0.1:$etcd_port" --advertise-client-urls "http://127.0.0.1:$etcd_port" \
    --listen-peer-urls "http://127.0.0.1:$etcd_peer_port" \
    --initial-advertise-peer-urls "http://127.0.0.1:$etcd_peer_port" \
    --initial-cluster "default=http://127.0.0.1:$etcd_peer_port" --listen-metrics-urls "" --log-level warn
start kube-apiserver "$bin/kube-apiserver" --etcd-servers "http://127.0.0.1:$etcd_port" \
    --bind-address 127.0.0.1 --advertise-address 127.0.0.1 --secure-port "$api_port" \
    --endpoint-reconciler-type none --authorization-mode RBAC \
    --client-ca-file "$pki/ca.crt" --tls-cert-file "$pki/apiserver.crt" --tls-private-key-file "$pki/apiserver.key" \
    --service-account-issuer https://kubernetes.default.svc --service-account-key-file "$pki/sa.pub" \
    --service-account-signing-key-file "$pki/sa.key" --api-audiences https://kubernetes.default.svc \
    --service-cluster-ip-range 10.96.0.0/16 --kubelet-preferred-address-types InternalIP \
    --kubelet-client-certificate "$pki/admin.crt" --kubelet-client-key "$pki/admin.key" \
    --enable-priority-and-fairness=false --profiling=false
wait_for 90 "the API server" 2 kube-apiserver api /readyz --fail
# kwok's Logs objects (a pod's log is the file one names) are a CRD it watches.
api /apis/apiextensions.k8s.io/v1/customresourcedefinitions --fail -X POST \
    -H 'Content-Type: application/yaml' --data-binary "@$bin/stages/crd-logs.yaml" >/dev/null ||
    failed "the API server refused kwok's Logs CRD" kube-apiserver

start kube-controller-manager "$bin/kube-controller-manager" --kubeconfig "$state/controller-manager.kubeconfig" \
    --secure-port 0 --leader-elect=false --use-service-account-credentials \
    --service-account-private-key-file "$pki/sa.key" --root-ca-file "$pki/ca.crt" --profiling=false
start kube-scheduler "$bin/kube-scheduler" --kubeconfig "$state/scheduler.kubeconfig" \
    --secure-port 0 --leader-elect=false --profiling=false
stages=$state/stages.yaml
: >"$stages"
for file in "$bin"/stages/node-*.yaml "$bin"/stages/pod-*.yaml; do
    { cat "$file"; echo "---"; } >>"$stages"
done
start kwok "$bin/kwok" --kubeconfig "$state/kwok.kubeconfig" --manage-all-nodes=false \
    --manage-nodes-with-annotation-selector kwok.x-k8s.io/node=fake --config "$stages" \
    --server-address "127.0.0.1:$kwok_port" --node-ip 127.0.0.1 --node-port "$kwok_port" \
    --tls-cert-file "$pki/kwok.crt" --tls-private-key-file "$pki/kwok.key" \
    --node-lease-duration-seconds 40 --enable-crds Logs

node='{"apiVersion":"v1","kind":"Node","metadata":{"name":"kwok-node-0",
  "annotations":{"kwok.x-k8s.io/node":"fake","node.alpha.kubernetes.io/ttl":"0"},
  "labels":{"kubernetes.io/hostname":"kwok-node-0","kubernetes.io/os":"linux","kubernetes.io/arch":"amd64","type":"kwok"}},
  "status":{"capacity":{"cpu":"64","memory":"256Gi","pods":"1000"},"allocatable":{"cpu":"64","memory":"256Gi","pods":"1000"}}}'
api /api/v1/nodes --fail -X POST -H 'Content-Type: application/json' -d "$node" >/dev/null ||
    failed "the API server refused the fake node" kube-apiserver
node_ready() {
    api /api/v1/nodes/kwok-node-0 --fail | python3 -c 'import json, sys
conditions = json.load(sys.stdin).get("status", {}).get("conditions", [])
sys.exit(0 if any(c["type"] == "Ready" and c["status"] == "True" for c in conditions) else 1)'
}
wait_for 60 "the fake node to be Ready" 5 kwok node_ready
# The controller manager creates each namespace's `default` ServiceAccount; pods are refused without it.
wait_for 60 "the default ServiceAccount" 3 kube-controller-manager api /api/v1/namespaces/default/serviceaccounts/default --fail

cat >"$state/env" <<EOF
KUBE_SERVER=$server
KUBE_CA=$pki/ca.crt
KUBE_ADMIN_KUBECONFIG=$state/admin.kubeconfig
KUBE_ETCD_PORT=$etcd_port
KUBE_KWOK_PORT=$kwok_port
KUBE_PIDS=$state/pids
EOF
echo "$state/admin.kubeconfig"
