#!/usr/bin/env bash
# The include rules of the source tree (docs/hacking.md, "Layers"), checked
# by `make lint`. Each folder may include headers from the folders listed
# for it and nothing else; a quoted include that resolves only in another
# folder of the tree is an error. The build enforces the same rules through
# each library's include path (Makefile.am); this check also refuses a
# path in an include ("../chat/x.h"), which the include path would not.
#
# Usage: scripts/check-layers.sh [SRCDIR]   (exit 1 on any violation)
set -u
cd "${1:-$(dirname "$0")/..}" || exit 2

# folder -> folders it may include from (its own first)
allowed() {
    case $1 in
    common) echo "common" ;;
    gateway) echo "gateway gateway/net gateway/store gateway/chat common" ;;  # main.c, options
    gateway/net) echo "gateway/net gateway common" ;;
    gateway/store) echo "gateway/store gateway common" ;;
    gateway/chat) echo "gateway/chat gateway/net gateway/store gateway common" ;;
    archiver) echo "archiver common" ;;
    *) return 1 ;;
    esac
}
# Headers private to a folder: nothing outside it may include them.
private_to() {
    case $1 in
    net_private.h) echo gateway/net ;;
    chat.h) echo gateway/chat ;;
    esac
}
# gateway/ itself may hold only main.c and options.[ch]: options.h is the
# one header of gateway/ that the layers below read.
root_ok() { case $1 in options.h) return 0 ;; esac; return 1; }

fail=0
for f in common/*.[ch] gateway/*.[ch] gateway/*/*.[ch] archiver/*.[ch]; do
    [ -f "$f" ] || continue
    dir=$(dirname "$f")
    if ! dirs=$(allowed "$dir"); then
        echo "$f: folder $dir has no include rule (add it to scripts/check-layers.sh)"
        fail=1
        continue
    fi
    while IFS=: read -r line inc; do
        hdr=$(sed -E 's/^#include "([^"]+)".*/\1/' <<<"$inc")
        case $hdr in
        */*)
            echo "$f:$line: include \"$hdr\" names a path; include headers by name (the layer's include path finds them)"
            fail=1
            continue
            ;;
        esac
        found=
        for d in $dirs; do
            if [ -f "$d/$hdr" ]; then found=$d; break; fi
        done
        if [ -z "$found" ]; then
            # not in an allowed folder: is it somewhere else in the tree?
            where=$(ls common/"$hdr" gateway/"$hdr" gateway/*/"$hdr" archiver/"$hdr" 2>/dev/null | head -1)
            if [ -n "$where" ] && [ -f "$where" ]; then
                echo "$f:$line: includes $where, but $dir may include only from: $dirs"
                fail=1
            fi
            continue
        fi
        if [ "$found" = gateway ] && [ "$dir" != gateway ] && ! root_ok "$hdr"; then
            echo "$f:$line: includes gateway/$hdr; the layers may include only gateway/options.h from gateway/"
            fail=1
        fi
        owner=$(private_to "$(basename "$hdr")")
        if [ -n "$owner" ] && [ "$dir" != "$owner" ] && [ "$found" = "$owner" ]; then
            echo "$f:$line: includes $owner/$(basename "$hdr"), which is private to $owner"
            fail=1
        fi
    done < <(grep -n '^#include "' "$f")
done
[ $fail -eq 0 ] && echo "check-layers: include rules hold"
exit $fail
