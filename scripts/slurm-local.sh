#!/usr/bin/env bash
# A SLURM cluster on this machine, from Debian's packages, for dry-running sweeps
# (`hydra/launcher=slurm`) before sending them to a real cluster, and for the SLURM tests in CI.
#
#   eval "$(scripts/slurm-local.sh up)"            # one node: install if missing (root), start, export SLURM_CONF
#   eval "$(scripts/slurm-local.sh up --nodes 2)"  # two nodes, each in its own network namespace (below)
#   scripts/slurm-local.sh status                   # node states and slurmctld version
#   scripts/slurm-local.sh down                     # stop the daemons, remove the config dir (and the nodes' network)
#
# Everything (slurm.conf, munge key and socket, spool, state, logs) lives in one temp dir,
# ${NCFINE_SLURM_DIR:-${TMPDIR:-/tmp}/ncfine-slurm}; nothing under /etc is changed. The config
# is the smallest that runs real jobs without cgroups or an accounting database:
# proctrack/linuxproc, task/none, select/cons_tres, auth/munge, accounting_storage/none.
# `up` prints only the `export SLURM_CONF=...` line on stdout; progress goes to stderr.
#
# `up --nodes N` (2 to 8) simulates N machines for multi-node jobs (DDP across nodes under srun):
# slurmctld stays in this machine's network namespace; each node n1..nN is a slurmd in its own
# network namespace (`ip netns` name ncfine-nI) and UTS namespace (hostname nI), joined to the
# controller by a veth pair on the bridge ncfine-br. The addresses (${NCFINE_SLURM_SUBNET:-10.223.23}.0/24:
# .1 the controller on the bridge, .1I node I) exist only on that bridge and inside those
# namespaces; the nodes have no default route and nothing enables forwarding, so no packet of the
# cluster leaves the machine. The node names resolve everywhere through /etc/hosts lines marked
# `# ncfine-slurm-local`, which `down` removes again. The nodes share this machine's filesystem,
# as the nodes of a real cluster share theirs. `down` removes all of it (daemons and job
# processes in the namespaces, namespaces, links, hosts lines, /run/netns if `up` created it),
# also after an `up` that failed halfway.
set -euo pipefail

DIR="${NCFINE_SLURM_DIR:-${TMPDIR:-/tmp}/ncfine-slurm}"
CONF="$DIR/slurm.conf"
MUNGE_SOCKET="$DIR/munge/munge.socket.2"
# Ports other than SLURM's defaults (6817/6818), so a system cluster on the same host is left alone.
CTLD_PORT="${NCFINE_SLURM_PORT:-16817}"
SLURMD_PORT="$((CTLD_PORT + 1))"
PACKAGES=(slurmctld slurmd slurm-client munge)
SBIN="/usr/sbin"
# Multi-node mode only.
SUBNET="${NCFINE_SLURM_SUBNET:-10.223.23}"
NET_PREFIX="ncfine-"           # network namespaces ncfine-n1.., veth ncfine-n1.. (root end)
BRIDGE="${NET_PREFIX}br"
HOSTS_MARK="# ncfine-slurm-local"
MAX_NODES=8

say() { echo "slurm-local: $*" >&2; }
die() { echo "slurm-local: error: $*" >&2; exit 1; }

alive() {  # pid file names a running process
    [[ -f "$1" ]] && kill -0 "$(cat "$1")" 2>/dev/null
}

