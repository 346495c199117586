#!/usr/bin/env bash
# Throwaway Slurm cluster (with accounting) for tests and CI: one node, or several in network namespaces.
#
#   cluster.sh install           install Debian's slurm/munge/mariadb packages
#   cluster.sh start  [--nodes N] [--gpus-per-node G] [BASE]
#                                write configs, start all daemons, wait until usable
#   cluster.sh stop   [BASE]     cancel jobs, stop the daemons we started (by PID), remove the namespaces
#   cluster.sh status [BASE]     which daemons are alive, sinfo
#
# Runs as root, without systemd: every daemon runs in its foreground flavour,
# detached with setsid, and its PID is recorded in BASE/pids/<name>.pid so that
# stop kills exactly what start started (never by process name).
# With --nodes N (N > 1) node i is a network namespace cropd-node<i> with its own address on a
# private bridge, its own hostname node<i> (a UTS namespace) and its own slurmd; everything else
# (slurmctld, slurmdbd, the files) is shared, as on a cluster with a shared filesystem.
# --gpus-per-node G declares G GPUs per node as a generic resource (stand-in device files, no GPU).
# BASE defaults to $CROPD_SLURM_BASE, else /tmp/cropd-slurm.
# Background and pitfalls: /work/shared/notes/local-slurm.md.
set -euo pipefail

PACKAGES=(slurmctld slurmd slurm-client munge slurmdbd mariadb-server)
# Start order; stop goes in reverse.
DAEMONS=(munged mariadbd slurmdbd slurmctld slurmd)

# Debian's Slurm reads /etc/slurm/slurm.conf (and slurmdbd.conf next to it);
# writing there lets plain sbatch/sinfo/sacct/scontrol work from any shell.
SLURM_ETC=/etc/slurm
MUNGE_KEY=/etc/munge/munge.key
MYSQL_RUN=/run/mysqld
MYSQL_SOCKET=$MYSQL_RUN/mysqld.sock   # libmariadb's default socket for "localhost"
DB_NAME=slurm_acct_db
DB_USER=slurm
START_TIMEOUT=${CROPD_SLURM_START_TIMEOUT:-60}
STOP_TIMEOUT=15
# Several nodes: a private subnet routed nowhere, with a bridge on the host side of it.
SUBNET=${CROPD_SLURM_SUBNET:-10.213.0}
BRIDGE=cropd-br0
NODES=1
GPUS=0

log() { printf '[cluster] %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }
now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }

# ---------------------------------------------------------------- install

packages_installed() {
  local p status
  for p in "${PACKAGES[@]}"; do
    status=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
    [[ $status == "install ok installed" ]] || return 1
  done
}

cmd_install() {
  if packages_installed; then
    log "packages already installed: ${PACKAGES[*]}"
    return 0
  fi
  local t0; t0=$(now)
  export DEBIAN_FRONTEND=noninteractive
  local apt=(apt-get install -y --no-install-recommends "${PACKAGES[@]}")
  # Try without refreshing the package lists first (fast path); refresh only
  # if that fails (empty or stale lists).
  if ! "${apt[@]}"; then
    log "install failed; running apt-get update and retrying"
    apt-get update
    "${apt[@]}"
  fi
  log "installed in $(elapsed "$t0") s"
}

# ---------------------------------------------------------------- pid helpers

pidfile() { echo "$BASE/pids/$1.pid"; }

# True while process $1 exists and is not a zombie. Orphaned daemons are
# reparented to PID 1, which may reap them only later (here: ~1 s), so an
# exited daemon can linger as a zombie; it is dead for our purposes.
pid_running() {
  local state
  state=$(awk '/^State:/ { print $2 }' "/proc/$1/status" 2>/dev/null) || return 1
  [[ -n $state && $state != Z ]]
}

# Print the recorded PID of daemon $1 if that process is alive and still is
# that daemon (guards against a stale pid file whose PID was reused).
alive_pid() {
  local name=$1 f pid comm
  f=$(pidfile "$name")
  [[ -s $f ]] || return 1
  pid=$(<"$f")
  [[ $pid =~ ^[0-9]+$ ]] && pid_running "$pid" || return 1
  comm=$(cat "/proc/$pid/comm" 2>/dev/null) || return 1
  [[ $comm == "${name%%-*}" ]] || return 1  # slurmd-node2 is a slurmd
  echo "$pid"
}

