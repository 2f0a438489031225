"""ffmpeg for the workspace: probe a video, video -> frames, frames -> video, cut, denoise.

Commands are built with ffmpeg-python and run with ``-progress pipe:1`` so a tqdm bar shows frames done
against the expected total.  The binary comes from PATH, else from ``imageio-ffmpeg`` (pip ships one for
every platform).  ``ffprobe`` is optional: imageio-ffmpeg has none, so :func:`probe` reads what
``ffmpeg -i`` prints, and :func:`count_frames` decodes with ffmpeg when ffprobe is missing.

Every output a user would miss is written next to its target under a temporary name and renamed into
place only when ffmpeg succeeded, so a failed or interrupted run leaves the previous result untouched.
No output is ever written over one of the step's input videos (:func:`refuse_to_overwrite`), frames are
replaced only when dfl numbered them (:func:`dfl.workspace.list_frames`), ffmpeg dies with dfl
(:mod:`dfl.processes`), and a step removes the temporaries a killed run of it left behind.
"""

from __future__ import annotations

import contextlib
import functools
import os
import re
import shutil
import subprocess
import tempfile
import threading
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import IO, Callable, Iterable, Sequence

import ffmpeg
import numpy as np

from dfl.atomic import make_temp_dir, remove_stale_temp_dirs, remove_stale_temporaries, temp_path_for
from dfl.errors import DflError
from dfl.processes import child_done, start_child
from dfl.progress import progress_bar
from dfl.workspace import CUT_SUFFIX, list_frames, list_images

FRAME_FORMATS = ("png", "jpg")
DEFAULT_BITRATE_MBPS = 16       # DFL's default for merged -> mp4
DEFAULT_CUT_BITRATE_MBPS = 25   # DFL's default for cut-video
DEFAULT_DENOISE_FACTOR = 7      # DFL's default hqdn3d strength (1..20)
JPG_QSCALE = 2                  # ffmpeg's -q:v for jpg frames: 2 is the best practical quality
PNG_COMPRESSION = 1             # zlib level: still lossless, ~4x faster than ffmpeg's default, ~15% larger
PNG_PRED = "up"                 # row filter: frames decode ~25% faster than with the default paeth, 7% smaller
_PIPE_CODECS = {".png": "png", ".jpg": "mjpeg", ".jpeg": "mjpeg", ".bmp": "bmp", ".webp": "webp",
                ".tif": "tiff", ".tiff": "tiff"}


# -- the binaries ------------------------------------------------------------------------------------
@functools.lru_cache(maxsize=None)
def ffmpeg_exe() -> str:
    """ffmpeg from PATH, else the one imageio-ffmpeg ships."""
    found = shutil.which("ffmpeg")
    if found:
        return found
    try:
        import imageio_ffmpeg
        return imageio_ffmpeg.get_ffmpeg_exe()
    except Exception as exc:  # noqa: BLE001 - any failure means "no ffmpeg"
        raise DflError(f"ffmpeg: not found on PATH and imageio-ffmpeg has none ({exc})") from None


@functools.lru_cache(maxsize=None)
def ffprobe_exe() -> str | None:
    """ffprobe from PATH or next to ffmpeg, or None (imageio-ffmpeg ships none)."""
    found = shutil.which("ffprobe")
    if found:
        return found
    sibling = Path(ffmpeg_exe()).with_name("ffprobe" + Path(ffmpeg_exe()).suffix)
    return str(sibling) if sibling.is_file() else None


