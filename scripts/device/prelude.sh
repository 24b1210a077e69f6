# Sourced at the start of every command sent to the lent GPU machine (see the tool library's
# device README): unpacks the carried Vulkan/GL loaders, points the loader at NVIDIA's driver and
# gives Mesa/wgpu a private runtime directory. Carry `.gl` (the loader .debs) and `.devbin` (the
# release `onepath` built here).
for f in .gl/*.deb; do dpkg -x "$f" /; done
ldconfig
icd=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
if [ -f "$icd" ]; then
    export VK_DRIVER_FILES=$icd
    export __EGL_VENDOR_LIBRARY_FILENAMES=/usr/local/nvidia/share/glvnd/egl_vendor.d/10_nvidia.json
fi
export XDG_RUNTIME_DIR=/tmp/xdg
mkdir -p "$XDG_RUNTIME_DIR"
nvidia-smi --query-gpu=name,driver_version,clocks.sm,pstate --format=csv,noheader || true
