#!/usr/bin/env bash
# A real single-node Slurm cluster on this machine, to try vgmake's Slurm
# executor and to test it (scripts/test.sh calls this). Debian's slurm-wlm
# and munge, run as root without systemd:
#
#   scripts/slurm-local.sh          install if missing, start, wait for the node
#   scripts/slurm-local.sh stop     stop the daemons (the tests' "cluster down" case)
#   scripts/slurm-local.sh status   sinfo
#
# The configuration is /etc/slurm/slurm.conf; it is written only where none
# exists or where this script wrote it (its first line says so), so a real
# cluster's configuration is never touched. State and logs live under
# /var/lib/vgmake-slurm. The node has this machine's cores and 3/4 of its
# memory, one partition `debug`, no accounting (squeue and scontrol work,
# sacct does not: vgmake never needs it).
set -euo pipefail

STATE=/var/lib/vgmake-slurm
CONF=/etc/slurm/slurm.conf
MARK="# written by vgmake scripts/slurm-local.sh"

die() { echo "slurm-local: $*" >&2; exit 1; }

stop() {
    pkill -x slurmd 2>/dev/null || true
    pkill -x slurmctld 2>/dev/null || true
    for _ in $(seq 50); do
        pgrep -x slurmd >/dev/null || pgrep -x slurmctld >/dev/null || return 0
        sleep 0.1
    done
}

case "${1:-start}" in
    stop) stop; exit 0 ;;
    status) exec sinfo ;;
    start) ;;
    *) die "usage: $0 [start|stop|status]" ;;
esac

[ "$(id -u)" = 0 ] || die "must run as root (it starts munged and the Slurm daemons)"

if ! command -v slurmctld >/dev/null || ! command -v munged >/dev/null; then
    echo "slurm-local: installing slurm-wlm and munge with apt-get" >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq slurm-wlm munge >/dev/null \
        || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq slurm-wlm munge >/dev/null; } \
        || die "apt-get install slurm-wlm munge failed"
fi

# munge: the key is made by the package; the daemon runs as the munge user.
if [ ! -s /etc/munge/munge.key ]; then
    dd if=/dev/urandom bs=1 count=1024 of=/etc/munge/munge.key 2>/dev/null
fi
chown munge:munge /etc/munge/munge.key && chmod 400 /etc/munge/munge.key
mkdir -p /run/munge /var/log/munge /var/lib/munge
chown munge:munge /run/munge /var/log/munge /var/lib/munge
if ! munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then
    pkill -x munged 2>/dev/null || true
    runuser -u munge -- /usr/sbin/munged
    for _ in $(seq 50); do munge -n 2>/dev/null | unmunge >/dev/null 2>&1 && break; sleep 0.1; done
    munge -n | unmunge >/dev/null || die "munged did not start (see /var/log/munge/munged.log)"
fi

host=$(hostname -s)
cpus=$(nproc)
mem_mb=$(awk '/MemTotal/ { print int($2 / 1024 * 3 / 4) }' /proc/meminfo)
if [ -e "$CONF" ] && ! head -1 "$CONF" | grep -qF "$MARK"; then
    die "$CONF exists and was not written by this script; not touching a real cluster's configuration"
fi
mkdir -p "$STATE"/ctld "$STATE"/d /etc/slurm
cat >"$CONF" <<EOF
$MARK
ClusterName=vgmake-local
SlurmctldHost=$host
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ReturnToService=2
StateSaveLocation=$STATE/ctld
SlurmdSpoolDir=$STATE/d
SlurmctldPidFile=$STATE/slurmctld.pid
SlurmdPidFile=$STATE/slurmd.pid
SlurmctldLogFile=$STATE/slurmctld.log
SlurmdLogFile=$STATE/slurmd.log
SchedulerParameters=sched_min_interval=0
MessageTimeout=10
MinJobAge=30
MaxArraySize=1001
NodeName=$host CPUs=$cpus RealMemory=$mem_mb State=UNKNOWN
PartitionName=debug Nodes=$host Default=YES MaxTime=INFINITE State=UP
EOF

pgrep -x slurmctld >/dev/null || slurmctld
pgrep -x slurmd >/dev/null || slurmd
for _ in $(seq 100); do
    state=$(sinfo -h -n "$host" -o %t 2>/dev/null || true)
    case "$state" in idle|mix|alloc) echo "slurm-local: node $host $state (partition debug, $cpus CPUs, ${mem_mb} MB)"; exit 0 ;; esac
    sleep 0.2
done
die "the node did not become idle in 20 s (state '${state:-none}'); see $STATE/slurmctld.log and $STATE/slurmd.log"
