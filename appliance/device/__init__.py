"""The edge device: platform detection, monitoring (tegrastats / jtop / proc / NVML) and memory."""
