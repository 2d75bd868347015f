#!/usr/bin/env bash
# A real Slurm cluster on this one machine, for learning sbatch and for hpcbench's tests:
# munge, slurmctld and two slurmd "nodes" (n1, n2; 4 CPUs each) under a private state folder.
#
#   sudo jobs/local-slurm.sh up      # start (needs root, Debian's slurm-wlm and munge packages)
#   source /tmp/hpcbench-slurm/env   # SLURM_CONF for sbatch, squeue, scontrol, ...; Open MPI's transports
#   jobs/local-slurm.sh down         # stop every daemon by the PID in its pid file
#
#   sudo jobs/local-slurm.sh up --link 100mbit [--nodes N] [--cpus-per-node C] [--storage sshfs:/abs/folder]
#                               [--fault nI:link=RATE] [--fault nI:cpu=SHARE] [--fault nI:storage=RATE]
#
# With --link, every node is a host of its own on a real network: its own network namespace
# (address 10.213.0.2, .3, ...; its own hostname and /etc/hosts), joined to a bridge in this
# machine's namespace (10.213.0.1, where slurmctld and munged run) by a veth pair shaped with tbf
# at RATE in both directions. Nothing routes anywhere else. Every task started on a node sees
# HPCBENCH_NETWORK=emulated:tbf:RATE, which records carry in their system (and its id).
# Without --link, both "nodes" are this host and talk over loopback.
#
# With --storage sshfs:FOLDER (and --link), FOLDER lives on a storage server of its own: sshd in one more
# namespace (address 10.213.0.254, its link shaped at RATE like a node's, so every node's reads share its
# bandwidth), and every node mounts it over the same path with sshfs (FUSE), in the node's own mount
# namespace, without a client cache (each read crosses the link, as for a dataset larger than the nodes'
# memory). The path is the same on this host (local disk) and on the nodes (the network mount), as a
# cluster's shared file system is. Tasks then see HPCBENCH_NETWORK=emulated:tbf:RATE+storage:sshfs.
# Needs Debian's sshfs and openssh-server.
#
# Faults, one node each (for `hpcbench survey` to find; each --fault may repeat for other nodes):
#   nI:link=RATE     node I's link (both directions) at RATE instead of the cluster's --link rate
#   nI:cpu=SHARE     node I's slurmd and every task it starts capped at SHARE of its CPUs (0 < SHARE < 1), by the
#                    cgroup cpu controller's quota (cpu.cfs_quota_us on cgroup v1, cpu.max on v2)
#   nI:storage=RATE  node I's traffic with the storage server at RATE (htb classes on its link, by the server's
#                    address), its traffic with the other nodes at the --link rate (needs --storage)
# This kernel's tc has tbf and htb but no netem: faults are rates, not delays.
#
# State lives in $HPCBENCH_SLURM_DIR (default /tmp/hpcbench-slurm); the controller listens on
# $HPCBENCH_SLURM_PORT (default 16817), loopback nodes on the ports 184 above it and up (17001, ...):
# clusters in two folders with two ports run side by side. Nothing outside the folder changes except, with --link, the
# namespaces, links and bridge named hpcbench-*, which `down` removes (listed in $DIR/network).
set -euo pipefail

DIR=${HPCBENCH_SLURM_DIR:-/tmp/hpcbench-slurm}
NODES=${HPCBENCH_SLURM_NODES:-2}
CPUS=${HPCBENCH_SLURM_CPUS:-4}
CTLD_PORT=${HPCBENCH_SLURM_PORT:-16817}
SUBNET=${HPCBENCH_SLURM_SUBNET:-10.213.0}  # the emulated network's /24 (first three octets)
BRIDGE=hpcbench-br
LINK=
STORAGE=
FAULTS=()
STORAGE_NS=hpcbench-s

fail() {  # one line saying what failed, after stopping whatever this `up` had started
    trap - ERR
    down quiet
    echo "local-slurm: $*; stopped what had started (logs in $DIR/log)" >&2
    exit 1
}

node_address() { echo "$SUBNET.$((1 + $1))"; }

