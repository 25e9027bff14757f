"""The datasets the book reads, one record each (:class:`~xrayutils.sources.base.Source`): the single place a dataset's facts live.

A record holds a dataset's name, tasks and classes, folder layout, upstream
source and licence, full sizes, how to download it, how to check its layout
and how to read its rows.  :mod:`xrayutils.datasets` assembles them
(:data:`xrayutils.datasets.SOURCES`) and loads any of them the same way.  A
dataset laid out as class folders (``<name>/<task>/<split>/<class>/<images>``)
is one :class:`~xrayutils.sources.base.ClassFolders` record in a file of its own,
registered with :func:`xrayutils.datasets.register`.
"""