install_packages() {
    local missing=()
    for tool in "$SBIN/slurmctld" "$SBIN/slurmd" /usr/bin/sinfo "$SBIN/munged"; do
        [[ -x "$tool" ]] || missing+=("$tool")
    done
    ((${#missing[@]} == 0)) && return 0
    if [[ "$(id -u)" != 0 ]]; then
        die "SLURM is not installed (${missing[*]} missing); run as root to install it, or: sudo apt-get install -y ${PACKAGES[*]}"
    fi
    command -v apt-get >/dev/null || die "SLURM is not installed and there is no apt-get; install ${PACKAGES[*]} (Debian/Ubuntu names) yourself"
    say "installing ${PACKAGES[*]} (apt-get)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >&2 || die "apt-get update failed"
    apt-get install -y -qq "${PACKAGES[@]}" >&2 || die "apt-get install ${PACKAGES[*]} failed"
}

node_names() {  # n1 .. nN
    local i
    for ((i = 1; i <= $1; i++)); do echo "n$i"; done
}

node_addr() {  # n3 -> 10.223.23.13
    echo "$SUBNET.1${1#n}"
}

write_config() {  # $1: number of nodes; 1 = this machine itself, on 127.0.0.1
    local nodes="$1" node hw ctld_addr node_lines partition spool pidfile logfile
    # The hardware line slurmd itself detects (CPUs, sockets, cores, threads, RealMemory), so the
    # node never drains for "configuration differs from hardware".
    hw="$("$SBIN/slurmd" -C | head -n 1 | sed -e 's/^NodeName=[^ ]* //')"
    if ((nodes == 1)); then
        node="$(hostname -s)"
        ctld_addr=127.0.0.1
        node_lines="NodeName=$node NodeAddr=127.0.0.1 $hw State=UNKNOWN"
        partition="$node"
        spool="$DIR/spool" pidfile="$DIR/slurmd.pid" logfile="$DIR/log/slurmd.log"
    else
        # Every simulated node is this whole machine (same CPUs and RealMemory, which submitit's
        # `--mem` is checked against); slurmd puts its node name for %n, so the daemons, which
        # share this filesystem, keep their spool, pid and log files apart.
        ctld_addr="$SUBNET.1"
        node_lines="$(for node in $(node_names "$nodes"); do
            echo "NodeName=$node NodeAddr=$(node_addr "$node") $hw State=UNKNOWN"
        done)"
        partition="$(node_names "$nodes" | paste -sd,)"
        spool="$DIR/spool/%n" pidfile="$DIR/slurmd-%n.pid" logfile="$DIR/log/slurmd-%n.log"
    fi
    mkdir -p "$DIR"/{munge,state,spool,log}
    # Others may reach munged's socket (jobs of non-root users authenticate through it); the key
    # itself is readable by its owner only.
    chmod 755 "$DIR" "$DIR/munge"
    cat >"$CONF" <<EOF
# Written by scripts/slurm-local.sh; removed by \`scripts/slurm-local.sh down\`.
ClusterName=ncfine-local
SlurmctldHost=$(hostname -s)($ctld_addr)
SlurmctldPort=$CTLD_PORT
SlurmdPort=$SLURMD_PORT
SlurmUser=$(id -un)
SlurmdUser=root
AuthType=auth/munge
# cred_expire is also how long a requeued job waits before it may start again (default 120 s).
AuthInfo=socket=$MUNGE_SOCKET,cred_expire=10
CredType=cred/munge
StateSaveLocation=$DIR/state
SlurmdSpoolDir=$spool
SlurmctldPidFile=$DIR/slurmctld.pid
SlurmdPidFile=$pidfile
SlurmctldLogFile=$DIR/log/slurmctld.log
SlurmdLogFile=$logfile
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
MpiDefault=none
SwitchType=switch/none
SchedulerType=sched/backfill
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
ReturnToService=2
# Short scheduling and kill delays: test jobs last seconds.
SchedulerParameters=sched_interval=2,bf_interval=2
KillWait=5
MinJobAge=600
$node_lines
PartitionName=debug Nodes=$partition Default=YES MaxTime=INFINITE State=UP
EOF
}

configured_nodes() {  # NodeName lines of the cluster's slurm.conf (0: none)
    grep -c '^NodeName=' "$CONF" 2>/dev/null || true
}

slurmd_pidfiles() {  # slurmd.pid (one node) or slurmd-nI.pid (one per simulated node)
    compgen -G "$DIR/slurmd*.pid" || true
}

running() {
    local pidfile any=""
    alive "$DIR/munged.pid" && alive "$DIR/slurmctld.pid" || return 1
    for pidfile in $(slurmd_pidfiles); do
        alive "$pidfile" || return 1
        any=1
    done
    [[ -n "$any" ]] && SLURM_CONF="$CONF" timeout 10 sinfo -h >/dev/null 2>&1
}

node_state() {
    SLURM_CONF="$CONF" timeout 10 sinfo -h -N -o '%t' 2>/dev/null | head -n 1
}

node_states() {  # "n1 idle, n2 idle"
    SLURM_CONF="$CONF" timeout 10 sinfo -h -N -o '%N %t' 2>/dev/null | paste -sd, | sed -e 's/,/, /g'
}

stop_daemons() {
    if [[ -f "$CONF" ]] && alive "$DIR/slurmctld.pid"; then
        SLURM_CONF="$CONF" timeout 10 scontrol shutdown >/dev/null 2>&1 || true
    fi
    local pidfile
    for pidfile in $(slurmd_pidfiles) "$DIR/slurmctld.pid" "$DIR/munged.pid"; do
        alive "$pidfile" || continue
        stop_pid "$(cat "$pidfile")"
    done
}

stop_pid() {  # SIGTERM, up to 10 s, then SIGKILL
    kill "$1" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$1" 2>/dev/null || break; sleep 0.2; done
    kill -9 "$1" 2>/dev/null || true
}

# --- the simulated nodes' network (up --nodes N) ------------------------------------------------

our_namespaces() {
    ip netns list 2>/dev/null | awk '{print $1}' | grep -E "^${NET_PREFIX}n[0-9]+$" || true
}

our_links() {
    ip -o link show 2>/dev/null | awk -F': ' '{print $2}' | sed -e 's/@.*//' | grep -E "^${NET_PREFIX}(n[0-9]+|br)$" || true
}

net_up() {  # $1: number of nodes
    local node ns
    if ip -4 -o addr show | grep -q " $SUBNET\." || [[ -n "$(ip -4 route show "$SUBNET.0/24")" ]]; then
        die "the nodes' subnet $SUBNET.0/24 is already in use on this machine; set NCFINE_SLURM_SUBNET to a free one (e.g. 10.223.24)"
    fi
    # `ip netns add` creates /run/netns and bind-mounts it onto itself; `down` undoes what it did.
    [[ -d /run/netns ]] || touch "$DIR/run-netns-created"
    mountpoint -q /run/netns 2>/dev/null || touch "$DIR/run-netns-mounted"
    say "creating bridge $BRIDGE ($SUBNET.1/24, the controller) and nodes $(node_names "$1" | paste -sd' ')"
    ip link add "$BRIDGE" type bridge
    no_ipv6 "$BRIDGE"
    ip addr add "$SUBNET.1/24" dev "$BRIDGE"
    ip link set "$BRIDGE" up
    for node in $(node_names "$1"); do
        ns="$NET_PREFIX$node"
        ip netns add "$ns"
        ip link add "$ns" type veth peer name eth0 netns "$ns"
        no_ipv6 "$ns"
        ip link set "$ns" master "$BRIDGE" up
        nsenter --net="/run/netns/$ns" sysctl -qw net.ipv6.conf.all.disable_ipv6=1 2>/dev/null || true
        ip -n "$ns" addr add "$(node_addr "$node")/24" dev eth0
        ip -n "$ns" link set lo up
        ip -n "$ns" link set eth0 up
        # Only the /24 on eth0: no default route, so nothing sent in the namespace leaves it
        # except to the bridge.
        echo "$(node_addr "$node") $node $HOSTS_MARK" >>/etc/hosts
    done
}

no_ipv6() {  # no link-local IPv6 address on our links either (the sysctl goes with the link)
    [[ -e "/proc/sys/net/ipv6/conf/$1/disable_ipv6" ]] && echo 1 >"/proc/sys/net/ipv6/conf/$1/disable_ipv6" || true
}

net_down() {
    local ns pid link kept
    for ns in $(our_namespaces); do
        # What still runs in a node: a slurmd whose pid file is gone, a job's processes.
        for pid in $(ip netns pids "$ns" 2>/dev/null); do stop_pid "$pid"; done
        ip netns del "$ns" 2>/dev/null || true
    done
    for link in $(our_links); do ip link del "$link" 2>/dev/null || true; done
    if grep -qF "$HOSTS_MARK" /etc/hosts 2>/dev/null; then
        # Rewritten in place (not renamed): /etc/hosts may be a bind mount.
        kept="$(mktemp)"
        grep -vF "$HOSTS_MARK" /etc/hosts >"$kept" || true
        cat "$kept" >/etc/hosts
        rm -f "$kept"
    fi
    if [[ -f "$DIR/run-netns-mounted" ]] && [[ -z "$(our_namespaces)" ]] && [[ -z "$(ls -A /run/netns 2>/dev/null)" ]]; then
        umount /run/netns 2>/dev/null || true
    fi
    if [[ -f "$DIR/run-netns-created" ]] && ! mountpoint -q /run/netns 2>/dev/null; then
        rmdir /run/netns 2>/dev/null || true
    fi
}

start_node() {  # slurmd of node $1 in its network namespace, with its own hostname
    # nsenter --net, not `ip netns exec`: the latter remounts /sys, where slurmd 22.05 then
    # finds no /sys/fs/cgroup and exits.
    nsenter --net="/run/netns/$NET_PREFIX$1" unshare --uts \
        sh -c 'hostname "$1" && shift && exec "$@"' sh "$1" \
        env SLURM_CONF="$CONF" "$SBIN/slurmd" -f "$CONF" -N "$1"
}

# --- commands ------------------------------------------------------------------------------------

up() {  # $1: number of nodes
    local nodes="$1" node
    if [[ -f "$CONF" ]] && running && [[ "$(configured_nodes)" == "$nodes" ]]; then
        if ((nodes == 1)); then
            say "already up ($(node_state)), config $CONF"
        else
            say "already up ($(node_states)), config $CONF"
        fi
        echo "export SLURM_CONF=$CONF"
        return 0
    fi
    install_packages
    [[ "$(id -u)" == 0 ]] || die "slurmd must run as root to start jobs; run \`sudo $0 up\`"
    # Leftovers of an earlier cluster (daemons dead, a crash, another node count): start from nothing.
    stop_daemons
    net_down
    rm -rf "$DIR"
    write_config "$nodes"

    say "starting munged"
    dd if=/dev/urandom of="$DIR/munge/munge.key" bs=1024 count=1 status=none
    chmod 400 "$DIR/munge/munge.key"
    "$SBIN/munged" --force --key-file="$DIR/munge/munge.key" --socket="$MUNGE_SOCKET" \
        --pid-file="$DIR/munged.pid" --log-file="$DIR/log/munged.log" --seed-file="$DIR/munge/munged.seed" \
        || die "munged did not start; see $DIR/log/munged.log"

    if ((nodes == 1)); then
        say "starting slurmctld and slurmd ($CONF)"
        SLURM_CONF="$CONF" "$SBIN/slurmctld" -f "$CONF" -i || die "slurmctld did not start; see $DIR/log/slurmctld.log"
        SLURM_CONF="$CONF" "$SBIN/slurmd" -f "$CONF" -N "$(hostname -s)" || die "slurmd did not start; see $DIR/log/slurmd.log"
    else
        net_up "$nodes"
        say "starting slurmctld and $nodes slurmd ($CONF)"
        SLURM_CONF="$CONF" "$SBIN/slurmctld" -f "$CONF" -i || die "slurmctld did not start; see $DIR/log/slurmctld.log"
        for node in $(node_names "$nodes"); do
            mkdir -p "$DIR/spool/$node"
            start_node "$node" || die "slurmd of node $node did not start; see $DIR/log/slurmd-$node.log"
        done
    fi

    local state="" want="idle"
    ((nodes == 1)) || want="$(node_names "$nodes" | sed -e 's/$/ idle/' | paste -sd, | sed -e 's/,/, /g')"
    for _ in $(seq 120); do
        if ((nodes == 1)); then state="$(node_state)"; else state="$(node_states)"; fi
        [[ "$state" == "$want" ]] && break
        sleep 0.5
    done
    if ((nodes == 1)); then
        [[ "$state" == idle ]] || die "the node did not become idle within 60 s (state: '${state:-no answer}'); see $DIR/log/"
        say "up: node $(hostname -s) idle, $(SLURM_CONF="$CONF" scontrol --version)"
    else
        [[ "$state" == "$want" ]] || die "the nodes did not all become idle within 60 s (states: '${state:-no answer}'); see $DIR/log/, then run \`$0 down\`"
        say "up: nodes $state, $(SLURM_CONF="$CONF" scontrol --version)"
    fi
    echo "export SLURM_CONF=$CONF"
}

down() {
    stop_daemons
    net_down
    rm -rf "$DIR"
    say "down"
}

status() {
    if [[ -f "$CONF" ]] && running; then
        local version
        version="$(SLURM_CONF="$CONF" scontrol show config | sed -n 's/^SLURM_VERSION *= *//p')"
        if (("$(configured_nodes)" == 1)); then
            echo "up: node $(hostname -s) $(node_state); slurmctld $version; SLURM_CONF=$CONF"
        else
            echo "up: nodes $(node_states); slurmctld $version; SLURM_CONF=$CONF"
        fi
    else
        echo "down"
        return 1
    fi
}

nodes_arg() {  # `up [--nodes N]` -> N
    local nodes=1
    case "${1:-}" in
        "") ;;
        --nodes) nodes="${2:-}" ;;
        --nodes=*) nodes="${1#--nodes=}" ;;
        *) die "usage: $0 up [--nodes N] (got '$*')" ;;
    esac
    [[ "$nodes" =~ ^[1-9][0-9]*$ ]] && ((nodes <= MAX_NODES)) \
        || die "--nodes must be a whole number from 1 to $MAX_NODES, got '$nodes'"
    echo "$nodes"
}

case "${1:-}" in
    up)
        nodes="$(nodes_arg "${@:2}")"
        up "$nodes"
        ;;
    down) down ;;
    status) status ;;
    *) die "usage: $0 up [--nodes N]|down|status (got '${1:-}')" ;;
esac
