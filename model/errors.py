"""The one exception base every package raises for problems the user can fix.

The CLI prints these as a single ``drum-performer: error: ...`` line and exits
non-zero; anything else is a bug and keeps its traceback.
"""


class DrumPerformerError(Exception):
    """A failure with a one-line explanation for the user."""


class UserError(DrumPerformerError):
    """Anything the user can fix that no package-specific error class covers (a bad preset, an empty split)."""


def need_torch(what: str) -> None:
    """Raise a one-line UserError when PyTorch (the train extra) is not installed."""
    # find_spec, not import: the check itself must not load torch into the process
    from importlib.util import find_spec

    if find_spec("torch") is None:
        raise UserError(
            f"{what} needs PyTorch: pip install 'drum-performer[train]' (CPU: pip install torch==2.13.0 first)"
        )
