"""OCI lifecycle hooks: run a hook program with the container's state on its stdin.

Used from the runtime (prestart, createRuntime, poststart, poststop) and from inside the
container before exec (createContainer, startContainer), through the one program runner,
:func:`tsubo.kernel.helpers.run` (posix_spawn: no :mod:`subprocess` import, ~10 ms here;
nothing imported or looked up after pivot_root). The hook gets exactly its config's
``args`` and ``env``; its stdout and stderr are captured (as runc does), and the last line
of stderr is part of the error when it fails. A hook that fails or exceeds its timeout
fails the operation, naming the hook and its exit status — except a poststart or poststop
hook: its failure is returned as a warning and the next hook runs all the same (runtime spec,
runtime.md "Lifecycle": "the runtime MUST log a warning, but the remaining hooks and
lifecycle continue as if the hook had succeeded").
"""

from __future__ import annotations

from tsubo.errors import TsuboError
from tsubo.kernel import helpers

TYPE_CHECKING = False
if TYPE_CHECKING:
    from tsubo.oci.runtime_spec import Hook


def run_hooks(name: str, hooks: list[Hook], state_json: str) -> None:
    """Run each hook of the *name* phase in order; the first failure raises."""
    for index, hook in enumerate(hooks):
        run_hook(f"{name}[{index}]", hook, state_json)


def run_hooks_warning_only(name: str, hooks: list[Hook], state_json: str) -> list[TsuboError]:
    """Run every hook of the *name* phase (poststart, poststop) in order; the failures, as
    warnings, instead of raising at the first."""
    warnings: list[TsuboError] = []
    for index, hook in enumerate(hooks):
        try:
            run_hook(f"{name}[{index}]", hook, state_json)
        except TsuboError as error:
            warnings.append(error)
        except OSError as error:  # (the runner reports its own failures as TsuboError)
            warnings.append(TsuboError.from_os_error("run hook", f"{name}[{index}] {hook.path}",
                                                     error))
    return warnings


def run_hook(label: str, hook: Hook, state_json: str) -> None:
    """Run one hook (*label*: ``prestart[0]``) with *state_json* on its stdin."""
    env = dict(entry.partition("=")[::2] for entry in hook.env)
    helpers.run(hook.args, program=hook.path, stdin=state_json.encode(), env=env,
                timeout=hook.timeout, operation="run hook", obj=f"{label} {hook.path}").check()
