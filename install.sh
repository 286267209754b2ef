#!/usr/bin/env bash
# install.sh: set up miStudio in this checkout (a .venv beside this script), and optionally as
# systemd services. Safe to re-run: steps that are already done are skipped (the venv is reused and
# an acceptable torch is never reinstalled). Run ./install.sh --help for the options.
set -Eeuo pipefail

APPDIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)"
VENV="$APPDIR/.venv"
VENV_PY="$VENV/bin/python"
# The torch release this project is tested with (x86 CPU and CUDA builds; Jetson uses JetPack's).
TORCH_VERSION="${MISTUDIO_TORCH_VERSION:-2.13.0}"
# Where the CPU-only wheel comes from when no local wheel or configured index has it.
TORCH_CPU_INDEX="${MISTUDIO_TORCH_CPU_INDEX:-https://download.pytorch.org/whl/cpu}"
SERVICE_USER=mistudio
SYSTEM_DATA_DIR=/var/lib/mistudio
UNIT_DIR=/etc/systemd/system
ENV_DIR=/etc/mistudio
UNITS=(mistudio.service mistudio-worker.service mistudio.target)
# pip prints this harmless warning for every package on machines whose pip config lists local file
# indexes (e.g. file:///opt/pypi/simple); only these exact lines are dropped from pip's output.
PIP_NOISE="^WARNING: Location 'file:///opt/[^']*' is ignored: it is neither a file nor a directory\.$"

usage() {
  cat <<'EOF'
Usage: ./install.sh [--dev] [--system] [--cuda] [--torch-index URL] [--python PY] [-h]

Sets up miStudio in this checkout: creates .venv, installs PyTorch for this machine and the
miStudio package into it. Re-running is safe (existing venv and torch are kept).

Options:
  --dev              also install the test tools (pytest, hypothesis, httpx, playwright; extra
                     "dev") and Debian's chromium for the browser tests (with apt-get, so
                     as root; without root, or without apt-get, everything else is installed
                     and it says how to add chromium; the browser tests skip until then)
  --system           (root) install as a service: user "mistudio", data in /var/lib/mistudio,
                     systemd units mistudio.service, mistudio-worker.service, mistudio.target
  --cuda             x86_64 with an NVIDIA GPU: install the CUDA build of torch from PyPI
                     (default: the CPU-only build)
  --torch-index URL  install torch from this package index (e.g. a PyTorch CUDA index, or
                     NVIDIA's Jetson wheel index such as https://pypi.jetson-ai-lab.io/jp6/cu126)
                     when .venv has no acceptable torch yet (to replace one that works:
                     .venv/bin/pip uninstall torch, then re-run)
  --python PY        Python interpreter used to create .venv (default: python3; needs >= 3.10)
  -h, --help         show this help and exit

Platforms: on a Jetson (L4T) the venv sees the system's site-packages so JetPack's CUDA-enabled
torch is used; if it has none, pass --torch-index. On x86_64 the CPU wheel torch==2.13.0 is
installed unless --cuda is given.

Environment: MISTUDIO_TORCH_VERSION (default 2.13.0), MISTUDIO_TORCH_CPU_INDEX (CPU wheel index,
default https://download.pytorch.org/whl/cpu), MISTUDIO_PLATFORM=jetson|nvidia|cpu (skip detection).

Typical use:
  ./install.sh && .venv/bin/mistudio up          # run in the foreground, open http://<device>:8000
  sudo ./install.sh --system                     # run at boot as systemd services
EOF
}

# ---------------------------------------------------------------------------------------------
# Messages and failure reporting
STEP="starting"
FAILED_LINE=""
FAILED_CMD=""
DIED=0
CLEANUP_FILES=()

step() { STEP="$*"; printf '==> %s\n' "$*"; }
info() { printf '    %s\n' "$*"; }
warn() { printf 'WARNING: %s\n' "$*" >&2; }
die() {
  DIED=1
  printf '\nERROR: %s\n' "$*" >&2
  exit 1
}

on_exit() {
  local rc=$?
  if [ "${#CLEANUP_FILES[@]}" -gt 0 ]; then
    rm -f "${CLEANUP_FILES[@]}"
  fi
  if [ "$rc" -ne 0 ] && [ "$DIED" -eq 0 ]; then
    printf '\nERROR: install.sh failed (exit code %s) during step: %s\n' "$rc" "$STEP" >&2
    if [ -n "$FAILED_CMD" ]; then
      printf '       failing command (line %s): %s\n' "$FAILED_LINE" "$FAILED_CMD" >&2
    fi
    printf '       Fix the problem shown above and re-run ./install.sh (finished steps are skipped).\n' >&2
  fi
}
trap 'FAILED_LINE=$LINENO; FAILED_CMD=$BASH_COMMAND' ERR
trap on_exit EXIT

# pip inside the venv, without the harmless noise above; returns pip's own exit status.
run_pip() {
  local rc=0
  "$VENV_PY" -m pip "$@" 2>&1 | { grep -v -E "$PIP_NOISE" || true; } || rc=$?
  return "$rc"
}

# ---------------------------------------------------------------------------------------------
# Options
DEV=0
SYSTEM=0
CUDA=0
TORCH_INDEX=""
PYTHON="python3"

while [ $# -gt 0 ]; do
  case "$1" in
    --dev) DEV=1 ;;
    --system) SYSTEM=1 ;;
    --cuda) CUDA=1 ;;
    --torch-index)
      if [ $# -lt 2 ] || [ -z "$2" ]; then
        die "--torch-index needs a URL (e.g. --torch-index https://pypi.jetson-ai-lab.io/jp6/cu126)"
      fi
      TORCH_INDEX="$2"
      shift
      ;;
    --torch-index=*) TORCH_INDEX="${1#*=}" ;;
    --python)
      if [ $# -lt 2 ] || [ -z "$2" ]; then
        die "--python needs an interpreter (e.g. --python python3.11)"
      fi
      PYTHON="$2"
      shift
      ;;
    --python=*) PYTHON="${1#*=}" ;;
    -h | --help)
      usage
      exit 0
      ;;
    *)
      usage >&2
      die "unknown option: $1"
      ;;
  esac
  shift
