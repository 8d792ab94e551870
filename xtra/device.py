"""Where tensors live and in which precision: the device and mixed-precision rules of every stage.

The learner, the planner (acting, evaluation, reanalysis) and the stages all ask here, so a run's
networks agree on one device and one autocast dtype.
"""

from __future__ import annotations

from contextlib import nullcontext

import torch

from xtra.errors import ConfigError

AMP_SETTINGS = ("auto", "on", "off")


def resolve_device(spec: str) -> torch.device:
    """``auto`` -> CUDA when this PyTorch sees a GPU, else the CPU; ``cpu``/``cuda[:N]`` as given.

    A CUDA device on a PyTorch without one is a one-line ConfigError, not a torch assertion."""
    if spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(spec)
    except (RuntimeError, ValueError):
        raise ConfigError(f"device {spec!r} is not a device: use auto, cpu or cuda") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(
            f"device {spec!r}: this PyTorch sees no CUDA GPU ({torch.__version__}); "
            "use device=cpu or auto, or install a CUDA build of PyTorch"
        )
    if device.type == "cuda" and (device.index or 0) >= torch.cuda.device_count():
        raise ConfigError(
            f"device {spec!r}: this machine has {torch.cuda.device_count()} CUDA GPU(s), "
            "numbered from 0: use device=cuda or cuda:N with N below that"
        )
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise ConfigError(
            f"device {spec!r}: this PyTorch or machine has no MPS (Apple GPU) support; "
            "use device=cpu or auto"
        )
    return device


def amp_enabled(setting: str, device: torch.device) -> bool:
    """``optim.amp``: ``on``, ``off``, or ``auto`` = on exactly when training on CUDA."""
    return setting == "on" or (setting == "auto" and device.type == "cuda")


def amp_dtype(device: torch.device) -> torch.dtype:
    """bfloat16 where the device has it (the CPU, Ampere and newer GPUs), float16 otherwise."""
    if device.type == "cpu" or torch.cuda.is_bf16_supported():
        return torch.bfloat16
    return torch.float16


def autocast(device: torch.device, enabled: bool, *, cache: bool = True):
    """The autocast context of a network call (a no-op when AMP is off). ``cache=False`` inside
    a CUDA-graph capture, which must not capture autocast's weight cache."""
    if not enabled:
        return nullcontext()
    return torch.autocast(device.type, dtype=amp_dtype(device), cache_enabled=cache)
