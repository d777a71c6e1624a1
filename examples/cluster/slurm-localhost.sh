#!/bin/bash
# A one-node Slurm cluster on this machine (Debian/Ubuntu, as root), for trying the array script
# and for the test that submits to a real Slurm (tests/test_shard.py, HLBENCH_TEST_SLURM=1):
#
#   apt-get install -y --no-install-recommends slurm-wlm munge   # ~40 s
#   examples/cluster/slurm-localhost.sh                          # starts munged, slurmctld, slurmd
#   HLBENCH_TEST_SLURM=1 python -m pytest tests/test_shard.py -k real_slurm
#
# No cgroups, no accounting, no GPUs: processes are tracked by /proc, which a container allows.
set -euo pipefail

HOST=$(hostname -s)
CPUS=$(nproc)
# slurmd would refuse a node that claims more memory than it has: give the real figure, in MB
MEM_MB=$(awk '/MemTotal/ {print int($2 / 1024 * 0.9)}' /proc/meminfo)

mkdir -p /etc/slurm /var/lib/slurm/slurmctld /var/lib/slurm/slurmd /var/log/slurm /run/munge
cat > /etc/slurm/slurm.conf <<CONF
ClusterName=localhost
SlurmctldHost=${HOST}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SchedulerType=sched/builtin
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ReturnToService=2
StateSaveLocation=/var/lib/slurm/slurmctld
SlurmdSpoolDir=/var/lib/slurm/slurmd
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
NodeName=${HOST} CPUs=${CPUS} RealMemory=${MEM_MB} State=UNKNOWN
PartitionName=local Nodes=ALL Default=YES MaxTime=INFINITE State=UP OverSubscribe=FORCE:4
CONF

[[ -s /etc/munge/munge.key ]] || mungekey --create
chown -R munge:munge /etc/munge /run/munge 2>/dev/null || true
pgrep -x munged >/dev/null || su -s /bin/sh munge -c munged 2>/dev/null || munged --force
pgrep -x slurmctld >/dev/null || slurmctld
pgrep -x slurmd >/dev/null || slurmd
for _ in $(seq 30); do   # until the node reports in
    if sinfo -h -o %T 2>/dev/null | grep -qE '^(idle|mixed|allocated)'; then
        sinfo
        exit 0
    fi
    sleep 1
done
echo "slurm-localhost: the node did not come up; see /var/log/slurm/" >&2
exit 1