done

if [ "$SYSTEM" -eq 1 ] && [ "$(id -u)" -ne 0 ]; then
  die "--system creates a user, /var/lib/mistudio and systemd units, so it must run as root:
       sudo ./install.sh --system"
fi

# --dev's browser: Debian's chromium, which only root can install (apt-get). Said first, so whoever
# runs a long install without root knows at once why the browser tests will be skipped.
CHROMIUM_MISSING=""
if [ "$DEV" -eq 1 ] && ! command -v chromium >/dev/null 2>&1; then
  if ! command -v apt-get >/dev/null 2>&1; then
    CHROMIUM_MISSING="--dev installs Debian's chromium for the browser tests with apt-get, and this system has
         no apt-get: install Chromium with its package manager so that 'chromium' is on PATH.
         The rest installs without it; the browser tests (tests/ui/) are skipped until it is there."
  elif [ "$(id -u)" -ne 0 ]; then
    CHROMIUM_MISSING="--dev installs Debian's chromium for the browser tests with apt-get, which needs root,
         and this is user $(id -un 2>/dev/null || id -u). Install it once with:
           sudo apt-get install chromium
         The rest installs without it; the browser tests (tests/ui/) are skipped until it is there."
  fi
  if [ -n "$CHROMIUM_MISSING" ]; then
    warn "$CHROMIUM_MISSING"
  fi
fi

cd "$APPDIR"

# ---------------------------------------------------------------------------------------------
# Platform
step "Detecting the platform"
ARCH="$(uname -m)"
OS="$(uname -s)"
BOARD=""
PLATFORM="${MISTUDIO_PLATFORM:-}"
if [ -z "$PLATFORM" ]; then
  if [ -r /proc/device-tree/model ]; then
    BOARD="$(tr -d '\0' </proc/device-tree/model 2>/dev/null || true)"
  fi
  if [ -e /etc/nv_tegra_release ] || [[ "$BOARD" == *"NVIDIA Jetson"* ]]; then
    PLATFORM=jetson
  elif [ "$ARCH" = x86_64 ] && command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
    PLATFORM=nvidia
  else
    PLATFORM=cpu
  fi
