"""Logging: every message says which stage (and generation, width, seed...) it is from."""

from __future__ import annotations

import logging
import sys


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever ``sys.stderr`` is when a line is logged, not to the stream it was
    when the handler was made (a test harness or a caller may replace and close it)."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, value) -> None:  # StreamHandler.__init__ assigns it
        pass


def get_logger(stage: str, **context: object) -> logging.LoggerAdapter:
    """A logger whose lines read ``time [stage gen=3 seed=0] message``.

    Output goes to stderr, which the workflow's rules redirect into their ``log:`` file.
    """
    root = logging.getLogger("dlrepro")
    if not root.handlers:
        handler = _StderrHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s %(message)s", "%H:%M:%S"))
        root.addHandler(handler)
        root.setLevel(logging.INFO)
        root.propagate = False
    tag = " ".join([stage] + [f"{k}={v}" for k, v in context.items()])

    class _Adapter(logging.LoggerAdapter):
        def process(self, msg, kwargs):
            return f"[{tag}] {msg}", kwargs

    return _Adapter(logging.getLogger(f"dlrepro.{stage}"), {})
