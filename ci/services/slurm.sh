#!/usr/bin/env bash
# Real Slurm 22.05 (Debian bookworm) on 127.0.0.1: munged, slurmdbd + MariaDB (for sacct), slurmctld
# and slurmd, each on free ports with its own config, state and socket under RUNDIR, so several
# instances can run side by side and nothing in /etc is touched.
# Recipe and pitfalls: shared reference real-services-batch.md section 1.
source "$(dirname "$0")/../lib.sh"
SVC=slurm

svc_install() {
    apt_update_once
    apt_install slurmctld slurmd slurm-client slurmdbd munge mariadb-server
    ensure_ci_user
    ensure_work_dir
}

svc_check() {
    local tool
    for tool in slurmctld slurmd slurmdbd sbatch munged mariadbd mariadb-install-db; do
        command -v "$tool" >/dev/null || { echo "$tool not found"; return 1; }
    done
}

# The node's CPUs and memory as slurmd sees them; RealMemory must not exceed what it reports.
_node_line() {
    local cpus mem
    cpus=$(slurmd -C | sed -n 's/.*CPUs=\([0-9]*\).*/\1/p' | head -n1)
    mem=$(slurmd -C | sed -n 's/.*RealMemory=\([0-9]*\).*/\1/p' | head -n1)
    echo "CPUs=${cpus:-1} RealMemory=$((${mem:-2000} * 9 / 10))"
}

_start_mariadb() {
    local run=$1 port=$2
    mkdir -p "$run/mysql"
    chown mysql:mysql "$run/mysql"
    mariadb-install-db --user=mysql --datadir="$run/mysql/data" --auth-root-authentication-method=socket \
        --skip-test-db >"$run/log/mariadb-install.log" 2>&1
    mariadbd --user=mysql --datadir="$run/mysql/data" --bind-address=127.0.0.1 --port="$port" \
        --socket="$run/mysql/mysqld.sock" --pid-file="$run/mysql/mysqld.pid" \
        --skip-log-bin --innodb-buffer-pool-size=64M >"$run/log/mariadb.log" 2>&1 &
    echo $! >"$run/mariadb.pid"
    wait_until 60 mariadb --socket="$run/mysql/mysqld.sock" -e 'select 1' || die "MariaDB did not start, see $run/log/mariadb.log"
    mariadb --socket="$run/mysql/mysqld.sock" -e "
        CREATE DATABASE slurm_acct_db;
        CREATE USER 'slurm'@'localhost' IDENTIFIED BY 'slurm';
        GRANT ALL ON slurm_acct_db.* TO 'slurm'@'localhost';"
}

svc_start() {
    local run=$1 host ctld_port slurmd_port dbd_port db_port
    run=$(cd "$run" && pwd)
    host=$(hostname -s)
    ensure_ci_user
    ensure_work_dir
    # munged and the slurm daemons refuse group/world-writable state dirs.
    chmod 755 "$run"
    mkdir -p "$run/munge" "$run/state" "$run/spool" "$run/log"
    chmod 700 "$run/state" "$run/spool"
    ctld_port=$(free_port 1)           # slurmctld on P, slurmd on P+1
    slurmd_port=$((ctld_port + 1))
    dbd_port=$(free_port)
    db_port=$(free_port)

    # munge: a fresh key per run; the socket must be reachable by the unprivileged job user.
    dd if=/dev/urandom of="$run/munge/munge.key" bs=1024 count=1 status=none
    chmod 400 "$run/munge/munge.key"
    munged --force --key-file="$run/munge/munge.key" --socket="$run/munge/munge.socket" \
        --pid-file="$run/munge/munged.pid" --log-file="$run/log/munged.log" --seed-file="$run/munge/seed" \
        || die "munged failed, see $run/log/munged.log"
    cp "$run/munge/munged.pid" "$run/munged.pid"
    wait_until 10 test -S "$run/munge/munge.socket" || die "munged socket did not appear"

    _start_mariadb "$run" "$db_port"
    cat >"$run/slurmdbd.conf" <<CONF
AuthType=auth/munge
AuthInfo=socket=$run/munge/munge.socket
DbdHost=localhost
DbdAddr=127.0.0.1
DbdPort=$dbd_port
SlurmUser=root
LogFile=$run/log/slurmdbd.log
PidFile=$run/slurmdbd.pid
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StoragePort=$db_port
StorageLoc=slurm_acct_db
StorageUser=slurm
StoragePass=slurm
CONF
    chmod 600 "$run/slurmdbd.conf"

    cat >"$run/slurm.conf" <<CONF
ClusterName=flashlink
SlurmctldHost=$host(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket=$run/munge/munge.socket
CredType=cred/munge
SlurmctldPort=$ctld_port
SlurmdPort=$slurmd_port
StateSaveLocation=$run/state
SlurmdSpoolDir=$run/spool
SlurmctldPidFile=$run/slurmctld.pid
SlurmdPidFile=$run/slurmd.pid
SlurmctldLogFile=$run/log/slurmctld.log
SlurmdLogFile=$run/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/linux
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=127.0.0.1
AccountingStoragePort=$dbd_port
# Connections to slurmdbd take the munge socket from here, not from AuthInfo.
AccountingStoragePass=$run/munge/munge.socket
JobCompType=jobcomp/filetxt
JobCompLoc=$run/log/jobcomp.log
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
ReturnToService=2
MinJobAge=300
SlurmctldTimeout=30
SlurmdTimeout=30
InactiveLimit=0
KillWait=5
MpiDefault=none
NodeName=$host NodeAddr=127.0.0.1 $(_node_line) State=UNKNOWN
PartitionName=debug Nodes=$host Default=YES MaxTime=INFINITE State=UP
CONF
    export SLURM_CONF=$run/slurm.conf
    # slurmdbd has no -f: it reads slurmdbd.conf next to $SLURM_CONF.
    slurmdbd || die "slurmdbd failed, see $run/log/slurmdbd.log"
    wait_until 30 sacctmgr -n list cluster || die "slurmdbd does not answer, see $run/log/slurmdbd.log"
    sacctmgr -i add cluster flashlink >/dev/null
    slurmctld -f "$run/slurm.conf" || die "slurmctld failed, see $run/log/slurmctld.log"
    slurmd -f "$run/slurm.conf" || die "slurmd failed, see $run/log/slurmd.log"
    wait_until 60 bash -c 'sinfo -h -o %T | grep -q idle' || die "node not idle, see $run/log/slurmctld.log"

    env_set "$run" SLURM_CONF "$run/slurm.conf"
    env_set "$run" SLURM_PARTITION debug
    env_set "$run" SLURM_NODE "$host"
    env_set "$run" SLURM_SUBMIT_USER "$CI_USER"
}

svc_stop() {
    local run=$1
    stop_pidfile "$run/slurmd.pid" 15
    stop_pidfile "$run/slurmctld.pid" 15
    stop_pidfile "$run/slurmdbd.pid" 15
    stop_pidfile "$run/mariadb.pid" 30
    stop_pidfile "$run/munged.pid" 10
    rm -f "$run/munge/munged.pid"
}

main_dispatch "$@"
