"""Files and folders: where outputs go, atomic writes, worker processes, the summary."""

from __future__ import annotations

import gzip
import io
import os
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from contextlib import contextmanager
from pathlib import Path

from .audio import AUDIO_SUFFIXES, open_audio
from .convert import ConvertOptions, convert_to_writer, gd3_for, with_frame_rate
from .errors import (EXIT_OK, EXIT_PARTIAL, InputError, OutputError, ParameterError,
                     Wav2VgmError)
from .vgm import VgmWriter

VGM_SUFFIXES = (".vgm", ".vgz")


def _echo(msg: str, *, quiet: bool = False) -> None:
    if not quiet:
        print(msg, file=sys.stderr)


# glibc's malloc returns a freed block of 128 KB or more to the system at once (and trims
# the heap's free top), so the next array of that size faults its pages in afresh: a
# conversion of the 60 s speed clip did so about 11,000 times, every time.  The command
# keeps freed blocks of up to 32 MB for reuse and trims only above 256 MB (peak memory
# unchanged: `benchmarks/run.py memory`); in a warm process (a folder's later files, the
# speed benchmark's repeats) the clip's conversion then faults a few pages instead and
# is about 5% faster (median ratio over 10 interleaved pairs of runs on one core, 0.95:
# 0.694 -> 0.651 s; over 6 pairs, 0.92: 0.665 -> 0.615 s; 2026-12-04).
MALLOC_MMAP_THRESHOLD = 32 * 2**20
MALLOC_TRIM_THRESHOLD = 256 * 2**20


def keep_freed_memory() -> bool:
    """Tune glibc's malloc for a converting process (see MALLOC_MMAP_THRESHOLD); False where
    the C library has no ``mallopt`` (macOS, Windows) or refuses.  Process-wide: the
    command and its worker processes call it, the library functions do not."""
    if not sys.platform.startswith("linux"):
        return False
    import ctypes
    import ctypes.util
    try:
        mallopt = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    m_trim_threshold, m_mmap_threshold = -1, -3                     # <malloc.h>
    return bool(mallopt(m_mmap_threshold, MALLOC_MMAP_THRESHOLD)
                and mallopt(m_trim_threshold, MALLOC_TRIM_THRESHOLD))


def default_output(path: str) -> str:
    return str(Path(path).with_suffix(".vgm"))


def convert_file(input_path: str, output_path: str, options: ConvertOptions, *,
                 progress=None) -> dict:
    """Convert one input (path or '-') into one output (path or '-'), atomically.

    ``progress``: called with the input's length in samples once it is open;
    returns the callback that receives each block's size (or None).
    """
    if output_path != "-" and Path(output_path).suffix.lower() not in VGM_SUFFIXES:
        raise ParameterError(f"output must end in .vgm or .vgz, got {output_path!r}")
    if input_path != "-" and output_path != "-":
        try:
            if os.path.exists(output_path) and os.path.samefile(input_path, output_path):
                raise ParameterError(f"output path is the input path: {output_path}")
        except OSError:
            pass
        if os.path.abspath(input_path) == os.path.abspath(output_path):
            raise ParameterError(f"output path is the input path: {output_path}")
    with open_audio(input_path) as stream:
        if stream.n_samples == 0:       # e.g. a WAV header without data: nothing to convert
            raise InputError(f"no audio samples in {stream.name} (empty or truncated file)")
        options = with_frame_rate(options, stream)
        if progress is not None:
            progress = progress(stream.n_samples)
        if output_path == "-":
            buf = io.BytesIO()
            writer = VgmWriter(buf, gd3=gd3_for(options, stream.name))
            stats = convert_to_writer(stream, writer, options, progress=progress)
            writer.close()
            try:
                sys.stdout.buffer.write(buf.getvalue())
                sys.stdout.buffer.flush()
            except BrokenPipeError:
                raise
            except OSError as exc:
                raise OutputError(f"cannot write to stdout: {exc.strerror or exc}") from None
            return stats
        return _write_atomic(output_path, lambda f: _convert_into(stream, f, options, progress))


def _convert_into(stream, fileobj, options, progress):
    writer = VgmWriter(fileobj, gd3=gd3_for(options, stream.name))
    stats = convert_to_writer(stream, writer, options, progress=progress)
    writer.close()
    return stats


def _write_atomic(path: str, produce):
    """Run ``produce(fileobj)`` into a temp file beside ``path``, then rename it into place."""
    target = Path(path)
    folder = target.parent if str(target.parent) else Path(".")
    if not folder.is_dir():
        raise OutputError(f"output folder does not exist: {folder}")
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".part", dir=folder)
    except OSError as exc:
        raise OutputError(f"cannot write to {folder}: {exc.strerror or exc}") from None
    try:
        with os.fdopen(fd, "w+b") as f:
            result = produce(f)
            if target.suffix.lower() == ".vgz":
                f.seek(0)
                data = f.read()
                f.seek(0)
                f.truncate()
                f.write(gzip.compress(data, mtime=0))
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, target)
        return result
    except OSError as exc:
        _remove(tmp)
        raise OutputError(f"cannot write {path}: {exc.strerror or exc}") from None
    except OutputError as exc:  # from the VGM writer, which names the temp file "<stream>"
        _remove(tmp)
        cause = exc.__cause__
        reason = cause.strerror if isinstance(cause, OSError) and cause.strerror else exc
        raise OutputError(f"cannot write {path}: {reason}") from None
    except BaseException:
        _remove(tmp)
        raise