else
  case "$PLATFORM" in
    jetson | nvidia | cpu) info "MISTUDIO_PLATFORM=$PLATFORM given: detection skipped" ;;
    *) die "MISTUDIO_PLATFORM must be jetson, nvidia or cpu (got '$PLATFORM')" ;;
  esac
fi
case "$PLATFORM" in
  jetson)
    L4T=""
    if [ -r /etc/nv_tegra_release ]; then
      L4T="$(head -n 1 /etc/nv_tegra_release | sed -e 's/^# *//' -e 's/, *GCID.*//')"
    fi
    info "NVIDIA Jetson (L4T): ${BOARD:-unknown board}${L4T:+ ($L4T)}, $ARCH"
    ;;
  nvidia)
    GPU="$( (nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null || true) | head -n 1)"
    info "$ARCH with an NVIDIA GPU: ${GPU:-unknown GPU}"
    ;;
  cpu) info "$OS $ARCH, no NVIDIA GPU detected: CPU only" ;;
esac
if [ "$CUDA" -eq 1 ]; then
  case "$PLATFORM" in
    jetson) info "--cuda: on a Jetson the CUDA build comes from JetPack (or --torch-index)" ;;
    nvidia) ;;
    cpu)
      if [ "$OS" != Linux ] || [ "$ARCH" != x86_64 ]; then
        die "--cuda is for Linux x86_64 with an NVIDIA GPU (this is $OS $ARCH)"
      fi
      warn "--cuda given but nvidia-smi found no GPU; installing the CUDA build anyway"
      ;;
  esac
fi

# ---------------------------------------------------------------------------------------------
# Python
step "Checking Python"
command -v "$PYTHON" >/dev/null 2>&1 || die "Python interpreter '$PYTHON' not found. miStudio needs Python >= 3.10:
       install it (Debian/Ubuntu: sudo apt install python3 python3-venv) or pass --python /path/to/python3"
PYVER="$("$PYTHON" -c 'import sys; print("%d.%d.%d" % sys.version_info[:3]); sys.exit(sys.version_info < (3, 10))' 2>/dev/null)" && PY_OK=1 || PY_OK=0
if [ -z "$PYVER" ]; then
  die "'$PYTHON' does not run as a Python interpreter. Pass a working one with --python /path/to/python3"
fi
if [ "$PY_OK" -ne 1 ]; then
  die "Python $PYVER ('$PYTHON') is too old: miStudio needs Python >= 3.10 (JetPack 6 ships 3.10).
       Install a newer Python and pass it with --python, e.g. ./install.sh --python python3.10"
fi
info "Python $PYVER ($(command -v "$PYTHON"))"

# ---------------------------------------------------------------------------------------------
# Virtual environment
if [ -e "$VENV_PY" ] || [ -L "$VENV_PY" ]; then
  step "Reusing the virtual environment in .venv"
  VENV_VER="$("$VENV_PY" -c 'import sys; print("%d.%d.%d" % sys.version_info[:3]); sys.exit(sys.version_info < (3, 10))' 2>/dev/null)" && VENV_OK=1 || VENV_OK=0
  [ -n "$VENV_VER" ] || die ".venv is broken (its Python does not run; was the base Python moved or removed?).
       Remove it and re-run: rm -rf .venv && ./install.sh"
  [ "$VENV_OK" -eq 1 ] || die ".venv uses Python $VENV_VER, older than 3.10. Remove it and re-run: rm -rf .venv && ./install.sh"
  info "Python $VENV_VER in .venv"
  if [ "${PYVER%.*}" != "${VENV_VER%.*}" ]; then
    info "(.venv was made with Python $VENV_VER, not $PYVER; to switch: rm -rf .venv and re-run)"
  fi
  if [ "$PLATFORM" = jetson ] && grep -qi '^include-system-site-packages *= *false' "$VENV/pyvenv.cfg" 2>/dev/null; then
    # JetPack's torch lives in the system site-packages; a venv made without them cannot see it.
    info "enabling system site-packages in .venv so JetPack's torch is visible"
    sed -i 's/^include-system-site-packages *= *false/include-system-site-packages = true/I' "$VENV/pyvenv.cfg"
  fi
