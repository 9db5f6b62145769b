"""A correction project: automatic results, a person's edit log, and the corrected tables.

On disk a project is a results folder::

    DIR/                 the corrected tables (the contract's files: what analyses read)
    DIR/edits.json       the ordered edit log (spinetrack.edits)
    DIR/auto/            the automatic results the edits are applied to
    DIR/view.json        optional: what a viewer showed (session, plane, zoom...)

Opening a plain results folder (no ``auto/``) takes its tables as the automatic
results; the first save copies them to ``auto/``. Every save writes atomically,
file by file, and the corrected tables are always the edit log replayed on
``auto/``, so reopening a project shows exactly what was on screen when it was
saved. :func:`spinetrack.pipeline.run_and_write` keeps the same layout when it
re-runs detection in a project folder (fresh results to ``auto/``, edits
re-applied on top).
"""

from __future__ import annotations

import copy
import json
import logging
from dataclasses import replace
from pathlib import Path
from typing import Any

import pandas as pd

from .edits import DEFAULT_TOLERANCE_UM, EDITS_FILE, Edit, apply_edit, fates_with_overrides, \
    load_edits, recompute_results, replay_edits, save_edits
from .errors import InputError
from .files import write_json_atomic
from .results import Results, incomplete_run, read_results, run_record, write_results

__all__ = ["Project", "AUTO_DIR", "VIEW_FILE", "FolderInUse", "results_in", "same_folder"]

log = logging.getLogger(__name__)

AUTO_DIR = "auto"
VIEW_FILE = "view.json"


class FolderInUse(InputError):
    """Saving would overwrite another project's edits or another run's results."""


def results_in(folder: str | Path) -> list[str]:
    """What in ``folder`` a save would overwrite: ``edits.json``, ``spines.csv``, ``auto/``."""
    folder = Path(folder)
    return [name for name, there in ((EDITS_FILE, folder / EDITS_FILE),
                                     ("spines.csv", folder / "spines.csv"),
                                     (f"{AUTO_DIR}/", folder / AUTO_DIR / "spines.csv"))
            if there.exists()]


def same_folder(a: str | Path | None, b: str | Path | None) -> bool:
    """True if ``a`` and ``b`` name the same folder (however spelled)."""
    return a is not None and b is not None and Path(a).resolve() == Path(b).resolve()


