"""Regenerate the demo's WAV files with espeak-ng: ``python -m lkproto.agents.demo.make_assets``.

Needs the ``espeak-ng`` program (Debian: ``apt-get install espeak-ng``; the files in ``assets/``
were made with eSpeak NG 1.51, voice ``en-us``, 180 words per minute) and PyAV (the ``rtc``
extra). espeak-ng writes 22.05 kHz mono WAV; this resamples it to 16 kHz mono 16-bit with PyAV,
trims the leading and trailing silence, and writes ``assets/question.wav`` (what the frontend
"says") and ``assets/answer.wav`` (what the agent "says"). The texts are
:data:`~lkproto.agents.demo.QUESTION_TEXT` and :data:`~lkproto.agents.demo.ANSWER_TEXT`.
"""

from __future__ import annotations

import io
import shutil
import subprocess
import sys
import wave
from typing import TYPE_CHECKING, Final

from lkproto.agents.demo import ANSWER_TEXT, QUESTION_TEXT
from lkproto.agents.demo.media import ANSWER_WAV, FRAME_MS, QUESTION_WAV, Clip, rms

if TYPE_CHECKING:
    from pathlib import Path

__all__ = ["SAMPLE_RATE", "main", "synthesize"]

SAMPLE_RATE: Final = 16_000
VOICE: Final = "en-us"
WORDS_PER_MINUTE: Final = 180
# frames quieter than this (fraction of full scale) at either end are cut
_TRIM_RMS: Final = 0.005
_KEEP_S: Final = 0.05


def synthesize(text: str) -> Clip:
    """``text`` spoken by espeak-ng, as 16 kHz mono 16-bit PCM with the silence trimmed."""
    import av

    espeak = shutil.which("espeak-ng")
    if espeak is None:
        raise RuntimeError("espeak-ng is not installed (Debian: apt-get install espeak-ng)")
    wav_bytes = subprocess.run(
        [espeak, "-v", VOICE, "-s", str(WORDS_PER_MINUTE), "--stdout", text],
        check=True,
        capture_output=True,
    ).stdout
    pcm = bytearray()
    resampler = av.AudioResampler(format="s16", layout="mono", rate=SAMPLE_RATE)
    with av.open(io.BytesIO(wav_bytes), mode="r", format="wav") as container:
        for frame in container.decode(audio=0):
            for out in resampler.resample(frame):
                pcm += bytes(out.planes[0])[: out.samples * 2]
    for out in resampler.resample(None):
        pcm += bytes(out.planes[0])[: out.samples * 2]
    frames = Clip(bytes(pcm), SAMPLE_RATE).frames()
    loud = [i for i, f in enumerate(frames) if rms(f) >= _TRIM_RMS]
    if not loud:
        raise RuntimeError(f"espeak-ng produced silence for {text!r}")
    keep = round(_KEEP_S * 1000 / FRAME_MS)
    start, end = max(0, loud[0] - keep), min(len(frames), loud[-1] + 1 + keep)
    return Clip(b"".join(frames[start:end]), SAMPLE_RATE)


def _write(path: Path, clip: Clip) -> None:
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(clip.sample_rate)
        wav.writeframes(clip.pcm)


def main() -> int:
    """Write both WAV files and print their sizes."""
    for path, text in ((QUESTION_WAV, QUESTION_TEXT), (ANSWER_WAV, ANSWER_TEXT)):
        clip = synthesize(text)
        _write(path, clip)
        print(f"{path}: {clip.duration:.2f} s, {path.stat().st_size} bytes: {text!r}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