check_link_possible() {  # one line and exit 3 where namespaces cannot be made (no root, no iproute2)
    local tool probe=hpcbench-probe-$$ why
    for tool in ip tc nsenter unshare; do
        command -v "$tool" >/dev/null || { echo "local-slurm: --link needs $tool (iproute2, util-linux); nothing started" >&2; exit 3; }
    done
    if ! why=$(ip netns add "$probe" 2>&1); then
        echo "local-slurm: --link cannot make network namespaces here (needs root): ${why//$'\n'/ }; nothing started" >&2
        exit 3
    fi
    ip netns del "$probe"
    if ip netns list | grep -qE '^hpcbench-(n|s)'; then
        echo "local-slurm: network namespace $(ip netns list | grep -m1 -E '^hpcbench-(n|s)' | cut -d' ' -f1) exists: another emulated cluster is up (jobs/local-slurm.sh down with its HPCBENCH_SLURM_DIR); nothing started" >&2
        exit 1
    fi
    if [ -n "$(ip -4 addr show to "$SUBNET.0/24")" ] || [ -n "$(ip -4 route show "$SUBNET.0/24")" ]; then
        echo "local-slurm: $SUBNET.0/24 is already in use on this machine (set HPCBENCH_SLURM_SUBNET); nothing started" >&2
        exit 1
    fi
}

fault_of() {  # node $1's value of fault kind $2 (empty: none)
    local fault
    for fault in "${FAULTS[@]}"; do
        [ "${fault%%:*}" = "n$1" ] && [ "$(fault_kind "$fault")" = "$2" ] && { echo "${fault#*=}"; return; }
    done
    return 0
}

