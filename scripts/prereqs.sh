# Sourced by scripts/test, scripts/drive and .ci/run: installs what ects needs at run
# and test time on a Debian-like machine, if it is missing and we may install.
ensure_prereqs() {
  local missing=()
  command -v fusermount3 >/dev/null 2>&1 || missing+=(fuse3)
  command -v git >/dev/null 2>&1 || missing+=(git)
  command -v openssl >/dev/null 2>&1 || missing+=(openssl)
  if [ ${#missing[@]} -eq 0 ]; then
    return 0
  fi
  if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null 2>&1; then
    echo "ects needs these packages: ${missing[*]} (install them, e.g. sudo apt-get install ${missing[*]})" >&2
    return 1
  fi
  echo "installing ${missing[*]} ..." >&2
  DEBIAN_FRONTEND=noninteractive apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
}