class Project:
    """Automatic results plus an edit log; the corrected results are kept up to date.

    Parameters
    ----------
    auto : Results
        The automatic results (never modified).
    folder : path or None
        Where the project lives; ``None`` until it is saved somewhere.
    edits : list of Edit, optional
        Edits already made, in order.
    autosave : bool
        Save after every edit (when there is a folder).
    tolerance_um : float
        How far a spine may be from an edit's recorded position (µm).

    Attributes
    ----------
    results : Results
        The corrected results (what a viewer shows).
    dirty : bool
        True when there are changes not yet saved.
    stats_pending : bool
        True when spines and fates are edited but the branch statistics are not
        recomputed yet (see :meth:`apply` with ``statistics=False``).
    skipped : list of str
        Edits of the log that no longer apply to ``auto`` (after a re-run).
    view : dict
        Viewer state saved with the project (free-form JSON).
    record : dict
        What the folder's ``params.json`` records besides the parameters (the
        input files and voxel sizes, a batch's series and input fingerprint);
        written again with every save (:func:`spinetrack.results.run_record`).
    """

    def __init__(self, auto: Results, folder: str | Path | None = None,
                 edits: list[Edit] | None = None, autosave: bool = True,
                 tolerance_um: float = DEFAULT_TOLERANCE_UM):
        self.auto = auto
        self.folder = None if folder is None else Path(folder)
        self.autosave = autosave
        self.tolerance_um = tolerance_um
        self.edits: list[Edit] = list(edits or [])
        self.view: dict[str, Any] = {}
        self.record: dict[str, Any] = {}
        self._auto_saved = False
        self.dirty = False
        self.stats_pending = False
        self.results = auto
        self._replay()

    # ------------------------------------------------------------------ opening
    @classmethod
    def open(cls, folder: str | Path, autosave: bool = True) -> Project:
        """Open a project folder, or a plain results folder as a new project.

        A folder an interrupted run left (tables without ``params.json``) opens
        with a warning in the log (:func:`spinetrack.results.incomplete_run`).

        Raises
        ------
        InputError
            If the folder is not a results folder or its edit log is malformed.
        """
        folder = Path(folder)
        auto_dir = folder / AUTO_DIR
        interrupted = incomplete_run(folder)
        if interrupted:
            log.warning("%s", interrupted)
        has_auto = (auto_dir / "spines.csv").exists()
        edits = load_edits(folder)
        if edits and not has_auto:
            raise InputError(auto_dir, "is missing, so the edit log edits.json cannot be "
                             "replayed; restore auto/ or move edits.json away to open the "
                             "corrected tables as they are")
        auto = read_results(auto_dir if has_auto else folder)
        project = cls(auto, folder, edits, autosave=autosave)
        project._auto_saved = has_auto
        project.record = run_record(folder) or run_record(auto_dir)
        if (folder / VIEW_FILE).exists():
            try:
                project.view = json.loads((folder / VIEW_FILE).read_text())
            except ValueError as exc:
                raise InputError(folder / VIEW_FILE, f"is not valid JSON ({exc})") from None
        return project

    @staticmethod
    def is_project(folder: str | Path) -> bool:
        """True if ``folder`` holds results (a project or a plain results folder)."""
        folder = Path(folder)
        return (folder / "spines.csv").exists() or (folder / AUTO_DIR / "spines.csv").exists()

    # ------------------------------------------------------------------ editing
    def _replay(self, statistics: bool = True) -> None:
        spines, overrides, skipped = replay_edits(self.auto, self.edits, self.tolerance_um)
        self._spines, self._overrides, self.skipped = spines, overrides, skipped
        if not self.edits:
            self.results, self.stats_pending = self.auto, False
        elif statistics:
            self.results = recompute_results(self.auto, spines, overrides, edits=self.edits,
                                             skipped=skipped)
            self.stats_pending = False
        else:
            self._fates_only()

    def _fates_only(self) -> None:
        """Update spines and fates now; the branch statistics follow (:meth:`finish`)."""
        fates = fates_with_overrides(self._spines.reset_index(drop=True),
                                     self.auto.n_sessions,
                                     self.auto.params.fates.restore_radius_um, self._overrides)
        self.results = replace(self.results, spines=self._spines.reset_index(drop=True),
                               fates=fates)
        self.stats_pending = True

    def apply(self, edit: Edit, statistics: bool = True) -> Results:
        """Make one edit: check it, log it, recompute, and autosave.

        Parameters
        ----------
        edit : Edit
        statistics : bool
            Recompute the branch statistics now (then autosave). With False only
            spines and fates are updated and :attr:`stats_pending` is set: compute
            the statistics elsewhere (e.g. a background thread) from
            :meth:`snapshot` with :meth:`compute` and hand them back with
            :meth:`finish`, which autosaves.

        Raises
        ------
        spinetrack.edits.EditError
            If the edit does not apply; nothing changes then.
        """
        overrides = dict(self._overrides)
        spines = apply_edit(self.auto, self._spines, overrides, edit, self.tolerance_um)
        self.edits.append(edit)
        self._spines, self._overrides = spines, overrides
        if statistics:
            self.results = recompute_results(self.auto, spines, overrides, edits=self.edits,
                                             skipped=self.skipped)
            self.stats_pending = False
            self._changed()
        else:
            self._fates_only()
            self.dirty = True
        return self.results

    def undo(self, statistics: bool = True) -> Edit | None:
        """Drop the last edit (replaying the others); returns it, or None if there was none."""
        if not self.edits:
            return None
        last = self.edits.pop()
        self._replay(statistics)
        if statistics or not self.stats_pending:
            self._changed()
        else:
            self.dirty = True
        return last

    # ------------------------------------------------------------------ statistics elsewhere
    def snapshot(self) -> tuple:
        """What :meth:`compute` needs, frozen (safe to use from another thread)."""
        return (self.auto, self._spines.copy(), dict(self._overrides), list(self.edits),
                list(self.skipped))

    @staticmethod
    def compute(snapshot: tuple, progress=None) -> Results:
        """Full results (fates and branch statistics) of a :meth:`snapshot`."""
        auto, spines, overrides, edits, skipped = snapshot
        if not edits:
            return auto
        return recompute_results(auto, spines, overrides, edits=edits, skipped=skipped,
                                 progress=progress)

    def finish(self, snapshot: tuple, results: Results) -> bool:
        """Take statistics computed from ``snapshot`` if no edit came since; autosave.

        Returns
        -------
        bool
            False when the project changed meanwhile (the results are stale).
        """
        if snapshot[3] != self.edits:
            return False
        self.results = results
        self.stats_pending = False
        self._changed()
        return True

    def _changed(self) -> None:
        self.dirty = True
        if self.autosave and self.folder is not None:
            self.save()

    @property
    def spines(self) -> pd.DataFrame:
        return self.results.spines

    # ------------------------------------------------------------------ saving
    def save(self, folder: str | Path | None = None, overwrite: bool = False) -> Path:
        """Write the project (atomically, file by file) and return its folder.

        Parameters
        ----------
        folder : path, optional
            Save here (and keep working here); default the project's folder.
        overwrite : bool
            Allow ``folder`` to be another folder that already holds a project
            (``edits.json``) or results (``spines.csv``): they are replaced.

        Raises
        ------
        FolderInUse
            If ``folder`` is another folder holding a project or results and
            ``overwrite`` is False; nothing is written then.
        """
        if folder is not None and not same_folder(Path(folder), self.folder):
            found = results_in(folder)
            if found and not overwrite:
                raise FolderInUse(folder, f"already holds {' and '.join(found)} (another "
                                  "project or run); saving here would replace them: choose "
                                  "an empty folder, or confirm to overwrite")
            self.folder = Path(folder)
            self._auto_saved = False
        if self.folder is None:
            raise InputError(None, "the project has no folder yet; choose where to save it")
        out = self.folder
        # a folder that already has an edit log or auto/ stays a project (no stale auto/)
        keeps_log = bool(self.edits) or bool(set(results_in(out)) & {EDITS_FILE, f"{AUTO_DIR}/"})
        if not self._auto_saved and keeps_log:
            write_results(self.auto, out / AUTO_DIR, extra_params=self.record)
            # keep exactly what a reopened project will read (CSV precision)
            self.auto = read_results(out / AUTO_DIR)
            self._auto_saved = True
            self._replay()  # the statistics too: stats_pending is cleared
        if self.stats_pending:  # only when auto/ was already written
            self.results = self.compute(self.snapshot())
            self.stats_pending = False
        if keeps_log:
            save_edits(out, self.edits)
        scores = out / "compare.json"  # scored the tables about to be replaced
        if scores.is_file():
            scores.unlink()
            log.info("removed %s: it scored the results before these edits", scores)
        write_results(self.results, out, extra_params=self.record)
        if self.view:
            write_json_atomic(out / VIEW_FILE, self.view)
        if not self._auto_saved:
            # a project without edits is a plain results folder: reread it for CSV precision
            self.auto = read_results(out)
            self._replay()
        self.dirty = False
        log.info("saved project %s (%d edits)", out, len(self.edits))
        return out

    def save_copy(self, folder: str | Path, overwrite: bool = False) -> Path:
        """Write the project into ``folder`` as :meth:`save` would; keep working where it is.

        The copy holds the automatic results, the edit log and the corrected
        tables, so it reopens with exactly these tables. In the project's own
        folder this is :meth:`save`.

        Raises
        ------
        FolderInUse
            If ``folder`` is another folder holding a project or results and
            ``overwrite`` is False.
        """
        if same_folder(folder, self.folder):
            return self.save()
        twin = copy.copy(self)
        twin.folder, twin._auto_saved, twin.autosave = None, False, False
        twin.edits = list(self.edits)
        return twin.save(folder, overwrite=overwrite)

    def save_view(self, view: dict[str, Any]) -> None:
        """Remember a viewer's state and write it if the project has a folder."""
        self.view = dict(view)
        if self.folder is not None:
            write_json_atomic(self.folder / VIEW_FILE, self.view)
