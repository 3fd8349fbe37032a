"""The experiments: ``python -m experiments.<name>`` (``python -m experiments`` lists them).

Importing this package (which ``python -m experiments.<name>`` does first) makes a Ctrl-C that
arrives before the experiment's command line takes over -- while JAX, MuJoCo and the learners are
being imported -- end the process with one line instead of an import traceback. From then on
``metarl_jax.io.cli`` handles signals (``metarl_jax.io.stop_signals``).
"""

import sys


def _interrupted_quietly(exc_type, exc, tb, _previous=sys.excepthook):
    if issubclass(exc_type, KeyboardInterrupt):
        print("\ninterrupted while starting up; nothing was written.", file=sys.stderr)
        return  # Python then exits through SIGINT, as a Ctrl-C'd program should (status 130)
    _previous(exc_type, exc, tb)


if sys.excepthook is sys.__excepthook__:  # leave a hook someone else installed alone
    sys.excepthook = _interrupted_quietly
