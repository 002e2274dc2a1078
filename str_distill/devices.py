"""Device and dtype names, one place for inference (:class:`~str_distill.Recognizer`) and training.

>>> resolve_device("auto")  # doctest: +SKIP
device(type='cpu')
>>> resolve_dtype("bf16", torch.device("cpu"))
torch.bfloat16
"""

from __future__ import annotations

import torch

__all__ = ["DTYPES", "DTYPE_ALIASES", "cpu_has_native_bf16", "resolve_device", "resolve_dtype"]

#: The floating-point dtypes by their canonical names (saved weights, configs).
DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
#: Every accepted spelling of them.
DTYPE_ALIASES = {
    **DTYPES,
    "fp32": torch.float32, "float": torch.float32,
    "fp16": torch.float16, "half": torch.float16,
    "bf16": torch.bfloat16,
}


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``"auto"``: CUDA when available, else CPU; otherwise ``torch.device(device)``, checked to exist.

    Raises:
        ValueError: a CUDA device is asked for on a machine without CUDA.
    """
    if isinstance(device, str) and device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {str(device)!r} requested but CUDA is not available; use device='cpu' or 'auto'")
    return dev


def resolve_dtype(dtype: str | torch.dtype | None, device: torch.device) -> torch.dtype:
    """Inference dtype: float32 (default), bfloat16, or float16 on CUDA only (any spelling of
    :data:`DTYPE_ALIASES`).

    Raises:
        ValueError: for other dtypes and for float16 on the CPU (use bfloat16 there).
    """
    dt = DTYPE_ALIASES.get(dtype, dtype) if isinstance(dtype, str) else (dtype or torch.float32)
    if dt not in (torch.float32, torch.float16, torch.bfloat16):
        raise ValueError(f"dtype must be float32, float16 or bfloat16, got {dtype!r}")
    if dt == torch.float16 and device.type == "cpu":
        raise ValueError("float16 inference is not supported on the CPU (slow, emulated kernels); "
                         "use dtype='bfloat16' or 'float32' there, or a CUDA device")
    return dt


def cpu_has_native_bf16() -> bool:
    """Whether this CPU runs bfloat16 matrix kernels natively (AVX512-BF16 / AMX), where bf16 autocast is faster."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False
