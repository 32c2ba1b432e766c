#!/usr/bin/env bash
# A real single-node SLURM (Debian 12 bookworm: Slurm 22.05) for the SLURM test, started by hand
# (root, no systemd) and stopped by the PIDs of exactly the daemons this script started.
# Adapted from the team's measured recipe (/work/shared/notes/slurm-ci-recipe.sh), no slurmdbd:
# `sacct` does not work, so the Snakemake SLURM plugin must use `squeue` for job status
# (MinJobAge=600 keeps finished jobs visible to squeue).
#
#   bash tests/slurm/start-slurm.sh [start]   install (apt) if needed, configure, start, smoke test
#   bash tests/slurm/start-slurm.sh stop      stop the daemons that `start` started (by PID)
#   bash tests/slurm/start-slurm.sh status    sinfo + which daemons this script owns
#
# Exit status 77: cannot run here (not root, no apt and no SLURM installed, a foreign slurm.conf);
# the last line of stderr says why (the test skips with it). Environment: PARTITION (default
# debug), STATE (default /tmp/shiftcurv-slurm: logs), HOLDER (default: the caller's PID).
#
# Several test runs on one machine share the cluster: each `start` takes a lease (a file named
# after HOLDER in /run/shiftcurv-slurm/leases) and `stop` gives it back; only the last holder
# stops the daemons, whoever started them (a run that stopped them under another's running jobs
# left that run's job steps hanging on a dead controller).
set -euo pipefail
PARTITION="${PARTITION:-debug}"
STATE="${STATE:-${TMPDIR:-/tmp}/shiftcurv-slurm}"
SHARED=/run/shiftcurv-slurm
OWNED="$SHARED/started.pids"         # "<pid> <name>" for each daemon this script started
LEASES="$SHARED/leases"
HOLDER="${HOLDER:-$PPID}"
MARK="# written by shiftcurv tests/slurm/start-slurm.sh"
T0=$(date +%s)
log() { echo "[start-slurm +$(( $(date +%s) - T0 ))s] $*" >&2; }
cannot() { echo "start-slurm: cannot run here: $*" >&2; exit 77; }
alive() {  # alive <pidfile> [<name>]: its PID runs (and is that daemon: PIDs get reused)
  [ -s "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null &&
    { [ -z "${2:-}" ] || [ "$(cat "/proc/$(cat "$1")/comm" 2>/dev/null)" = "$2" ]; }
}
wait_for() {  # wait_for <seconds> <what> <cmd...>
  local t=$1 what=$2; shift 2
  for _ in $(seq $((t * 5))); do "$@" >/dev/null 2>&1 && return 0; sleep 0.2; done
  echo "start-slurm: timeout waiting for $what" >&2; return 1
}
launch() {  # launch <pidfile> <name> <cmd...>: start a daemon, record its PID as ours
  local pidfile=$1 name=$2; shift 2
  rm -f "$pidfile"   # a stale one (daemons leave theirs behind) would name a dead PID
  "$@" </dev/null >/dev/null 2>&1       # each daemonizes and writes its pid file
  wait_for 10 "$name pid file" test -s "$pidfile"
  wait_for 10 "$name running" alive "$pidfile" "$name"
  echo "$(cat "$pidfile") $name" >>"$OWNED"; log "started $name pid=$(cat "$pidfile")"
}

stop() {
  rm -f "$LEASES/$HOLDER"
  local others=""
  for lease in "$LEASES"/*; do   # a holder that is gone holds nothing
    [ -e "$lease" ] || continue
    if kill -0 "$(basename "$lease")" 2>/dev/null; then others="$others $(basename "$lease")"
    else rm -f "$lease"; fi
  done
  [ -z "$others" ] || { log "still used by pid(s)$others: leaving SLURM running"; return 0; }
  [ -s "$OWNED" ] || { log "nothing to stop (no daemons started by this script)"; return 0; }
  # reverse start order: slurmd, slurmctld, munged
  tac "$OWNED" | while read -r pid name; do
    # only our PID, and only if it still is the daemon we started (PIDs get reused)
    if [ -r "/proc/$pid/comm" ] && [ "$(cat "/proc/$pid/comm")" = "$name" ]; then
      log "stopping $name pid=$pid"; kill "$pid"
      for _ in $(seq 150); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
      if kill -0 "$pid" 2>/dev/null; then log "$name pid=$pid ignores TERM, killing"; kill -9 "$pid"; fi
    else
      log "$name pid=$pid is gone already"
    fi
  done
  rm -f "$OWNED"
}

case "${1:-start}" in
  stop) stop; exit 0 ;;
  status) sinfo 2>/dev/null || true; cat "$OWNED" 2>/dev/null || echo "(no daemons owned)"
          echo "leases: $(ls "$LEASES" 2>/dev/null | tr '\n' ' ')"; exit 0 ;;
  start) ;;
  *) echo "usage: $0 [start|stop|status]" >&2; exit 2 ;;
esac

[ "$(id -u)" = 0 ] || cannot "needs root (installs packages, starts munged/slurmctld/slurmd)"
mkdir -p "$STATE" "$LEASES"
touch "$LEASES/$HOLDER"   # before anything can fail: the caller's `stop` gives it back

# ------------------------------------------------------------------ 1. packages
export DEBIAN_FRONTEND=noninteractive
PKGS="slurm-wlm munge"
if ! dpkg -s $PKGS >/dev/null 2>&1; then
  command -v apt-get >/dev/null || cannot "SLURM is not installed and there is no apt-get"
  ls /var/lib/apt/lists/*_Packages* >/dev/null 2>&1 || apt-get update -q >"$STATE/apt.log" 2>&1 ||
    cannot "apt-get update failed (no package mirror reachable?), see $STATE/apt.log"
  log "apt-get install $PKGS"
  # postinst scripts try to start services; without systemd that is refused - harmless
  apt-get install -y -q --no-install-recommends $PKGS >>"$STATE/apt.log" 2>&1 ||
    { apt-get update -q && apt-get install -y -q --no-install-recommends $PKGS; } \
      >>"$STATE/apt.log" 2>&1 ||
    cannot "apt-get install $PKGS failed, see $STATE/apt.log"
  log "installed"
fi
log "versions: $(dpkg-query -W -f='${Package}=${Version} ' slurmctld slurmd munge)"

# a SLURM this script did not configure is left alone (a developer's machine, a real cluster)
if [ -e /etc/slurm/slurm.conf ] && ! grep -qF "$MARK" /etc/slurm/slurm.conf; then
  cannot "/etc/slurm/slurm.conf exists and was not written by this script; not touching it"
fi
if alive /run/slurmctld.pid slurmctld && ! grep -q "^$(cat /run/slurmctld.pid) " "$OWNED" 2>/dev/null; then
  log "slurmctld already running (pid $(cat /run/slurmctld.pid)), not started by this run: reusing"
fi

# ------------------------------------------------------------------ 2. munge
[ -s /etc/munge/munge.key ] || dd if=/dev/urandom of=/etc/munge/munge.key bs=1 count=1024 status=none
chown munge:munge /etc/munge/munge.key; chmod 400 /etc/munge/munge.key
install -d -o munge -g munge -m 0755 /run/munge
install -d -o munge -g munge -m 0700 /var/log/munge /var/lib/munge
alive /run/munge/munged.pid munged || launch /run/munge/munged.pid munged runuser -u munge -- /usr/sbin/munged
wait_for 10 munged sh -c 'munge -n | unmunge'

# ------------------------------------------------------------------ 3. slurm.conf
HOST=$(hostname -s)
getent hosts "$HOST" >/dev/null || echo "127.0.0.1 $HOST" >>/etc/hosts   # NodeName must resolve
NCPU=$(env -u OMP_NUM_THREADS -u OMP_THREAD_LIMIT nproc)   # nproc obeys OMP_NUM_THREADS
MEM_MB=$(( $(awk '/MemTotal/{print $2}' /proc/meminfo) / 1024 ))
REALMEM=$(( MEM_MB * 9 / 10 ))        # must not exceed what slurmd detects, else node goes INVAL
install -d -o slurm -g slurm /var/lib/slurm/slurmctld /var/log/slurm
install -d /var/lib/slurm/slurmd
cat >/etc/slurm/slurm.conf <<EOF
$MARK
ClusterName=ci
SlurmctldHost=${HOST}(127.0.0.1)
SlurmUser=slurm
AuthType=auth/munge
CryptoType=crypto/munge
MpiDefault=none
SwitchType=switch/none
# no cgroups: works in containers/VMs without a delegated cgroup tree
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
# without a default, a job without --mem would take the whole node's memory
DefMemPerCPU=$(( REALMEM / NCPU ))
ReturnToService=2
# batch jobs are requeueable only when they ask (sbatch --requeue): the requeue test then shows
# that profiles/slurm's `slurm-requeue` reaches sbatch
JobRequeue=0
# no slurmdbd: keep finished jobs 10 min in slurmctld, so squeue can report their final state
MinJobAge=600
MailProg=/bin/true
StateSaveLocation=/var/lib/slurm/slurmctld
SlurmdSpoolDir=/var/lib/slurm/slurmd
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
JobCompType=jobcomp/none
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
NodeName=${HOST} NodeAddr=127.0.0.1 CPUs=${NCPU} RealMemory=${REALMEM} State=UNKNOWN
PartitionName=${PARTITION} Nodes=ALL Default=YES MaxTime=INFINITE State=UP
EOF

# ------------------------------------------------------------------ 4. slurmctld + slurmd
# -c: a clean start, no jobs or node states (e.g. DRAIN) saved by an earlier test cluster
alive /run/slurmctld.pid slurmctld || launch /run/slurmctld.pid slurmctld /usr/sbin/slurmctld -c
wait_for 30 slurmctld scontrol ping
alive /run/slurmd.pid slurmd || launch /run/slurmd.pid slurmd /usr/sbin/slurmd
# a reused cluster's node may still be drained or down: resume it
sinfo -h -N -o %t | grep -qE '^(drain|drained|down|fail)' &&
  scontrol update NodeName="$HOST" State=RESUME 2>/dev/null || true
wait_for 60 "node idle" sh -c "sinfo -h -N -o %t | grep -qx idle"
sinfo >&2

# ------------------------------------------------------------------ 5. smoke test
JOB=$(sbatch --parsable -p "$PARTITION" -t 2 -o "$STATE/smoke.out" --wrap 'srun -n1 hostname')
wait_for 60 "job $JOB" sh -c "! squeue -h -j $JOB | grep -q ."
STATE_LINE=$(scontrol show job "$JOB" | grep -o 'JobState=[A-Z]*')
log "smoke job $JOB: $STATE_LINE, output: $(tr '\n' ' ' <"$STATE/smoke.out")"
[ "$STATE_LINE" = JobState=COMPLETED ]
log "SLURM ready: partition=$PARTITION cpus=$NCPU accounting=none (use squeue for status)"
echo "$PARTITION"
