"""offhook's audio core: echo canceller, noise gate and privacy mute for the agent's headset.

The signal path is ``headset mic -> AEC (far-end reference) -> noise gate -> privacy mute ->
softphone input``. Every stage is frame-based (10 ms) with streaming state, so the same code
serves offline file processing (`offhook audio process`) and the real-time pipeline
(`offhook audio run`). Samples are float64 in [-1, 1]; processing runs at 16 kHz, and the
48 kHz path is resampled around it (see :mod:`offhook.audio.chain`).
"""

from __future__ import annotations

PROCESS_RATE = 16000
FRAME_MS = 10
# Real-time I/O backends (offhook.audio.realtime); here so the CLI offers them without numpy.
BACKENDS = ("auto", "pulse", "portaudio")