else
  step "Creating virtual environment in .venv"
  "$PYTHON" -c 'import venv, ensurepip' 2>/dev/null || die "Python $PYVER cannot create virtual environments (the venv/ensurepip modules are missing).
       Debian/Ubuntu: sudo apt install python3-venv (or python${PYVER%.*}-venv), then re-run ./install.sh"
  VENV_ARGS=()
  if [ "$PLATFORM" = jetson ]; then
    VENV_ARGS+=(--system-site-packages)
    info "with --system-site-packages, so JetPack's torch from the system is visible"
  fi
  "$PYTHON" -m venv ${VENV_ARGS[@]+"${VENV_ARGS[@]}"} "$VENV"
fi
run_pip --version >/dev/null || die "pip does not work in .venv. Remove it and re-run: rm -rf .venv && ./install.sh"

# ---------------------------------------------------------------------------------------------
# PyTorch
# Prints "<version> <cuda version or none>" for the torch importable in the venv, nothing if none.
torch_info() {
  { "$VENV_PY" -c 'import torch; print(torch.__version__, torch.version.cuda or "none")' 2>/dev/null || true; } | tail -n 1
}

# CPU-only torch. On a machine with a local CPU wheel or a configured index providing it
# (pip constraints, find-links), torch==X+cpu installs from there with no other network access;
# otherwise it comes from the PyTorch CPU index. A plain torch==X from PyPI is a multi-GB CUDA
# build on Linux x86_64, so that is only used where PyPI's build is the CPU one (other arches, macOS).
install_torch_cpu() {
  local out rc=0
  info "trying torch==$TORCH_VERSION+cpu from the local wheels / configured indexes"
  out="$("$VENV_PY" -m pip install --upgrade-strategy only-if-needed "torch==$TORCH_VERSION+cpu" 2>&1)" || rc=$?
  if [ "$rc" -eq 0 ]; then
    printf '%s\n' "$out" | { grep -v -E "$PIP_NOISE" || true; }
    return 0
  fi
  info "not available there; trying the PyTorch CPU index $TORCH_CPU_INDEX"
  if run_pip install --upgrade-strategy only-if-needed --extra-index-url "$TORCH_CPU_INDEX" "torch==$TORCH_VERSION+cpu"; then
    return 0
  fi
  if [ "$OS" != Linux ] || [ "$ARCH" != x86_64 ]; then
    info "trying torch==$TORCH_VERSION from PyPI (CPU build on $OS $ARCH)"
    run_pip install --upgrade-strategy only-if-needed "torch==$TORCH_VERSION" && return 0
  fi
  die "could not install the CPU build of torch $TORCH_VERSION (see pip's messages above).
       Check the network, or give an index that has it: ./install.sh --torch-index URL"
}

# torch from a user-given index. --no-deps first so that only torch itself comes from that index
# (an index such as NVIDIA's Jetson one may not mirror everything, and an unpinned torch must not be
# taken from PyPI instead); then its dependencies from the usual indexes.
install_torch_from_index() {
  local spec="torch==$TORCH_VERSION" ver
  if [ "$PLATFORM" = jetson ]; then
    spec="torch"  # the Jetson index carries the release that matches this JetPack
  fi
  info "installing $spec from $TORCH_INDEX"
  run_pip install --no-deps --index-url "$TORCH_INDEX" "$spec"
  ver="$("$VENV_PY" -m pip show torch 2>/dev/null | sed -n 's/^Version: //p')"
  [ -n "$ver" ] || die "pip reported success but torch is not installed in .venv"
  info "installing the dependencies of torch $ver"
  run_pip install --upgrade-strategy only-if-needed "torch==$ver"
}

step "Checking PyTorch"
WANT_CUDA=0
if [ "$PLATFORM" = jetson ] || [ "$CUDA" -eq 1 ]; then
  WANT_CUDA=1
