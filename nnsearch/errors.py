"""Errors a user can fix. The CLI prints them as one line and exits non-zero."""

from __future__ import annotations


class NNSearchError(Exception):
    """A problem with the user's study, data or configuration, stated so that it can be fixed."""

    exit_code = 2


class StudyFailed(NNSearchError):
    """The study ran, but no trial completed: there is no result to report."""

    exit_code = 1


class TrialFailed(Exception):
    """A single trial cannot produce a score (e.g. its loss became NaN); the study goes on."""


class TrialSkipped(TrialFailed):
    """A trial that must not run (the shared study is full, or its grid point is taken)."""
