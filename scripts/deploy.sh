#!/usr/bin/env bash
# Copies what the workstation made to the lock: a Raspberry Pi with the facelock package.
#
#   --models DIR       ONNX models + manifest.json (models/fetch.sh writes them to
#                      ~/.cache/facelock/models)          -> /var/lib/facelock/models/
#   --classifier FILE  the classifier (`trainer train ... --sign KEY`)
#                                                         -> /var/lib/facelock/classifier.onnx
#   --key PUB          the public half of the signing key (`trainer keygen`)
#                                                         -> /etc/facelock/trusted.pub
#
# The running daemon is not restarted for a new classifier: the file is uploaded under a
# temporary name in /var/lib/facelock and renamed over classifier.onnx on the Pi, so the
# daemon's file watcher (inode, size, mtime, polled every second) sees one complete new
# file and reloads it; the script then reads the audit log to report whether the lock
# accepted or refused it. Only new *models* need a restart (they are loaded at start); the
# script does that itself. If the service is not running yet (first deployment), it is
# started.
#
# Files go over rsync (only changed models are sent), or scp when rsync is missing on
# either side. The remote side needs root: log in as root, or as a user with passwordless
# sudo (the Raspberry Pi OS default user has it).
#
# Usage: scripts/deploy.sh PI_HOST [--models DIR] [--classifier FILE] [--key PUB]
#                          [--ssh-port N] [--no-rsync] [--dry-run]
#   PI_HOST   anything ssh accepts: pi@door.local, an alias from ~/.ssh/config, ...
#   --dry-run print the commands instead of running them (nothing is contacted)
set -euo pipefail

MODEL_DIR=/var/lib/facelock/models
CLASSIFIER=/var/lib/facelock/classifier.onnx
KEY=/etc/facelock/trusted.pub
CONFIG=/etc/facelock/lock-daemon.toml
UNIT=lock-daemon.service

usage() {
    sed -n '/^# Usage:/,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//' >&2
    exit 2
}
die() {
    echo "deploy.sh: $*" >&2
    exit 1
}
say() { echo "deploy.sh: $*"; }

host="" models="" classifier="" key="" port="" dry_run=false use_rsync=true
while (($#)); do
    case "$1" in
        --models) models=${2:?--models needs a directory}; shift 2 ;;
        --classifier) classifier=${2:?--classifier needs a file}; shift 2 ;;
        --key) key=${2:?--key needs a file}; shift 2 ;;
        --ssh-port) port=${2:?--ssh-port needs a number}; shift 2 ;;
        --no-rsync) use_rsync=false; shift ;;
        --dry-run) dry_run=true; shift ;;
        -h | --help) usage ;;
        -*) echo "deploy.sh: unknown option $1" >&2; usage ;;
        *) [[ -z $host ]] || usage; host=$1; shift ;;
    esac
done
[[ -n $host ]] || usage
[[ -n $models$classifier$key ]] || die "nothing to deploy: give --models, --classifier and/or --key"

# --- Local checks, before anything is contacted --------------------------------------------
if [[ -n $models ]]; then
    [[ -f $models/manifest.json ]] || die "$models/manifest.json missing (run models/fetch.sh; models live in \${FACELOCK_CACHE:-~/.cache/facelock}/models)"
    # Every network the manifest names must be there (the daemon checks their sha256).
    # Exactly the files it names are copied: the networks and FaceNet's weight file.
    model_files=(manifest.json)
    for f in $(grep -o '"[A-Za-z0-9_.-]*\.onnx\(\.data\)\?"' "$models/manifest.json" | tr -d '"' | sort -u); do
        [[ -f $models/$f ]] || die "$models/$f is named in manifest.json but missing"
        model_files+=("$f")
    done
fi
if [[ -n $classifier ]]; then
    [[ -s $classifier ]] || die "classifier $classifier missing or empty (trainer train -o FILE)"
fi
if [[ -n $key ]]; then
    grep -q 'BEGIN PUBLIC KEY' "$key" 2>/dev/null ||
        die "$key is not a PEM public key (trainer keygen writes facelock-signing.pub; never copy the .key)"
fi

# --- Remote execution ------------------------------------------------------------------------
# One SSH connection, multiplexed: one login for every step below.
ctl=$(mktemp -d "${TMPDIR:-/tmp}/facelock-deploy.XXXXXX")
ssh_opts=(-o ControlMaster=auto -o "ControlPath=$ctl/%C" -o ControlPersist=60 -o BatchMode=yes)
[[ -z $port ]] || ssh_opts+=(-p "$port")
cleanup() {
    $dry_run || ssh "${ssh_opts[@]}" -O exit "$host" 2>/dev/null || true
    rm -rf "$ctl"
}
trap cleanup EXIT

