#!/usr/bin/env bash
# Jetson checks run by install.sh on L4T. Read-only: it reports what to do and changes nothing.
set -uo pipefail

say() { printf '    %s\n' "$*"; }
warn() { printf 'WARNING: %s\n' "$*" >&2; }

if [ -r /etc/nv_tegra_release ]; then
  say "L4T: $(head -n 1 /etc/nv_tegra_release | sed 's/^# //')"
else
  warn "no /etc/nv_tegra_release: this does not look like a Jetson"
fi
[ -r /proc/device-tree/model ] && say "board: $(tr -d '\0' </proc/device-tree/model)"

# CUDA runtime from JetPack
if [ -d /usr/local/cuda ]; then
  say "CUDA: $(ls -d /usr/local/cuda-* 2>/dev/null | sed 's|.*/cuda-||' | sort -V | tail -n 1 || echo present)"
else
  warn "no /usr/local/cuda: install JetPack's CUDA (sudo apt install nvidia-jetpack) for GPU jobs"
fi

# Monitoring tools
if [ -S /run/jtop.sock ]; then
  say "jtop service: running (used for monitoring)"
elif command -v tegrastats >/dev/null 2>&1; then
  say "tegrastats: $(command -v tegrastats) (used for monitoring; jetson-stats' jtop is optional)"
else
  warn "neither jtop nor tegrastats found: monitoring falls back to /proc (no GPU, rails or temperatures)"
fi

# Memory: 8 GB boards want swap as a safety net
mem_mb=$(awk '/MemTotal/ {print int($2/1024)}' /proc/meminfo)
swap_mb=$(awk '/SwapTotal/ {print int($2/1024)}' /proc/meminfo)
say "memory: ${mem_mb} MB RAM, ${swap_mb} MB swap"
if [ "$mem_mb" -lt 12000 ] && [ "$swap_mb" -lt 4000 ]; then
  warn "little swap on a small board: see jetson/README.md ('Memory on an 8 GB board')"
fi

# Power mode
if command -v nvpmodel >/dev/null 2>&1; then
  mode=$(nvpmodel -q 2>/dev/null | sed -n 's/^NV Power Mode: //p')
  say "power mode: ${mode:-unknown} (the highest mode trains fastest: sudo nvpmodel -m 0)"
fi
exit 0