fi
TORCH_NOW="$(torch_info)"
INSTALL_TORCH=1
if [ -n "$TORCH_NOW" ]; then
  TORCH_CUDA="${TORCH_NOW#* }"
  if [ "$WANT_CUDA" -eq 0 ] || [ "$TORCH_CUDA" != none ]; then
    info "torch ${TORCH_NOW% *} (CUDA: $TORCH_CUDA) is already installed: keeping it"
    INSTALL_TORCH=0
  elif [ "$PLATFORM" = jetson ] && [ -z "$TORCH_INDEX" ]; then
    warn "torch ${TORCH_NOW% *} in .venv is a CPU-only build: the Jetson GPU will not be used.
         To replace it with NVIDIA's build: ./install.sh --torch-index https://pypi.jetson-ai-lab.io/jp6/cu126
         (pick the index matching your JetPack/CUDA), or install JetPack's PyTorch system-wide."
    INSTALL_TORCH=0
  else
    info "torch ${TORCH_NOW% *} is a CPU-only build but CUDA was asked for: replacing it"
    run_pip uninstall -y torch
  fi
fi
if [ "$INSTALL_TORCH" -eq 1 ]; then
  step "Installing PyTorch"
  if [ -n "$TORCH_INDEX" ]; then
    install_torch_from_index
  elif [ "$PLATFORM" = jetson ]; then
    die "no usable torch on this Jetson. PyTorch for Jetson is NVIDIA's CUDA build for JetPack; it is
       not on PyPI. Either:
         - install JetPack's PyTorch system-wide (so that python3 -c 'import torch' works) and re-run
           ./install.sh (the venv sees the system site-packages), or
         - re-run with NVIDIA's Jetson wheel index, e.g. the jetson-ai-lab PyPI mirror for JetPack 6:
           ./install.sh --torch-index https://pypi.jetson-ai-lab.io/jp6/cu126
           (pick the path matching your JetPack and CUDA versions)"
  elif [ "$CUDA" -eq 1 ]; then
    # "===" matches the public release exactly (PyPI's CUDA build on Linux x86_64), never a local
    # "+cpu" wheel that a plain "==" would prefer.
    info "installing the CUDA build torch $TORCH_VERSION from PyPI (several GB)"
    run_pip install --upgrade-strategy only-if-needed "torch===$TORCH_VERSION"
  else
    install_torch_cpu
  fi
  TORCH_NOW="$(torch_info)"
  [ -n "$TORCH_NOW" ] || die "torch was installed but 'import torch' fails in .venv (see the messages above)"
  info "torch ${TORCH_NOW% *} (CUDA: ${TORCH_NOW#* }) installed"
  if [ "$WANT_CUDA" -eq 1 ] && [ "${TORCH_NOW#* }" = none ]; then
    warn "the installed torch is a CPU-only build; the GPU will not be used"
  fi
fi

# ---------------------------------------------------------------------------------------------
# miStudio itself
EXTRAS=()
if [ "$DEV" -eq 1 ]; then
  EXTRAS+=(dev)
fi
if [ "$PLATFORM" = jetson ]; then
  EXTRAS+=(jetson)
elif [ "$PLATFORM" = nvidia ]; then
  EXTRAS+=(nvidia)  # NVML for GPU load, memory, temperature and power in the system monitor
fi
TARGET="."
if [ "${#EXTRAS[@]}" -gt 0 ]; then
  TARGET=".[$(IFS=,; printf '%s' "${EXTRAS[*]}")]"
fi
step "Installing miStudio ($TARGET, editable)"
# Pin the torch chosen above so that no dependency can swap it for another build.
TORCH_PIN="$(mktemp "${TMPDIR:-/tmp}/mistudio-torch-pin.XXXXXX")"
CLEANUP_FILES+=("$TORCH_PIN")
"$VENV_PY" -m pip show torch 2>/dev/null | sed -n 's/^Version: \(.*\)$/torch==\1/p' >"$TORCH_PIN" || true
run_pip install --upgrade-strategy only-if-needed --constraint "$TORCH_PIN" -e "$TARGET"
rm -f "$TORCH_PIN"
"$VENV/bin/mistudio" --version >/dev/null || die "the mistudio command does not run in .venv (see the messages above)"
info "$("$VENV/bin/mistudio" --version) installed in .venv"

