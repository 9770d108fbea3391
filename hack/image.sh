#!/usr/bin/env bash
# Builds the operator image with podman, without Docker and without an image registry:
#
#   1. podman, runc and debootstrap from Debian's packages, installed only when missing
#      (as root; set SMALLFLEET_IMAGE_INSTALL=0 to fail instead of installing);
#   2. a base image assembled from Debian packages by debootstrap (minbase, bookworm,
#      Python 3.11 and CA certificates), imported into podman as
#      localhost/smallfleet-base:<key>, the key a hash of everything that goes into it;
#      its root filesystem tarball is cached in $SMALLFLEET_CACHE/image, so a second build
#      (or a podman store that was wiped) costs seconds;
#   3. a wheelhouse of the runtime dependencies only (pyproject's `dependencies` and what
#      they require, never the `dev` extra) downloaded on this host for the image's Python
#      and platform, at the versions the project's .venv was tested with; cached under the
#      same directory, keyed by those pins;
#   4. `podman build -f Containerfile` on a context holding that wheelhouse and the
#      smallfleet wheel, tagged as the chart's default image reference (its
#      image.repository and appVersion) and as localhost/smallfleet:<appVersion>.
#
# Usage: hack/image.sh [build|context|tags]
#   build    (default) all of the above; prints the image reference on its last line
#   context  steps 3 and 4's context only (for `docker build`); prints its directory
#   tags     prints the tags the image gets, one a line
# Every podman call uses --network=none (podman's default bridge is never used) and the
# lower ulimits this kind of machine needs.
set -euo pipefail
shopt -s inherit_errexit
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/.." && pwd)
cache=${SMALLFLEET_CACHE:-$HOME/.cache/smallfleet}/image
py=${SMALLFLEET_IMAGE_PYTHON:-$repo/.venv/bin/python}
log() { printf "[image] %3ds %s\n" "$SECONDS" "$*" >&2; }
die() { printf '[image] ERROR: %s\n' "$*" >&2; exit 1; }

