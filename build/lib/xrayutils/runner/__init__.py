"""The runner behind ``xray-book``, a trade per module.

:mod:`~xrayutils.runner.parameters` (profiles and the checks of every value), :mod:`~xrayutils.runner.data` (the datasets
found before anything runs), :mod:`~xrayutils.runner.execution` (papermill runs in waves), :mod:`~xrayutils.runner.interrupts`
(Ctrl-C and the kernels), :mod:`~xrayutils.runner.pages` (staging the pages), :mod:`~xrayutils.runner.html` (Jupyter Book and
its checks) and :mod:`~xrayutils.runner.build` (a whole build, start to end). :mod:`xrayutils.cli` parses the commands and calls them.
"""
