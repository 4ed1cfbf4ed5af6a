#!/bin/sh
# /init of the `optee` stage (`cargo xtask test --stage optee`, built by
# xtask/src/optee.rs). Runs as PID 1 under Debian's Linux 7.2 over TF-A, our
# SPMC and OP-TEE OS as the secure partition. Loads the modules in
# /etc/modules (FF-A, tee, optee), checks that the optee driver found OP-TEE
# through FF-A, then runs our client (/bin/optee-client) once on every core.
# One line per check (`PASS <name>` / `FAIL <name>: <why>`), then
# `optee: N passed, M failed`, then power-off. Never prints the word that
# kernel crashes print (the xtask fails the stage on it).

. /etc/init-common.sh

cpus=$(grep -c ^processor /proc/cpuinfo)
echo "init: Linux $(uname -r) on $cpus CPU(s)"

load_modules

# The stage's benchmark boot (`optee_bench` on the command line, QEMU
# under -icount shift=0, one core): only the client's timed invokes.
if grep -q optee_bench /proc/cmdline; then
    /bin/optee-client bench
    poweroff -f
fi

log=$(dmesg)
echo "$log" | grep -E 'ARM FF-A|arm-ffa|optee|tee' | sed 's/^/dmesg: /'

# The driver's FF-A probe (drivers/tee/optee/ffa_abi.c) prints the OP-TEE
# revision it asked for and "initialized driver" once it works.
if echo "$log" | grep -q 'optee: initialized driver'; then
    pass optee-driver-initialized
else
    fail optee-driver-initialized "no \"optee: initialized driver\" in dmesg"
fi
if [ -c /dev/tee0 ]; then
    pass optee-dev-tee0
else
    fail optee-dev-tee0 "no /dev/tee0"
fi

# Our client on every core: session, values, shared memory, close.
cpu=0
while [ "$cpu" -lt "$cpus" ]; do
    out=$(/bin/optee-client "$cpu" 2>&1)
    echo "$out" | grep -E '^(PASS|FAIL) ' > /tmp/lines
    p=$(grep -c '^PASS ' /tmp/lines)
    f=$(grep -c '^FAIL ' /tmp/lines)
    cat /tmp/lines
    passed=$((passed + p))
    failed=$((failed + f))
    if [ "$p" -lt 5 ] && [ "$f" -eq 0 ]; then
        fail "optee-client-cpu$cpu" "the client stopped early: $(echo "$out" | oneline)"
    fi
    cpu=$((cpu + 1))
done
dmesg | grep -E 'optee' | tail -n 5 | sed 's/^/dmesg: /'

echo "optee: $passed passed, $failed failed"
poweroff -f
