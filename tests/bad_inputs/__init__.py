"""Bad-input corpus: one ``cases_<project>.py`` per project (owned by that project), run by ``tests/test_bad_inputs.py``.

A case file defines ``CASES``, a list of dicts::

    CASES = [
        dict(id="missing-config", cwd="superrelora",
             argv=["scripts/train_superrelora.py", "--config", "{tmp}/nope.yaml"],
             expect="not found", setup=None),
    ]

- ``argv`` runs as ``<cwd>/.venv/bin/python *argv`` with ``cwd`` (the project folder) as working directory and the
  Hugging Face Hub offline (``HF_HUB_OFFLINE=1`` ...), stdin closed, 60 s timeout.
- ``setup`` (optional) names a function in the same file taking ``tmp_path`` (a fresh folder for this case) and
  returning ``{placeholder: path}``; every ``"{placeholder}"`` in argv is replaced by ``str(path)``. ``{tmp}`` (the
  case's folder) is always available. Setup runs in the runner's interpreter (shared_utils' env, where no project
  package is importable); to build a file with the project's own code, run the project's ``.venv/bin/python`` in a
  subprocess from the setup function.
- ``env`` (optional) is a dict of extra environment variables.
- The case passes when the exit code is non-zero, stderr holds no ``Traceback``, and ``expect`` occurs in stderr
  (case-insensitive). Each case must fail before loading a model (a few seconds at most).
"""
