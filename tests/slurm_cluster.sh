#!/usr/bin/env bash
# A real single-node SLURM cluster on localhost, for the SLURM tests (tests/test_slurm.py)
# and for trying profiles/slurm by hand. Built from Debian's packages: munge, MariaDB,
# slurmdbd (so `sacct` works: the Snakemake SLURM executor polls job states with it),
# slurmctld and slurmd; select/cons_tres, proctrack/linuxproc, task/none.
#
#   tests/slurm_cluster.sh start    # install missing packages, write configs, start daemons
#   tests/slurm_cluster.sh status   # daemons, node state, accounts; exit 1 if not running
#   tests/slurm_cluster.sh env      # the exports a shell needs to use the cluster
#   tests/slurm_cluster.sh stop     # stop exactly the daemons `start` started (by PID file)
#
# Everything lives in the state folder $DLREPRO_SLURM_STATE (default /tmp/dlrepro-slurm):
# configs in etc/, PID files in run/, logs in log/, daemon state in lib/. Nothing is
# written to /etc and no system service is touched; clients find the cluster through
# SLURM_CONF=<state>/etc/slurm.conf (printed by `env`). Daemons listen on 127.0.0.1 only,
# on ports that avoid a system SLURM/MariaDB ($DLREPRO_SLURM_PORT_BASE, default 16817:
# slurmctld, +1 slurmd, +2 slurmdbd, +3 MariaDB).
#
# The node offers this machine's cores and memory (from `slurmd -C`) and one stand-in
# GPU (`gres/gpu` with /dev/null as its device file), so that GPU requests (`sbatch --gpus=1
# --cpus-per-gpu=N`) are scheduled and accounted (ReqTRES/AllocTRES gres/gpu=1) like on a
# GPU partition; jobs see no CUDA device. Accounting enforces associations: jobs must name
# the account ($DLREPRO_SLURM_ACCOUNT, default dlrepro) of which the current user is made
# a member; the partition is $DLREPRO_SLURM_PARTITION (default debug).
#
# `start` is idempotent (a running cluster is left as it is) and needs root: exit code 3
# means the cluster cannot be had here (not root; packages missing and not installable:
# no apt-get, no network), which the tests turn into a skip with the printed reason.
set -euo pipefail

STATE="${DLREPRO_SLURM_STATE:-/tmp/dlrepro-slurm}"
ACCOUNT="${DLREPRO_SLURM_ACCOUNT:-dlrepro}"
PARTITION="${DLREPRO_SLURM_PARTITION:-debug}"
CLUSTER=dlrepro
NODE=dlrepro-node
PORT_BASE="${DLREPRO_SLURM_PORT_BASE:-16817}"
CTLD_PORT=$PORT_BASE
SLURMD_PORT=$((PORT_BASE + 1))
DBD_PORT=$((PORT_BASE + 2))
DB_PORT=$((PORT_BASE + 3))
WAIT_S="${DLREPRO_SLURM_WAIT_S:-60}"
PACKAGES=(munge mariadb-server slurmdbd slurmctld slurmd slurm-client)
# daemons in start order; `stop` goes through them in reverse
DAEMONS=(munged mariadbd slurmdbd slurmctld slurmd)
USER_NAME="$(id -un)"

ETC="$STATE/etc"
RUN="$STATE/run"
LOG="$STATE/log"
LIB="$STATE/lib"
export SLURM_CONF="$ETC/slurm.conf"

say() { echo "slurm_cluster: $*" >&2; }
die() { say "error: $*"; exit "${2:-1}"; }

# ---- packages ------------------------------------------------------------------------
missing_commands() {
    local c
    for c in munged mariadbd mariadb-install-db mariadb slurmdbd slurmctld slurmd \
             sbatch sacct sacctmgr scontrol sinfo squeue scancel; do
        command -v "$c" >/dev/null 2>&1 || [[ -x "/usr/sbin/$c" ]] || echo "$c"
    done
}

