#!/usr/bin/env bash
# The checks that need an NVIDIA GPU, in one pass: what the machine has (CUDA, ONNX Runtime's providers,
# TensorRT), the CUDA tests, `parity run` on CUDA (fp32 and fp16) against the CPU reference on the built-in
# demo (demo weights: trained-like outputs, so precision shows), and `parity bench` on CUDA.
#
#   PARITY="python3 -m synctalk_parity.cli" scripts/gpu_check.sh OUT_DIR
#
# PARITY defaults to .venv/bin/parity. Every step runs even when one fails; the exit status is the number of
# failed steps. OUT_DIR receives gpu-check.log and results.tar.gz (each run's and the bench's folder without
# frames, video and dump: summary.md, result.json).
set -u
out=${1:?usage: scripts/gpu_check.sh OUT_DIR}
mkdir -p "$out"
parity=${PARITY:-.venv/bin/parity}
python=${PYTHON:-python3}
failed=0
step() {  # step NAME COMMAND...: run it, log it, count a failure
  local name=$1; shift
  echo "=== $name: $*"
  local t0=$SECONDS
  "$@"; local rc=$?
  echo "=== $name: exit $rc in $((SECONDS - t0)) s"
  [ "$rc" -eq 0 ] || failed=$((failed + 1))
}
exec > >(tee "$out/gpu-check.log") 2>&1

step machine sh -c 'nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader; nproc'
step libraries "$python" -c "
import torch, onnxruntime as ort
print('torch', torch.__version__, 'cuda', torch.version.cuda, 'cudnn', torch.backends.cudnn.version(), 'device', torch.cuda.get_device_name())
print('onnxruntime', ort.__version__, 'providers', ort.get_available_providers())
try:
    import tensorrt
    print('tensorrt', tensorrt.__version__)
except Exception as exc:
    print('tensorrt: not importable:', type(exc).__name__, exc)
"
step doctor $parity doctor
step cuda-tests "$python" -m pytest -q -p no:cacheprovider tests/backends/test_torch.py tests/export/test_tensorrt.py -k "cuda or tensorrt" -rs -s
step tf32-default "$python" -c "
import numpy as np, torch
from synctalk_parity.models import load_models
from synctalk_parity.reference.demo_weights import _fit_inputs, demo_weights
unet, _, _ = load_models(*demo_weights())
images, audio = (torch.from_numpy(a) for a in _fit_inputs())
with torch.inference_mode():
    cpu = unet(images, audio).numpy()
    gpu = unet.cuda()
    for setting in ('tf32', 'ieee'):
        torch.backends.cudnn.conv.fp32_precision = setting
        out = gpu(images.cuda(), audio.cuda()).cpu().numpy()
        print(f'U-Net on CUDA, cuDNN conv fp32_precision={setting}: max|diff| vs CPU {np.abs(out - cpu).max():.3g}')
"
step run-cuda-fp32 $parity run --backend torch --device cuda --out "$out/run-cuda-fp32"
step run-cuda-fp16 $parity run --backend torch --device cuda --precision fp16 --out "$out/run-cuda-fp16"
if "$python" -c "import onnxruntime as o, sys; sys.exit('CUDAExecutionProvider' not in o.get_available_providers())"; then
  step run-ort-cuda $parity run --backend onnxruntime --provider cuda --out "$out/run-ort-cuda"
else
  echo "=== run-ort-cuda: not run: this onnxruntime has no CUDAExecutionProvider"
fi
step bench-cuda $parity bench --backend torch --device cuda --batch 1,8 --frames 64 --repeats 2 --out "$out/bench-cuda"
# one archive of what the steps wrote, without the heavy outputs
(cd "$out" && rm -rf ./*/frames ./*/dump ./*/video.mp4 && tar czf /tmp/gpu-check-results.tar.gz ./*/ \
  && mv /tmp/gpu-check-results.tar.gz results.tar.gz && find . -mindepth 1 -maxdepth 1 -type d -exec rm -rf {} +)
echo "=== $failed step(s) failed"
exit "$failed"