# Start "$@" detached (setsid, own session) and record its PID. setsid execs
# in place here (a background job of a script is not a process-group
# leader), so $! is the daemon itself.
# stdout/stderr go to BASE/log/$name.out: the Slurm daemons and mariadbd also
# write their own timestamped BASE/log/$name.log, but early fatal errors
# only reach stderr; munged -F logs to stderr only.
spawn() {
  local name=$1; shift
  if alive_pid "$name" >/dev/null; then
    log "$name already running (pid $(alive_pid "$name"))"
    return 0
  fi
  setsid "$@" </dev/null >>"$BASE/log/$name.out" 2>&1 &
  echo $! >"$(pidfile "$name")"
  log "started $name (pid $!)"
}

# ---------------------------------------------------------------- config

# The hardware slurmd sees (its node line without the name), so sockets/cores match (pitfall 3),
# with RealMemory cut to 90% to leave room for the OS and the daemons, shared among the nodes.
node_hardware() {
  local line mem
  line=$(slurmd -C | head -n1)
  mem=$(grep -o 'RealMemory=[0-9]*' <<<"$line" | cut -d= -f2)
  sed -E -e "s/RealMemory=[0-9]+/RealMemory=$((mem * 9 / 10 / NODES))/" -e 's/^NodeName=[^ ]+ //' <<<"$line"
}

node_name() { echo "node$1"; }
node_addr() { echo "$SUBNET.$((10 + $1))"; }
netns_of() { echo "cropd-node$1"; }
all_nodes() { echo "node[1-$NODES]"; }

# Several nodes: one line per namespace node. They share the hardware: each declares all of its
# CPUs and an N-th of its memory, and the GPUs as a generic resource.
node_lines() {
  local hardware i gres=""
  hardware=$(node_hardware)
  if ((GPUS > 0)); then gres=" Gres=gpu:$GPUS"; fi
  for ((i = 1; i <= NODES; i++)); do
    echo "NodeName=$(node_name "$i") NodeAddr=$(node_addr "$i") $hardware$gres"
  done
}

# What differs with several nodes: where slurmctld is reached, a spool, pid and log file per
# slurmd (%n: its node name), the node lines, and a short SlurmdTimeout so that a lost node is
# marked DOWN within seconds (default: 5 minutes).
cluster_lines() {
  local host=$1
  if ((NODES == 1)); then
    # One node: slurmctld and slurmd talk over loopback only (pitfall 11).
    cat <<EOF
SlurmctldHost=$host(127.0.0.1)
SlurmdSpoolDir=$BASE/spool
SlurmdPidFile=$BASE/run/slurmd.pid
SlurmdLogFile=$BASE/log/slurmd.log
NodeName=$host NodeAddr=127.0.0.1 $(node_hardware)
PartitionName=debug Nodes=$host Default=YES MaxTime=INFINITE State=UP
EOF
    return
  fi
  cat <<EOF
SlurmctldHost=$host($SUBNET.1)
SlurmdSpoolDir=$BASE/spool/%n
SlurmdPidFile=$BASE/run/slurmd-%n.pid
SlurmdLogFile=$BASE/log/slurmd-%n.log
SlurmdTimeout=15
EOF
  if ((GPUS > 0)); then
    echo "GresTypes=gpu"
    echo "AccountingStorageTRES=gres/gpu"
  fi
  node_lines
  echo "PartitionName=debug Nodes=$(all_nodes) Default=YES MaxTime=INFINITE State=UP"
}

# The GPUs. Slurm drops a GPU without a device file ("Removing file-less GPU"), and then hands
# out no indices: each GPU gets a stand-in character device (the numbers of /dev/null, so
# opening one is harmless). With task/none nothing restricts access to them; what Slurm does
# with the files is number the GPUs and set CUDA_VISIBLE_DEVICES to a job's.
write_gres_conf() {
  local g
  rm -f "$SLURM_ETC/gres.conf" "$BASE/etc/gres.conf"
  rm -rf "$BASE/dev"
  ((GPUS > 0)) || return 0
  mkdir -p "$BASE/dev"
  for ((g = 0; g < GPUS; g++)); do mknod "$BASE/dev/gpu$g" c 1 3; done
  echo "NodeName=$(all_nodes) Name=gpu File=$BASE/dev/gpu[0-$((GPUS - 1))]" >"$BASE/etc/gres.conf"
  cp "$BASE/etc/gres.conf" "$SLURM_ETC/gres.conf"
}