install_packages() {
    local missing
    missing="$(missing_commands | tr '\n' ' ')"
    [[ -z "$missing" ]] && return 0
    say "missing commands: $missing; installing ${PACKAGES[*]}"
    command -v apt-get >/dev/null 2>&1 || die "no apt-get to install ${PACKAGES[*]}" 3
    # Package scripts must not start system services (a container has no init anyway):
    # policy-rc.d denies them for the duration of the install, unless one is in place.
    local policy=/usr/sbin/policy-rc.d added_policy=0
    if [[ ! -e "$policy" ]]; then
        printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod +x "$policy" && added_policy=1
    fi
    local ok=0
    export DEBIAN_FRONTEND=noninteractive
    if apt-get install -y --no-install-recommends "${PACKAGES[@]}" >"$LOG/apt.log" 2>&1; then
        ok=1
    elif apt-get update >>"$LOG/apt.log" 2>&1 &&
        apt-get install -y --no-install-recommends "${PACKAGES[@]}" >>"$LOG/apt.log" 2>&1; then
        ok=1
    fi
    [[ $added_policy == 1 ]] && rm -f "$policy"
    [[ $ok == 1 ]] || die "apt-get install ${PACKAGES[*]} failed (see $LOG/apt.log)" 3
    missing="$(missing_commands | tr '\n' ' ')"
    [[ -z "$missing" ]] || die "still missing after install: $missing" 3
}

