"""The ``wav2vgm`` command line: parse, show progress on stderr, map errors to exit codes.

Every command is a thin layer over plain functions (:mod:`wav2vgm.convert`,
:mod:`wav2vgm.batch`, :mod:`wav2vgm.opl3.render`, :mod:`wav2vgm.vgm`,
:mod:`wav2vgm.spectrum`).  Data goes to stdout, messages and progress bars to
stderr.  Exit codes: 0 ok, 1 internal error, 2 usage, 3 bad input, 4 output
error, 5 some files of a batch failed.
"""

from __future__ import annotations

import os
import sys

from .threads import one_blas_thread

one_blas_thread()                                   # before numpy loads

import click  # noqa: E402

from . import __version__  # noqa: E402
from .errors import EXIT_INTERNAL, Wav2VgmError  # noqa: E402


def _fail(exc: BaseException) -> None:
    """Print a one-line error and exit with the error's code."""
    msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    click.echo(f"wav2vgm: error: {msg}", err=True)
    code = getattr(exc, "exit_code", EXIT_INTERNAL)
    sys.exit(code)


class _Group(click.Group):
    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except Wav2VgmError as exc:
            _fail(exc)
        except KeyboardInterrupt:
            click.echo("wav2vgm: interrupted", err=True)
            sys.exit(130)
        except BrokenPipeError:
            sys.exit(0)
        except MemoryError:
            _fail(Wav2VgmError("out of memory"))
        except click.UsageError as exc:  # bad option or argument: one line too, exit 2
            msg = " ".join(exc.format_message().split())
            hint = f" (see '{exc.ctx.command_path} --help')" if exc.ctx is not None else ""
            click.echo(f"wav2vgm: error: {msg}{hint}", err=True)
            sys.exit(exc.exit_code)
        except (click.exceptions.Exit, click.exceptions.Abort, click.ClickException, SystemExit):
            raise
        except Exception as exc:  # a bug: one line, exit 1 (WAV2VGM_DEBUG=1 shows the traceback)
            if os.environ.get("WAV2VGM_DEBUG"):
                raise
            _fail(Wav2VgmError(f"internal error: {type(exc).__name__}: {exc}"))


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="wav2vgm")
def main():
    """Turn recordings into VGM files for the Yamaha YMF262 (OPL3)."""


# ----------------------------------------------------------------------------
# convert
# ----------------------------------------------------------------------------
@main.command()
@click.argument("inputs", nargs=-1, required=True)
@click.option("-o", "--output", default=None,
              help="Output .vgm/.vgz file, '-' for stdout, or a folder for folder inputs.")
@click.option("--method", type=click.Choice(["model", "sines"]), default="model", show_default=True,
              help="The ONNX inverse model with analysis by synthesis (default), or tracked "
                   "spectral peaks as sines (about 1.2-1.7x faster on steady sound, 2.6-3.2x on busy sound).")
@click.option("--frame-rate", "frame_rate", type=float, default=None,
              help="Analysis frames per second (1-1000).  [default: 60; the model at balanced "
                   "or best takes 90 or 120 for sound that changes often, such as speech]")
@click.option("--substeps", type=int, default=12, show_default=True,
              help="Register updates per frame, at most (1-16): levels and pitches of held notes "
                   "glide between frames; updates stay >= 60 samples apart (12 a frame at 60 "
                   "frames/s, 8 at 90, 6 at 120), which emulators that queue writes keep up with.")
@click.option("--voices", type=int, default=18, show_default=True, help="Channels to use (1-18).")
@click.option("--gain", "gain_db", type=float, default=0.0, show_default=True,
              help="Extra gain in dB on top of the loudness normalisation.")
@click.option("--quality", type=click.Choice(["fast", "balanced", "best"]), default="balanced",
              show_default=True,
              help="Speed/quality trade-off of the model method: fast starts a new voice set "
                   "only at larger changes and stays at 60 frames per second; best starts one "
                   "at smaller changes, analyses busy sound at 120 frames per second and "
                   "compares the mix with plain sines every half second.")
@click.option("--model", "model_path", type=click.Path(dir_okay=False), default=None,
              help="Use another exported ONNX model.")
@click.option("--stereo/--mono", default=True, show_default=True,
              help="Two-channel inputs: pan each note left, right or centre on the OPL3's "
                   "outputs, or play every note on both.")
@click.option("--split-sides", is_flag=True,
              help="Two-channel inputs: convert each side on its own half of the channels, "
                   "played on that side only.  For hard-panned sources (tracker modules, early "
                   "stereo), whose quieter side the default serves poorly; sound that is alike "
                   "on both sides loses half its channels to doubles.")
@click.option("--loop", is_flag=True,
              help="Mark the whole file as a loop: players that loop (VGMPlay, hardware "
                   "players) replay it from the start; its first frame then sets every register.")
@click.option("--loop-start", "loop_start", type=float, default=None, metavar="SECONDS",
              help="Loop from this time instead (an intro plays once); implies --loop.")
