"""Chunked flow extraction: captures (or a pcap stream on stdin) -> chunks of finished flows.

:func:`iter_flow_chunks` runs the same reader and :class:`~janus.capture.flows.FlowAssembler`
as ``janus extract`` over the captures (one continuous stream, in order) and hands out the
flows finished so far whenever at least ``chunk_flows`` of them have piled up, instead of
holding every flow to the end: memory is bounded by the active flows plus one chunk, whatever
the capture's size. Together the chunks hold exactly the flows of ``janus extract`` on the
same input, with the same 5-tuples, times, counts and packet rows (each chunk is ordered by
start time; a later chunk may hold a flow that started earlier, a long one).

``-`` as a path reads a pcap/pcapng stream from standard input (``tcpdump -w - | ...``).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path

from janus.capture.batch import SkipCounter
from janus.capture.flows import FlowAssembler, FlowResult
from janus.errors import ConfigError, JanusError

#: The path that means "standard input".
STDIN = "-"
#: Flows handed out per chunk by default (16,384 flows x 64 packets x 9 channels of float32
#: is 38 MiB of padded tensor while a chunk is scored).
DEFAULT_CHUNK_FLOWS = 16_384


def check_sources(paths: Sequence[str | os.PathLike]) -> list[str]:
    """The capture paths as text; each must exist, ``-`` (stdin) at most once."""
    paths = [str(p) for p in paths]
    if not paths:
        raise ConfigError("no capture given")
    if paths.count(STDIN) > 1:
        raise ConfigError("'-' (standard input) can be given only once")
    for p in paths:
        if p != STDIN and not Path(p).is_file():
            raise JanusError(f"{p}: capture file not found")
    return paths


def iter_flow_chunks(
    paths: Sequence[str | os.PathLike],
    *,
    max_packets: int,
    idle_timeout: float,
    active_timeout: float | None,
    chunk_flows: int = DEFAULT_CHUNK_FLOWS,
    chunk_bytes: int = 32 << 20,
    skips: SkipCounter | None = None,
    progress: bool | None = False,
) -> Iterator[FlowResult]:
    """Finished flows of ``paths`` in chunks of at least ``chunk_flows`` (the last one: the
    rest). ``FlowResult.file_index`` indexes ``paths``. ``progress``: a tqdm bar on stderr over
    the input bytes (None: only when stderr is a terminal; a pipe has no known size).
    """
    from tqdm import tqdm

    from janus.capture.extract import load_runtime
    from janus.capture.pcap import iter_capture

    paths = check_sources(paths)
    if chunk_flows < 1:
        raise ConfigError(f"chunk size must be at least 1 flow, got {chunk_flows}")
    asm = FlowAssembler(max_packets, idle_timeout, active_timeout, sources=paths)
    load_runtime()
    sizes = [None if p == STDIN else Path(p).stat().st_size for p in paths]
    total = None if None in sizes else sum(sizes)
    skips = SkipCounter() if skips is None else skips
    disable = None if progress is None else not progress
    with tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024, desc="detect",
              disable=disable, dynamic_ncols=True, file=sys.stderr) as bar:
        for index, path in enumerate(paths):
            stream = sys.stdin.buffer if path == STDIN else None
            for batch in iter_capture(path, file_index=index, skips=skips,
                                      chunk_bytes=chunk_bytes, stream=stream):
                asm.add(batch)
                # The reader reports no offsets: advance by record header + frame bytes.
                bar.update(16 * len(batch) + int(batch.wire_len.sum()))
                if asm.n_finished >= chunk_flows:
                    yield asm.drain()
        res = asm.finish()
    if len(res):
        yield res