# ---------------------------------------------------------------------------------------------
# Browser for the UI tests: Debian's chromium, driven by Playwright (never a browser download).
if [ "$DEV" -eq 1 ]; then
  step "Checking Chromium for the browser tests"
  if command -v chromium >/dev/null 2>&1; then
    info "$(chromium --version 2>/dev/null | head -n 1)"
  elif [ -z "$CHROMIUM_MISSING" ]; then
    info "installing Debian's chromium with apt-get"
    DEBIAN_FRONTEND=noninteractive apt-get update -qq \
      || die "apt-get update failed; the browser tests need Debian's chromium"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium >/dev/null \
      || die "apt-get install chromium failed; the browser tests need it"
    info "$(chromium --version 2>/dev/null | head -n 1)"
  else
    warn "$CHROMIUM_MISSING"
  fi
fi

# ---------------------------------------------------------------------------------------------
# Jetson platform support (written separately; run it when it is there)
if [ "$PLATFORM" = jetson ]; then
  if [ -x "$APPDIR/jetson/setup.sh" ]; then
    step "Running jetson/setup.sh"
    "$APPDIR/jetson/setup.sh"
  elif [ -e "$APPDIR/jetson/setup.sh" ]; then
    warn "jetson/setup.sh is not executable; skipped (run it with: bash jetson/setup.sh)"
  fi
fi

