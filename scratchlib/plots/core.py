"""What every plot does at the end: save under the run's figures/, show in a notebook, send to wandb."""

from __future__ import annotations

from typing import Any

from scratchlib import track
from scratchlib.metrics import to_numpy

__all__ = ["finish", "in_notebook", "to_numpy"]


def in_notebook() -> bool:
    try:
        from IPython import get_ipython

        shell = get_ipython()
    except ImportError:
        return False
    return shell is not None and "ZMQInteractiveShell" in type(shell).__name__


def finish(fig: Any, name: str, run: track.Run | None = None, show: bool = True) -> Any:
    """Save ``fig`` as ``figures/<name>.png`` in ``run`` (or the active run), show it in a notebook
    and return it. Outside a notebook the figure is closed after saving (no window pops up)."""
    import matplotlib.pyplot as plt

    target = run if run is not None else track.active()
    if target is not None:
        target.save_figure(fig, name)
    if show and in_notebook():
        # Show the PNG itself: works whatever matplotlib backend the kernel runs (inline or Agg).
        import io

        from IPython.display import Image, display

        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
        display(Image(buf.getvalue()))
    plt.close(fig)
    return fig
