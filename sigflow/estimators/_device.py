"""Resolution of the ``device`` parameter."""

from __future__ import annotations

import torch


def resolve_device(device):
    """Turn ``"auto"``, ``"cpu"``, ``"cuda"``, ``"cuda:N"`` or a ``torch.device`` into a device.

    ``"auto"`` picks CUDA when it is available and the CPU otherwise. Asking for CUDA on a
    machine without it raises a ``ValueError`` instead of silently using the CPU. A CUDA
    device comes with its index (``"cuda"`` is the current GPU, ``cuda:0`` by default), so
    that a fitted model keeps to its GPU when the current one changes.
    """
    if device is None or (isinstance(device, str) and device == "auto"):
        if not torch.cuda.is_available():
            return torch.device("cpu")
        return torch.device("cuda", torch.cuda.current_device())
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ValueError(
            f"device must be 'auto', 'cpu', 'cuda' or 'cuda:N', got {device!r}"
        ) from exc
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(
            f"device={device!r} was requested but CUDA is not available on this machine; "
            "use device='auto' or device='cpu' (sigflow --device auto or cpu)"
        )
    if resolved.type not in ("cpu", "cuda"):
        raise ValueError(f"device must be a CPU or CUDA device, got {device!r}")
    if resolved.type == "cuda":
        index = torch.cuda.current_device() if resolved.index is None else resolved.index
        if index >= torch.cuda.device_count():
            raise ValueError(
                f"device={device!r}: this machine has {torch.cuda.device_count()} CUDA "
                f"device(s), cuda:0 to cuda:{torch.cuda.device_count() - 1}"
            )
        resolved = torch.device("cuda", index)
    return resolved
