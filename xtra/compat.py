"""Loading files written by earlier versions of ``xtra``: module paths the redesign renamed.

Checkpoints and collector states are pickles, and a pickle names the module of every class in
it. :func:`load_pickled` reads them with the old module paths mapped to today's, so a run or a
collection started before the redesign resumes. (Config files are mapped field by field in
:mod:`xtra.config`, ``RENAMED_FIELDS``.)
"""

from __future__ import annotations

import pickle
import types
from pathlib import Path
from typing import Any

import torch

RENAMED_MODULES = {
    "xtra.learn.selfplay": "xtra.act.selfplay",
    "xtra.learn.planner": "xtra.act.planner",
    "xtra.evaluate": "xtra.act.evaluate",
    "xtra.data.collect": "xtra.act.collect",
    "xtra.search.acting": "xtra.act.select",
}
"""Module paths before the redesign -> today's."""


class _RenamingUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        return super().find_class(RENAMED_MODULES.get(module, module), name)


_PICKLE = types.SimpleNamespace(
    Unpickler=_RenamingUnpickler, load=pickle.load, loads=pickle.loads, __name__="pickle"
)


def load_pickled(path: str | Path) -> Any:
    """``torch.load`` of a trusted file of ours (full pickle), on the CPU, old module paths mapped."""
    return torch.load(path, map_location="cpu", weights_only=False, pickle_module=_PICKLE)
