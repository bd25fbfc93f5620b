"""Where a training step's time goes: TensorFlow profiler traces as op tables.

`tf.profiler` (and `keras_ssr.callbacks.profile_steps.ProfileSteps`) writes a
trace, `<log_dir>/plugins/profile/<run>/<host>.xplane.pb`, that TensorBoard's
profile plugin displays. The plugin's pages need a browser with internet access
for their charts; this module reads the same file with TensorFlow alone and
sums the time of every executed TensorFlow op by op type and by phase of the
step, so the answer also fits in a terminal or a log.

Phases are read from the op names that `tf.function` and Keras give:
`backward` is everything under a `gradient_tape/` name scope plus the `AddN`
ops that sum a variable's gradients over several passes; `update` is everything
under an optimizer's name scope (`adam/`, `phi_adam/`, ... : pass the names);
`forward` is the rest (the forward passes, losses, metrics, moving statistics).
Times are the ops' own wall times on TensorFlow's inter-op threads (an op
waiting for intra-op workers counts as busy); with two inter-op threads,
independent ops run concurrently and their times add up to more than the step's
wall time, so read shares, not absolute sums.
"""

import collections
import dataclasses
import glob
import os

# Thread lines of the host plane on which TensorFlow's executor runs ops.
_OP_THREADS = ("tf_Compute", "tf_inter_op")
_NOT_OPS = ("Threadpool", "Executor", "Memory", "EagerExecute", "EagerLocalExecute")


@dataclasses.dataclass
class OpProfile:
    """Op time of a profiled span, summed by op type and by phase.

    Attributes:
        trace_path: the `.xplane.pb` file read.
        by_type: `{op_type: milliseconds}`.
        by_phase: `{"forward" | "backward" | "update": milliseconds}`.
        by_phase_type: `{(phase, op_type): milliseconds}`.
        counts: `{op_type: number of executions}`.
    """

    trace_path: str
    by_type: dict
    by_phase: dict
    by_phase_type: dict
    counts: dict

    @property
    def total_ms(self):
        return sum(self.by_type.values())

    def table(self, steps=1, top=15):
        """A text table: phases, then the `top` op types by self time.

        Args:
            steps: number of steps in the trace; times are divided by it.
            top: how many op types to list.
        """
        total = self.total_ms or 1.0
        lines = [f"{'phase / op type':<44} {'ms/step':>9} {'share':>6} {'calls':>6}"]
        for phase in ("forward", "backward", "update"):
            ms = self.by_phase.get(phase, 0.0)
            lines.append(f"{phase:<44} {ms / steps:9.1f} {ms / total:6.1%}")
        lines.append("")
        ranked = sorted(self.by_type.items(), key=lambda kv: -kv[1])[:top]
        for op_type, ms in ranked:
            calls = self.counts[op_type] / steps
            lines.append(
                f"{op_type:<44} {ms / steps:9.1f} {ms / total:6.1%} {calls:6.0f}"
            )
        lines.append(f"{'all ops':<44} {total / steps:9.1f} {1:6.1%}")
        return "\n".join(lines)


def latest_trace(log_dir):
    """The newest `.xplane.pb` under `log_dir` (searched recursively)."""
    paths = glob.glob(os.path.join(log_dir, "**", "*.xplane.pb"), recursive=True)
    if not paths:
        raise FileNotFoundError(
            f"No profiler trace (*.xplane.pb) under {log_dir}: profile some "
            "steps first (ProfileSteps, or tf.profiler.experimental.start/stop)."
        )
    return max(paths, key=os.path.getmtime)


def phase_of(op_name, op_type, optimizer_names=("adam",)):
    """`"forward"`, `"backward"` or `"update"` for one executed op (see module)."""
    scopes = op_name.split("/")
    if "gradient_tape" in scopes or op_name.startswith("gradient_tape"):
        return "backward"
    if any(name in scopes for name in optimizer_names):
        return "update"
    if op_type == "AddN" and len(scopes) <= 2:
        return "backward"
    return "forward"


def read_op_profile(log_dir_or_trace, optimizer_names=("adam",)):
    """Sums op self times of a profiler trace (see the module docstring).

    Args:
        log_dir_or_trace: a `.xplane.pb` file, or a directory holding one (the
            newest is read).
        optimizer_names: name scopes of the optimizers (Keras uses the
            optimizer's `name`, e.g. `"adam"`).

    Returns:
        An `OpProfile`.

    Example:

    >>> profile = read_op_profile("runs/x/profile")  # doctest: +SKIP
    >>> print(profile.table(steps=3))  # doctest: +SKIP
    """
    path = log_dir_or_trace
    if os.path.isdir(path):
        path = latest_trace(path)
    space = _xplane_pb2().XSpace()
    with open(path, "rb") as f:
        space.ParseFromString(f.read())
    by_type = collections.Counter()
    by_phase = collections.Counter()
    by_phase_type = collections.Counter()
    counts = collections.Counter()
    for plane in space.planes:
        for line in plane.lines:
            if not line.name.startswith(_OP_THREADS):
                continue
            for name, ms in _self_times(plane, line):
                op_name, op_type = name.rsplit(":", 1)
                phase = phase_of(op_name, op_type, optimizer_names)
                by_type[op_type] += ms
                by_phase[phase] += ms
                by_phase_type[(phase, op_type)] += ms
                counts[op_type] += 1
    return OpProfile(path, dict(by_type), dict(by_phase), dict(by_phase_type), counts)


def _self_times(plane, line):
    """`(op "name:type", self ms)` of the op events of one thread line.

    An op event's self time is its duration minus that of op events nested
    in it on the same thread (e.g. a function call op and its body).
    """
    events = []
    for event in line.events:
        name = plane.event_metadata[event.metadata_id].name
        if ":" in name and not name.startswith(_NOT_OPS):
            events.append((event.offset_ps, event.offset_ps + event.duration_ps, name))
    events.sort(key=lambda e: (e[0], -e[1]))
    stack, out = [], []
    for start, end, name in events:
        while stack and stack[-1][1] <= start:
            out.append(_pop(stack))
        if stack:
            stack[-1][3] += end - start
        stack.append([start, end, name, 0])
    while stack:
        out.append(_pop(stack))
    return out


def _pop(stack):
    start, end, name, children = stack.pop()
    return name, (end - start - children) / 1e9


def _xplane_pb2():
    # TensorFlow ships the trace's protobuf module (no profile plugin needed).
    from tensorflow.tsl.profiler.protobuf import xplane_pb2

    return xplane_pb2


__all__ = ["OpProfile", "latest_trace", "phase_of", "read_op_profile"]
