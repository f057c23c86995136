"""The child side of imaging.processes: `python -m imaging._child FD` serves enhance requests on the socket
FD, one at a time, until the socket closes. Not for direct use."""

import os
import resource
import signal
import sys
import time
from multiprocessing.connection import Connection

import numpy as np

from imaging import sr
from imaging.config import EngineConfig
from imaging.enhance import enhance_image
from imaging.errors import InvalidImageError
from imaging.processes import _CANCEL, _Done, _Failed, _Ready, _Request, _Stopped, _Tile


class _Cancelled(Exception):
    pass


def rss_mb() -> float:
    """Resident memory now (what an image left behind), or the peak where /proc is missing."""
    try:
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except OSError:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def warm_up(config: EngineConfig) -> tuple[float | None, str | None]:
    """Load the runtime and run one tile of the configured size: its seconds, or why the runtime is missing."""
    reason = sr.unavailable_reason()
    if reason is not None or config.engine == "classic":
        return None, reason
    tile = np.zeros((config.sr_tile_size, config.sr_tile_size, 3), np.uint8)
    started = time.perf_counter()
    sr.upscale(tile, 1, config, lambda: None)
    return round(time.perf_counter() - started, 3), None


def serve(conn: Connection, config: EngineConfig) -> None:
    """Answer requests with `config` until the socket closes."""
    tile_seconds, unavailable = warm_up(config)
    conn.send(_Ready(os.getpid(), tile_seconds, unavailable))
    while True:
        try:
            request = conn.recv()
        except EOFError:
            return  # the pool closed us, or its process is gone
        if isinstance(request, _Request):
            conn.send(answer(conn, request, config))
        # Anything else is a cancel that arrived after its image was answered: nothing to stop.


def answer(conn: Connection, request: _Request, config: EngineConfig) -> _Done | _Failed | _Stopped:
    def report(done: int, total: int) -> None:
        conn.send(_Tile(done, total))
        while conn.poll():
            if conn.recv() == _CANCEL:
                raise _Cancelled

    try:
        image = enhance_image(
            request.data,
            request.long_side,
            request.max_pixels,
            config=config,
            on_progress=report,
            output=request.output,
        )
    except _Cancelled:
        return _Stopped(rss_mb())
    except InvalidImageError as exc:
        return _Failed("invalid", str(exc), rss_mb())
    except sr.SuperResolutionUnavailableError as exc:
        return _Failed("unavailable", str(exc), rss_mb())
    except (BrokenPipeError, ConnectionResetError, EOFError):
        sys.exit(0)  # the pool's process is gone: nobody wants this image any more
    except Exception as exc:  # reported, not raised: the child stays usable for the next image
        return _Failed("error", f"{type(exc).__name__}: {exc}", rss_mb())
    return _Done(image, rss_mb())


def main() -> None:
    # Ctrl+C reaches the whole foreground process group; the pool decides when a child stops.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    conn = Connection(int(sys.argv[1]))
    config = conn.recv()
    serve(conn, config)


if __name__ == "__main__":
    main()
