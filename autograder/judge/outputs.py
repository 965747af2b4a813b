"""nbgrader's Execute with a cap on what a notebook may print.

A flood of output would otherwise be held in the grader's memory and written into the
gradebook's notebooks: past its share a cell's further output is dropped, with a note.
"""

from __future__ import annotations

from nbformat.v4 import new_output
from nbgrader.preprocessors import Execute
from traitlets import Integer

_CAPPED = ("stream", "display_data", "execute_result", "update_display_data")


class CappedExecute(Execute):
    """nbgrader's Execute; what one cell, and the whole notebook, may print is capped."""

    max_output_bytes = Integer(
        1_000_000, help="Output kept per cell; the rest is dropped with a note."
    ).tag(config=True)
    max_total_output_bytes = Integer(
        10_000_000, help="Output kept per notebook; the rest is dropped with a note."
    ).tag(config=True)

    def reset_execution_trackers(self) -> None:
        """nbclient's per-execution trackers, and the output counted so far (called as a
        notebook's execution starts)."""
        super().reset_execution_trackers()
        self._output_used: dict[int, int] = {}
        self._output_cut: set[int] = set()
        self._output_kept = 0

    def output(self, outs, msg, display_id, cell_index):
        content = msg.get("content", {})
        size = len(str(content.get("text", ""))) + sum(
            len(str(v)) for v in (content.get("data") or {}).values()
        )
        used = self._output_used
        used[cell_index] = used.get(cell_index, 0) + size
        over_cell = used[cell_index] > self.max_output_bytes
        over_total = self._output_kept + size > self.max_total_output_bytes
        if (over_cell or over_total) and msg["msg_type"] in _CAPPED:
            if cell_index not in self._output_cut:
                self._output_cut.add(cell_index)
                limit = (
                    f"this cell printed more than {self.max_output_bytes} bytes"
                    if over_cell
                    else f"the notebook printed more than {self.max_total_output_bytes} bytes"
                )
                outs.append(new_output("stream", name="stdout", text=f"\n[output cut: {limit}]\n"))
            return None
        self._output_kept += size
        return super().output(outs, msg, display_id, cell_index)
