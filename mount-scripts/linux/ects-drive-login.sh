#!/bin/sh
# Mounts the ects drive at desktop login; started by ects-drive.desktop (XDG autostart).
#
# Install (as root):
#   install -D -m 755 ects-drive-login.sh /usr/local/lib/ects/ects-drive-login.sh
#   install -m 644 ects-drive.desktop /etc/xdg/autostart/
#
# Where systemd user sessions exist, ects-drive.service is the better way (it also
# waits for uploads at logout); this script then just starts that service. Otherwise
# it runs the drive itself with the same settings: /etc/ects/drive.env, then
# ~/.config/ects/drive.env. At logout the session sends SIGTERM (or SIGHUP), and
# ects unmounts after uploading for up to ECTS_DRAIN_TIMEOUT seconds; what is left
# stays in the spool and goes at the next login.
set -eu

if command -v systemctl >/dev/null 2>&1 &&
  systemctl --user cat ects-drive.service >/dev/null 2>&1; then
  exec systemctl --user start ects-drive.service
fi

config_home=${XDG_CONFIG_HOME:-$HOME/.config}
for env_file in /etc/ects/drive.env "$config_home/ects/drive.env"; do
  if [ -r "$env_file" ]; then
    set -a
    # shellcheck source=/dev/null
    . "$env_file"
    set +a
  fi
done

ECTS_MOUNTPOINT=${ECTS_MOUNTPOINT:-$HOME/B}
ECTS_USER=${ECTS_USER:-$(id -un)}
ECTS_PASSWORD_FILE=${ECTS_PASSWORD_FILE:-$config_home/ects/password}
export ECTS_USER ECTS_PASSWORD_FILE

state=${XDG_STATE_HOME:-$HOME/.local/state}/ects
mkdir -p "$state"
log=$state/drive.log

# Before anything touches the mount point: a drive that was killed (kill -9, crash)
# leaves a dead mount, where even mkdir fails ("Transport endpoint is not connected").
if grep -q " $ECTS_MOUNTPOINT fuse" /proc/self/mounts 2>/dev/null; then
  # Already mounted by a running drive, or left behind by one that was killed.
  if [ -f "$ECTS_MOUNTPOINT/.ects-status.txt" ]; then
    exit 0
  fi
  echo "$(date '+%F %T') clearing the dead mount left at $ECTS_MOUNTPOINT" >>"$log"
  fusermount3 -u -z "$ECTS_MOUNTPOINT" 2>/dev/null || true
fi
mkdir -p "$ECTS_MOUNTPOINT"

if [ ! -r "$ECTS_PASSWORD_FILE" ]; then
  echo "$(date '+%F %T') no password file $ECTS_PASSWORD_FILE; the drive was not mounted" >>"$log"
  exit 1
fi

echo "$(date '+%F %T') mounting $ECTS_MOUNTPOINT for $ECTS_USER" >>"$log"
# exec, so the session's SIGTERM reaches ects. Exit code 77 (logged as "wrong user name
# or password ... the drive was not mounted"): the server refused the password file.
exec ects mount "$ECTS_MOUNTPOINT" >>"$log" 2>&1
