"""Data sources: each loader returns a :class:`Dataset` of in-memory arrays and its task."""

from nnsearch.data.dataset import Dataset, Task, infer_task

__all__ = ["Dataset", "Task", "infer_task"]
