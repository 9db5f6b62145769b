"""napari plugin for spinetrack: readers, writer, widgets and sample data.

Everything it shows comes from the :mod:`spinetrack` library; this package only
converts library results to napari layers and back.
"""