write_slurm_conf() {
  local host; host=$(hostname -s)
  mkdir -p "$SLURM_ETC"
  cat >"$BASE/etc/slurm.conf" <<EOF
# Generated by slurm/local_cluster/cluster.sh -- throwaway test cluster.
ClusterName=localcluster
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
# A requeued job waits cred_expire before it may run again (default 120 s).
AuthInfo=cred_expire=10
StateSaveLocation=$BASE/state
SlurmctldPidFile=$BASE/run/slurmctld.pid
SlurmctldLogFile=$BASE/log/slurmctld.log
SlurmctldPort=6817
SlurmdPort=6818
# Portable: no cgroup setup needed.
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
# Without this a job with no --mem takes the whole node's memory.
DefMemPerCPU=1024
SchedulerType=sched/backfill
SchedulerParameters=sched_interval=2,bf_interval=1
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=127.0.0.1
AccountingStoragePort=6819
JobCompType=jobcomp/none
JobAcctGatherType=jobacct_gather/linux
MpiDefault=none
# No mailer installed; the default MailProg makes slurmctld complain.
MailProg=/bin/true
ReturnToService=2
# submitit ignores SIGTERM; don't let a cancelled job block the node for 30 s.
KillWait=5
$(cluster_lines "$host")
EOF
  cp "$BASE/etc/slurm.conf" "$SLURM_ETC/slurm.conf"
  write_gres_conf
}

write_slurmdbd_conf() {
  # Holds the DB password: mode 600, owned by SlurmUser (root).
  (umask 077; cat >"$BASE/etc/slurmdbd.conf" <<EOF
# Generated by slurm/local_cluster/cluster.sh -- throwaway test cluster.
AuthType=auth/munge
DbdHost=localhost
DbdAddr=127.0.0.1
DbdPort=6819
SlurmUser=root
LogFile=$BASE/log/slurmdbd.log
PidFile=$BASE/run/slurmdbd.pid
StorageType=accounting_storage/mysql
StorageHost=localhost
StorageLoc=$DB_NAME
StorageUser=$DB_USER
StoragePass=$(db_password)
EOF
  )
  install -m 600 "$BASE/etc/slurmdbd.conf" "$SLURM_ETC/slurmdbd.conf"
}

# A random per-BASE DB password, kept so restarts reuse it.
db_password() {
  local f="$BASE/etc/db.pass"
  if [[ ! -s $f ]]; then
    (umask 077; head -c 18 /dev/urandom | base64 | tr -d '/+=' >"$f")
  fi
  cat "$f"
}

write_munge_key() {
  if [[ ! -s $MUNGE_KEY ]]; then
    mkdir -p "$(dirname "$MUNGE_KEY")"
    (umask 077; dd if=/dev/urandom of="$MUNGE_KEY" bs=1024 count=1 status=none)
    log "wrote new munge key $MUNGE_KEY"
  fi
  chown munge:munge "$MUNGE_KEY"
  chmod 400 "$MUNGE_KEY"
}

prepare_dirs() {
  mkdir -p "$BASE"/{pids,log,etc,state,spool,run}
  # No systemd-tmpfiles here: create the runtime dirs the packages expect.
  install -d -o munge -g munge -m 755 /run/munge
  install -d -o munge -g munge -m 700 /var/lib/munge /var/log/munge
  install -d -o mysql -g mysql -m 755 "$MYSQL_RUN"
}

# ---------------------------------------------------------------- namespaces (several nodes)

# Node i: namespace cropd-node<i>, its end of a veth pair named eth0 with address SUBNET.(10+i),
# the host's end on the bridge, which holds SUBNET.1 (where the nodes reach slurmctld). Each
# namespace's /etc/hosts (/etc/netns/<ns>/hosts, mounted over it for its slurmd) names every node.
network_up() {
  local i
  ip link show "$BRIDGE" >/dev/null 2>&1 || return 1
  for ((i = 1; i <= NODES; i++)); do [[ -e /run/netns/$(netns_of "$i") ]] || return 1; done
}

