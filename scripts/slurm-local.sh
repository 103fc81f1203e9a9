#!/usr/bin/env bash
# A single-node SLURM cluster on this machine, from Debian's packages, for dry-running sweeps
# (`hydra/launcher=slurm`) before sending them to a real cluster, and for the SLURM tests in CI.
#
#   eval "$(scripts/slurm-local.sh up)"   # install if missing (root), start, export SLURM_CONF
#   scripts/slurm-local.sh status          # node state and slurmctld version
#   scripts/slurm-local.sh down            # stop the daemons, remove the config dir
#
# Everything (slurm.conf, munge key and socket, spool, state, logs) lives in one temp dir,
# ${NCFINE_SLURM_DIR:-${TMPDIR:-/tmp}/ncfine-slurm}; nothing under /etc is changed. The config
# is the smallest that runs real jobs without cgroups or an accounting database:
# proctrack/linuxproc, task/none, select/cons_tres, auth/munge, accounting_storage/none.
# `up` prints only the `export SLURM_CONF=...` line on stdout; progress goes to stderr.
set -euo pipefail

DIR="${NCFINE_SLURM_DIR:-${TMPDIR:-/tmp}/ncfine-slurm}"
CONF="$DIR/slurm.conf"
MUNGE_SOCKET="$DIR/munge/munge.socket.2"
# Ports other than SLURM's defaults (6817/6818), so a system cluster on the same host is left alone.
CTLD_PORT="${NCFINE_SLURM_PORT:-16817}"
SLURMD_PORT="$((CTLD_PORT + 1))"
PACKAGES=(slurmctld slurmd slurm-client munge)
SBIN="/usr/sbin"

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

write_config() {
    local node hw
    node="$(hostname -s)"
    # The hardware line slurmd itself detects (CPUs, sockets, cores, threads, RealMemory), so the
    # node never drains for "configuration differs from hardware".
    hw="$("$SBIN/slurmd" -C | head -n 1 | sed -e 's/^NodeName=[^ ]* //')"
    mkdir -p "$DIR"/{munge,state,spool,log}
    # Others may reach munged's socket (jobs of non-root users authenticate through it); the key
    # itself is readable by its owner only.
    chmod 755 "$DIR" "$DIR/munge"
    cat >"$CONF" <<EOF
# Written by scripts/slurm-local.sh; removed by \`scripts/slurm-local.sh down\`.
ClusterName=ncfine-local
SlurmctldHost=$node(127.0.0.1)
SlurmctldPort=$CTLD_PORT
SlurmdPort=$SLURMD_PORT
SlurmUser=$(id -un)
SlurmdUser=root
AuthType=auth/munge
# cred_expire is also how long a requeued job waits before it may start again (default 120 s).
AuthInfo=socket=$MUNGE_SOCKET,cred_expire=10
CredType=cred/munge
StateSaveLocation=$DIR/state
SlurmdSpoolDir=$DIR/spool
SlurmctldPidFile=$DIR/slurmctld.pid
SlurmdPidFile=$DIR/slurmd.pid
SlurmctldLogFile=$DIR/log/slurmctld.log
SlurmdLogFile=$DIR/log/slurmd.log
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
NodeName=$node NodeAddr=127.0.0.1 $hw State=UNKNOWN
PartitionName=debug Nodes=$node Default=YES MaxTime=INFINITE State=UP
EOF
}

running() {
    alive "$DIR/munged.pid" && alive "$DIR/slurmctld.pid" && alive "$DIR/slurmd.pid" \
        && SLURM_CONF="$CONF" timeout 10 sinfo -h >/dev/null 2>&1
}

node_state() {
    SLURM_CONF="$CONF" timeout 10 sinfo -h -N -o '%t' 2>/dev/null | head -n 1
}

stop_daemons() {
    if [[ -f "$CONF" ]] && alive "$DIR/slurmctld.pid"; then
        SLURM_CONF="$CONF" timeout 10 scontrol shutdown >/dev/null 2>&1 || true
    fi
    local pidfile
    for pidfile in "$DIR/slurmd.pid" "$DIR/slurmctld.pid" "$DIR/munged.pid"; do
        alive "$pidfile" || continue
        local pid
        pid="$(cat "$pidfile")"
        kill "$pid" 2>/dev/null || true
        for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
        kill -9 "$pid" 2>/dev/null || true
    done
}

up() {
    if [[ -f "$CONF" ]] && running; then
        say "already up ($(node_state)), config $CONF"
        echo "export SLURM_CONF=$CONF"
        return 0
    fi
    install_packages
    [[ "$(id -u)" == 0 ]] || die "slurmd must run as root to start jobs; run \`sudo $0 up\`"
    # Leftovers of an earlier cluster (daemons dead, a crash): start from nothing.
    stop_daemons
    rm -rf "$DIR"
    write_config

    say "starting munged"
    dd if=/dev/urandom of="$DIR/munge/munge.key" bs=1024 count=1 status=none
    chmod 400 "$DIR/munge/munge.key"
    "$SBIN/munged" --force --key-file="$DIR/munge/munge.key" --socket="$MUNGE_SOCKET" \
        --pid-file="$DIR/munged.pid" --log-file="$DIR/log/munged.log" --seed-file="$DIR/munge/munged.seed" \
        || die "munged did not start; see $DIR/log/munged.log"

    say "starting slurmctld and slurmd ($CONF)"
    SLURM_CONF="$CONF" "$SBIN/slurmctld" -f "$CONF" -i || die "slurmctld did not start; see $DIR/log/slurmctld.log"
    SLURM_CONF="$CONF" "$SBIN/slurmd" -f "$CONF" -N "$(hostname -s)" || die "slurmd did not start; see $DIR/log/slurmd.log"

    local state=""
    for _ in $(seq 120); do
        state="$(node_state)"
        [[ "$state" == idle ]] && break
        sleep 0.5
    done
    [[ "$state" == idle ]] || die "the node did not become idle within 60 s (state: '${state:-no answer}'); see $DIR/log/"
    say "up: node $(hostname -s) idle, $(SLURM_CONF="$CONF" scontrol --version)"
    echo "export SLURM_CONF=$CONF"
}

down() {
    stop_daemons
    rm -rf "$DIR"
    say "down"
}

status() {
    if [[ -f "$CONF" ]] && running; then
        echo "up: node $(hostname -s) $(node_state); slurmctld $(SLURM_CONF="$CONF" scontrol show config | sed -n 's/^SLURM_VERSION *= *//p'); SLURM_CONF=$CONF"
    else
        echo "down"
        return 1
    fi
}

case "${1:-}" in
    up) up ;;
    down) down ;;
    status) status ;;
    *) die "usage: $0 up|down|status (got '${1:-}')" ;;
esac
