"""Metrics of `undertone score` outputs, computed with third-party tools.

Each module reads one kind of file the product writes (or the input video) and
returns plain numbers; `metrics.evaluate_dir` combines them per output folder and
`table` turns many folders into the pass/fail table. Nothing here imports the
product: the figures come from the files alone (and the input video).
"""


class EvalError(Exception):
    """A file the harness needs is missing or unreadable; the message names it and what to do."""
