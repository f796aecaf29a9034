#!/usr/bin/env bash
# Build recprep's default image with podman from Debian's packages and PyPI alone (no registry):
#
#   sudo docker/build-image.sh            # -> localhost/recprep:0.1.0 and localhost/recprep:<hash>
#
# Steps, each timed:
#   1. tools: podman, buildah, debootstrap, runc from apt when missing (as root);
#   2. base: a minimal Debian root filesystem with python3, its venv module, pip and the CA
#      certificates (debootstrap from the mirror the machine's apt sources name), with this
#      machine's local CA certificates added (HTTPS to PyPI may be re-signed by them), imported as
#      localhost/recprep-base:<release>; kept, and reused, when it exists;
#   3. image: `podman build --pull=never --build-arg BASE=<that base>` of the Dockerfile's default
#      stage, tagged with the hash of what goes into it (Dockerfile, pyproject.toml, README.md,
#      MANIFEST.in, recprep/): an image of an unchanged tree is not built again;
#   4. check: `recprep --help` in it as uid 10001 with a read-only root filesystem and every
#      capability dropped, and a write outside /tmp refused.
#
# podman runs with runc (crun refuses hybrid cgroups) and explicit ulimits, from a containers.conf
# in WORKDIR given by CONTAINERS_CONF. Environment: WORKDIR (default /var/tmp/recprep-image),
# RELEASE (bookworm), MIRROR (default: the machine's first Debian URI), TAG (recprep:0.1.0).
set -euo pipefail
cd "$(dirname "$0")/.."

WORKDIR=${WORKDIR:-/var/tmp/recprep-image}
RELEASE=${RELEASE:-bookworm}
TAG=${TAG:-recprep:0.1.0}
BASE_IMAGE=localhost/recprep-base:${RELEASE}
mkdir -p "$WORKDIR"

step_started=0
step() { step_started=$EPOCHREALTIME; echo "== $1"; }
took() { awk -v a="$step_started" -v b="$EPOCHREALTIME" -v what="$1" 'BEGIN { printf "   %s: %.1f s\n", what, b - a }'; }

root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

# 1. tools
step "tools"
missing=()
for tool in podman buildah debootstrap runc; do
  command -v "$tool" >/dev/null || [ -x "/usr/sbin/$tool" ] || missing+=("$tool")
done
if [ ${#missing[@]} -gt 0 ]; then
  root apt-get update -qq
  DEBIAN_FRONTEND=noninteractive root apt-get install -y -qq "${missing[@]}" >/dev/null
fi
export PATH=$PATH:/usr/sbin
cat > "$WORKDIR/containers.conf" <<CONF
[containers]
default_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]
[engine]
runtime = "runc"
CONF
export CONTAINERS_CONF=$WORKDIR/containers.conf
took "tools ready${missing[*]:+ (installed ${missing[*]})}"

# 2. base
step "base $BASE_IMAGE"
if podman image exists "$BASE_IMAGE"; then
  took "kept from an earlier build"
else
  if [ -z "${MIRROR:-}" ]; then
    MIRROR=$(grep -hoE '^URIs: *\S+' /etc/apt/sources.list.d/*.sources 2>/dev/null | awk '{print $2}' | grep -v security | head -1 || true)
    [ -n "$MIRROR" ] || MIRROR=$(grep -hoE '^deb +\S+' /etc/apt/sources.list 2>/dev/null | awk '{print $2}' | head -1 || true)
    MIRROR=${MIRROR:-http://deb.debian.org/debian}
  fi
  rootfs=$WORKDIR/rootfs-$RELEASE
  root rm -rf "$rootfs"
  root debootstrap --variant=minbase --include=python3,python3-venv,python3-pip,ca-certificates \
    "$RELEASE" "$rootfs" "$MIRROR" >"$WORKDIR/debootstrap.log" 2>&1 \
    || { tail -20 "$WORKDIR/debootstrap.log"; exit 1; }
  if compgen -G "/usr/local/share/ca-certificates/*.crt" >/dev/null; then
    root cp /usr/local/share/ca-certificates/*.crt "$rootfs/usr/local/share/ca-certificates/"
    root chroot "$rootfs" update-ca-certificates >/dev/null 2>&1
  fi
  root tar -C "$rootfs" -c . | podman import - "$BASE_IMAGE" >/dev/null 2>&1
  root rm -rf "$rootfs"
  took "debootstrap $RELEASE from $MIRROR, imported"
fi

# 3. image
step "image $TAG"
inputs=(Dockerfile pyproject.toml README.md MANIFEST.in recprep)
if git rev-parse --git-dir >/dev/null 2>&1; then
  hash=$(git ls-files -s "${inputs[@]}" | git hash-object --stdin | cut -c1-12)
  if [ -n "$(git status --porcelain -- "${inputs[@]}")" ]; then
    hash=$hash-dirty-$(date +%s)  # uncommitted changes: never taken for a cached build
  fi
else  # not a checkout: the files' contents (what .dockerignore leaves out, left out here too)
  hash=$(find "${inputs[@]}" -type f ! -path '*/__pycache__/*' ! -name '*.py[cod]' ! -name '*.so' -print0 \
    | sort -z | xargs -0 sha256sum | sha256sum | cut -c1-12)
fi
if podman image exists "localhost/recprep:$hash"; then
  took "localhost/recprep:$hash kept (nothing that goes into it changed)"
else
  podman build --pull=never --build-arg BASE="$BASE_IMAGE" -t "localhost/$TAG" -t "localhost/recprep:$hash" . \
    >"$WORKDIR/build.log" 2>&1 || { tail -30 "$WORKDIR/build.log"; exit 1; }
  took "built localhost/recprep:$hash (log: $WORKDIR/build.log)"
fi
podman tag "localhost/recprep:$hash" "localhost/$TAG"
size=$(podman image inspect --format '{{.Size}}' "localhost/$TAG")
echo "   size: $((size / 1000000)) MB (the base: $(($(podman image inspect --format '{{.Size}}' "$BASE_IMAGE") / 1000000)) MB)"

# 4. check
step "check"
run=(podman run --rm --read-only --user 10001:10001 --cap-drop=ALL)
"${run[@]}" "localhost/$TAG" --help >/dev/null
who=$("${run[@]}" --entrypoint id "localhost/$TAG" -u)
[ "$who" = 10001 ] || { echo "runs as uid $who, not 10001"; exit 1; }
if "${run[@]}" --entrypoint touch "localhost/$TAG" /opt/recprep/written 2>/dev/null; then
  echo "a write outside /tmp succeeded: the root filesystem is not read-only"; exit 1
fi
took "recprep --help as uid 10001 on a read-only root; a write to /opt refused"
echo "localhost/$TAG = localhost/recprep:$hash"
