"""wav2vgm: turn any recording into a VGM file for the Yamaha YMF262 (OPL3).

Data flow: audio -> frames -> dB spectra -> model -> register frames ->
register writes -> VGM bytes, with a numpy OPL3 emulator closing the loop
(register writes -> audio).
"""

__version__ = "0.1.0"
