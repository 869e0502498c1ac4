"""Which GPU execution providers count as working: only those a session really starts on.

The tests run ONNX Runtime's CPU build, which lists no GPU provider; the GPU build's
behaviour on a machine without a GPU (it lists TensorRT and CUDA, then falls back to the CPU
with pages of errors when a session asks for them) is played by a fake behind the module's
``ort`` seam."""

from __future__ import annotations

import importlib.metadata
import logging
import sys
from collections.abc import Iterator, Sequence
from typing import Any

import onnxruntime
import pytest

from feedtag.vision import gpu
from feedtag.vision.onnx_backend import choose_providers


@pytest.fixture(autouse=True)
def fresh_probe() -> Iterator[None]:
    gpu.working_gpu_providers.cache_clear()
    yield
    gpu.working_gpu_providers.cache_clear()


class FakeGpuBuild:
    """``onnxruntime-gpu`` where only the providers in ``starts`` can start a session."""

    def __init__(self, starts: Sequence[str]) -> None:
        self.starts = set(starts)
        self.severities: list[int] = []
        self.asked: list[list[str]] = []
        self.SessionOptions = onnxruntime.SessionOptions

    def get_available_providers(self) -> list[str]:
        return ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]

    def set_default_logger_severity(self, level: int) -> None:
        self.severities.append(level)

    def InferenceSession(self, model: bytes, options: Any, providers: list[str]) -> Any:
        self.asked.append(list(providers))
        onnxruntime.InferenceSession(model, options, providers=["CPUExecutionProvider"])
        if providers[0] not in self.starts:
            print("EP Error ... Falling back to ['CPUExecutionProvider'] and retrying.")
            sys.stderr.write("Failed to load library libcublasLt.so.13\n")
        started = [name for name in providers if name in self.starts or name.startswith("CPU")]

        class Session:
            def get_providers(self) -> list[str]:
                return started

        return Session()


def test_the_cpu_build_has_no_gpu_provider_and_tries_none() -> None:
    assert gpu.working_gpu_providers() == ()
    assert choose_providers(onnxruntime.get_available_providers(), ()) == ["CPUExecutionProvider"]


def test_a_provider_counts_only_when_a_session_starts_on_it(
    monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    fake = FakeGpuBuild(starts=["CUDAExecutionProvider"])  # CUDA works, TensorRT is missing
    monkeypatch.setattr(gpu, "ort", fake)
    assert gpu.working_gpu_providers() == ("CUDAExecutionProvider",)
    assert fake.asked == [
        ["TensorrtExecutionProvider", "CPUExecutionProvider"],
        ["CUDAExecutionProvider", "CPUExecutionProvider"],
    ]
    assert gpu.working_gpu_providers() == ("CUDAExecutionProvider",)  # probed once
    assert len(fake.asked) == 2
    said = capfd.readouterr()
    assert "Falling back" not in said.out + said.err  # the fallback's noise is kept quiet
    assert fake.severities[-1] == 2  # ONNX Runtime's logging is back to its default
    available = fake.get_available_providers()
    assert choose_providers(available, gpu.working_gpu_providers()) == [
        "CUDAExecutionProvider",
        "CPUExecutionProvider",
    ]


def test_a_gpu_build_where_nothing_starts_says_why_once(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(gpu, "ort", FakeGpuBuild(starts=[]))
    with caplog.at_level(logging.WARNING, logger="feedtag.vision.gpu"):
        assert gpu.working_gpu_providers() == ()
        gpu.working_gpu_providers()
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "TensorrtExecutionProvider, CUDAExecutionProvider" in warnings[0]
    assert "the detector runs on the CPU" in warnings[0]


def test_both_runtime_distributions_installed_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    assert gpu.runtime_clash() is None  # the test environment has the CPU build only
    versions = {"onnxruntime": "1.32.0", "onnxruntime-gpu": "1.31.1"}

    def version(name: str) -> str:
        if name not in versions:
            raise importlib.metadata.PackageNotFoundError(name)
        return versions[name]

    monkeypatch.setattr(importlib.metadata, "version", version)
    clash = gpu.runtime_clash()
    assert clash is not None
    assert "onnxruntime 1.32.0 and onnxruntime-gpu 1.31.1" in clash
    assert "scripts/setup.sh --gpu" in clash
