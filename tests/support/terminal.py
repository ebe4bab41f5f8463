"""Reading what a child process drew on a pseudo-terminal (progress bars, prompts)."""

from __future__ import annotations

import os


def read_until_closed(fd: int) -> bytes:
    """Everything written to the pty whose controller end is ``fd``, until the child closes
    its end (Linux then answers EIO, not an empty read)."""
    seen = b""
    while True:
        try:
            chunk = os.read(fd, 65536)
        except OSError:  # the child closed its end
            break
        if not chunk:
            break
        seen += chunk
    return seen