make_network() {
  local i ns host; host=$(hostname -s)
  remove_network  # leftovers of a start that died before its stop
  ip link add "$BRIDGE" type bridge
  ip addr add "$SUBNET.1/24" dev "$BRIDGE"
  ip link set "$BRIDGE" up
  for ((i = 1; i <= NODES; i++)); do
    ns=$(netns_of "$i")
    ip netns add "$ns"
    ip link add "cropd-veth$i" type veth peer name "cropd-eth$i"
    ip link set "cropd-eth$i" netns "$ns"
    ip -n "$ns" link set "cropd-eth$i" name eth0
    ip -n "$ns" addr add "$(node_addr "$i")/24" dev eth0
    ip -n "$ns" link set eth0 up
    ip -n "$ns" link set lo up
    ip link set "cropd-veth$i" master "$BRIDGE" up
    mkdir -p "/etc/netns/$ns"
    {
      echo "127.0.0.1 localhost"
      echo "$SUBNET.1 $host"
      local j
      for ((j = 1; j <= NODES; j++)); do echo "$(node_addr "$j") $(node_name "$j")"; done
    } >"/etc/netns/$ns/hosts"
  done
  log "network: bridge $BRIDGE $SUBNET.1, nodes $(node_addr 1)..$(node_addr "$NODES")"
}

# Processes still inside our namespaces once the daemons are stopped (a job's leftovers, such
# as a Ray raylet a killed job step left behind) can only be ours: they are ended with them.
our_namespaces() { ip netns list 2>/dev/null | awk '/^cropd-node[0-9]+/ { print $1 }'; }

