#!/bin/sh
# /init of the `linux` stage (`cargo xtask test --linux`, built by xtask/src/linux.rs).
#
# Runs as PID 1 under Debian's Linux 7.2, booted in the normal world over TF-A and
# our SPMC. It loads the modules listed in /etc/modules (dependency order, written
# by the xtask), then prints one line per check:
#     PASS <name>
#     FAIL <name>: <why>
# and, last, `linux: N passed, M failed`; then it powers the machine off.
# Other lines start with "init: ", "dmesg: " or "partition: ". The xtask fails the
# stage on a line containing the word that kernel crashes print, so this script
# never prints that word itself.

. /etc/init-common.sh

TPM_UUID=17b862a4-1806-4faf-86b3-089a58353861
# The FF-A status behind a Linux errno, as the FF-A driver maps them.
ffa_status() {
    case "$1" in
    95) echo "EOPNOTSUPP, the driver's name for FF-A NOT_SUPPORTED" ;;
    22) echo "EINVAL, the driver's name for FF-A INVALID_PARAMETERS" ;;
    12) echo "ENOMEM, the driver's name for FF-A NO_MEMORY" ;;
    16) echo "EBUSY, the driver's name for FF-A BUSY" ;;
    13) echo "EACCES, the driver's name for FF-A DENIED" ;;
    11) echo "EAGAIN, the driver's name for FF-A RETRY or NOT_READY" ;;
    125) echo "ECANCELED, the driver's name for FF-A ABORTED" ;;
    61) echo "ENODATA, the driver's name for FF-A NO_DATA" ;;
    esac
}

echo "init: Linux $(uname -r) on $(grep -c ^processor /proc/cpuinfo) CPU(s), command line: $(cat /proc/cmdline)"

# --- modules, in dependency order -------------------------------------------
load_modules

log=$(dmesg)
# The FF-A and TPM lines of the kernel log, for the CI log.
echo "$log" | grep -E 'ARM FF-A|arm-ffa|arm_ffa|CRB_FFA|ffa-crb|tpm|TPM' | sed 's/^/dmesg: /'
ffa_log=$(echo "$log" | grep -E 'ARM FF-A: |arm-ffa arm-ffa: ')

# --- FF-A version negotiation -------------------------------------------------
if echo "$ffa_log" | grep -q 'ARM FF-A: Driver version 1\.2$'; then
    pass ffa-driver-version-1.2
else
    got=$(echo "$ffa_log" | grep 'Driver version' | oneline)
    fail ffa-driver-version-1.2 "no \"ARM FF-A: Driver version 1.2\" in dmesg (got: ${got:-nothing})"
fi
if echo "$ffa_log" | grep -q 'ARM FF-A: Firmware version 1\.2 found$'; then
    pass ffa-firmware-version-1.2
else
    got=$(echo "$ffa_log" | grep -E 'Firmware version|Incompatible|Compatibility' | oneline)
    fail ffa-firmware-version-1.2 "no \"ARM FF-A: Firmware version 1.2 found\" in dmesg (got: ${got:-nothing})"
fi

# --- the FF-A driver's probe: RXTX_MAP, features, partition discovery --------
probed=no
if [ -e /sys/bus/platform/devices/arm-ffa/driver ]; then
    probed=yes
    pass ffa-probe
elif [ -e /sys/bus/platform/devices/arm-ffa ]; then
    why=$(echo "$ffa_log" | grep -vE 'Driver version|Firmware version' | oneline)
    errno=$(echo "$why" | sed -n 's/.*failed with error -\([0-9]*\).*/\1/p')
    hint=$(ffa_status "$errno")
    fail ffa-probe "the arm-ffa device has no driver bound, its probe failed: ${why:-no FF-A error in dmesg}${hint:+ (-$errno is $hint)}"
else
    fail ffa-probe "no arm-ffa platform device (ffa-module not loaded)"
fi

