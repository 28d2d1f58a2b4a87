"""Imported first by the fold processes' fork server (:data:`nnsearch.runtime.fork_server.FOLD_PROCESS_MODULES`):
no full garbage collection while it imports torch, Lightning and scikit-learn (:mod:`nnsearch.runtime.startup_gc`).

A module, because a fork server's only hook is the list of modules it imports before it forks.
"""

from nnsearch.runtime import startup_gc

startup_gc.hold()
