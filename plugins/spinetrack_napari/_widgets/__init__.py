"""Qt widgets of the spinetrack napari plugin (private; see docs/napari.md)."""
