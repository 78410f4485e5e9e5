"""``python -m wav2vgm``: the same commands as the ``wav2vgm`` script."""

from .cli import main

if __name__ == "__main__":
    main(prog_name="wav2vgm")