quote() { printf '%q ' "$@"; }
# Runs a command locally (prints it first).
run() {
    echo "+ $(quote "$@")"
    $dry_run || "$@"
}
# Runs a shell command on the Pi, as root. The command is one string, quoted for the remote
# shell; `sudo -n` fails instead of prompting when sudo wants a password.
remote() {
    echo "+ ssh $host $sudo sh -c $(printf '%q' "$1")"
    $dry_run || ssh "${ssh_opts[@]}" "$host" "$sudo sh -c $(printf '%q' "$1")"
}
# Asks the Pi something (as root); under --dry-run prints the question, answers $2.
query() {
    if $dry_run; then
        echo "+ ssh $host $sudo sh -c $(printf '%q' "$1")   # (dry run: assuming '$2')" >&2
        echo "$2"
    else
        ssh "${ssh_opts[@]}" "$host" "$sudo sh -c $(printf '%q' "$1")"
    fi
}

sudo=""
if $dry_run; then
    say "dry run: printing the commands for $host; nothing is contacted"
    sudo="sudo -n"
else
    uid=$(ssh "${ssh_opts[@]}" "$host" 'id -u') || die "cannot log in to $host with ssh (keys only: BatchMode=yes)"
    if [[ $uid != 0 ]]; then
        sudo="sudo -n"
        ssh "${ssh_opts[@]}" "$host" 'sudo -n true' 2>/dev/null ||
            die "$host: the ssh user needs passwordless sudo (or log in as root)"
    fi
fi
[[ -n $sudo ]] && rsync_path="sudo -n rsync" || rsync_path="rsync"

query "test -x /usr/bin/lock-daemon && test -d /var/lib/facelock && test -d /etc/facelock" yes >/dev/null ||
    die "$host has no facelock package (install facelock_*_arm64.deb from scripts/package.sh first)"

if $use_rsync && ! command -v rsync >/dev/null; then
    say "rsync is not installed here: using scp"
    use_rsync=false
fi
if $use_rsync && [[ $(query "command -v rsync >/dev/null && echo yes || echo no" yes) != yes ]]; then
    say "rsync is not installed on $host: using scp"
    use_rsync=false
fi
ssh_cmd="ssh $(quote "${ssh_opts[@]}")"

# The paths the configuration on the Pi uses must be the ones written here.
conf_value() { # KEY DEFAULT: the first `KEY = "..."` of the Pi's configuration
    query "sed -n 's/^[[:space:]]*$1[[:space:]]*=[[:space:]]*\"\\([^\"]*\\)\".*/\\1/p' $CONFIG | head -n 1" "$2"
}
if [[ -n $models ]] && [[ $(conf_value model_dir "$MODEL_DIR") != "$MODEL_DIR" ]]; then
    say "WARNING: recognition.model_dir in $host:$CONFIG is not $MODEL_DIR; the daemon will not use these models"
fi
if [[ -n $classifier ]] && [[ $(conf_value classifier "$CLASSIFIER") != "$CLASSIFIER" ]]; then
    say "WARNING: recognition.classifier in $host:$CONFIG is not $CLASSIFIER; the daemon will not see this file"
fi
key_conf=$(conf_value trusted_key "$KEY")
if [[ -n $key && $key_conf != "$KEY" ]]; then
    say "WARNING: security.trusted_key in $host:$CONFIG is not $KEY; signatures are not checked with this key"
fi
if [[ -z $key && $key_conf == "$KEY" && -n $classifier ]] &&
    [[ $(query "test -s $KEY && echo yes || echo no" yes) != yes ]]; then
    die "$host requires signed classifiers (security.trusted_key = $KEY) but has no key there: add --key facelock-signing.pub"
fi

# Puts local FILE at remote DEST: uploaded as DIR/.NAME.deploy next to DEST, made root-owned
# 0644, then renamed over DEST. rename(2) within one directory is atomic: whoever opens DEST
# gets the old file or the new one, never a partial copy. (A temporary in /tmp would not
# do: across file systems `mv` copies.)
install_file() {
    local file=$1 dest=$2 tmp
    tmp="$(dirname "$dest")/.$(basename "$dest").deploy"
    if $use_rsync; then
        run rsync -t --chmod=F0644 --rsync-path="$rsync_path" -e "$ssh_cmd" "$file" "$host:$tmp"
        remote "chown root:root $tmp && mv -f $tmp $dest"
    else
        run scp "${ssh_opts[@]/#-p/-P}" "$file" "$host:$staging/$(basename "$dest")"
        remote "install -m 0644 -o root -g root $staging/$(basename "$dest") $tmp && mv -f $tmp $dest"
    fi
}