fault_kind() { local rest=${1#*:}; echo "${rest%%=*}"; }

shape() {  # shape [-n NS] DEV RATE [STORAGE_RATE PEER]: tbf at RATE, or htb with PEER's traffic at STORAGE_RATE
    local ns=() dev rate srate peer match burst
    [ "$1" != -n ] || { ns=(-n "$2"); shift 2; }
    dev=$1 rate=$2 srate=${3:-} peer=${4:-}
    # tbf needs a bucket of at least one timer tick of traffic; 10 ms at RATE (>= 64 KiB) holds the rate.
    burst=$(( $(rate_bits "$rate") / 8 / 100 ))
    [ "$burst" -ge 65536 ] || burst=65536
    if [ -z "$srate" ]; then
        tc "${ns[@]}" qdisc add dev "$dev" root tbf rate "$rate" burst "$burst" latency 50ms
        return
    fi
    match=$([ ${#ns[@]} -eq 0 ] && echo src || echo dst)  # towards the node: from the server; from the node: to it
    tc "${ns[@]}" qdisc add dev "$dev" root handle 1: htb default 10 r2q 1000  # quantum = rate / r2q: between an MTU and 200 kB
    tc "${ns[@]}" class add dev "$dev" parent 1: classid 1:10 htb rate "$rate" burst "$burst"
    tc "${ns[@]}" class add dev "$dev" parent 1: classid 1:20 htb rate "$srate" burst "$burst"
    tc "${ns[@]}" filter add dev "$dev" parent 1: protocol ip prio 1 u32 match ip "$match" "$peer/32" flowid 1:20
}

network_up() {  # the bridge, one namespace per node, a tbf-shaped veth pair each; every name made is listed for `down`
    local i ns address rate storage_rate
    : > "$DIR/network"
    # Each name is listed once made, never before: a name that was taken is someone else's, not ours to remove.
    ip link add "$BRIDGE" type bridge
    echo "link $BRIDGE" >> "$DIR/network"
    ip addr add "$SUBNET.1/24" dev "$BRIDGE"
    ip link set "$BRIDGE" up
    { echo "127.0.0.1 localhost"; echo "$SUBNET.1 hpcbench-head"; } > "$DIR/hosts"
    for i in $(seq 1 "$NODES"); do
        ns=hpcbench-n$i
        address=$(node_address "$i")
        ip netns add "$ns"
        echo "netns $ns" >> "$DIR/network"
        ip link add "hpcbench-v$i" type veth peer name eth0 netns "$ns"
        echo "link hpcbench-v$i" >> "$DIR/network"  # removed by name: a namespace's own links go only when the kernel gets to it
        ip link set "hpcbench-v$i" master "$BRIDGE" up
        ip -n "$ns" addr add "$address/24" dev eth0
        ip -n "$ns" link set lo up
        ip -n "$ns" link set eth0 up
        rate=$(fault_of "$i" link); rate=${rate:-$LINK}
        storage_rate=$(fault_of "$i" storage)
        shape "hpcbench-v$i" "$rate" ${storage_rate:+"$storage_rate" "$SUBNET.254"}           # towards the node
        shape -n "$ns" eth0 "$rate" ${storage_rate:+"$storage_rate" "$SUBNET.254"}            # from the node
        echo "$address n$i" >> "$DIR/hosts"
    done
    [ -z "$STORAGE" ] || storage_up
    # What every task on a node sees: the network is part of the system a record describes.
    printf '#!/bin/sh\necho "export HPCBENCH_NETWORK=emulated:tbf:%s%s"\n' "$LINK" "${STORAGE:++storage:sshfs}" > "$DIR/task-prolog.sh"
    chmod 755 "$DIR/task-prolog.sh"
}

storage_up() {  # the storage server: sshd in a namespace of its own, behind a link shaped like a node's
    local address="$SUBNET.254"
    ip netns add "$STORAGE_NS"
    echo "netns $STORAGE_NS" >> "$DIR/network"
    ip link add hpcbench-vs type veth peer name eth0 netns "$STORAGE_NS"
    echo "link hpcbench-vs" >> "$DIR/network"
    ip link set hpcbench-vs master "$BRIDGE" up
    ip -n "$STORAGE_NS" addr add "$address/24" dev eth0
    ip -n "$STORAGE_NS" link set lo up
    ip -n "$STORAGE_NS" link set eth0 up
    shape hpcbench-vs "$LINK"
    shape -n "$STORAGE_NS" eth0 "$LINK"
    echo "$address hpcbench-storage" >> "$DIR/hosts"
    mkdir -p "$DIR/ssh" /run/sshd
    rm -f "$DIR/ssh/host_key" "$DIR/ssh/client_key"
    ssh-keygen -q -t ed25519 -N '' -f "$DIR/ssh/host_key"
    ssh-keygen -q -t ed25519 -N '' -f "$DIR/ssh/client_key"
    cp "$DIR/ssh/client_key.pub" "$DIR/ssh/authorized_keys"
    cat > "$DIR/ssh/sshd_config" <<SSHD
ListenAddress $address
Port 22
HostKey $DIR/ssh/host_key
AuthorizedKeysFile $DIR/ssh/authorized_keys
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
PidFile $DIR/sshd.pid
Subsystem sftp internal-sftp
SSHD
    nsenter --net="/run/netns/$STORAGE_NS" "$(command -v sshd)" -f "$DIR/ssh/sshd_config" -E "$DIR/log/sshd.log" \
        || fail "sshd did not start (log: $DIR/log/sshd.log)"
}

mount_storage() {  # inside a node's namespaces: the storage server's folder over the same path, no client cache
    sshfs -o "IdentityFile=$DIR/ssh/client_key,StrictHostKeyChecking=no,UserKnownHostsFile=/dev/null,LogLevel=ERROR" \
        -o "allow_other,cache=no,direct_io,ServerAliveInterval=5,ServerAliveCountMax=2" \
        "root@$SUBNET.254:$STORAGE" "$STORAGE"
}

rate_bits() {  # tc's rate notation (100mbit, 1gbit, 2.5gbit, 500kbit) in bits per second
    awk -v r="$1" 'BEGIN { n = r + 0; u = tolower(substr(r, length(n "") + 1));
        m = (u == "kbit") ? 1e3 : (u == "mbit") ? 1e6 : (u == "gbit") ? 1e9 : (u == "bit") ? 1 : 0; printf "%d", n * m }'
}

cpu_cgroup() {  # node $1's cgroup, capped at SHARE of its CPUs; slurmd starts in it, so every task it starts does
    local i=$1 share=$2 root quota
    quota=$(awk -v s="$share" -v c="$CPUS" 'BEGIN { printf "%d", s * c * 100000 }')
    if [ -d /sys/fs/cgroup/cpu ] && [ -f /sys/fs/cgroup/cpu/cgroup.procs ]; then  # v1: the cpu controller's own tree
        root=/sys/fs/cgroup/cpu/hpcbench-n$i
        mkdir -p "$root"
        echo "cgroup $root" >> "$DIR/faults"
        echo 100000 > "$root/cpu.cfs_period_us"
        echo "$quota" > "$root/cpu.cfs_quota_us"
    else  # v2: one tree, the cpu controller enabled for its children
        root=/sys/fs/cgroup/hpcbench-n$i
        grep -qw cpu /sys/fs/cgroup/cgroup.subtree_control || echo +cpu > /sys/fs/cgroup/cgroup.subtree_control
        mkdir -p "$root"
        echo "cgroup $root" >> "$DIR/faults"
        echo "$quota 100000" > "$root/cpu.max"
    fi
    echo "$root"
}

start_slurmd() {  # node $1: on this host, or (with --link) inside its namespace with its own hostname and /etc/hosts
    local i=$1 share cgroup=
    share=$(fault_of "$i" cpu)
    [ -z "$share" ] || cgroup=$(cpu_cgroup "$i" "$share")
    if [ -z "$LINK" ]; then
        sh -c '[ -z "$1" ] || echo $$ > "$1/cgroup.procs"; exec slurmd -N "$2"' sh "$cgroup" "n$i"
        return
    fi
    # nsenter, not `ip netns exec`: that remounts /sys, which breaks slurmd's cgroup probe.
    nsenter --net="/run/netns/hpcbench-n$i" unshare --uts --mount --propagation slave \
        env HPCBENCH_SLURM_DIR="$DIR" HPCBENCH_SLURM_SUBNET="$SUBNET" sh -c \
        'hostname "$1" && mount --bind "$2" /etc/hosts && { [ -z "$3" ] || HPCBENCH_STORAGE="$3" "$4" mount_storage; } &&
         { [ -z "$5" ] || echo $$ > "$5/cgroup.procs"; } && exec slurmd -N "$1"' \
        sh "n$i" "$DIR/hosts" "$STORAGE" "$SELF" "$cgroup"
}

check_faults() {  # every --fault names a node of this cluster, a known kind and a value of its kind
    local fault node kind value
    for fault in "${FAULTS[@]}"; do
        [[ "$fault" =~ ^n([0-9]+):(link|cpu|storage)=(.+)$ ]] || { echo "local-slurm: --fault must be nI:link=RATE, nI:cpu=SHARE or nI:storage=RATE, got '$fault'" >&2; exit 2; }
        node=${BASH_REMATCH[1]} kind=${BASH_REMATCH[2]} value=${BASH_REMATCH[3]}
        [ "$node" -ge 1 ] && [ "$node" -le "$NODES" ] || { echo "local-slurm: --fault $fault: no node n$node (nodes n1..n$NODES)" >&2; exit 2; }
        case "$kind" in
            link|storage)
                [[ "$value" =~ ^[0-9]+(\.[0-9]+)?(kbit|mbit|gbit)$ ]] || { echo "local-slurm: --fault $fault: the rate must be tc's notation (100mbit, 1gbit)" >&2; exit 2; }
                [ -n "$LINK" ] || { echo "local-slurm: --fault $fault needs --link (a node's link exists only then)" >&2; exit 2; } ;;&
            storage) [ -n "$STORAGE" ] || { echo "local-slurm: --fault $fault needs --storage" >&2; exit 2; } ;;
            cpu) awk -v s="$value" 'BEGIN { exit !(s + 0 > 0 && s + 0 < 1) }' || { echo "local-slurm: --fault $fault: the share must be between 0 and 1 (0.5: half the node's CPUs)" >&2; exit 2; } ;;
        esac
    done
}

up() {
    while [ $# -gt 0 ]; do
        case "$1" in
            --link) LINK=${2:-}; shift 2 || true ;;
            --nodes) NODES=${2:-}; shift 2 || true ;;
            --cpus-per-node) CPUS=${2:-}; shift 2 || true ;;
            --storage) STORAGE=${2:-}; shift 2 || true ;;
            --fault) FAULTS+=("${2:-}"); shift 2 || true ;;
            *) echo "local-slurm: unknown option '$1' (allowed: --link RATE, --nodes N, --cpus-per-node C, --storage sshfs:FOLDER, --fault nI:KIND=VALUE)" >&2; exit 2 ;;
        esac
    done
    check_faults
    if [ -n "$STORAGE" ]; then
        [ -n "$LINK" ] || { echo "local-slurm: --storage needs --link (the storage server is a host on the emulated network)" >&2; exit 2; }
        [[ "$STORAGE" == sshfs:/* ]] || { echo "local-slurm: --storage must be sshfs:/absolute/folder, got '$STORAGE'" >&2; exit 2; }
        STORAGE=${STORAGE#sshfs:}
        [ -d "$STORAGE" ] || { echo "local-slurm: --storage folder $STORAGE does not exist" >&2; exit 2; }
        for tool in sshfs sshd ssh-keygen; do
            command -v "$tool" >/dev/null || { echo "local-slurm: --storage needs $tool (apt-get install sshfs openssh-server)" >&2; exit 1; }
        done
    fi
    [[ "$NODES" =~ ^[1-9][0-9]?$ ]] || { echo "local-slurm: --nodes must be 1..99, got '$NODES'" >&2; exit 2; }
    [[ "$CPUS" =~ ^[1-9][0-9]*$ ]] || { echo "local-slurm: --cpus-per-node must be >= 1, got '$CPUS'" >&2; exit 2; }
    if [ -n "$LINK" ] && ! [[ "$SUBNET" =~ ^(10|172\.(1[6-9]|2[0-9]|3[01])|192\.168)\.[0-9]{1,3}(\.[0-9]{1,3})?$ ]]; then
        echo "local-slurm: HPCBENCH_SLURM_SUBNET must be the first three octets of a private /24 (e.g. 10.213.0), got '$SUBNET'" >&2
        exit 2
    fi
    if [ -n "$LINK" ] && ! [[ "$LINK" =~ ^[0-9]+(\.[0-9]+)?(kbit|mbit|gbit)$ ]]; then
        echo "local-slurm: --link must be a rate such as 100mbit, 1gbit, 2.5gbit (tc's notation), got '$LINK'" >&2
        exit 2
    fi
    for tool in munged slurmctld slurmd scontrol sinfo; do
        command -v "$tool" >/dev/null || { echo "local-slurm: $tool not found (apt-get install slurm-wlm munge)" >&2; exit 1; }
    done
    down quiet
    [ -z "$LINK" ] || check_link_possible
    local first_port=$((CTLD_PORT + 184)) last_port=$((CTLD_PORT + 183 + NODES)) ports=$CTLD_PORT
    [ -n "$LINK" ] || ports="$CTLD_PORT $(seq "$first_port" "$last_port")"  # with --link, each slurmd listens in its own namespace
    for port in $ports; do  # a listener there means another Slurm (or anything) owns it
        if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
            echo "local-slurm: port $port is taken (another Slurm on this machine?); nothing started" >&2
            exit 1
        fi
    done
    set -E
    trap 'fail "failed: $BASH_COMMAND"' ERR
    mkdir -p "$DIR"/{munge,state,spool,log,tmp}
    chmod 755 "$DIR" "$DIR/munge"  # munged refuses a socket folder that others cannot traverse
    [ -z "$LINK" ] || network_up
    dd if=/dev/urandom bs=1024 count=1 of="$DIR/munge/munge.key" status=none
    chmod 400 "$DIR/munge/munge.key"
    munged --key-file="$DIR/munge/munge.key" --socket="$DIR/munge/munge.socket" \
        --pid-file="$DIR/munge/munged.pid" --log-file="$DIR/munge/munged.log" --seed-file="$DIR/munge/munge.seed" \
        || fail "munged did not start"
    {
        if [ -z "$LINK" ]; then
            echo "SlurmctldHost=localhost"
        else  # the nodes reach the controller at the bridge's address
            echo "SlurmctldHost=localhost($SUBNET.1)"
            echo "TaskProlog=$DIR/task-prolog.sh"
        fi
        cat <<CONF
ClusterName=hpcbench-local
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
CONF
        if [ -z "$LINK" ]; then
            echo "NodeName=n[1-$NODES] NodeHostname=localhost NodeAddr=127.0.0.1 Port=[$first_port-$last_port] CPUs=$CPUS RealMemory=2000"
        else
            for i in $(seq 1 "$NODES"); do
                echo "NodeName=n$i NodeHostname=n$i NodeAddr=$(node_address "$i") Port=6818 CPUs=$CPUS RealMemory=2000"
            done
        fi
        echo "PartitionName=debug Nodes=n[1-$NODES] Default=YES MaxTime=INFINITE State=UP"
    } > "$DIR/slurm.conf"
    for i in $(seq 1 "$NODES"); do mkdir -p "$DIR/spool/n$i" "$DIR/tmp/n$i"; done
    if [ -z "$LINK" ]; then
        # Both "nodes" are this host: Open MPI's shared-memory transport between ranks of different
        # nodes' daemons crashes (vader, in MPI_Finalize), and its TCP transport would pick interfaces
        # other nodes cannot reach. Loopback TCP is what a one-host cluster has.
        printf '%s\n' "export SLURM_CONF=$DIR/slurm.conf" "export OMPI_MCA_btl=self,tcp" \
            "export OMPI_MCA_btl_tcp_if_include=lo" > "$DIR/env"
    else
        # Separate hosts: each node's one NIC is eth0 (Open MPI leaves out loopback by itself).
        printf '%s\n' "export SLURM_CONF=$DIR/slurm.conf" "export OMPI_MCA_btl_tcp_if_include=eth0" \
            "export OMPI_MCA_oob_tcp_if_include=eth0" > "$DIR/env"
    fi
    export SLURM_CONF=$DIR/slurm.conf
    slurmctld -i || fail "slurmctld did not start (port $CTLD_PORT)"
    for i in $(seq 1 "$NODES"); do start_slurmd "$i" || fail "slurmd n$i did not start"; done
    for _ in $(seq 1 100); do  # nodes register within about a second
        if [ "$(sinfo -h -o '%t' -p debug 2>/dev/null | tr -d ' \n')" = "idle" ]; then
            trap - ERR
            echo "local-slurm: up, $NODES node(s) idle${LINK:+, linked at $LINK}; source $DIR/env"
            return 0
        fi
        sleep 0.2
    done
    fail "nodes did not become idle ($(sinfo -h -o '%n=%t' 2>/dev/null | tr '\n' ' '))"
}

down() {
    local pidfile pid kind name
    for pidfile in "$DIR"/slurmd-*.pid "$DIR/slurmctld.pid" "$DIR/munge/munged.pid" "$DIR/sshd.pid"; do
        pid=$(cat "$pidfile" 2>/dev/null) || continue  # absent, or removed by its daemon on the way out
        kill "$pid" 2>/dev/null || true
        for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -9 "$pid" 2>/dev/null || true
        rm -f "$pidfile"
    done
    if [ -f "$DIR/faults" ]; then  # the capped nodes' cgroups: empty once their daemons and tasks are gone
        while read -r kind name; do
            [ "$kind" != cgroup ] || { xargs -r kill -9 < "$name/cgroup.procs" 2>/dev/null || true; sleep 0.2; rmdir "$name" 2>/dev/null || true; }
        done < "$DIR/faults"
        rm -f "$DIR/faults"
    fi
    if [ -f "$DIR/network" ]; then  # what `up --link` made, newest first
        tac "$DIR/network" | while read -r kind name; do
            case "$kind" in
                netns)  # any job process still in it goes with it
                    ip netns pids "$name" 2>/dev/null | xargs -r kill -9 2>/dev/null || true
                    ip netns del "$name" 2>/dev/null || true ;;
                link) ip link del "$name" 2>/dev/null || true ;;
            esac
        done
        rm -f "$DIR/network" "$DIR/hosts" "$DIR/task-prolog.sh"
        rm -rf "$DIR/ssh"
    fi
    [ "${1:-}" = quiet ] || echo "local-slurm: down"
}

SELF=$(readlink -f "$0")
case "${1:-}" in
    up) shift; up "$@" ;;
    mount_storage) STORAGE=$HPCBENCH_STORAGE mount_storage ;;  # internal: each node's start runs it inside its namespaces
    down) down ;;
    status)  # "down" when no controller runs (sinfo would print munge's or the connection's error instead)
        pid=$(cat "$DIR/slurmctld.pid" 2>/dev/null) && kill -0 "$pid" 2>/dev/null \
            && SLURM_CONF=$DIR/slurm.conf sinfo || { echo "local-slurm: down"; exit 3; } ;;
    *) echo "usage: $0 up [--link RATE] [--nodes N] [--cpus-per-node C] [--storage sshfs:FOLDER] [--fault nI:KIND=VALUE] | down | status" >&2; exit 2 ;;
esac
