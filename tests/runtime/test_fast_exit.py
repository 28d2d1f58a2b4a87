"""The command leaves without the interpreter's teardown, and without scanning the imports' objects on the way out."""

import subprocess
import sys

SCRIPT = """
import gc, io, sys, tempfile
from nnsearch.runtime import fast_exit
fast_exit.arm()
if sys.argv[1] == "command":
    fast_exit.command()
import json  # stands for the heavy imports
fast_exit.freeze_startup()
print(gc.get_freeze_count() > 0, flush=True)
late = open(sys.argv[2], "w")  # a file opened after the freeze and never closed
late.write("written after the freeze")
fast_exit.record(0)
"""


def _run(tmp_path, role):
    out = tmp_path / f"{role}.txt"
    result = subprocess.run([sys.executable, "-c", SCRIPT, role, str(out)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip(), out.read_text()


def test_the_command_freezes_its_startup_objects_and_still_flushes_a_file_opened_later(tmp_path):
    frozen, text = _run(tmp_path, "command")
    assert frozen == "True"
    assert text == "written after the freeze"  # the exit scan found the open file among the objects made after the freeze


def test_a_program_that_imports_nnsearch_keeps_its_objects_collectable(tmp_path):
    frozen, text = _run(tmp_path, "importer")
    assert frozen == "False"
    assert text == "written after the freeze"
