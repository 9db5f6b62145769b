"""The "Branch statistics" dock: one row per branch with its losses; picks the branch."""

from __future__ import annotations

import math

import pandas as pd
from qtpy.QtGui import QFont
from qtpy.QtWidgets import (QAbstractItemView, QHeaderView, QLabel, QTableWidget,
                            QTableWidgetItem, QVBoxLayout, QWidget)

from ._state import state_for

__all__ = ["BranchTableWidget", "COLUMNS"]

#: (column of branches.csv, header, format)
COLUMNS = [("branch_id", "branch", "{:d}"), ("length_um", "length µm", "{:.1f}"),
           ("n_spines_s0", "spines s0", "{:d}"), ("n_lost", "lost", "{:d}"),
           ("n_formed", "formed", "{:d}"), ("n_restored", "restored", "{:d}"),
           ("loss_fraction", "loss fraction", "{:.2f}"), ("loss_p", "loss p", "{:.2g}"),
           ("loss_q", "loss q", "{:.2g}")]


def _text(value, fmt: str) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)) or pd.isna(value):
        return "–"
    if fmt == "{:d}":
        value = int(value)
    return fmt.format(value)


class BranchTableWidget(QWidget):
    """Per-branch loss statistics of the open project; selecting a row highlights the branch."""

    def __init__(self, napari_viewer, parent: QWidget | None = None):
        super().__init__(parent)
        self.viewer = napari_viewer
        self.state = state_for(napari_viewer, attach=True)
        self.table = QTableWidget(0, len(COLUMNS))
        self.table.setHorizontalHeaderLabels([h for _, h, _ in COLUMNS])
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.verticalHeader().setVisible(False)
        self.table.horizontalHeader().setSectionResizeMode(
            QHeaderView.ResizeMode.ResizeToContents)
        self.table.itemSelectionChanged.connect(self._on_selection)
        self.summary = QLabel("")
        self.summary.setWordWrap(True)
        layout = QVBoxLayout(self)
        layout.addWidget(self.table, 1)
        layout.addWidget(self.summary)
        self._updating = False
        self.state.changed.connect(self.update_table)
        self.state.branch_selected.connect(self.select_branch)
        self.update_table()

    def branch_ids(self) -> list[int]:
        return [int(self.table.item(r, 0).text()) for r in range(self.table.rowCount())]

    def update_table(self) -> None:
        """Refill the table from the project's ``branches`` table and summary."""
        project = self.state.project
        self._updating = True
        try:
            if project is None:
                self.table.setRowCount(0)
                self.summary.setText("no project")
                return
            br = project.results.branches.sort_values("branch_id").reset_index(drop=True)
            alpha = float(project.results.summary.get("significance_level", 0.05))
            self.table.setRowCount(len(br))
            bold = QFont()
            bold.setBold(True)
            for r, row in br.iterrows():
                significant = "loss_q" in br and pd.notna(row.get("loss_q")) and \
                    row["loss_q"] < alpha
                for c, (col, _, fmt) in enumerate(COLUMNS):
                    item = QTableWidgetItem(_text(row.get(col), fmt))
                    if significant:
                        item.setFont(bold)
                    self.table.setItem(r, c, item)
            self.summary.setText(_summary_text(project.results.summary))
            if self.state.selected_branch is not None:
                self.select_branch(self.state.selected_branch)
        finally:
            self._updating = False

    def select_branch(self, branch_id: int) -> None:
        """Select the row of ``branch_id`` (-1 clears the selection)."""
        ids = self.branch_ids()
        was = self._updating
        self._updating = True
        try:
            if branch_id in ids:
                self.table.selectRow(ids.index(branch_id))
            else:
                self.table.clearSelection()
        finally:
            self._updating = was

    def _on_selection(self) -> None:
        if self._updating:
            return
        rows = {i.row() for i in self.table.selectedItems()}
        bid = self.branch_ids()[rows.pop()] if rows else None
        self.state.highlight_branch(bid)


def _summary_text(summary: dict) -> str:
    lc = summary.get("loss_clustering") or {}
    counts = summary.get("fate_counts") or {}
    parts = [", ".join(f"{v} {k}" for k, v in counts.items())]
    if lc.get("p_value") is not None:
        stat = lc.get("statistic")  # None when nothing was lost
        parts.append("loss clustering: no spine was lost" if stat is None else
                     f"loss clustering: dispersion {stat:.2f}, p = {lc['p_value']:.2g}")
    sig = lc.get("significant_branches")
    if sig:
        parts.append("branches losing more than expected (bold): "
                     + ", ".join(str(b) for b in sig))
    return "\n".join(p for p in parts if p)