staging=""
if ! $use_rsync; then
    # scp writes as the ssh user: stage in a private directory on the Pi, then install.
    if $dry_run; then
        staging=/tmp/facelock-deploy.XXXXXX
    else
        staging=$(ssh "${ssh_opts[@]}" "$host" 'mktemp -d /tmp/facelock-deploy.XXXXXX')
        trap 'ssh "${ssh_opts[@]}" "$host" "rm -rf $staging" 2>/dev/null || true; cleanup' EXIT
    fi
fi

# --- State before ----------------------------------------------------------------------------
systemd=$(query "test -d /run/systemd/system && echo yes || echo no" yes)
if [[ $systemd == yes ]]; then
    active=$(query "systemctl is-active --quiet $UNIT && echo yes || echo no" yes)
else
    # No systemd (a container, a test machine): a daemon started some other way counts.
    active=$(query "pgrep -x lock-daemon >/dev/null && echo yes || echo no" yes)
fi
audit=$(conf_value log /var/log/facelock/audit.jsonl)
audit_lines=$(query "cat $audit 2>/dev/null | wc -l" 0)
models_changed=no

# --- 1. Models (first: a new classifier may need them) ---------------------------------------
if [[ -n $models ]]; then
    local_sum=$(sha256sum "$models/manifest.json" | cut -d' ' -f1)
    remote_sum=$(query "sha256sum $MODEL_DIR/manifest.json 2>/dev/null | cut -d' ' -f1" "(unknown)")
    if [[ $local_sum != "$remote_sum" ]]; then
        models_changed=yes
        say "models: copying ${#model_files[@]} files to $host:$MODEL_DIR"
        remote "install -d -m 0755 -o root -g root $MODEL_DIR"
        if $use_rsync; then
            # Only changed files travel; --delay-updates renames them all into place at the end.
            # rsync runs as root on the Pi, so the files are root's.
            run rsync -t --checksum --delay-updates --chmod=F0644 --rsync-path="$rsync_path" \
                -e "$ssh_cmd" "${model_files[@]/#/$models/}" "$host:$MODEL_DIR/"
        else
            for f in "${model_files[@]}"; do install_file "$models/$f" "$MODEL_DIR/$f"; done
        fi
    else
        say "models: $host already has these models (same manifest.json)"
    fi
fi

# --- 2. The key (before the classifier it verifies) ------------------------------------------
if [[ -n $key ]]; then
    say "key: installing $key as $host:$KEY"
    install_file "$key" "$KEY"
fi

# --- 3. The classifier -----------------------------------------------------------------------
if [[ -n $classifier ]]; then
    say "classifier: installing $classifier as $host:$CLASSIFIER (temporary name + rename)"
    install_file "$classifier" "$CLASSIFIER"
fi

# --- 4. The service --------------------------------------------------------------------------
if [[ $active != yes ]]; then
    if [[ $systemd != yes ]]; then
        say "lock-daemon is not running and $host has no systemd: start it yourself"
        exit 0
    fi
    say "starting $UNIT (it was not running: first deployment?)"
    remote "systemctl reset-failed $UNIT 2>/dev/null; systemctl start $UNIT"
    remote "systemctl is-active $UNIT && systemctl status --no-pager --lines=5 $UNIT"
elif [[ $models_changed == yes ]]; then
    # Models are loaded at start only; the restart locks the door (ExecStopPost) and the
    # new process locks it again before loading anything.
    if [[ $systemd != yes ]]; then
        say "models changed: restart lock-daemon on $host yourself (models are loaded at start)"
        exit 0
    fi
    say "models changed: restarting $UNIT"
    remote "systemctl restart $UNIT && systemctl is-active $UNIT"
elif [[ -n $classifier || -n $key ]]; then
    # No restart: the daemon reloads the renamed file by itself. Watch its audit log.
    say "waiting for $host's daemon to reload the classifier (audit log $audit)"
    if [[ -z $classifier ]]; then
        # A new key alone changes nothing until the classifier is read again: ask for that.
        if [[ $systemd == yes ]]; then
            remote "systemctl reload $UNIT"
        else
            remote "kill -HUP \$(pgrep -x lock-daemon)"
        fi
    fi
    verdict=$(query "for i in \$(seq 20); do tail -n +$((audit_lines + 1)) $audit | grep -m 1 -E '\"event\":\"reload(-refused)?\"' && exit 0; sleep 0.5; done; exit 1" \
        '{"event":"reload","message":"(dry run)"}') ||
        die "no reload in $audit after 10 s; check \`journalctl -u lock-daemon\` on $host"
    message=$(sed -n 's/.*"message":"\([^"]*\)".*/\1/p' <<<"$verdict")
    if grep -q '"event":"reload-refused"' <<<"$verdict"; then
        die "the lock REFUSED the new classifier ($message); the previous one stays in service"
    fi
    say "the lock reloaded the classifier: $message"
fi
say "done"
