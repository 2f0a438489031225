"""Swapping a live stream (layer 9): the merge pipeline run frame by frame on a video or a camera.

:mod:`dfl.live.source` opens the stream, :mod:`dfl.live.pipeline` runs decode, face tracking, alignment,
swap and merge in overlapping threads, :mod:`dfl.live.window` holds the window's keys and drawing, and
:mod:`dfl.live.session` puts them together for ``dfl live``.
"""