end_namespace_processes() {
  local ns pids
  for ns in $(our_namespaces); do
    pids=$(ip netns pids "$ns" 2>/dev/null | tr '\n' ' ')
    [[ -n ${pids// /} ]] || continue
    log "ending processes left in $ns: $pids"
    kill -KILL $pids 2>/dev/null || true
  done
}

remove_network() {
  local ns
  end_namespace_processes
  for ns in $(our_namespaces); do
    ip netns del "$ns" 2>/dev/null || true  # also deletes its veth pair
    rm -rf "/etc/netns/$ns"
  done
  ip link del "$BRIDGE" 2>/dev/null || true
}

# ---------------------------------------------------------------- daemons

start_munged() {
  # setpriv execs in place, so the recorded PID is munged's (runuser forks).
  spawn munged setpriv --reuid=munge --regid=munge --init-groups /usr/sbin/munged -F
  wait_for "munge socket" 10 munge -n
}

start_mariadbd() {
  if [[ ! -d $BASE/mysql/mysql ]]; then
    log "initialising MariaDB datadir $BASE/mysql"
    install -d -o mysql -g mysql -m 750 "$BASE/mysql"
    mariadb-install-db --user=mysql --datadir="$BASE/mysql" \
      --auth-root-authentication-method=socket --skip-test-db \
      >"$BASE/log/mariadb-install-db.log" 2>&1 \
      || { tail -n 20 "$BASE/log/mariadb-install-db.log" >&2; die "mariadb-install-db failed"; }
  fi
  # mariadbd drops to the mysql user itself and must be able to write its log.
  touch "$BASE/log/mariadbd.log"; chown mysql:mysql "$BASE/log/mariadbd.log"
  # No TCP: slurmdbd reaches "localhost" through the default socket.
  # Lock timeout as slurmdbd recommends (it still warns about the 128M
  # buffer pool, which is plenty for a test cluster).
  spawn mariadbd /usr/sbin/mariadbd --user=mysql --datadir="$BASE/mysql" \
    --skip-networking --socket="$MYSQL_SOCKET" \
    --pid-file="$MYSQL_RUN/mysqld.pid" --log-error="$BASE/log/mariadbd.log" \
    --innodb-lock-wait-timeout=900
  wait_for "MariaDB socket" 30 mariadb --socket="$MYSQL_SOCKET" -e 'SELECT 1'
  create_db_user
}

create_db_user() {
  # root@localhost authenticates by unix socket, so no password is needed here.
  mariadb --socket="$MYSQL_SOCKET" <<EOF
CREATE DATABASE IF NOT EXISTS $DB_NAME;
CREATE USER IF NOT EXISTS '$DB_USER'@'localhost' IDENTIFIED BY '$(db_password)';
ALTER USER '$DB_USER'@'localhost' IDENTIFIED BY '$(db_password)';
GRANT ALL ON $DB_NAME.* TO '$DB_USER'@'localhost';
EOF
}

start_slurm_daemons() {
  spawn slurmdbd /usr/sbin/slurmdbd -D
  # slurmctld registers the cluster with slurmdbd; let slurmdbd listen first.
  wait_for "slurmdbd port 6819" 30 port_open 6819
  # The nodes' saved states would outlive a change of layout (a DRAIN of an earlier start, a node
  # no longer configured); the config alone says what they are. Jobs' states are kept.
  alive_pid slurmctld >/dev/null || rm -f "$BASE"/state/node_state "$BASE"/state/node_state.old
  spawn slurmctld /usr/sbin/slurmctld -D
  if ((NODES == 1)); then
    spawn slurmd /usr/sbin/slurmd -D
    return
  fi
  local i ns name
  for ((i = 1; i <= NODES; i++)); do
    ns=$(netns_of "$i") name=$(node_name "$i")
    mkdir -p "$BASE/spool/$name"
    # The node's network, hostname and /etc/hosts. Not `ip netns exec`: it mounts a /sys without
    # the cgroup tree, and slurmd will not start without it. nsenter, unshare and sh each exec the
    # next, so the recorded PID ends up slurmd's; the jobs it starts inherit all three.
    spawn "slurmd-$name" nsenter --net="/run/netns/$ns" unshare --mount --uts \
      sh -c "mount --bind /etc/netns/$ns/hosts /etc/hosts && hostname $name && exec /usr/sbin/slurmd -D -N $name"
  done
}

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# wait_for DESCRIPTION TIMEOUT CMD...: retry CMD every 0.2 s until it
# succeeds; on timeout show the log tails and fail.
wait_for() {
  local what=$1 timeout=$2; shift 2
  local deadline=$((SECONDS + timeout))
  until "$@" >/dev/null 2>&1; do
    if ((SECONDS >= deadline)); then
      log "timed out after ${timeout}s waiting for $what"
      show_logs
      die "cluster did not come up (logs in $BASE/log; '$0 stop $BASE' cleans up)"
    fi
    sleep 0.2
  done
}

show_logs() {
  local f
  for f in "$BASE"/log/*.log "$BASE"/log/*.out; do
    [[ -s $f ]] || continue
    echo "----- tail $f" >&2
    tail -n 15 "$f" >&2
  done
}

# Every node answering and in service: idle, or running jobs (a node's slurmd restarted while a
# job runs on the others). A trailing * means not responding; down and drain do not count.
nodes_up() { [[ $(sinfo -h -N -o %T 2>/dev/null | grep -cE '^(idle|mixed|allocated|completing)$') == "$NODES" ]]; }
accounting_up() { sacct -n >/dev/null 2>&1; }
cluster_ready() { nodes_up && accounting_up; }

# The daemons of this layout: one slurmd per node with several nodes.
daemons() {
  local d i
  for d in "${DAEMONS[@]}"; do
    if [[ $d == slurmd ]] && ((NODES > 1)); then
      for ((i = 1; i <= NODES; i++)); do echo "slurmd-$(node_name "$i")"; done
    else
      echo "$d"
    fi
  done
}

all_alive() {
  local d
  for d in $(daemons); do alive_pid "$d" >/dev/null || return 1; done
}

# The layout of the cluster in BASE (nodes, GPUs per node), written by start, read by the others.
read_layout() {
  if [[ -s $BASE/etc/layout ]]; then
    # shellcheck disable=SC1091
    source "$BASE/etc/layout"
  fi
}

# ---------------------------------------------------------------- commands

cmd_start() {
  local t0 wanted_nodes=$NODES wanted_gpus=$GPUS; t0=$(now)
  read_layout
  if all_alive && sinfo -h >/dev/null 2>&1; then
    if ((NODES != wanted_nodes || GPUS != wanted_gpus)); then
      die "already running with $NODES node(s) and $GPUS GPU(s) per node; '$0 stop $BASE' first"
    fi
    log "already running (BASE=$BASE)"
    # It may still be coming up (e.g. a concurrent start): wait for ready.
    wait_for "every node up and sacct answering" "$START_TIMEOUT" cluster_ready
    return 0
  fi
  NODES=$wanted_nodes GPUS=$wanted_gpus
  packages_installed || cmd_install
  prepare_dirs
  echo "NODES=$NODES GPUS=$GPUS" >"$BASE/etc/layout"
  # With several nodes, a start whose network is up only brings back a lost node's slurmd: the
  # nodes keep their network, and a failure must not stop the running cluster. A start from
  # nothing that fails half-way leaves no namespace, link or daemon behind.
  if ((NODES > 1)) && ! network_up; then
    trap 'if (($? != 0)); then log "start failed: stopping what it started"; cmd_stop; fi' EXIT
    make_network
  fi
  write_munge_key
  write_slurm_conf
  write_slurmdbd_conf
  start_munged
  start_mariadbd
  start_slurm_daemons
  wait_for "every node up and sacct answering" "$START_TIMEOUT" cluster_ready
  trap - EXIT
  log "cluster up in $(elapsed "$t0") s (BASE=$BASE, $NODES node(s), $GPUS GPU(s) per node)"
  sinfo
}

# Kill the daemon recorded for $1: TERM, wait up to STOP_TIMEOUT, then KILL.
stop_daemon() {
  local name=$1 pid i t0; t0=$(now)
  if ! pid=$(alive_pid "$name"); then
    rm -f "$(pidfile "$name")"
    return 0
  fi
  kill -TERM "$pid" 2>/dev/null || true
  for ((i = 0; i < STOP_TIMEOUT * 5; i++)); do
    pid_running "$pid" || break
    sleep 0.2
  done
  if pid_running "$pid"; then
    log "$name (pid $pid) ignored TERM for ${STOP_TIMEOUT}s; sending KILL"
    kill -KILL "$pid" 2>/dev/null || true
  fi
  rm -f "$(pidfile "$name")"
  log "stopped $name (pid $pid) in $(elapsed "$t0") s"
}

# Cancel leftover jobs so no job processes (slurmstepd and children, which
# outlive slurmd) keep running after stop; wait briefly for them to end.
cancel_jobs() {
  alive_pid slurmctld >/dev/null || return 0
  scancel --user root 2>/dev/null || true
  local i
  for ((i = 0; i < 50; i++)); do
    [[ -z $(squeue -h 2>/dev/null) ]] && return 0
    sleep 0.2
  done
  log "jobs still listed after scancel; stopping anyway"
}

cmd_stop() {
  local t0 i names; t0=$(now)
  trap - EXIT
  read_layout
  cancel_jobs
  mapfile -t names < <(daemons)
  for ((i = ${#names[@]} - 1; i >= 0; i--)); do
    stop_daemon "${names[i]}"
  done
  remove_network
  log "stopped in $(elapsed "$t0") s (BASE=$BASE)"
}

cmd_status() {
  local d pid rc=0
  read_layout
  echo "BASE=$BASE ($NODES node(s), $GPUS GPU(s) per node)"
  for d in $(daemons); do
    if pid=$(alive_pid "$d"); then
      printf '  %-10s running (pid %s)\n' "$d" "$pid"
    else
      printf '  %-10s stopped\n' "$d"; rc=3
    fi
  done
  sinfo 2>&1 || rc=3
  return "$rc"
}

usage() {
  sed -n '2,9p' "$0" | sed 's/^# \{0,1\}//'
  exit 2
}

main() {
  [[ $# -ge 1 ]] || usage
  local cmd=$1; shift
  while [[ $# -gt 0 && $1 == --* ]]; do
    case $1 in
      --nodes) NODES=${2:?--nodes needs a number}; shift 2 ;;
      --gpus-per-node) GPUS=${2:?--gpus-per-node needs a number}; shift 2 ;;
      *) die "unknown option $1 (expected --nodes N, --gpus-per-node G)" ;;
    esac
  done
  [[ $NODES =~ ^[1-9][0-9]*$ ]] || die "--nodes: expected a whole number >= 1, got '$NODES'"
  [[ $GPUS =~ ^[0-9]+$ ]] || die "--gpus-per-node: expected a whole number >= 0, got '$GPUS'"
  if ((GPUS > 0 && NODES == 1)); then die "--gpus-per-node needs --nodes 2 or more"; fi
  BASE=${1:-${CROPD_SLURM_BASE:-/tmp/cropd-slurm}}
  [[ $(id -u) == 0 ]] || die "must run as root"
  case $cmd in
    install) cmd_install ;;
    start) cmd_start ;;
    stop) cmd_stop ;;
    status) cmd_status ;;
    *) usage ;;
  esac
}

main "$@"
