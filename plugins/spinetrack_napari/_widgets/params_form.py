"""A form built from spinetrack's parameter dataclasses (the same ones as the CLI flags).

Every field of every section in :data:`spinetrack.params.SECTIONS` becomes one
input: a spin box with the field's bounds and unit, a check box, or a choice
list; the tooltip is the CLI help text. :meth:`ParamsForm.params` and
:meth:`ParamsForm.set_params` round-trip a :class:`~spinetrack.params.Params`.
"""

from __future__ import annotations

import dataclasses
from typing import Any, get_type_hints

from qtpy.QtWidgets import (QCheckBox, QComboBox, QDoubleSpinBox, QFormLayout, QLineEdit,
                            QSpinBox, QToolBox, QVBoxLayout, QWidget)

from spinetrack.params import SECTIONS, Params, describe

__all__ = ["ParamsForm"]

_BIG = 1e9


def _label(f: dataclasses.Field) -> str:
    name = f.name
    for suffix in ("_um", "_deg"):
        if name.endswith(suffix):
            name = name[: -len(suffix)]
    return name.replace("_", " ")


def _input(f: dataclasses.Field, kind: type) -> QWidget:
    meta = f.metadata
    lo = meta.get("min")
    hi = meta.get("max")
    if meta.get("choices"):
        w = QComboBox()
        w.addItems([str(c) for c in meta["choices"]])
    elif kind is bool:
        w = QCheckBox()
    elif kind is str:  # a file path (e.g. the detector model)
        w = QLineEdit()
    elif kind is int:
        w = QSpinBox()
        w.setRange(int(lo) if lo is not None else -2**31 + 1,
                   int(hi) if hi is not None else 2**31 - 1)
    else:
        w = QDoubleSpinBox()
        w.setDecimals(4 if (hi is not None and hi <= 1) else 3)
        w.setRange(float(lo) if lo is not None else -_BIG, float(hi) if hi is not None else _BIG)
        span = (hi if hi is not None else 10.0) - (lo if lo is not None else 0.0)
        w.setSingleStep(max(span / 100.0, 0.001) if span < 10 else 0.1)
        if meta.get("unit"):
            w.setSuffix(f" {meta['unit']}")
    w.setToolTip(describe(f))
    w.setObjectName(f.name)
    return w


class ParamsForm(QWidget):
    """One page per pipeline stage, one input per parameter."""

    def __init__(self, params: Params | None = None, parent: QWidget | None = None):
        super().__init__(parent)
        self.inputs: dict[str, tuple[str, QWidget, type]] = {}
        box = QToolBox(self)
        for section, cls in SECTIONS.items():
            page = QWidget()
            form = QFormLayout(page)
            hints = get_type_hints(cls)
            for f in dataclasses.fields(cls):
                w = _input(f, hints[f.name])
                form.addRow(_label(f), w)
                self.inputs[f.name] = (section, w, hints[f.name])
            box.addItem(page, f"{section}: {(cls.__doc__ or '').strip().rstrip('.')}")
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(box)
        self.toolbox = box
        self.set_params(params or Params())

    def set_params(self, params: Params) -> None:
        """Show ``params`` in the inputs."""
        for name, (section, w, kind) in self.inputs.items():
            value = getattr(getattr(params, section), name)
            if isinstance(w, QComboBox):
                w.setCurrentText(str(value))
            elif isinstance(w, QCheckBox):
                w.setChecked(bool(value))
            elif isinstance(w, QLineEdit):
                w.setText(str(value))
            else:
                w.setValue(value)

    def values(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for name, (_, w, kind) in self.inputs.items():
            if isinstance(w, QComboBox):
                out[name] = w.currentText()
            elif isinstance(w, QCheckBox):
                out[name] = w.isChecked()
            elif isinstance(w, QLineEdit):
                out[name] = w.text().strip()
            else:
                out[name] = kind(w.value())
        return out

    def params(self, base: Params | None = None) -> Params:
        """The parameters shown (validated by the dataclasses; InputError if out of range)."""
        return (base or Params()).replace(**self.values())
