"""Building the default detector model offline: the Darknet converter (``darknet``), the INT8
quantizer and its check against FP32 (``quantize``), calibration frames (``calibration``),
and the build itself (``default_model``).

This is build tooling, not the runtime detector: the detectors load ONNX files through
:mod:`feedtag.vision.registry`, which imports this package only when the default model is
missing or stale (the first run, or ``feedtag models build``).
"""