# What goes into the base image. Any change here changes its key, hence a new base.
SUITE=bookworm
MIRROR=${SMALLFLEET_DEBIAN_MIRROR:-http://deb.debian.org/debian}
PACKAGES=python3,ca-certificates
# The image's Python and platform, for the wheelhouse (bookworm's python3 is 3.11, glibc 2.36).
PY_VERSION=3.11
GLIBC=2_36
ARCH=$(uname -m)
# podman's defaults exceed this machine's hard limits; see /work/shared/containers-here.md.
SOURCE_LABEL=io.smallfleet.source-key
ULIMITS=(--ulimit nofile=4096:4096 --ulimit nproc=4096:4096)

sha() { sha256sum | cut -c1-12; }

# Reads the chart's default image reference and the project's version from their files.
chart_facts() {
  "$py" - "$repo" <<'PY'
import sys, tomllib, yaml
from pathlib import Path
repo = Path(sys.argv[1])
chart = yaml.safe_load((repo / "charts/smallfleet/Chart.yaml").read_text())
values = yaml.safe_load((repo / "charts/smallfleet/values.yaml").read_text())
project = tomllib.loads((repo / "pyproject.toml").read_text())["project"]
print(values["image"]["repository"], values["image"]["tag"] or chart["appVersion"], project["version"])
PY
}

tags() {
  local repository tag version
  read -r repository tag version < <(chart_facts)
  [ "$tag" = "$version" ] || die "the chart's image tag $tag is not the project's version $version (pyproject.toml)"
  printf '%s:%s\nlocalhost/smallfleet:%s\n' "$repository" "$tag" "$tag"
}

ensure_tools() {
  local missing=()
  command -v podman >/dev/null || missing+=(podman)
  command -v runc >/dev/null || missing+=(runc)
  command -v debootstrap >/dev/null || missing+=(debootstrap)
  [ ${#missing[@]} -eq 0 ] && return 0
  if [ "${SMALLFLEET_IMAGE_INSTALL:-1}" = 0 ] || [ "$(id -u)" != 0 ]; then
    die "missing ${missing[*]}: install them (as root: apt-get install -y podman runc debootstrap, or make image)"
  fi
  log "installing podman, runc and debootstrap from Debian's packages (${missing[*]} missing; about a minute)"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update
  apt-get install -y --no-install-recommends podman runc debootstrap \
    containernetworking-plugins uidmap fuse-overlayfs
}

base_key() {
  printf '%s\n' "$SUITE" "$MIRROR" "$PACKAGES" "$ARCH" "$(sed -n '/^trim_rootfs()/,/^}/p' "$0")" | sha
}

base_image() {
  local key tag tarball rootfs
  key=$(base_key)
  tag=localhost/smallfleet-base:$key
  tarball=$cache/base-$key.tar
  if podman image exists "$tag"; then
    echo "$tag"; return 0
  fi
  mkdir -p "$cache"
  if [ ! -s "$tarball" ]; then
    rootfs=$cache/build/rootfs-$key
    rm -rf "$rootfs"; mkdir -p "$rootfs"
    log "debootstrap --variant=minbase --include=$PACKAGES $SUITE (cold: a few minutes)"
    debootstrap --variant=minbase --include="$PACKAGES" "$SUITE" "$rootfs" "$MIRROR" \
      | grep --line-buffered -E '^I: (Retrieving|Validating|Extracting|Installing|Configuring|Base system)' \
      | awk '{ n++ } n % 25 == 1 || /Base system/ { print "[image] debootstrap: " $0; fflush() }' >&2
    [ -x "$rootfs/usr/bin/python3" ] || die "debootstrap left no python3 in $rootfs"
    trim_rootfs "$rootfs"
    tar -C "$rootfs" --numeric-owner -cf "$tarball.tmp" . && mv "$tarball.tmp" "$tarball"
    rm -rf "$rootfs"
  fi
  log "podman import $tarball as $tag"
  podman import --quiet "$tarball" "$tag" >/dev/null
  echo "$tag"
}

# Drops what a container never reads: package caches and lists, documentation, man pages
# and translations (the image runs with LANG unset, in the C locale).
trim_rootfs() {
  local r=$1
  rm -rf "$r"/var/cache/apt/archives/*.deb "$r"/var/cache/apt/*.bin "$r"/var/lib/apt/lists/* \
    "$r"/usr/share/doc/* "$r"/usr/share/man/* "$r"/usr/share/info/* "$r"/usr/share/locale/* \
    "$r"/var/log/*.log "$r"/var/cache/debconf/*-old
}

# pip takes a platform tag literally: every glibc from manylinux2014 (2.17) to the image's.
platforms() {
  local minor
  for minor in $(seq "${GLIBC#2_}" -1 17); do printf -- '--platform manylinux_2_%s_%s ' "$minor" "$ARCH"; done
  printf -- '--platform manylinux2014_%s --platform manylinux2010_%s --platform manylinux1_%s' "$ARCH" "$ARCH" "$ARCH"
}

# The runtime dependencies: pyproject's `dependencies`, and what they require in turn, at
# the versions .venv holds (so the image runs what the tests ran), as wheels for the
# image's Python and glibc. A change to a dev tool's version changes nothing here.
runtime_deps() {
  "$py" -c 'import tomllib; print("\n".join(tomllib.load(open("pyproject.toml","rb"))["project"]["dependencies"]))'
}

# name==version of every distribution in that closure, resolved in .venv's metadata.
pins() {
  "$py" - <<'PY'
import importlib.metadata as md, tomllib
from packaging.requirements import Requirement
todo = [(Requirement(r), "") for r in tomllib.load(open("pyproject.toml", "rb"))["project"]["dependencies"]]
pins, seen = {}, set()
while todo:
    req, extra = todo.pop()
    if req.marker is not None and not req.marker.evaluate({"extra": extra}):
        continue
    dist = md.distribution(req.name)
    pins[dist.metadata["Name"].lower()] = dist.version
    for wanted in ("", *sorted(req.extras)):
        if (req.name.lower(), wanted) in seen:
            continue
        seen.add((req.name.lower(), wanted))
        todo += [(Requirement(r), wanted) for r in dist.requires or []]
print("\n".join(f"{n}=={v}" for n, v in sorted(pins.items())))
PY
}

wheels_key() {
  printf '%s\n' "$(runtime_deps)" "$(pins)" "$PY_VERSION" "$GLIBC" "$ARCH" | sha
}

# Prints the wheelhouse directory; its requirements.txt is the pins.
wheelhouse() {
  local dir
  dir=$cache/wheels-$(wheels_key)
  if [ ! -f "$dir/.complete" ]; then
    log "downloading the runtime dependencies' wheels for Python $PY_VERSION on manylinux_${GLIBC}_$ARCH"
    rm -rf "$dir.tmp"; mkdir -p "$dir.tmp"
    pins > "$dir.tmp/requirements.txt"
    "$py" -m pip download --quiet --no-deps --only-binary=:all: --dest "$dir.tmp" \
      --python-version "$PY_VERSION" --implementation cp --abi "cp${PY_VERSION/./}" \
      $(platforms) -r "$dir.tmp/requirements.txt"
    touch "$dir.tmp/.complete"
    rm -rf "$dir"; mv "$dir.tmp" "$dir"
    # Older wheelhouses are of pins no longer used.
    find "$cache" -maxdepth 1 -name 'wheels-*' -not -name "wheels-${dir##*/wheels-}" -exec rm -rf {} +
  fi
  echo "$dir"
}

# The build context: wheels/ (dependencies and their requirements.txt), app/ (the
# smallfleet wheel) and tools/pip.whl (pip, run from its wheel at build time only).
context() {
  local wheels ctx pip_whl
  wheels=$(wheelhouse)
  log "preparing the build context"
  ctx=$cache/context
  rm -rf "$ctx"; mkdir -p "$ctx/app" "$ctx/tools"
  cp -al "$wheels" "$ctx/wheels" 2>/dev/null || cp -a "$wheels" "$ctx/wheels"
  rm -f "$ctx/wheels/.complete"
  log "building the smallfleet wheel"
  # A fixed timestamp makes the wheel byte-identical while the source is, so podman reuses
  # every layer of the last build.
  SOURCE_DATE_EPOCH=315532800 "$py" -m pip wheel --quiet --no-deps --wheel-dir "$ctx/app" "$repo" >&2
  pip_whl=$cache/tools/pip.whl
  if [ ! -s "$pip_whl" ]; then
    mkdir -p "$cache/tools/dl"
    "$py" -m pip download --quiet --no-deps --only-binary=:all: --dest "$cache/tools/dl" pip >&2
    cp "$cache"/tools/dl/pip-*.whl "$pip_whl"
  fi
  cp "$pip_whl" "$ctx/tools/pip.whl"
  echo "$ctx"
}

# Everything the image is made of: the package's sources and metadata, the Containerfile,
# this script, the base's and the wheelhouse's keys. The image carries it as a label, so
# a build of an unchanged tree returns at once.
source_key() {
  {
    find operator pyproject.toml README.md Containerfile hack/image.sh -type f \
      -not -path '*/__pycache__/*' -not -path '*.egg-info/*' -print0 | sort -z | xargs -0 sha256sum
    base_key
    wheels_key
  } | sha
}

build() {
  local base ctx first old new size key all_tags=()
  ensure_tools
  mapfile -t all_tags < <(tags)
  first=${all_tags[0]}
  key=$(source_key)
  if [ "$(podman image inspect --format "{{index .Labels \"$SOURCE_LABEL\"}}" "$first" 2>/dev/null)" = "$key" ] \
    && podman image exists "${all_tags[1]}"; then
    log "$first is up to date (source $key)"
    echo "$first"; return 0
  fi
  base=$(base_image)
  ctx=$(context)
  old=$(podman image inspect --format '{{.Id}}' "$first" 2>/dev/null || true)
  local tag_args=()
  for t in "${all_tags[@]}"; do tag_args+=(--tag "$t"); done
  log "podman build -f Containerfile --build-arg BASE=$base ${all_tags[*]}"
  podman build --quiet --layers --network=none "${ULIMITS[@]}" \
    --build-arg "BASE=$base" --label "$SOURCE_LABEL=$key" -f "$repo/Containerfile" "${tag_args[@]}" "$ctx" >/dev/null
  new=$(podman image inspect --format '{{.Id}}' "$first")
  if [ -n "$old" ] && [ "$old" != "$new" ]; then
    podman rmi --force "$old" >/dev/null 2>&1 || true  # the replaced build, untagged now
  fi
  size=$(podman image inspect --format '{{.Size}}' "$first")
  log "built $first (${new:0:12}, $((size / 1000000)) MB, source $key)"
  echo "$first"
}

# One build or context at a time on this machine: they share the cache and the tags.
locked() {
  mkdir -p "$cache"
  exec 9>"$cache/.lock"
  if ! flock --nonblock 9; then
    log "waiting for another image build on this machine"
    flock 9
  fi
  "$@"
}

cd "$repo"
case "${1:-build}" in
  build) locked build ;;
  context) locked context ;;
  tags) tags ;;
  *) die "usage: $0 [build|context|tags]" ;;
esac
