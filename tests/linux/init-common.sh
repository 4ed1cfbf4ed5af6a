# Sourced by the stages' /init scripts (tests/linux/init.sh,
# tests/linux/optee-init.sh): the mounts, the check counters and helpers, and
# the module loading every Linux stage starts with. The xtask puts it at
# /etc/init-common.sh in every initramfs it builds (linux::initramfs_for).

/bin/busybox mkdir -p /proc /sys /dev /tmp /bin /sbin /usr/bin /usr/sbin
/bin/busybox --install -s
export PATH=/bin:/sbin:/usr/bin:/usr/sbin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
# From here on only emergency kernel messages reach the console, so that kernel
# lines never split a check line; the rest is read back with dmesg.
echo 1 > /proc/sys/kernel/printk

passed=0
failed=0
pass() {
    echo "PASS $1"
    passed=$((passed + 1))
}
fail() {
    echo "FAIL $1: $2"
    failed=$((failed + 1))
}
# One line from many: kernel timestamps dropped, lines joined with "; ".
oneline() {
    awk '{ sub(/^\[[^]]*\] /, ""); printf "%s%s", (NR > 1 ? "; " : ""), $0 }'
}
is_loaded() {
    grep -q "^$(echo "$1" | tr - _) " /proc/modules
}
# The modules in /etc/modules (dependency order, written by the xtask), one
# check each.
load_modules() {
    while read -r m; do
        [ -n "$m" ] || continue
        out=$(insmod "/lib/modules/$m.ko" 2>&1 | oneline)
        if is_loaded "$m"; then
            pass "module-$m"
        else
            fail "module-$m" "insmod /lib/modules/$m.ko did not load it: ${out:-no message}"
        fi
    done < /etc/modules
}
