"""Makes the semcal tasks and backends known to a plain `lm_eval`, with no flag.

lm-eval 0.4.13 reads no plugin entry points, so the package installs a startup hook:
`lm_eval_semcal.pth` in site-packages (and, for Pythons that read PEP 829 start files,
`lm_eval_semcal.start`) calls `install()` at every interpreter start. `install()` only
puts a watcher on `sys.meta_path`; it imports nothing and costs a few microseconds.
Nothing else happens until lm-eval's task index or model registry is imported; then
`lm_eval_semcal.harness.plugin` adds the semcal task folder to the index and the semcal
backends to the registry (see there).

- `SEMCAL_AUTOLOAD=0` (or `false`, `no`, `off`) turns the hook off.
- A failure in the hook is one warning line on stderr; lm-eval then runs as if the
  plugin were not installed.

This module is top-level and imports nothing beyond `sys` and `os` (both loaded before
any `.pth` file is read) so that an interpreter start that never touches lm-eval pays
nothing for it; `tests/test_autoload.py` holds it to that.
"""

import os
import sys

ENV_SWITCH = "SEMCAL_AUTOLOAD"
_OFF = ("0", "false", "no", "off")
# The lm-eval module each hook waits for, and the hook (in lm_eval_semcal.harness.plugin).
_WATCHED = {
    "lm_eval.tasks._index": "add_task_folder",
    "lm_eval.api.registry": "add_backends",
}


def enabled() -> bool:
    """Whether the hook may act: SEMCAL_AUTOLOAD is not set to 0 / false / no / off."""
    return os.environ.get(ENV_SWITCH, "1").strip().lower() not in _OFF


_failed = False


def _warn(error: BaseException) -> None:
    first_line = (str(error).strip().splitlines() or [""])[0]
    sys.stderr.write(
        f"WARNING lm-eval-semcal: its tasks and backends are not loaded into lm_eval "
        f"({type(error).__name__}: {first_line}); lm_eval runs without them. "
        f"Reinstall lm-eval-semcal, or set {ENV_SWITCH}=0 to stop trying.\n"
    )


def run_hook(name: str, module: object) -> None:
    """Call `lm_eval_semcal.harness.plugin.<name>(module)`.

    Any failure is one warning line, and the hooks after it do nothing: a broken install
    says so once per process.
    """
    global _failed
    if _failed:
        return
    try:
        from lm_eval_semcal.harness import plugin

        getattr(plugin, name)(module)
    except Exception as error:  # noqa: BLE001 - a broken plugin must never break lm_eval
        _failed = True
        _warn(error)


class _HookedLoader:
    """A module's own loader, which calls the hook once the module has run."""

    def __init__(self, loader: object, hook: str) -> None:
        self._loader = loader
        self._hook = hook

    def create_module(self, spec):
        return self._loader.create_module(spec)

    def exec_module(self, module) -> None:
        self._loader.exec_module(module)
        run_hook(self._hook, module)

    def __getattr__(self, name: str):
        return getattr(self._loader, name)


class LmEvalWatcher:
    """A meta-path finder that finds nothing itself: it hands lm-eval's task index and
    model registry to the hooks as they are imported, then leaves `sys.meta_path`."""

    def __init__(self) -> None:
        self.pending = dict(_WATCHED)

    def find_spec(self, fullname: str, path=None, target=None):
        hook = self.pending.get(fullname)
        if hook is None:
            return None
        spec = None
        for finder in sys.meta_path:
            if finder is not self and hasattr(finder, "find_spec"):
                spec = finder.find_spec(fullname, path, target)
                if spec is not None:
                    break
        del self.pending[fullname]
        if not self.pending and self in sys.meta_path:
            sys.meta_path.remove(self)
        if spec is not None and spec.loader is not None and hasattr(spec.loader, "exec_module"):
            spec.loader = _HookedLoader(spec.loader, hook)
        return spec


def install() -> None:
    """Watch for lm-eval (idempotent); run the hooks now for modules already imported.

    The startup files call this; a test or a tool that starts without them may too.
    """
    if not enabled() or any(isinstance(finder, LmEvalWatcher) for finder in sys.meta_path):
        return
    watcher = LmEvalWatcher()
    for name, hook in list(watcher.pending.items()):
        if name in sys.modules:
            del watcher.pending[name]
            run_hook(hook, sys.modules[name])
    if watcher.pending:
        sys.meta_path.insert(0, watcher)
