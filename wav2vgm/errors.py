"""The one exception root of wav2vgm and the exit code each kind maps to.

Every error the package raises on purpose derives from :class:`Wav2VgmError`.
The CLI turns them into a one-line message on stderr and the exit code
below; anything else is a bug and exits with :data:`EXIT_INTERNAL`.
"""

EXIT_OK = 0
EXIT_INTERNAL = 1
EXIT_USAGE = 2          # bad options or arguments (click's own code)
EXIT_BAD_INPUT = 3      # input unreadable, not audio, malformed VGM, ...
EXIT_OUTPUT = 4         # output could not be written (permissions, disk full, ...)
EXIT_PARTIAL = 5        # a batch ran but at least one file failed


class Wav2VgmError(Exception):
    """Root of every error wav2vgm raises on purpose."""

    exit_code = EXIT_INTERNAL


class InputError(Wav2VgmError):
    """The input (audio file, VGM file, folder) cannot be used."""

    exit_code = EXIT_BAD_INPUT


class AudioError(InputError):
    """An audio input cannot be read or decoded."""


class VgmError(InputError):
    """A VGM file is malformed; the message names what is wrong and where."""


class OutputError(Wav2VgmError):
    """An output cannot be written; nothing half-written is left behind."""

    exit_code = EXIT_OUTPUT


class ModelError(Wav2VgmError):
    """The ONNX inverse model is missing, unreadable or does not match."""

    exit_code = EXIT_BAD_INPUT


class ParameterError(Wav2VgmError):
    """A parameter value is out of its range (raised by library functions)."""

    exit_code = EXIT_USAGE