@click.option("--title", default="", help="GD3 title (default: the input's name).")
@click.option("--author", default="", help="GD3 author.")
@click.option("--game", default="", help="GD3 game/album.")
@click.option("--notes", default="", help="GD3 notes.")
@click.option("--jobs", "-j", type=int, default=None, help="Worker processes for folders (default: cores).")
@click.option("--overwrite", is_flag=True, help="Replace outputs that exist (folders).")
@click.option("--quiet", "-q", is_flag=True, help="No progress on stderr.")
def convert(inputs, output, method, frame_rate, substeps, voices, gain_db, quality, model_path,
            stereo, split_sides, loop, loop_start, title, author, game, notes, jobs, overwrite,
            quiet):
    """Convert audio files (or folders of them, or '-' for stdin) to VGM.

    \b
    wav2vgm convert song.wav                 # writes song.vgm
    wav2vgm convert song.flac -o song.vgz    # gzip-compressed
    sox in.mp3 -t wav - | wav2vgm convert - -o - > out.vgm
    wav2vgm convert SONGS/ -o OUT/ --jobs 4
    """
    from .batch import run_convert
    from .convert import ConvertOptions

    if loop_start is None and loop:
        loop_start = 0.0                            # the whole file
    options = ConvertOptions(method=method, frame_rate_hz=frame_rate, substeps=substeps, voices=voices,
                             gain_db=gain_db, quality=quality, model_path=model_path,
                             stereo=stereo, split_sides=split_sides, loop_start_s=loop_start,
                             title=title, author=author, game=game, notes=notes)
    code = run_convert(list(inputs), output, options, jobs=jobs, overwrite=overwrite, quiet=quiet)
    sys.exit(code)


# ----------------------------------------------------------------------------
# render / info
# ----------------------------------------------------------------------------
def _vgm_source(vgm_path: str):
    """A VGM path, or standard input for '-' (so ``convert ... -o - | info -`` works)."""
    if vgm_path != "-":
        return vgm_path
    return getattr(sys.stdin, "buffer", sys.stdin)


@main.command()
@click.argument("vgm_path", metavar="IN.vgm")
@click.option("-o", "--output", required=True, help="Output WAV file ('-' for stdout).")
@click.option("--rate", "rate_hz", type=click.IntRange(8000, 192000), default=44100,
              show_default=True, help="Sample rate of the WAV.")
@click.option("--timing", type=click.Choice(["adplay", "exact"]), default="adplay",
              show_default=True, help="Write timing: like adplay, or exactly as stamped.")
@click.option("--loops", type=click.IntRange(1, 100), default=1, show_default=True,
              help="Times to play a looping file (from its loop point after the first).")
@click.option("-q", "--quiet", is_flag=True, help="No progress on stderr.")
def render(vgm_path, output, rate_hz, timing, loops, quiet):
    """Play an OPL3/OPL2 VGM (or VGZ; '-' reads stdin) through the emulator into a 16-bit stereo WAV."""
    from .audio import write_wav_blocks
    from .batch import progress_bars
    from .opl3 import registers as R
    from .opl3.render import vgm_blocks
    from .vgm import read_vgm

    vgm = read_vgm(_vgm_source(vgm_path))
    with progress_bars(desc="rendering", rate_hz=R.NATIVE_RATE_INT, quiet=quiet) as make_bar:
        # written as rendered, a second or so at a time: a long file never sits in memory
        n, blocks = vgm_blocks(vgm, rate_hz=rate_hz, timing=timing, progress=make_bar, loops=loops)
        write_wav_blocks(output, blocks, rate_hz, channels=2)
    if output != "-" and not quiet:
        click.echo(f"wrote {output}: {n / rate_hz:.2f} s at {rate_hz} Hz", err=True)


@main.command()
@click.argument("vgm_path", metavar="IN.vgm")
def info(vgm_path):
    """Print a VGM's header, GD3 tag and write statistics ('-' reads stdin)."""
    from .vgm import read_vgm, vgm_statistics

    vgm = read_vgm(_vgm_source(vgm_path))
    for key, value in vgm_statistics(vgm).items():
        click.echo(f"{key + ':':<22}{value}")


# ----------------------------------------------------------------------------
# score
# ----------------------------------------------------------------------------
@main.command()
@click.argument("reference", metavar="REF.wav")
@click.argument("vgm_path", metavar="OUT.vgm")
@click.option("--player", type=click.Choice(["emulator", "adplay"]), default="emulator",
              show_default=True, help="Who renders the VGM.")
@click.option("--plot", "plot_path", type=click.Path(dir_okay=False), default=None,
              help="Draw both spectrograms into a PNG (needs matplotlib).")
@click.option("--sides", is_flag=True,
              help="Score each output against that side of REF (a mono REF: against it "
                   "twice) instead of the mean of the outputs: distance_db is then the mean "
                   "of left_db and right_db (a side where REF is silent is left out).")
def score(reference, vgm_path, player, plot_path, sides):
    """Log-mel distance in dB between REF.wav and OUT.vgm as rendered (lower is better)."""
    from .quality import score_sides, score_vgm

    if sides:
        if plot_path:
            raise click.UsageError("--plot draws the mean of the outputs; leave out --sides")
        per_side = score_sides(reference, vgm_path, player=player)
        scored = [s.distance_db for s in per_side.values() if s is not None]
        click.echo(f"distance_db: {sum(scored) / len(scored):.3f}")
        for side, s in per_side.items():
            click.echo(f"{side}_db: " + ("silent reference" if s is None
                                         else f"{s.distance_db:.3f}"))
        return
    result = score_vgm(reference, vgm_path, player=player,
                       plot_path=plot_path)
    click.echo(f"distance_db: {result.distance_db:.3f}")
    click.echo(f"lag_ms: {result.lag_s * 1000:.1f}")
    click.echo(f"gain_db: {result.gain_db:.2f}")


if __name__ == "__main__":  # pragma: no cover
    main()
