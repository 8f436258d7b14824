"""Test glue for baresip 1.0.0 (the reusable part is product code: ctad/baresip.py).

    async with baresip_phone(tmp_path / "b", user="1000", tone_hz=1500) as b:
        await b.dial(...); await b.wait_event("CALL_ESTABLISHED")
    path = await wait_recording(b)

`baresip_phone` always reaps the process (quit over ctrl_tcp, then SIGTERM/SIGKILL) and, when
the body raises, appends the tail of baresip's log to the error so a failed interop test shows
what baresip saw.
"""

from __future__ import annotations

import asyncio
import time
from contextlib import asynccontextmanager
from pathlib import Path
from typing import AsyncIterator

from common.audio import read_wav
from ctad.baresip import Baresip, BaresipConfig, BaresipError

__all__ = ["Baresip", "BaresipConfig", "BaresipError", "baresip_phone", "wait_recording"]


@asynccontextmanager
async def baresip_phone(directory: Path, **config) -> AsyncIterator[Baresip]:
    phone = Baresip(BaresipConfig(directory=directory, sip_trace=True, **config))
    phone.start()
    try:
        await phone.connect()
        yield phone
    except BaseException as exc:
        exc.add_note(f"--- {directory}/baresip.log (tail) ---\n{phone.log()[-3000:]}")
        raise
    finally:
        await phone.aclose()


async def wait_recording(phone: Baresip, *, min_seconds: float = 1.0, timeout: float = 5.0) -> Path:
    """The newest received-audio dump once it holds `min_seconds` (sndfile writes as it goes)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            path = phone.recording()
            samples, rate = read_wav(path)
            if len(samples) >= min_seconds * rate:
                return path
        except (BaresipError, ValueError, OSError):
            pass
        if time.monotonic() > deadline:
            raise BaresipError(f"no recording of {min_seconds} s in {phone.rec_dir} after {timeout} s")
        await asyncio.sleep(0.1)
