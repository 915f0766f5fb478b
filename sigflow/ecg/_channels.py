"""Channels of a record chosen by index or by lead name, for WFDB records and EDF files."""

from __future__ import annotations

import numpy as np


def resolve_channels(channels, names, n_channels, where):
    """``channels`` as distinct indices in ``range(n_channels)``.

    Each item is an index, a lead name of ``names`` in any case, or a string of digits that
    names no lead (an index, as a command line gives it). ``where`` names the record in the
    errors (``"record mitdb/101"``, ``"EDF file x.edf"``).
    """
    if isinstance(channels, (str, int, np.integer)):
        channels = [channels]
    try:
        items = list(channels)
    except TypeError:
        raise ValueError(
            f"channels must be a list of channel indices or lead names, got {channels!r}"
        ) from None
    listed = (f"its {n_channels} channel(s): {names}" if names
              else f"its {n_channels} channel(s)")
    out = []
    for c in items:
        if isinstance(c, str):
            match = [i for i, n in enumerate(names) if n.strip().upper() == c.strip().upper()]
            if match:
                out.append(match[0])
                continue
            if not c.strip().isdigit():
                raise ValueError(f"channels: {where} has no lead {c!r}; {listed}")
            c = int(c.strip())
        if isinstance(c, (int, np.integer)) and not isinstance(c, bool):
            if not 0 <= c < n_channels:
                raise ValueError(f"channels: index {c} is out of range for {where}; {listed}")
            out.append(int(c))
        else:
            raise ValueError(f"channels must hold channel indices or lead names, got {c!r}")
    if not out or len(set(out)) != len(out):
        raise ValueError(f"channels must name distinct channels, at least one; got {channels!r}")
    return out