# ---------------------------------------------------------------------------------------------
# System service
install_system() {
  local nologin group unit changed=0 systemd_up=0
  [ -d /run/systemd/system ] && systemd_up=1

  # The path goes into unit lines (ExecStart=, WorkingDirectory=) unquoted and through sed.
  if [[ "$APPDIR" =~ [^A-Za-z0-9._/+-] ]]; then
    die "the checkout path '$APPDIR' contains spaces or special characters, which the systemd units
       cannot take as is. Move the checkout (e.g. to /opt/mistudio) and re-run."
  fi

  step "Creating the service user '$SERVICE_USER'"
  if id -u "$SERVICE_USER" >/dev/null 2>&1; then
    info "user $SERVICE_USER exists"
  else
    nologin="$(command -v nologin || true)"
    [ -n "$nologin" ] || nologin=/usr/sbin/nologin
    [ -x "$nologin" ] || nologin=/bin/false
    useradd --system --user-group --home-dir "$SYSTEM_DATA_DIR" --no-create-home \
      --shell "$nologin" --comment "miStudio appliance" "$SERVICE_USER"
    info "created system user $SERVICE_USER (no login shell, home $SYSTEM_DATA_DIR)"
  fi
  for group in video render jtop; do
    if getent group "$group" >/dev/null 2>&1; then
      usermod -a -G "$group" "$SERVICE_USER"
      info "$SERVICE_USER is in group $group"
    fi
  done

  step "Creating the data directory $SYSTEM_DATA_DIR"
  install -d -m 0750 -o "$SERVICE_USER" -g "$SERVICE_USER" "$SYSTEM_DATA_DIR"
  chown "$SERVICE_USER:$SERVICE_USER" "$SYSTEM_DATA_DIR"
  chmod 0750 "$SYSTEM_DATA_DIR"
  info "$(ls -ld "$SYSTEM_DATA_DIR")"

  # Optional settings file read by both units (EnvironmentFile=-/etc/mistudio/mistudio.env).
  if [ ! -e "$ENV_DIR/mistudio.env" ]; then
    install -d -m 0755 "$ENV_DIR"
    cat >"$ENV_DIR/mistudio.env" <<'EOF'
# Settings for the miStudio services (mistudio.service, mistudio-worker.service).
# One MISTUDIO_*=value per line, see README.md; restart after a change:
#   sudo systemctl restart mistudio.target
# The data directory is /var/lib/mistudio (the only place the services may write).
#MISTUDIO_PORT=8000
#MISTUDIO_HOST=0.0.0.0
#MISTUDIO_TOKEN=change-me
#MISTUDIO_LOG_LEVEL=info
#MISTUDIO_MAX_MEMORY_FRACTION=0.85
EOF
    chown "root:$SERVICE_USER" "$ENV_DIR/mistudio.env"
    chmod 0640 "$ENV_DIR/mistudio.env"
    info "wrote $ENV_DIR/mistudio.env (commented settings template, may hold MISTUDIO_TOKEN)"
  fi

  step "Installing systemd units into $UNIT_DIR"
  install -d -m 0755 "$UNIT_DIR"
  for unit in "${UNITS[@]}"; do
    [ -f "$APPDIR/systemd/$unit" ] || die "systemd/$unit is missing from the checkout"
    sed "s|@APPDIR@|$APPDIR|g" "$APPDIR/systemd/$unit" >"$UNIT_DIR/$unit.new"
    chmod 0644 "$UNIT_DIR/$unit.new"
    if cmp -s "$UNIT_DIR/$unit.new" "$UNIT_DIR/$unit"; then
      rm -f "$UNIT_DIR/$unit.new"
      info "$unit unchanged"
    else
      mv -f "$UNIT_DIR/$unit.new" "$UNIT_DIR/$unit"
      changed=1
      info "$unit installed"
    fi
  done

  # The services run as $SERVICE_USER and read the code and the venv from this checkout.
  case "$APPDIR/" in
    /root/*) warn "the checkout is under /root, which user $SERVICE_USER cannot read: the services will
         not start. Move it (e.g. to /opt/mistudio), then re-run: sudo ./install.sh --system" ;;
    /tmp/* | /var/tmp/*) warn "the checkout is under /tmp or /var/tmp, which the services cannot see
         (PrivateTmp=yes): they will not start. Move it (e.g. to /opt/mistudio) and re-run." ;;
  esac
  local base_py
  base_py="$(readlink -f "$VENV_PY")"
  case "$base_py" in
    /root/*) warn "the Python of .venv ($base_py) is under /root, which user $SERVICE_USER cannot
         read: the services will not start. Recreate the venv with a system Python:
         rm -rf .venv && sudo ./install.sh --system --python /usr/bin/python3" ;;
  esac
  if command -v runuser >/dev/null 2>&1 \
    && ! runuser -u "$SERVICE_USER" -- "$VENV/bin/mistudio" --version >/dev/null 2>&1; then
    warn "user $SERVICE_USER cannot run $VENV/bin/mistudio: the services will fail.
         The checkout, its parent directories and the venv's Python must be readable by
         $SERVICE_USER (e.g. chmod o+rx on each directory), or move the checkout to /opt/mistudio."
  fi

  if [ "$systemd_up" -eq 1 ]; then
    step "Enabling and starting mistudio.target"
    systemctl daemon-reload
    systemctl enable --now mistudio.target
    if [ "$changed" -eq 1 ] && systemctl is-active --quiet mistudio.service; then
      info "unit files changed: restarting"
      systemctl restart mistudio.target
    fi
    systemctl --no-pager --lines=0 status mistudio.service mistudio-worker.service || true
  else
    step "systemd is not running here: not starting anything"
    info "on a machine booted with systemd this step would run:"
    info "  systemctl daemon-reload"
    info "  systemctl enable --now mistudio.target"
  fi
}

if [ "$SYSTEM" -eq 1 ]; then
  install_system
fi

# ---------------------------------------------------------------------------------------------
STEP="done"
printf '\n==> miStudio is installed in %s\n' "$APPDIR"
if [ "$SYSTEM" -eq 1 ]; then
  echo "    Services: systemctl status mistudio.target   (UI and API on http://<this device>:8000)"
  echo "    Logs:     journalctl -u mistudio -u mistudio-worker -f"
  echo "    Settings: $ENV_DIR/mistudio.env, then: sudo systemctl restart mistudio.target"
fi
echo "    Start it in the foreground:  .venv/bin/mistudio up    (then open http://<this device>:8000)"
if [ "$DEV" -eq 1 ]; then
  echo "    Run the tests:               .venv/bin/pytest"
  if [ -n "$CHROMIUM_MISSING" ] && ! command -v chromium >/dev/null 2>&1; then
    echo "    (the browser tests are skipped until chromium is installed: see the warning above)"
  fi
fi
