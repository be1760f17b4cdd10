#!/usr/bin/env bash
# A throwaway single-node SLURM cluster on this machine, to try the cluster path
# (profiles/slurm, srun tssm train) on a laptop and to test it in CI.
#
#   eval "$(workflow/scripts/local_slurm.sh start)"   # start (idempotent); exports SLURM_CONF
#   workflow/scripts/local_slurm.sh status            # daemons, node and queue; exit 1 if down
#   workflow/scripts/local_slurm.sh stop              # kill the daemons (state dir is kept)
#   workflow/scripts/local_slurm.sh env               # the export line again
#
# Everything lives in one state dir ($TSSM_SLURM_DIR, default ${TMPDIR:-/tmp}/tssm-slurm):
# munge key and socket, slurm.conf (this host's CPUs and memory; no accounting storage, so
# job status comes from squeue), daemon state, logs, and profile/config.yaml, a copy of
# profiles/slurm with the account and partitions filled in for this cluster. Nothing is
# written under /etc but one symlink, /etc/slurm/slurm.conf -> the state dir's (made only where
# no slurm.conf is there, removed by `stop`): snakemake-executor-plugin-slurm-jobstep drops
# SLURM_CONF before its srun inside a job. Clients find the cluster through SLURM_CONF too,
# which `start` prints.
# Debian's slurm-wlm and munge are installed with apt-get when missing (needs root).
#
# Settings (environment): TSSM_SLURM_DIR, TSSM_SLURM_PORT (slurmctld port, slurmd uses
# the next one; default 6817), TSSM_SLURM_TIMEOUT (seconds to wait for the node; 60),
# TSSM_SLURM_CRED_EXPIRE (job credential lifetime, and the wait of a requeued job; 10 s).
set -euo pipefail

STATE=${TSSM_SLURM_DIR:-${TMPDIR:-/tmp}/tssm-slurm}
PORT=${TSSM_SLURM_PORT:-6817}
TIMEOUT=${TSSM_SLURM_TIMEOUT:-60}
CRED_EXPIRE=${TSSM_SLURM_CRED_EXPIRE:-10}
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
CONF=$STATE/etc/slurm.conf
PARTITION=local
ACCOUNT=local

die() { echo "error: local_slurm: $*" >&2; exit 1; }
say() { echo "local_slurm: $*" >&2; }

# PATH may lack the sbin dirs (non-login shells)
export PATH=$PATH:/usr/sbin:/sbin

