#!/bin/sh
# What people run instead of converge: a loop that looks at every service's stack and puts back
# what is missing. OpenSVC's agent, for each resource of each service, runs `drbdadm role` and
# `drbdadm dstate` (its drbd driver), reads the mount table (fs driver) and runs `vzctl status`
# (vz driver); a cron'd shell script an operator writes does the same, one service after the
# other. This is that script, written as an operator would: plain POSIX sh, one program per
# question, no batching, no state kept between passes. It is the yardstick of
# benches/loop_compare.rs, which runs it beside converge on the same simulated node.
#
# Why it looks the way it does:
# - Each service is checked bottom-up (DRBD, then the filesystem, then the container), and a
#   layer that cannot be put right stops the checks above it, as OpenSVC's start does.
# - `drbdadm role` and `drbdadm dstate` per resource, as OpenSVC's drbd driver asks; each is a
#   drbdadm (which parses the whole DRBD configuration) and a drbdsetup.
# - The mount table is read with one `grep` per service on /proc/self/mounts: the usual idiom.
#   `-F` because mount points hold dots; the spaces around the mount point keep /srv/a from
#   matching /srv/ab.
# - `e2fsck -p` before `mount`, as OpenSVC's fs driver and converge both do; `mount -w` so that a
#   device that is not writable (DRBD Secondary) makes the mount fail instead of quietly falling
#   back to read-only, which would then block the promotion for good.
# - Nothing is forced: no `--force` on a promotion, no promotion without UpToDate local data.
# - Corrections are logged; a pass that finds everything in place prints nothing.
#
# Usage: shell_loop.sh LIST [INTERVAL]
#   LIST      one service per line: DRBD resource, device, mount point, container id
#             (blank lines and lines starting with # are skipped)
#   INTERVAL  seconds to sleep between passes (`while sleep N`), default 10; `once` runs one
#             pass and exits, as a cron'd script does each minute.
#
# It needs `drbdadm`, `e2fsck`, `mount` and `vzctl` in PATH; the bench points PATH at the DRBD
# and OpenVZ simulators.

set -u

list=${1:?usage: shell_loop.sh LIST [INTERVAL|once]}
interval=${2:-10}

log() {
    printf '%s\n' "shell-loop: $*"
}

# One service, bottom-up. Returns at the first layer that is not right and cannot be made so.
check_service() {
    res=$1 dev=$2 mnt=$3 ctid=$4

    if ! role=$(drbdadm role "$res" 2>/dev/null); then
        log "$res: not up; drbdadm up"
        drbdadm up "$res" || return 1
        role=$(drbdadm role "$res" 2>/dev/null) || return 1
    fi
    if [ "$role" != Primary ]; then
        dstate=$(drbdadm dstate "$res" 2>/dev/null) || return 1
        case $dstate in
            UpToDate*) ;;
            *)
                log "$res: local disk $dstate, not promoting"
                return 1
                ;;
        esac
        log "$res: $role; drbdadm primary"
        drbdadm primary "$res" || return 1
    else
        # Asked even when all is well: OpenSVC's status reports the disk state too, and a
        # Primary on a failed disk is a warning an operator wants to see.
        dstate=$(drbdadm dstate "$res" 2>/dev/null) || return 1
        case $dstate in
            UpToDate*) ;;
            *) log "$res: Primary with local disk $dstate" ;;
        esac
    fi

    if ! grep -qF -- " $mnt " /proc/self/mounts; then
        log "$mnt: not mounted; e2fsck and mount $dev"
        e2fsck -p "$dev" >/dev/null
        # e2fsck -p: 1 means errors corrected, which is fine to mount.
        rc=$?
        [ "$rc" -le 1 ] || return 1
        mount -w "$dev" "$mnt" || return 1
    fi

    status=$(vzctl status "$ctid" 2>/dev/null) || return 1
    case $status in
        *" running"*) ;;
        *)
            log "container $ctid: $status; vzctl start"
            vzctl start "$ctid" >/dev/null || return 1
            ;;
    esac
    return 0
}

# The list is read on descriptor 3: a program of the loop that reads its standard input would
# otherwise eat the rest of the list.
pass() {
    while read -r res dev mnt ctid <&3; do
        case $res in
            '' | '#'*) continue ;;
        esac
        check_service "$res" "$dev" "$mnt" "$ctid" || log "$res: left as it is until the next pass"
    done 3<"$list"
}

if [ "$interval" = once ]; then
    pass
    exit 0
fi

while :; do
    pass
    sleep "$interval"
done