# ---- PID-file bookkeeping --------------------------------------------------------------
pid_of() {  # the PID recorded for daemon $1, if that process is alive
    local f="$RUN/$1.pid" pid
    [[ -s "$f" ]] || return 1
    pid="$(tr -dc '0-9' <"$f")"
    [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null && echo "$pid"
}

wait_for() {  # wait_for DESCRIPTION COMMAND...: poll for up to WAIT_S seconds
    local what="$1" deadline=$((SECONDS + WAIT_S))
    shift
    # client commands get 10 s each (a client can hang on a daemon that is starting)
    [[ "$(type -t "$1")" == function ]] || set -- timeout 10 "$@"
    until "$@" >/dev/null 2>&1; do
        ((SECONDS < deadline)) || die "timed out after ${WAIT_S}s waiting for $what (logs in $LOG)"
        sleep 0.5
    done
}

# ---- configuration -------------------------------------------------------------------
write_configs() {
    mkdir -p "$ETC" "$RUN" "$LOG" "$LIB"/{munge,mysql,slurmctld,slurmd} "$STATE/jobs"
    chmod 700 "$LIB/munge"
    # cores, sockets and memory exactly as slurmd sees them, less 5% memory headroom
    local hw mem
    hw="$(slurmd -C | head -1)"
    mem="$(sed -n 's/.*RealMemory=\([0-9]*\).*/\1/p' <<<"$hw")"
    hw="$(sed -e 's/^NodeName=[^ ]* //' -e 's/ *RealMemory=[0-9]*//' <<<"$hw")"
    mem=$((mem * 95 / 100))

    cat >"$ETC/slurm.conf" <<EOF
# generated by tests/slurm_cluster.sh
ClusterName=$CLUSTER
SlurmctldHost=$(hostname -s)(127.0.0.1)
SlurmctldPort=$CTLD_PORT
SlurmdPort=$SLURMD_PORT
SlurmUser=$USER_NAME
SlurmdUser=$USER_NAME
AuthType=auth/munge
AuthInfo=socket=$RUN/munge.socket
CredType=cred/munge
StateSaveLocation=$LIB/slurmctld
SlurmdSpoolDir=$LIB/slurmd
SlurmctldPidFile=$RUN/slurmctld.pid
SlurmdPidFile=$RUN/slurmd.pid
SlurmctldLogFile=$LOG/slurmctld.log
SlurmdLogFile=$LOG/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
SchedulerType=sched/backfill
GresTypes=gpu
ReturnToService=2
KillWait=5
InactiveLimit=0
MinJobAge=300
JobAcctGatherType=jobacct_gather/linux
JobAcctGatherFrequency=5
AccountingStoreFlags=job_comment
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=127.0.0.1
AccountingStoragePort=$DBD_PORT
AccountingStoragePass=$RUN/munge.socket
AccountingStorageEnforce=associations
AccountingStorageTRES=gres/gpu
NodeName=$NODE NodeAddr=127.0.0.1 NodeHostname=$(hostname -s) $hw RealMemory=$mem Gres=gpu:1 State=UNKNOWN
PartitionName=$PARTITION Nodes=$NODE Default=YES MaxTime=INFINITE State=UP
EOF
    # a stand-in GPU: schedulable and accounted like a real one. Slurm drops GPUs that
    # have no device file, so it names /dev/null (a character device; with task/none no
    # device cgroup is set up around it).
    cat >"$ETC/gres.conf" <<EOF
NodeName=$NODE Name=gpu Count=1 File=/dev/null
EOF
    cat >"$ETC/slurmdbd.conf" <<EOF
# generated by tests/slurm_cluster.sh
AuthType=auth/munge
AuthInfo=socket=$RUN/munge.socket
DbdHost=localhost
DbdAddr=127.0.0.1
DbdPort=$DBD_PORT
SlurmUser=$USER_NAME
PidFile=$RUN/slurmdbd.pid
LogFile=$LOG/slurmdbd.log
DebugLevel=info
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StoragePort=$DB_PORT
StorageUser=slurm
StoragePass=slurm
StorageLoc=slurm_acct_db
EOF
    chmod 600 "$ETC/slurmdbd.conf"
    cat >"$ETC/my.cnf" <<EOF
[mysqld]
datadir=$LIB/mysql
socket=$RUN/mysqld.sock
pid-file=$RUN/mariadbd.pid
log-error=$LOG/mariadbd.log
bind-address=127.0.0.1
port=$DB_PORT
user=$USER_NAME
innodb_buffer_pool_size=64M
innodb_log_file_size=16M
innodb_lock_wait_timeout=900
skip-name-resolve
[client]
socket=$RUN/mysqld.sock
user=$USER_NAME
EOF
}

# Inside a job, Snakemake's job step runs the rule through `srun` with every SLURM_*
# variable but a few removed, SLURM_CONF included. Such a client then looks for
# /etc/slurm/slurm.conf and next for /run/slurm/conf/slurm.conf (where a configless slurmd
# caches its configuration): the latter is made a link to $ETC while the cluster runs.
CLIENT_CONF_LINK=/run/slurm/conf

link_client_config() {
    [[ -e /etc/slurm/slurm.conf ]] &&
        die "/etc/slurm/slurm.conf exists: srun inside jobs would read it instead of $ETC/slurm.conf"
    if [[ -L "$CLIENT_CONF_LINK" && "$(readlink "$CLIENT_CONF_LINK")" == "$ETC" ]]; then
        return 0
    fi
    [[ -e "$CLIENT_CONF_LINK" || -L "$CLIENT_CONF_LINK" ]] &&
        die "$CLIENT_CONF_LINK exists and is not ours (a configless slurmd on this machine?)"
    mkdir -p "$(dirname "$CLIENT_CONF_LINK")" && ln -s "$ETC" "$CLIENT_CONF_LINK" ||
        die "cannot create $CLIENT_CONF_LINK (needs root)"
}

unlink_client_config() {
    if [[ -L "$CLIENT_CONF_LINK" && "$(readlink "$CLIENT_CONF_LINK")" == "$ETC" ]]; then
        rm -f "$CLIENT_CONF_LINK"
        rmdir "$(dirname "$CLIENT_CONF_LINK")" 2>/dev/null || true
    fi
}

# ---- daemons -------------------------------------------------------------------------
start_munged() {
    pid_of munged >/dev/null && return 0
    [[ -s "$ETC/munge.key" ]] || {
        dd if=/dev/urandom of="$ETC/munge.key" bs=1024 count=1 2>/dev/null
        chmod 400 "$ETC/munge.key"
    }
    munged --key-file="$ETC/munge.key" --socket="$RUN/munge.socket" \
        --pid-file="$RUN/munged.pid" --log-file="$LOG/munged.log" \
        --seed-file="$LIB/munge/munged.seed" --force </dev/null >>"$LOG/munged.log" 2>&1 ||
        die "munged did not start (see $LOG/munged.log)"
    wait_for "munged" munge -n -S "$RUN/munge.socket"
}

start_mariadbd() {
    pid_of mariadbd >/dev/null && return 0
    if [[ ! -d "$LIB/mysql/mysql" ]]; then
        mariadb-install-db --defaults-file="$ETC/my.cnf" --auth-root-authentication-method=socket \
            --skip-test-db >"$LOG/mariadb-install.log" 2>&1 ||
            die "mariadb-install-db failed (see $LOG/mariadb-install.log)"
    fi
    # mariadbd does not daemonize: setsid detaches it from the caller's process group (a
    # signal to the caller's group must not stop it); it writes its PID file (my.cnf)
    setsid mariadbd --defaults-file="$ETC/my.cnf" </dev/null >>"$LOG/mariadbd.log" 2>&1 &
    wait_for "MariaDB" mariadb --defaults-file="$ETC/my.cnf" -e "SELECT 1"
    wait_for "MariaDB PID file" pid_of mariadbd
    mariadb --defaults-file="$ETC/my.cnf" <<EOF
CREATE DATABASE IF NOT EXISTS slurm_acct_db;
CREATE USER IF NOT EXISTS 'slurm'@'127.0.0.1' IDENTIFIED BY 'slurm';
GRANT ALL ON slurm_acct_db.* TO 'slurm'@'127.0.0.1';
FLUSH PRIVILEGES;
EOF
}

start_slurmdbd() {
    pid_of slurmdbd >/dev/null && return 0
    # slurmdbd reads slurmdbd.conf from the folder of $SLURM_CONF
    slurmdbd </dev/null >>"$LOG/slurmdbd.log" 2>&1 ||
        die "slurmdbd did not start (see $LOG/slurmdbd.log)"
    wait_for "slurmdbd" pid_of slurmdbd
    wait_for "slurmdbd to answer" sacctmgr -n -i list cluster
}

register_accounting() {  # cluster, account and user; each only if missing
    sacctmgr -n -P list cluster format=cluster | grep -qx "$CLUSTER" ||
        sacctmgr -i add cluster "$CLUSTER" >/dev/null
    sacctmgr -n -P list account format=account | grep -qx "$ACCOUNT" ||
        sacctmgr -i add account "$ACCOUNT" cluster="$CLUSTER" \
            description="dlrepro tests" organization=dlrepro >/dev/null
    sacctmgr -n -P list association cluster="$CLUSTER" user="$USER_NAME" format=account |
        grep -qx "$ACCOUNT" ||
        sacctmgr -i add user "$USER_NAME" account="$ACCOUNT" cluster="$CLUSTER" >/dev/null
}

start_slurmctld() {
    pid_of slurmctld >/dev/null && return 0
    # -c: a fresh start, without the jobs a previous (killed) cluster had queued
    slurmctld -c -f "$ETC/slurm.conf" </dev/null >>"$LOG/slurmctld.log" 2>&1 ||
        die "slurmctld did not start (see $LOG/slurmctld.log)"
    wait_for "slurmctld" scontrol ping
}

start_slurmd() {
    pid_of slurmd >/dev/null && return 0
    slurmd -f "$ETC/slurm.conf" -N "$NODE" </dev/null >>"$LOG/slurmd.log" 2>&1 ||
        die "slurmd did not start (see $LOG/slurmd.log)"
    wait_for "slurmd" pid_of slurmd
}

node_idle() { [[ "$(sinfo -h -n "$NODE" -o %t)" =~ ^(idle|mix|alloc)$ ]]; }

start() {
    # slurmd runs jobs as their users and the client config link lives in /run
    [[ "$(id -u)" == 0 ]] || die "the test cluster needs root" 3
    mkdir -p "$LOG"
    install_packages
    if [[ "$(running_count)" == "${#DAEMONS[@]}" ]]; then
        say "already running (state $STATE)"
        return 0
    fi
    write_configs
    link_client_config
    start_munged
    start_mariadbd
    start_slurmdbd
    register_accounting
    start_slurmctld
    start_slurmd
    # a node that was down when the cluster last stopped comes back
    node_idle || scontrol update nodename="$NODE" state=resume >/dev/null 2>&1 || true
    wait_for "node $NODE to be idle" node_idle
    wait_for "sacct to answer" sacct -n -X -S now
    say "up: cluster $CLUSTER, partition $PARTITION, account $ACCOUNT (state $STATE)"
}

running_count() {
    local d n=0
    for d in "${DAEMONS[@]}"; do pid_of "$d" >/dev/null && n=$((n + 1)); done
    echo "$n"
}

stop() {
    local d pid i
    for ((i = ${#DAEMONS[@]} - 1; i >= 0; i--)); do
        d="${DAEMONS[i]}"
        pid="$(pid_of "$d")" || { rm -f "$RUN/$d.pid"; continue; }
        kill -TERM "$pid" 2>/dev/null || true
        for _ in $(seq 1 120); do kill -0 "$pid" 2>/dev/null || break; sleep 0.25; done
        if kill -0 "$pid" 2>/dev/null; then
            say "$d (pid $pid) ignored SIGTERM for 30 s; sending SIGKILL"
            kill -KILL "$pid" 2>/dev/null || true
        fi
        rm -f "$RUN/$d.pid"
        say "stopped $d (pid $pid)"
    done
    unlink_client_config
}

status() {
    local d pid rc=0
    for d in "${DAEMONS[@]}"; do
        if pid="$(pid_of "$d")"; then echo "$d: running (pid $pid)"; else echo "$d: stopped"; rc=1; fi
    done
    if [[ $rc == 0 ]]; then
        sinfo -N -o "%N %P %t %c %m %G"
        sacctmgr -n -P list association cluster="$CLUSTER" format=cluster,account,user
    fi
    return $rc
}

case "${1:-}" in
    start) start ;;
    stop) stop ;;
    status) status ;;
    env)
        echo "export SLURM_CONF=$ETC/slurm.conf"
        echo "export DLREPRO_SLURM_ACCOUNT=$ACCOUNT DLREPRO_SLURM_PARTITION=$PARTITION"
        ;;
    *) echo "usage: $0 start|stop|status|env" >&2; exit 2 ;;
esac