alive() { [ -s "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

install_packages() {
  command -v slurmctld >/dev/null && command -v slurmd >/dev/null && command -v munged >/dev/null \
    && command -v sbatch >/dev/null && return 0
  command -v apt-get >/dev/null || die "slurmctld/slurmd/munged not found and no apt-get here; install SLURM and munge"
  [ "$(id -u)" = 0 ] || die "slurm-wlm and munge are not installed; run as root, or: sudo apt-get install slurm-wlm munge"
  say "installing slurm-wlm and munge (apt-get)"
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq slurm-wlm munge) >"$STATE/apt.log" 2>&1 \
    || die "apt-get install slurm-wlm munge failed; see $STATE/apt.log"
}

write_conf() {
  local host cpus mem user
  host=$(hostname -s)
  cpus=$(nproc)
  # 90% of the RAM, in MB: what jobs may ask for (--mem)
  mem=$(awk '/^MemTotal:/ {printf "%d", $2 / 1024 * 0.9}' /proc/meminfo)
  user=$(id -un)
  mkdir -p "$STATE/etc" "$STATE/ctld" "$STATE/slurmd" "$STATE/log" "$STATE/run"
  cat >"$CONF.tmp" <<EOF
# Written by workflow/scripts/local_slurm.sh: a single-node cluster on $host.
ClusterName=tssm-local
SlurmctldHost=$host(127.0.0.1)
SlurmctldPort=$PORT
SlurmdPort=$((PORT + 1))
SlurmUser=$user
SlurmdUser=$user
AuthType=auth/munge
CredType=cred/munge
# cred_expire: also how long a requeued job waits before it may start again (default 120 s)
AuthInfo=socket=$STATE/run/munge.socket,cred_expire=$CRED_EXPIRE
StateSaveLocation=$STATE/ctld
SlurmdSpoolDir=$STATE/slurmd/%n
SlurmctldPidFile=$STATE/run/slurmctld.pid
SlurmdPidFile=$STATE/run/slurmd.pid
SlurmctldLogFile=$STATE/log/slurmctld.log
SlurmdLogFile=$STATE/log/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
# no cgroups in containers and laptops need none: plain process tracking
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
SwitchType=switch/none
LaunchParameters=use_interactive_step
# no accounting storage: sacct has nothing, job states come from squeue (kept MinJobAge s)
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
MinJobAge=300
SchedulerType=sched/backfill
# look at pending jobs every 2 s (default 60 s: a requeued job would wait a minute)
SchedulerParameters=sched_interval=2,bf_interval=2
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
ReturnToService=2
# a requeued or cancelled job gets SIGTERM, then SIGKILL after KillWait s (tssm checkpoints on SIGTERM)
KillWait=30
JobRequeue=1
InactiveLimit=0
SlurmctldTimeout=30
SlurmdTimeout=30
NodeName=$host NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$mem State=UNKNOWN
PartitionName=$PARTITION Nodes=$host Default=YES MaxTime=INFINITE State=UP OverSubscribe=NO
EOF
  mv "$CONF.tmp" "$CONF"
}

write_profile() {
  # profiles/slurm as a cluster user fills it in: this cluster's account and partition
  mkdir -p "$STATE/profile"
  sed -e "s/<ACCOUNT>/$ACCOUNT/g" -e "s/<GPU_PARTITION>/$PARTITION/g" -e "s/<PARTITION>/$PARTITION/g" \
    "$REPO/profiles/slurm/config.yaml" >"$STATE/profile/config.yaml"
}

ETC_CONF=/etc/slurm/slurm.conf

link_etc() {
  # the jobstep plugin's srun inside a job sees no SLURM_CONF: point the default path at ours
  if [ -L "$ETC_CONF" ] && [ "$(readlink "$ETC_CONF")" = "$CONF" ]; then return 0; fi
  if [ -e "$ETC_CONF" ] || [ -L "$ETC_CONF" ]; then
    say "warning: $ETC_CONF exists and is not ours; srun inside Snakemake's jobs may use that cluster instead"
    return 0
  fi
  { mkdir -p "$(dirname "$ETC_CONF")" && ln -s "$CONF" "$ETC_CONF"; } 2>/dev/null \
    || say "warning: cannot link $ETC_CONF (not root?); Snakemake's jobs will not find this cluster"
}

unlink_etc() {
  if [ -L "$ETC_CONF" ] && [ "$(readlink "$ETC_CONF")" = "$CONF" ]; then rm -f "$ETC_CONF"; fi
}

start_munge() {
  alive "$STATE/run/munged.pid" && return 0
  mkdir -p "$STATE/munge" "$STATE/run" "$STATE/log"
  chmod 700 "$STATE/munge"
  chmod 755 "$STATE/run" # the socket: every local user's sbatch/srun talks to munged through it
  if [ ! -s "$STATE/munge/munge.key" ]; then
    head -c 1024 /dev/urandom >"$STATE/munge/munge.key.tmp"
    chmod 400 "$STATE/munge/munge.key.tmp"
    mv "$STATE/munge/munge.key.tmp" "$STATE/munge/munge.key"
  fi
  # --force: the state dir may sit under a world-writable /tmp
  munged --force --key-file="$STATE/munge/munge.key" --socket="$STATE/run/munge.socket" \
    --pid-file="$STATE/run/munged.pid" --log-file="$STATE/log/munged.log" --seed-file="$STATE/munge/munged.seed" \
    || die "munged did not start; see $STATE/log/munged.log"
}

node_ready() {
  local state
  state=$(SLURM_CONF=$CONF sinfo -h -N -o %T 2>/dev/null | head -n 1) || return 1
  case $state in idle* | mixed* | allocated* | completing*) return 0 ;; *) return 1 ;; esac
}

