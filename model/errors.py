"""The one exception base every package raises for problems the user can fix.

The CLI prints these as a single ``drum-performer: error: ...`` line and exits
non-zero; anything else is a bug and keeps its traceback.
"""


class DrumPerformerError(Exception):
    """A failure with a one-line explanation for the user."""
