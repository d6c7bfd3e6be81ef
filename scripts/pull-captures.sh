#!/usr/bin/env bash
# Copies the faces captured at the door (`lock-daemon ctl capture NAME`) from the lock to
# this workstation, into images/NAME/, ready for `trainer train`.
#
#   scripts/pull-captures.sh [--images DIR] [--dir CAPTURE_DIR] [--remove] HOST [NAME...]
#
# HOST is what ssh takes (pi@door-lock.local). Without NAMEs, every person captured is
# copied. Files already in images/NAME/ are kept, never overwritten. With --remove, each
# person's captures are deleted from the lock once they are all here (the lock's
# capture directory has a file limit, capture.max_files). Reading the capture directory
# (0700, owned by the service user) needs sudo on the lock.
set -euo pipefail

images=images
dir=/var/lib/facelock/captures
remove=false
usage() { sed -n '5,11p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }
while (($#)); do
    case $1 in
        --images) images=${2:?--images needs a directory}; shift 2 ;;
        --dir) dir=${2:?--dir needs the capture directory of the lock}; shift 2 ;;
        --remove) remove=true; shift ;;
        -h|--help) usage ;;
        -*) echo "pull-captures: unknown option $1" >&2; usage ;;
        *) break ;;
    esac
done
(($#)) || usage
host=$1
shift
for name in "$@"; do
    case $name in
        ''|.*|*/*) echo "pull-captures: $name is not a person's folder name" >&2; exit 2 ;;
    esac
done

remote() { ssh -o BatchMode=yes "$host" "$@"; }
quoted_dir=$(printf %q "$dir")
if (($# == 0)); then
    mapfile -t names < <(remote "sudo find $quoted_dir -mindepth 1 -maxdepth 1 -type d -printf '%f\n'" | sort)
    if ((${#names[@]} == 0)); then
        echo "no captures on $host in $dir"
        exit 0
    fi
else
    names=("$@")
fi

mkdir -p "$images"
status=0
for name in "${names[@]}"; do
    quoted=$(printf %q "$name")
    mkdir -p "$images/$name"
    before=$(find "$images/$name" -maxdepth 1 -type f | wc -l)
    # Only finished files (the lock writes .NAME.tmp first, then renames).
    if ! remote "sudo tar -C $quoted_dir/$quoted --exclude='./.*' -cf - ." \
        | tar -C "$images/$name" --skip-old-files --no-same-owner -xf -; then
        echo "pull-captures: copying $name from $host failed; nothing was removed there" >&2
        status=1
        continue
    fi
    after=$(find "$images/$name" -maxdepth 1 -type f | wc -l)
    there=$(remote "sudo find $quoted_dir/$quoted -maxdepth 1 -type f ! -name '.*'" | wc -l)
    echo "$name: $((after - before)) new photos in $images/$name ($after in all; $there on the lock)"
    if $remove; then
        # Every file on the lock must now be here, under the same name.
        missing=0
        while IFS= read -r file; do
            [[ -f $images/$name/$file ]] || missing=$((missing + 1))
        done < <(remote "sudo find $quoted_dir/$quoted -maxdepth 1 -type f ! -name '.*' -printf '%f\n'")
        if ((missing)); then
            echo "pull-captures: $missing of $name's files did not arrive; kept them on the lock" >&2
            status=1
        else
            remote "sudo rm -rf -- $quoted_dir/$quoted"
            echo "$name: removed from the lock"
        fi
    fi
done
if ((status == 0)); then
    echo "next: check the photos (trainer people $images), train (trainer train $images ...)," \
         "and copy the classifier to the lock (README, \"Enrolling people\")"
fi
exit $status