cmd_start() {
  [ "$(id -u)" = 0 ] || die "run as root (slurmd must, and missing packages are installed with apt-get): sudo $0 start"
  mkdir -p "$STATE"
  install_packages
  [ -w "$STATE" ] || die "state dir $STATE is not writable"
  write_profile
  if alive "$STATE/run/slurmctld.pid" && alive "$STATE/run/slurmd.pid" && node_ready; then
    link_etc
    say "already running (SLURM_CONF=$CONF)"
    cmd_env
    return 0
  fi
  write_conf
  link_etc
  start_munge
  alive "$STATE/run/slurmctld.pid" || slurmctld -f "$CONF" || die "slurmctld did not start; see $STATE/log/slurmctld.log"
  alive "$STATE/run/slurmd.pid" || slurmd -f "$CONF" -N "$(hostname -s)" || die "slurmd did not start; see $STATE/log/slurmd.log"
  local waited=0
  until node_ready; do
    [ "$waited" -ge "$TIMEOUT" ] && die "node not up after ${TIMEOUT}s; see $STATE/log/slurmctld.log and slurmd.log"
    sleep 1
    waited=$((waited + 1))
  done
  say "cluster up: partition '$PARTITION', account '$ACCOUNT', $(nproc) CPUs; state in $STATE"
  cmd_env
}

stop_pid() { # name pidfile: SIGTERM, then SIGKILL after 10 s
  local pid i
  [ -s "$2" ] || return 0
  pid=$(cat "$2")
  if kill -0 "$pid" 2>/dev/null; then
    kill "$pid" 2>/dev/null || true
    for i in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
    kill -0 "$pid" 2>/dev/null && { say "$1 ignored SIGTERM; killing"; kill -9 "$pid" 2>/dev/null || true; }
  fi
  rm -f "$2"
}

cmd_stop() {
  # jobs first (their tasks are children of slurmstepd, not of the daemons)
  if alive "$STATE/run/slurmctld.pid"; then
    SLURM_CONF=$CONF timeout 10 scancel --full --quiet --state=RUNNING,PENDING,SUSPENDED --user "$(id -un)" 2>/dev/null || true
  fi
  stop_pid slurmd "$STATE/run/slurmd.pid"
  # any slurmstepd left over from this cluster (identified by our spool dir)
  local pid
  for pid in $(pgrep -x slurmstepd 2>/dev/null || true); do
    if grep -qs -- "$STATE" "/proc/$pid/cmdline" "/proc/$pid/environ" 2>/dev/null; then kill -9 "$pid" 2>/dev/null || true; fi
  done
  stop_pid slurmctld "$STATE/run/slurmctld.pid"
  stop_pid munged "$STATE/run/munged.pid"
  unlink_etc
  say "stopped (state kept in $STATE; rm -rf it to start afresh)"
}

cmd_status() {
  local up=0 d
  for d in munged slurmctld slurmd; do
    if alive "$STATE/run/$d.pid"; then echo "$d: running (pid $(cat "$STATE/run/$d.pid"))"; else echo "$d: stopped"; up=1; fi
  done
  if [ "$up" = 0 ]; then
    SLURM_CONF=$CONF timeout 10 sinfo -N -l || up=1
    SLURM_CONF=$CONF timeout 10 squeue || true
    node_ready || up=1
  fi
  echo "SLURM_CONF=$CONF"
  return "$up"
}

cmd_env() { echo "export SLURM_CONF=$CONF TSSM_SLURM_DIR=$STATE"; }

case ${1:-} in
  start) cmd_start ;;
  stop) cmd_stop ;;
  status) cmd_status ;;
  env) cmd_env ;;
  *) echo "usage: $0 start|stop|status|env   (state dir: $STATE)" >&2; exit 2 ;;
esac
