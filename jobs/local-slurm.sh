#!/usr/bin/env bash
# A real Slurm cluster on this one machine, for learning sbatch and for hpcbench's tests:
# munge, slurmctld and two slurmd "nodes" (n1, n2; 4 CPUs each) under a private state folder.
#
#   sudo jobs/local-slurm.sh up      # start (needs root, Debian's slurm-wlm and munge packages)
#   source /tmp/hpcbench-slurm/env   # SLURM_CONF for sbatch, squeue, scontrol, ...; Open MPI's transports
#   jobs/local-slurm.sh down         # stop every daemon by the PID in its pid file
#
# State lives in $HPCBENCH_SLURM_DIR (default /tmp/hpcbench-slurm). Nothing outside it changes.
set -euo pipefail

DIR=${HPCBENCH_SLURM_DIR:-/tmp/hpcbench-slurm}
NODES=${HPCBENCH_SLURM_NODES:-2}
CPUS=${HPCBENCH_SLURM_CPUS:-4}

CTLD_PORT=16817
LAST_PORT=$((17000 + NODES))

fail() {  # one line saying what failed, after stopping whatever this `up` had started
    down quiet
    echo "local-slurm: $*; stopped what had started (logs in $DIR/log)" >&2
    exit 1
}

up() {
    for tool in munged slurmctld slurmd scontrol sinfo; do
        command -v "$tool" >/dev/null || { echo "local-slurm: $tool not found (apt-get install slurm-wlm munge)" >&2; exit 1; }
    done
    down quiet
    for port in "$CTLD_PORT" $(seq 17001 "$LAST_PORT"); do  # a listener there means another Slurm (or anything) owns it
        if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
            echo "local-slurm: port $port is taken (another Slurm on this machine?); nothing started" >&2
            exit 1
        fi
    done
    mkdir -p "$DIR"/{munge,state,spool,log,tmp}
    chmod 755 "$DIR" "$DIR/munge"  # munged refuses a socket folder that others cannot traverse
    dd if=/dev/urandom bs=1024 count=1 of="$DIR/munge/munge.key" status=none
    chmod 400 "$DIR/munge/munge.key"
    munged --key-file="$DIR/munge/munge.key" --socket="$DIR/munge/munge.socket" \
        --pid-file="$DIR/munge/munged.pid" --log-file="$DIR/munge/munged.log" --seed-file="$DIR/munge/munge.seed" \
        || fail "munged did not start"
    cat > "$DIR/slurm.conf" <<CONF
ClusterName=hpcbench-local
SlurmctldHost=localhost
SlurmctldPort=$CTLD_PORT
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$DIR/munge/munge.socket
SlurmUser=root
SlurmdUser=root
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/filetxt
JobCompLoc=$DIR/log/jobcomp.txt
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SchedulerParameters=batch_sched_delay=0,sched_min_interval=0
MpiDefault=none
ReturnToService=2
SlurmdParameters=config_overrides
MailProg=/bin/true
MinJobAge=3600
KillWait=10
StateSaveLocation=$DIR/state
SlurmdSpoolDir=$DIR/spool/%n
SlurmctldPidFile=$DIR/slurmctld.pid
SlurmdPidFile=$DIR/slurmd-%n.pid
SlurmctldLogFile=$DIR/log/slurmctld.log
SlurmdLogFile=$DIR/log/slurmd-%n.log
TmpFS=$DIR/tmp/%n
NodeName=n[1-$NODES] NodeHostname=localhost NodeAddr=127.0.0.1 Port=[17001-$LAST_PORT] CPUs=$CPUS RealMemory=2000
PartitionName=debug Nodes=n[1-$NODES] Default=YES MaxTime=INFINITE State=UP
CONF
    for i in $(seq 1 "$NODES"); do mkdir -p "$DIR/spool/n$i" "$DIR/tmp/n$i"; done
    # Both "nodes" are this host: Open MPI's shared-memory transport between ranks of different
    # nodes' daemons crashes (vader, in MPI_Finalize), and its TCP transport would pick interfaces
    # other nodes cannot reach. Loopback TCP is what a one-host cluster has.
    printf '%s\n' "export SLURM_CONF=$DIR/slurm.conf" "export OMPI_MCA_btl=self,tcp" \
        "export OMPI_MCA_btl_tcp_if_include=lo" > "$DIR/env"
    export SLURM_CONF=$DIR/slurm.conf
    slurmctld -i || fail "slurmctld did not start (port $CTLD_PORT)"
    for i in $(seq 1 "$NODES"); do slurmd -N "n$i" || fail "slurmd n$i did not start (port $((17000 + i)))"; done
    for _ in $(seq 1 100); do  # nodes register within about a second
        if [ "$(sinfo -h -o '%t' -p debug 2>/dev/null | tr -d ' \n')" = "idle" ]; then
            echo "local-slurm: up, $NODES node(s) idle; source $DIR/env"
            return 0
        fi
        sleep 0.2
    done
    fail "nodes did not become idle ($(sinfo -h -o '%n=%t' 2>/dev/null | tr '\n' ' '))"
}

down() {
    local pidfile pid
    for pidfile in "$DIR"/slurmd-*.pid "$DIR/slurmctld.pid" "$DIR/munge/munged.pid"; do
        pid=$(cat "$pidfile" 2>/dev/null) || continue  # absent, or removed by its daemon on the way out
        kill "$pid" 2>/dev/null || true
        for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -9 "$pid" 2>/dev/null || true
        rm -f "$pidfile"
    done
    [ "${1:-}" = quiet ] || echo "local-slurm: down"
}

case "${1:-}" in
    up) up ;;
    down) down ;;
    status) SLURM_CONF=$DIR/slurm.conf sinfo ;;
    *) echo "usage: $0 up|down|status" >&2; exit 2 ;;
esac