def _remove(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


def find_audio(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*")
                  if p.is_file() and p.suffix.lower() in AUDIO_SUFFIXES and not p.name.startswith("."))


def _worker(args):
    src, dst, options = args
    t0 = time.perf_counter()
    try:
        stats = convert_file(src, dst, options)
        return src, None, stats, time.perf_counter() - t0
    except Wav2VgmError as exc:
        return src, str(exc).splitlines()[0], None, time.perf_counter() - t0


@contextmanager
def progress_bars(*, desc: str, rate_hz: int, quiet: bool, min_seconds: float = 30.0):
    """A progress callback factory for long jobs (``convert_file``, ``render_vgm``): given
    the total in samples at ``rate_hz``, it starts a bar on stderr when that is at least
    ``min_seconds`` and returns its ``update``; the bars close on leaving."""
    from tqdm import tqdm

    bars = []

    def make_bar(total: int):
        if quiet or total < rate_hz * min_seconds:
            return None
        bars.append(tqdm(total=total, unit="smp", unit_scale=True, file=sys.stderr,
                         desc=desc, leave=False))
        return bars[-1].update

    try:
        yield make_bar
    finally:
        for bar in bars:
            bar.close()


def run_convert(inputs: list[str], output: str | None, options: ConvertOptions, *,
                jobs: int | None = None, overwrite: bool = False, quiet: bool = False) -> int:
    """The ``convert`` command: single files, stdin or folders; returns the exit code."""
    from tqdm import tqdm

    keep_freed_memory()
    folders = [p for p in inputs if p != "-" and os.path.isdir(p)]
    if not folders:
        if len(inputs) > 1 and output is not None and not os.path.isdir(output):
            raise ParameterError("several inputs need an output folder (-o FOLDER)")
        for p in inputs:
            if p != "-" and not os.path.exists(p):
                raise InputError(f"no such file: {p}")
        if len(inputs) == 1:
            src = inputs[0]
            dst = output if output is not None else ("-" if src == "-" else default_output(src))
            if output is not None and os.path.isdir(output):
                dst = str(Path(output) / Path(default_output(src)).name)
            with progress_bars(desc=Path(src).name, rate_hz=44100, quiet=quiet) as make_bar:
                stats = convert_file(src, dst, options, progress=make_bar)
            if dst != "-":
                thinned = stats["n_dropped"] + stats["n_delayed"]
                _echo(f"wrote {dst} ({stats['n_samples'] / 44100:.2f} s, "
                      f"{stats['frame_rate_hz']:g} frames/s, {stats['n_writes']} writes"
                      + (f"; {thinned} level changes thinned for players' write queues"
                         if thinned else "") + ")", quiet=quiet)
            return EXIT_OK
    # folders (and loose files alongside them)
    if output is None or output == "-":
        raise ParameterError("folder inputs need an output folder: -o FOLDER")
    out_root = Path(output)
    tasks = []
    for p in inputs:
        src = Path(p)
        if src.is_dir():
            files = find_audio(src)
            if not files:
                raise InputError(f"no audio files in folder: {src}")
            for f in files:
                tasks.append((str(f), str(out_root / f.relative_to(src).with_suffix(".vgm"))))
        elif p != "-" and src.exists():
            tasks.append((p, str(out_root / src.with_suffix(".vgm").name)))
        else:
            raise InputError(f"no such file: {p}")
    # two inputs that differ only in their suffix (a.wav, a.flac) keep it in the name
    by_dst: dict[str, int] = {}
    for _, dst in tasks:
        by_dst[dst] = by_dst.get(dst, 0) + 1
    tasks = [(src, dst if by_dst[dst] == 1 else str(Path(dst).with_name(Path(src).name + ".vgm")))
             for src, dst in tasks]
    todo, skipped = [], 0
    for src, dst in tasks:
        if os.path.exists(dst) and not overwrite:
            skipped += 1
            continue
        try:
            Path(dst).parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise OutputError(f"cannot create {Path(dst).parent}: {exc.strerror or exc}") from None
        todo.append((src, dst, options))
    n_jobs = max(1, jobs if jobs else (os.cpu_count() or 1))
    failures: list[tuple[str, str]] = []
    audio_s = 0.0
    t0 = time.perf_counter()
    bar = tqdm(total=len(todo), unit="file", file=sys.stderr, disable=quiet or not todo)
    if n_jobs == 1 or len(todo) <= 1:
        results = (_worker(t) for t in todo)
        for src, err, stats, _ in results:
            audio_s += _account(src, err, stats, failures)
            bar.update(1)
    else:
        with ProcessPoolExecutor(max_workers=min(n_jobs, len(todo)),
                                 initializer=keep_freed_memory) as pool:
            futures = [pool.submit(_worker, t) for t in todo]
            for fut in as_completed(futures):
                src, err, stats, _ = fut.result()
                audio_s += _account(src, err, stats, failures)
                bar.update(1)
    bar.close()
    wall = time.perf_counter() - t0
    for src, err in failures:
        _echo(f"wav2vgm: failed: {src}: {err}")
    done = len(todo) - len(failures)
    speed = audio_s / wall if wall > 0 else 0.0
    _echo(f"converted {done} of {len(todo)} files ({skipped} skipped, {len(failures)} failed), "
          f"{audio_s:.1f} s of audio in {wall:.1f} s ({speed:.1f}x real time)", quiet=quiet)
    return EXIT_PARTIAL if failures else EXIT_OK


def _account(src, err, stats, failures) -> float:
    if err is not None:
        failures.append((src, err))
        return 0.0
    return stats["n_samples"] / 44100