# --- the partitions the SPMC reports ------------------------------------------
count=0
tpm_dev=""
for d in /sys/bus/arm_ffa/devices/*; do
    [ -e "$d" ] || continue
    count=$((count + 1))
    uuid=$(cat "$d/uuid" 2>/dev/null)
    driver=none
    [ -e "$d/driver" ] && driver=$(basename "$(readlink "$d/driver")")
    echo "partition: $(basename "$d") id $(cat "$d/partition_id" 2>/dev/null) uuid ${uuid:-?} driver $driver"
    [ "$uuid" = "$TPM_UUID" ] && tpm_dev=$d
done
echo "init: $count FF-A partition device(s) under /sys/bus/arm_ffa/devices"
if [ "$count" -gt 0 ]; then
    pass ffa-partitions
elif [ ! -d /sys/bus/arm_ffa/devices ]; then
    fail ffa-partitions "no /sys/bus/arm_ffa (ffa-core not loaded)"
elif [ "$probed" = no ]; then
    fail ffa-partitions "/sys/bus/arm_ffa/devices is empty: the FF-A driver's probe failed before partition discovery (see ffa-probe)"
else
    fail ffa-partitions "/sys/bus/arm_ffa/devices is empty: the SPMC reported no partition"
fi

# --- the TPM service partition and tpm_crb_ffa --------------------------------
if [ -z "$tpm_dev" ]; then
    fail tpm-partition-bound "no FF-A partition with the TPM service UUID $TPM_UUID under /sys/bus/arm_ffa/devices"
elif [ "$(basename "$(readlink "$tpm_dev/driver" 2>/dev/null)")" = ffa-crb ]; then
    pass tpm-partition-bound
else
    fail tpm-partition-bound "$(basename "$tpm_dev") has the TPM service UUID but is not bound to ffa-crb (tpm_crb_ffa)"
fi
crb_log=$(echo "$log" | grep -E 'CRB_FFA: |ffa-crb ')
if echo "$crb_log" | grep -q 'ABI version 1\.0$'; then
    pass tpm-crb-ffa-abi-1.0
else
    why=$(echo "$crb_log" | oneline)
    fail tpm-crb-ffa-abi-1.0 "no \"ABI version 1.0\" from tpm_crb_ffa in dmesg (${why:-its probe never ran: no partition bound to ffa-crb})"
fi

# --- notifications: the schedule receiver interrupt ------------------------------
# The driver created its bitmap and requested the SGI FFA_FEATURES reported
# (a per-CPU interrupt named after the driver). Answering tpm_crb_ffa's
# interface-version request, the TPM partition sent Linux an indirect message
# with the "delay SRI" flag: the SPMC raised the SRI as the answer returned, and
# the driver's handler (INFO_GET, GET, "RX buffer full", RX_RELEASE) ran.
ntf_err=$(echo "$ffa_log" | grep -iE 'notification|schedule receiver|Notif|IRQ mapping' | oneline)
sri_line=$(grep -iE 'ARM-FFA|ffa' /proc/interrupts | head -n 1)
echo "init: SRI in /proc/interrupts: ${sri_line:-none}"
if [ -n "$sri_line" ] && ! echo "$ntf_err" | grep -qiE 'error|fail|not supported'; then
    pass ffa-notifications-sri-registered
else
    fail ffa-notifications-sri-registered "no FF-A interrupt in /proc/interrupts (kernel log: ${ntf_err:-nothing about notifications})"
fi
ncpu=$(grep -c ^processor /proc/cpuinfo)
sri_count=$(echo "$sri_line" | awk -v n="$ncpu" '{ s = 0; for (i = 2; i <= n + 1; i++) s += $i; print s }')
if [ -n "$sri_line" ] && [ "${sri_count:-0}" -gt 0 ]; then
    pass ffa-notification-received
else
    fail ffa-notification-received "the schedule receiver interrupt never arrived (count ${sri_count:-none}) although the TPM partition sent an indirect message with the RX-full notification"
fi

echo "linux: $passed passed, $failed failed"
# Let the UART drain before the power goes.
sleep 1
poweroff -f