@functools.lru_cache(maxsize=None)
def ffmpeg_major_version() -> int | None:
    """Major version of the ffmpeg binary, or None for builds that do not say (git snapshots)."""
    try:
        out = subprocess.run([ffmpeg_exe(), "-hide_banner", "-version"], capture_output=True, text=True,
                             timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    m = re.search(r"version\s+n?(\d+)\.", out)
    return int(m.group(1)) if m else None


def _passthrough_args() -> dict[str, str]:
    """One output image per decoded frame (no duplicates or drops), in the flag this ffmpeg knows."""
    major = ffmpeg_major_version()
    return {"vsync": "passthrough"} if major is not None and major < 5 else {"fps_mode": "passthrough"}


# -- probing -----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class VideoInfo:
    """What the steps need to know about a video.  ``width``/``height`` are as displayed (rotation applied)."""

    path: Path
    format: str
    video_codec: str
    width: int
    height: int
    coded_width: int
    coded_height: int
    rotation: float              # degrees as the container's display matrix says (0 when none)
    fps: Fraction
    duration: float | None       # seconds, None when the container does not say
    audio_streams: int
    metadata: dict[str, str] = field(default_factory=dict)  # container-level tags (comment, title, ...)
    codec_tag: str = ""          # the stream's fourcc in mp4/mov ("avc1", "hvc1", "hev1"), "" when none

    @property
    def has_audio(self) -> bool:
        return self.audio_streams > 0

    @property
    def estimated_frames(self) -> int | None:
        """duration x fps, for progress bars; :func:`count_frames` gives the exact number."""
        if self.duration is None or self.fps <= 0:
            return None
        return max(1, round(self.duration * float(self.fps)))


def _require_file(path: Path) -> Path:
    # absolute, so ffmpeg never reads a name like "-x.mp4" as an option or "a:b.mp4" as a protocol
    path = Path(path).absolute()
    if not path.exists():
        raise DflError(f"{path}: no such file")
    if not path.is_file():
        raise DflError(f"{path}: not a file")
    if not os.access(path, os.R_OK):
        raise DflError(f"{path}: not readable")
    return path


def _fps_fraction(value: float) -> Fraction:
    """ffmpeg prints 29.97 for 30000/1001; recover the NTSC fractions, keep other rates as printed."""
    nearest = round(value * 1.001)
    if abs(value - round(value)) > 0.005 and nearest > 0 and abs(value - nearest / 1.001) < 0.006:
        return Fraction(nearest * 1000, 1001)
    return Fraction(value).limit_denominator(1000)


def _parse_probe(path: Path, text: str) -> VideoInfo:
    """Read ``ffmpeg -i`` stderr: container, first video stream, rotation, audio streams, tags."""
    lines = text.splitlines()
    fmt_m = re.search(r"^Input #0, (.+?), from ", text, re.M)
    if fmt_m is None:
        reason = next((ln.rsplit(": ", 1)[-1] for ln in lines if str(path) in ln and ": " in ln), "")
        reason = reason or (lines[-1] if lines else "ffmpeg could not read it")
        raise DflError(f"{path}: not a video file ({reason.strip()})")
    fmt = fmt_m.group(1)
    if fmt == "image2" or fmt.endswith("_pipe"):
        raise DflError(f"{path}: is a still image, not a video")

    metadata: dict[str, str] = {}
    duration: float | None = None
    video_line: str | None = None
    video_extra: list[str] = []
    audio_streams = 0
    section = "format"
    last_key: str | None = None
    for line in lines:
        stripped = line.strip()
        if stripped.startswith("Duration:"):
            section = "duration"
            m = re.match(r"Duration:\s*(\d+):(\d+):(\d+(?:\.\d+)?)", stripped)
            if m:
                duration = int(m.group(1)) * 3600 + int(m.group(2)) * 60 + float(m.group(3))
            continue
        if stripped.startswith("Stream #0:"):
            section = "stream"
            if ": Video:" in stripped and video_line is None and "attached pic" not in stripped:
                video_line = stripped
                section = "video"
            elif ": Audio:" in stripped:
                audio_streams += 1
            continue
        if section == "format" and line.startswith("    ") and ":" in stripped:
            key, _, value = stripped.partition(":")
            key, value = key.strip(), value.strip()
            if key:
                metadata[key] = value
                last_key = key
            elif last_key:  # a multi-line tag continues with an empty key
                metadata[last_key] += "\n" + value
        elif section == "video":
            video_extra.append(stripped)

    if video_line is None:
        raise DflError(f"{path}: has no video stream")
    codec_m = re.search(r"Video: (\w+)", video_line)
    tag_m = re.search(r"\(([0-9A-Za-z ]{4}) / 0x[0-9A-Fa-f]+\)", video_line)
    size_m = re.search(r"(?<!\w)([1-9]\d{0,4})x([1-9]\d{0,4})(?!\w)", video_line.split("Video:", 1)[1])
    fps_m = re.search(r"(\d+(?:\.\d+)?)(k?) fps", video_line) or re.search(r"(\d+(?:\.\d+)?)(k?) tbr", video_line)
    if size_m is None:
        raise DflError(f"{path}: ffmpeg reports no frame size for its video stream")
    coded_w, coded_h = int(size_m.group(1)), int(size_m.group(2))
    fps = Fraction(0)
    if fps_m:
        fps = _fps_fraction(float(fps_m.group(1)) * (1000 if fps_m.group(2) else 1))
    rotation = 0.0
    for extra in video_extra:
        rot_m = re.search(r"rotation of (-?\d+(?:\.\d+)?) degrees", extra) or re.match(r"rotate\s*:\s*(-?\d+)", extra)
        if rot_m:
            rotation = float(rot_m.group(1))
            break
    quarter_turn = round(rotation) % 180 == 90
    width, height = (coded_h, coded_w) if quarter_turn else (coded_w, coded_h)
    return VideoInfo(path=path, format=fmt, video_codec=codec_m.group(1) if codec_m else "?", width=width,
                     height=height, coded_width=coded_w, coded_height=coded_h, rotation=rotation, fps=fps,
                     duration=duration, audio_streams=audio_streams, metadata=metadata,
                     codec_tag=tag_m.group(1).strip() if tag_m else "")


def probe(path: Path) -> VideoInfo:
    """Probe ``path`` with ``ffmpeg -i``; a missing file or one that is not a video is a DflError."""
    path = _require_file(Path(path))
    try:
        proc = subprocess.run([ffmpeg_exe(), "-hide_banner", "-nostdin", "-i", str(path)],
                              capture_output=True, text=True, errors="replace", timeout=120)
    except subprocess.TimeoutExpired:
        raise DflError(f"{path}: ffmpeg took too long to read it") from None
    return _parse_probe(path, proc.stderr)


def count_frames(path: Path) -> int:
    """Exact number of frames in the first video stream: ffprobe when present, else a decode with ffmpeg."""
    path = _require_file(Path(path))
    probe_exe = ffprobe_exe()
    if probe_exe:
        out = subprocess.run([probe_exe, "-v", "error", "-select_streams", "v:0", "-count_frames",
                              "-show_entries", "stream=nb_read_frames", "-of", "csv=p=0", str(path)],
                             capture_output=True, text=True)
        digits = re.search(r"\d+", out.stdout)
        if out.returncode == 0 and digits:
            return int(digits.group())
    job = ffmpeg.input(str(path)).output("-", format="null", map="0:v:0", **_passthrough_args())
    frames = _run(job, total=None, desc=None, what=path)
    return frames


# -- running ffmpeg ----------------------------------------------------------------------------------
def _compile(job, output: str | Path | None = None, extra_output_args: Sequence[str] = ()) -> list[str]:
    """ffmpeg-python's command line plus our global flags; ``extra_output_args`` go just before ``output``
    (ffmpeg-python cannot repeat an option such as ``-metadata``)."""
    args = job.global_args("-hide_banner", "-nostdin", "-nostats", "-loglevel", "error",
                           "-progress", "pipe:1").overwrite_output().compile(cmd=ffmpeg_exe())
    if extra_output_args:
        idx = len(args) - 1 - args[::-1].index(str(output))
        args[idx:idx] = list(extra_output_args)
    return args


def _run(job, *, total: int | None, desc: str | None, what: Path, feed: Callable[[IO[bytes]], None] | None = None,
         output: str | Path | None = None, extra_output_args: Sequence[str] = ()) -> int:
    """Run an ffmpeg job with a progress bar; returns the frames ffmpeg reports done.

    ``feed`` writes the stdin input (images or raw frames) from a thread while this thread reads progress.
    A failure becomes a one-line DflError naming ``what`` and ffmpeg's own last error line.
    """
    cmd = _compile(job, output, extra_output_args)
    frames = 0
    with tempfile.TemporaryFile() as errfile:
        try:
            proc = start_child(cmd, stdin=subprocess.PIPE if feed else subprocess.DEVNULL,
                               stdout=subprocess.PIPE, stderr=errfile)
        except OSError as exc:
            raise DflError(f"{cmd[0]}: cannot run ffmpeg ({exc.strerror or exc})") from None
        feeder_error: list[BaseException] = []
        feeder = None
        if feed is not None:
            def _feed() -> None:
                try:
                    feed(proc.stdin)
                except OSError:
                    pass  # ffmpeg stopped reading: its exit code and stderr tell why
                except BaseException as exc:  # noqa: BLE001 - re-raised in the main thread
                    feeder_error.append(exc)
                    with contextlib.suppress(OSError):
                        proc.kill()  # the output is abandoned: do not wait for ffmpeg to finish it
                finally:
                    with contextlib.suppress(OSError):
                        proc.stdin.close()
            feeder = threading.Thread(target=_feed, daemon=True)
            feeder.start()
        bar = progress_bar(total=total, desc=desc, unit="frame", leave=False, progress=desc is not None)
        try:
            assert proc.stdout is not None
            for raw in proc.stdout:
                key, _, value = raw.decode("ascii", "replace").strip().partition("=")
                if key == "frame" and value.isdigit():
                    frames = int(value)
                    if total is not None and frames > bar.total:
                        bar.total = frames
                    bar.update(frames - bar.n)
            proc.wait()
        except BaseException:
            proc.kill()
            proc.wait()
            raise
        finally:
            bar.close()
            child_done(proc)
            if feeder is not None:
                feeder.join(timeout=30)
        if feeder_error:
            raise feeder_error[0]
        if proc.returncode != 0:
            errfile.seek(0)
            err_lines = [ln.strip() for ln in errfile.read().decode("utf-8", "replace").splitlines() if ln.strip()]
            detail = err_lines[-1] if err_lines else f"exit code {proc.returncode}"
            raise DflError(f"{what}: ffmpeg failed: {detail}")
    return frames


def _feed_files(files: Sequence[Path]) -> Callable[[IO[bytes]], None]:
    def feed(stdin: IO[bytes]) -> None:
        for path in files:
            stdin.write(_read_frame(path))
    return feed


def _read_frame(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:  # not a pipe error: must fail the run, not shorten the video
        raise DflError(f"{path}: cannot read it ({exc.strerror or exc})") from None


_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
try:  # ISA-L's CRC-32 is several times faster than zlib's (measured ~0.4 vs ~2 ms per 720p frame)
    from isal.isal_zlib import crc32 as _crc32
except ImportError:  # pragma: no cover - isal is a dependency, but optional at run time
    from zlib import crc32 as _crc32


def _png_problem(data: bytes) -> str | None:
    """Walk the chunks, checking each CRC: finds truncation and damage in well under 1 ms per 720p frame
    (decoding it takes ~50x longer)."""
    pos = len(_PNG_SIGNATURE)
    while pos + 12 <= len(data):
        length = int.from_bytes(data[pos:pos + 4], "big")
        end = pos + 8 + length
        if end + 4 > len(data):
            break
        if _crc32(data[pos + 4:end]) != int.from_bytes(data[end:end + 4], "big"):
            return f"damaged PNG (checksum error in its {data[pos + 4:pos + 8].decode('latin-1')} chunk)"
        if data[pos + 4:pos + 8] == b"IEND":
            return None
        pos = end + 4
    return "truncated PNG (it ends before its last chunk)"


def frame_problem(path: Path, data: bytes) -> str | None:
    """Why ffmpeg could not use this frame file (empty, truncated, damaged), or None.

    ffmpeg drops such a frame silently (or, reading a pipe of PNGs, loses its place and drops the frames
    after it), so each one is checked before it is sent.
    """
    if not data:
        return "empty file (0 bytes)"
    suffix = path.suffix.lower()
    if suffix == ".png":
        return "not a PNG image" if not data.startswith(_PNG_SIGNATURE) else _png_problem(data)
    if suffix in (".jpg", ".jpeg"):
        if not data.startswith(b"\xff\xd8"):
            return "not a JPEG image"
        if b"\xff\xd9" not in data[-64:]:
            return "truncated JPEG (no end-of-image marker)"
    return None


def _feed_checked(files: Sequence[Path], on_bad_frame: Callable[[Path, str], None] | None
                  ) -> Callable[[IO[bytes]], None]:
    """Feed frames, refusing one that cannot be used, or with ``on_bad_frame`` repeating the previous good
    frame in its place (the next good one when the video starts with bad frames)."""
    def feed(stdin: IO[bytes]) -> None:
        last: bytes | None = None
        owed = 0
        for path in files:
            data = _read_frame(path)
            problem = frame_problem(path, data)
            if problem is not None:
                if on_bad_frame is None:
                    raise DflError(f"{path}: {problem}; replace or re-merge it (or pass --repeat-bad-frames to "
                                   "repeat the previous frame in its place)")
                on_bad_frame(path, problem)
                if last is None:
                    owed += 1
                    continue
                data = last
            else:
                last = data
                for _ in range(owed):
                    stdin.write(data)
                owed = 0
            stdin.write(data)
        if last is None:
            raise DflError(f"{files[0].parent}: none of its {len(files)} frames can be read")
    return feed


def refuse_to_overwrite(output: Path, inputs: Iterable[Path | None]) -> None:
    """The one check that keeps a step from writing over its inputs (the workspace's videos, the
    reference whose audio it copies, the video it cuts): ``output`` naming any of them is a DflError."""
    out = Path(output).absolute()
    for given in inputs:
        if given is None:
            continue
        inp = Path(given).absolute()
        try:
            same = os.path.samefile(out, inp) if out.exists() and inp.exists() else out.resolve() == inp.resolve()
        except OSError:
            same = False
        if same:
            raise DflError(f"{out}: is {inp.name}, an input video; dfl never writes over its inputs, so choose "
                           "another output")


def _make_temp_dir(parent: Path, prefix: str) -> Path:
    """A hidden work folder inside ``parent`` (created if needed), after removing those a killed run of
    the same step left there; an unwritable parent is a DflError."""
    if parent.exists() and not parent.is_dir():
        raise DflError(f"{parent}: is a file, not a folder")
    try:
        parent.mkdir(parents=True, exist_ok=True)
        remove_stale_temp_dirs(parent, prefix)
        return make_temp_dir(parent, prefix)
    except OSError as exc:
        raise DflError(f"{parent}: cannot write here ({exc.strerror or exc})") from None


def _temp_output(path: Path) -> Path:
    parent = path.parent
    if parent.exists() and not parent.is_dir():
        raise DflError(f"{parent}: is a file, not a folder")
    if not parent.is_dir():
        raise DflError(f"{parent}: output folder does not exist")
    if path.is_dir():
        raise DflError(f"{path}: is a folder, not a file")
    remove_stale_temporaries(parent, path)  # what a killed run writing this same output left
    try:
        return temp_path_for(path)
    except OSError as exc:
        raise DflError(f"{parent}: cannot write here ({exc.strerror or exc})") from None


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _replace(tmp: Path, target: Path) -> None:
    """Rename a finished temp file over ``target`` with the permissions a new file would have had
    (the temp file was created private by mkstemp)."""
    try:
        with contextlib.suppress(OSError):
            os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, target)
    except OSError as exc:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise DflError(f"{target}: cannot write it ({exc.strerror or exc})") from None


# -- video -> frames ---------------------------------------------------------------------------------
def extract_frames(video: Path, out_dir: Path, *, fps: float = 0, fmt: str = "png", overwrite: bool = False,
                   desc: str | None = "Extracting frames") -> int:
    """Decode ``video`` into ``out_dir/00001.<fmt>`` ..., upright (rotation flags honoured).

    ``fps`` 0 keeps every frame; otherwise frames are sampled at that rate.  Numbered frames already in
    ``out_dir`` are an error unless ``overwrite``; they are replaced only after the new ones are all
    written.  Nothing else there is touched: not other images (the user's), not subfolders (``aligned``).
    Returns the number of frames written; :func:`missing_frames` tells whether the video was cut short.
    """
    fmt = fmt.lower().lstrip(".")
    if fmt == "jpeg":
        fmt = "jpg"
    if fmt not in FRAME_FORMATS:
        raise DflError(f"{fmt}: frame format must be png or jpg")
    if fps < 0:
        raise DflError(f"{fps}: --fps must be 0 (full rate) or positive")
    out_dir = Path(out_dir).absolute()
    info = probe(video)
    if out_dir.exists() and not out_dir.is_dir():
        raise DflError(f"{out_dir}: is a file, not a folder")
    existing = list_frames(out_dir)
    if existing and not overwrite:
        raise DflError(f"{out_dir}: already holds {len(existing)} frames; pass --overwrite to replace them")
    work = _make_temp_dir(out_dir, ".extracting-")
    try:
        stream = ffmpeg.input(str(info.path))["v:0"]
        kwargs: dict[str, object] = dict(_passthrough_args())
        total = info.estimated_frames
        if fps:
            stream = stream.filter("fps", fps=fps)
            kwargs.pop("fps_mode", None)
            kwargs.pop("vsync", None)
            if info.duration:
                total = max(1, round(info.duration * fps))
        if fmt == "png":
            kwargs.update({"pix_fmt": "rgb24", "compression_level": PNG_COMPRESSION, "pred": PNG_PRED})
        else:
            kwargs["q:v"] = JPG_QSCALE
        pattern = str(work / f"%05d.{fmt}")
        job = stream.output(pattern, **kwargs)
        _run(job, total=total, desc=desc, what=info.path)
        produced = sorted(work.glob(f"*.{fmt}"))
        if not produced:
            raise DflError(f"{info.path}: ffmpeg decoded no frames from it")
        for old in list_frames(out_dir):
            old.unlink()
        for new in produced:
            os.replace(new, out_dir / new.name)
        return len(produced)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def missing_frames(info: VideoInfo, produced: int, fps: float = 0) -> str | None:
    """A one-line note when ``produced`` frames fall short of what the container declares (duration x
    rate): a truncated or damaged file decodes only its first part, and ffmpeg exits 0 doing so."""
    rate = fps or float(info.fps)
    if info.duration is None or rate <= 0:
        return None
    expected = max(1, round(info.duration * rate))
    if expected - produced < max(3, round(0.05 * expected)):  # audio may outlast the video a little
        return None
    return (f"{info.path}: only {produced} of the {expected} frames its container declares "
            f"({info.duration:.2f} s at {rate:g} fps) could be decoded; the file is probably truncated or "
            "damaged")


# -- frames -> video ---------------------------------------------------------------------------------
_STANDARD_MP4_TAGS = {"title", "comment", "description", "artist", "album", "copyright", "date", "genre",
                      "encoder", "composer", "synopsis", "show", "episode_id", "network", "lyrics",
                      "album_artist", "grouping", "track", "disc", "compilation", "year"}


_APPLE_CONTAINERS = (".mp4", ".mov", ".m4v")
# Lossless video that decodes to exactly the frames given: RGB or 4:4:4, never yuv420p (which halves the
# colour resolution and rounds RGB -> YUV, so "lossless" yuv420p differed from its PNG by up to 9 levels).
_LOSSLESS: dict[str, dict[str, object]] = {
    # H.264 in RGB (High 4:4:4 Predictive, qp 0): exact, and the mp4 that result.mp4 promises.  ffmpeg-based
    # players (VLC, mpv, ffplay) and editors built on ffmpeg play it; QuickTime and browsers do not.
    # veryfast: 720x1364 frames at 2x the speed of medium for 10% more bytes (measured, see README).
    "libx264": {"c:v": "libx264rgb", "qp": 0, "pix_fmt": "rgb24", "preset": "veryfast"},
    "libx264rgb": {"c:v": "libx264rgb", "qp": 0, "pix_fmt": "rgb24", "preset": "veryfast"},
    "libx265": {"c:v": "libx265", "pix_fmt": "gbrp", "x265-params": "lossless=1:log-level=error"},
    "libvpx-vp9": {"c:v": "libvpx-vp9", "pix_fmt": "gbrp", "lossless": 1},
    # intra-only lossless codecs: RGB as given (ffv1 fits mp4 and mkv, the others mkv/avi/mov)
    "ffv1": {"c:v": "ffv1"}, "utvideo": {"c:v": "utvideo"}, "huffyuv": {"c:v": "huffyuv"},
    "ffvhuff": {"c:v": "ffvhuff"}, "png": {"c:v": "png"},
}


def is_hevc(codec: str) -> bool:
    """An H.265 encoder (libx265, hevc_nvenc, hevc_videotoolbox, ...)."""
    return codec in ("libx265", "libkvazaar") or codec.startswith("hevc")


def _video_codec_args(codec: str, bitrate_mbps: float, lossless: bool, output: Path) -> dict[str, object]:
    """ffmpeg output options for ``codec``: yuv420p at ``bitrate_mbps``, or a truly lossless RGB / 4:4:4
    encoding (see _LOSSLESS); H.265 in mp4/mov is tagged ``hvc1``, the tag Apple's players require (ffmpeg's
    default ``hev1`` plays elsewhere but not in QuickTime, Safari or on iPhones)."""
    if lossless:
        if codec not in _LOSSLESS:
            raise DflError(f"--codec {codec}: no lossless mode known for this codec; use libx264 (RGB H.264), "
                           f"libx265, libvpx-vp9 or ffv1")
        args = dict(_LOSSLESS[codec])
    else:
        if bitrate_mbps <= 0:
            raise DflError(f"{bitrate_mbps}: bitrate must be positive (Mbit/s)")
        args = {"c:v": codec, "pix_fmt": "yuv420p", "b:v": f"{bitrate_mbps:g}M"}
    if is_hevc(str(args["c:v"])) and Path(output).suffix.lower() in _APPLE_CONTAINERS:
        args["tag:v"] = "hvc1"
    return args


def mask_output_path(output: Path) -> Path:
    """Where the mask video of ``output`` goes: beside it, ``<stem>_mask<ext>`` (result.mp4 ->
    result_mask.mp4, ``-o out/take2.mkv`` -> out/take2_mask.mkv)."""
    output = Path(output)
    return output.with_name(f"{output.stem}_mask{output.suffix}")


def frames_to_video(frames: Path | Sequence[Path], output: Path, *, fps: Fraction | float | str,
                    audio_from: Path | None = None, audio_track: int = 0, bitrate: float = DEFAULT_BITRATE_MBPS,
                    codec: str = "libx264", lossless: bool = False, metadata: dict[str, str] | None = None,
                    desc: str | None = "Writing video", protect: Iterable[Path] = (),
                    on_bad_frame: Callable[[Path, str], None] | None = None) -> int:
    """Encode a folder (or list) of frames into ``output`` at ``fps``, with ``audio_from``'s audio track.

    ``metadata`` becomes container tags (``-metadata key=value``), so the merge step can mark the result
    as synthetic media.  Odd frame sizes are padded by one pixel (yuv420p needs even sizes); ``lossless``
    encodes RGB / 4:4:4 that decodes to exactly the frames given, at their own size.  ``output``
    is replaced only when ffmpeg succeeded, and never when it is ``audio_from`` or one of ``protect``.
    A frame that cannot be read (empty, truncated, damaged) is a DflError naming it, or, with
    ``on_bad_frame``, reported there and replaced by the previous frame.  Returns the number of frames
    encoded.
    """
    if isinstance(frames, (str, Path)):
        folder = Path(frames)
        if not folder.is_dir():
            raise DflError(f"{folder}: frames folder does not exist")
        files = list_images(folder)
        if not files:
            raise DflError(f"{folder}: no frames in this folder")
    else:
        files = [Path(p) for p in frames]
        if not files:
            raise DflError("frames: no frames given")
        folder = files[0].parent
    suffixes = {_PIPE_CODECS.get(p.suffix.lower()) for p in files}
    if len(suffixes) != 1 or None in suffixes:
        raise DflError(f"{folder}: frames must all be one format (png or jpg), found "
                       f"{', '.join(sorted({p.suffix for p in files}))}")
    in_codec = suffixes.pop()
    fps_str = str(Fraction(fps).limit_denominator(1001)) if not isinstance(fps, str) else fps
    if Fraction(fps_str) <= 0:
        raise DflError(f"{fps}: frame rate must be positive")

    output = Path(output).absolute()
    refuse_to_overwrite(output, [audio_from, *protect])
    tmp = _temp_output(output)
    try:
        video_in = ffmpeg.input("pipe:", format="image2pipe", framerate=fps_str, vcodec=in_codec)
        out_kwargs = _video_codec_args(codec, bitrate, lossless, output)
        # yuv420p needs even sizes; RGB and 4:4:4 (lossless) keep the frames' own size, pixel for pixel
        streams = [video_in.video.filter("pad", "ceil(iw/2)*2", "ceil(ih/2)*2")
                   if out_kwargs.get("pix_fmt") == "yuv420p" else video_in.video]
        if audio_from is not None:
            audio_info = probe(audio_from)
            if audio_info.audio_streams > audio_track:
                streams.append(ffmpeg.input(str(audio_info.path))[f"a:{audio_track}"])
                out_kwargs.update({"c:a": "aac", "b:a": "192k", "ar": 48000})
        extra: list[str] = []
        for key, value in (metadata or {}).items():
            extra += ["-metadata", f"{key}={value}"]
        if metadata and output.suffix.lower() in (".mp4", ".mov", ".m4v") and \
                any(k.lower() not in _STANDARD_MP4_TAGS for k in metadata):
            out_kwargs["movflags"] = "+use_metadata_tags"
        job = ffmpeg.output(*streams, str(tmp), **out_kwargs)
        done = _run(job, total=len(files), desc=desc, what=folder, feed=_feed_checked(files, on_bad_frame),
                    output=str(tmp), extra_output_args=extra)
        if done and done < len(files):
            raise DflError(f"{folder}: ffmpeg could use only {done} of its {len(files)} frames (a frame is damaged "
                           f"in a way dfl does not check); {output.name} was not written")
        _replace(tmp, output)
        return done or len(files)
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink()


def encode_arrays(frames: Iterable[np.ndarray], output: Path, *, fps: Fraction | float, size: tuple[int, int],
                  audio: Path | None = None, crf: int = 18, codec: str = "libx264",
                  desc: str | None = None, total: int | None = None, metadata: dict[str, str] | None = None,
                  preset: str | None = None) -> int:
    """Encode BGR uint8 ``HxWx3`` arrays (all ``size`` = (width, height)) into ``output``, optionally muxing
    ``audio``'s first audio track.  For generated video (the demo, a live swap) without writing images
    first; ``frames`` is consumed on a thread of its own while ffmpeg encodes.  ``metadata`` becomes
    container tags (as in :func:`frames_to_video`), ``preset`` the encoder's speed preset (x264's
    ``veryfast`` keeps up with a live stream); odd sizes are padded by one pixel."""
    output = Path(output).absolute()
    width, height = size
    tmp = _temp_output(output)

    def feed(stdin: IO[bytes]) -> None:
        for frame in frames:
            if frame.shape != (height, width, 3) or frame.dtype != np.uint8:
                raise ValueError(f"frame of shape {frame.shape} {frame.dtype}, expected {(height, width, 3)} uint8")
            stdin.write(np.ascontiguousarray(frame).tobytes())

    try:
        video_in = ffmpeg.input("pipe:", format="rawvideo", pix_fmt="bgr24", s=f"{width}x{height}",
                                framerate=str(Fraction(fps).limit_denominator(1001)))
        streams = [video_in.video.filter("pad", "ceil(iw/2)*2", "ceil(ih/2)*2")]
        kwargs: dict[str, object] = {"c:v": codec, "pix_fmt": "yuv420p", "crf": crf, "movflags": "+faststart"}
        if preset:
            kwargs["preset"] = preset
        if audio is not None:
            streams.append(ffmpeg.input(str(audio))["a:0"])
            kwargs.update({"c:a": "aac", "b:a": "128k", "shortest": None})   # a stream stopped early: no silent tail
        extra: list[str] = []
        for key, value in (metadata or {}).items():
            extra += ["-metadata", f"{key}={value}"]
        job = ffmpeg.output(*streams, str(tmp), **kwargs)
        done = _run(job, total=total, desc=desc, what=output, feed=feed, output=str(tmp), extra_output_args=extra)
        _replace(tmp, output)
        return done
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink()


# -- cut ---------------------------------------------------------------------------------------------
def parse_time(value: str | float | None) -> float | None:
    """``"90"``, ``"1:30"``, ``"00:01:30.500"`` -> seconds; None/"" stays None."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if isinstance(value, (int, float)):
        seconds = float(value)
    else:
        parts = value.strip().split(":")
        try:
            if len(parts) > 3:
                raise ValueError
            seconds = 0.0
            for part in parts:
                seconds = seconds * 60 + float(part)
        except ValueError:
            raise DflError(f"{value}: not a time (use seconds or HH:MM:SS.mmm)") from None
    if seconds < 0:
        raise DflError(f"{value}: time must not be negative")
    return seconds


def cut_output_path(video: Path) -> Path:
    """DFL's name for a cut: ``data_dst.mp4`` -> ``data_dst_cut.mp4`` next to it."""
    return video.with_name(f"{video.stem}{CUT_SUFFIX}{video.suffix}")


def cut_video(video: Path, output: Path | None = None, *, start: str | float | None = None,
              end: str | float | None = None, audio_track: int = 0, bitrate: float = DEFAULT_CUT_BITRATE_MBPS,
              codec: str = "libx264", desc: str | None = "Cutting video", protect: Iterable[Path] = ()) -> Path:
    """Re-encode ``video`` from ``start`` to ``end`` (seconds or HH:MM:SS.mmm) with one audio track.

    Frame-accurate (decoding seek); the rotation flag is applied so the cut is stored upright.
    Returns the written path (``<stem>_cut<ext>`` next to the input by default), which may be neither
    the input nor one of ``protect``.
    """
    info = probe(video)
    t0 = parse_time(start) or 0.0
    t1 = parse_time(end)
    if info.duration is not None and t0 >= info.duration:
        raise DflError(f"{start}: start is past the end of {info.path.name} ({info.duration:.3f} s)")
    if t1 is not None and t1 <= t0:
        raise DflError(f"{end}: end time must be after the start ({t0:g} s)")
    if audio_track < 0:
        raise DflError(f"{audio_track}: audio track must be 0 or more")
    if info.audio_streams and audio_track >= info.audio_streams:
        raise DflError(f"{info.path}: has {info.audio_streams} audio track(s); track {audio_track} does not exist")
    output = Path(output).absolute() if output is not None else cut_output_path(info.path)
    refuse_to_overwrite(output, [info.path, *protect])
    in_kwargs: dict[str, object] = {"ss": f"{t0:.3f}"}
    if t1 is not None:
        in_kwargs["t"] = f"{t1 - t0:.3f}"
    end_s = min(t1, info.duration) if (t1 is not None and info.duration) else (t1 or info.duration)
    total = round((end_s - t0) * float(info.fps)) if end_s else None
    tmp = _temp_output(output)
    try:
        inp = ffmpeg.input(str(info.path), **in_kwargs)
        streams = [inp["v:0"]]
        kwargs: dict[str, object] = _video_codec_args(codec, bitrate, lossless=False, output=output)
        if info.audio_streams:
            streams.append(inp[f"a:{audio_track}"])
            kwargs.update({"c:a": "aac", "b:a": "192k"})
        _run(ffmpeg.output(*streams, str(tmp), **kwargs), total=total, desc=desc, what=info.path)
        _replace(tmp, output)
        return output
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink()


# -- denoise -----------------------------------------------------------------------------------------
def denoise_frames(folder: Path, factor: int = DEFAULT_DENOISE_FACTOR, desc: str | None = "Denoising") -> int:
    """Temporal + spatial denoise (ffmpeg hqdn3d, DFL's recipe) of the frames in ``folder``, in place.

    Only numbered frames (what extract-frames wrote) are changed; other images there are left alone.  All frames are processed into a hidden folder first; originals are replaced one atomic rename at a
    time only after ffmpeg succeeded, so a failure leaves every frame as it was.  Returns frames done.
    """
    folder = Path(folder).absolute()
    if not 1 <= factor <= 20:
        raise DflError(f"{factor}: denoise factor must be 1..20")
    if not folder.is_dir():
        raise DflError(f"{folder}: frames folder does not exist")
    files = list_frames(folder)
    if not files:
        others = len(list_images(folder))
        raise DflError(f"{folder}: no numbered frames (00001.png ...) in this folder" +
                       (f"; its {others} other image(s) are not dfl's to change in place" if others else ""))
    exts = {p.suffix.lower() for p in files}
    if len(exts) != 1 or _PIPE_CODECS.get(next(iter(exts))) not in ("png", "mjpeg"):
        raise DflError(f"{folder}: frames must all be png or all be jpg to denoise, found {', '.join(sorted(exts))}")
    ext = exts.pop()
    work = _make_temp_dir(folder, ".denoising-")
    try:
        inp = ffmpeg.input("pipe:", format="image2pipe", framerate=25, vcodec=_PIPE_CODECS[ext])
        stream = inp.video.filter("hqdn3d", factor, factor, 5, 5)
        kwargs: dict[str, object] = dict(_passthrough_args())
        kwargs.update({"pix_fmt": "rgb24", "compression_level": PNG_COMPRESSION, "pred": PNG_PRED} if ext == ".png"
                      else {"q:v": JPG_QSCALE})
        _run(stream.output(str(work / f"%06d{ext}"), **kwargs), total=len(files), desc=desc, what=folder,
             feed=_feed_files(files))
        produced = sorted(work.glob(f"*{ext}"))
        if len(produced) != len(files):
            raise DflError(f"{folder}: ffmpeg returned {len(produced)} frames for {len(files)}; nothing changed")
        for new, original in zip(produced, files):
            os.replace(new, original)
        return len(files)
    finally:
        shutil.rmtree(work, ignore_errors=True)
