# Sourced by scripts/test and scripts/drive: installs what ects needs on a Debian-like
# machine, if it is missing and we may install (root with apt-get).
# Usage: ensure_packages COMMAND:PACKAGE ...
ensure_packages() {
  local missing=() pair
  for pair in "$@"; do
    command -v "${pair%%:*}" >/dev/null 2>&1 || missing+=("${pair#*:}")
  done
  if [ ${#missing[@]} -eq 0 ]; then
    return 0
  fi
  if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null 2>&1; then
    echo "ects needs these packages: ${missing[*]} (e.g. sudo apt-get install ${missing[*]})" >&2
    return 1
  fi
  echo "installing ${missing[*]} ..." >&2
  DEBIAN_FRONTEND=noninteractive apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
}
